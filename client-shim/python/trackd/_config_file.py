"""Reading a run's config from a file: JSON, or YAML.

A file whose name ends in ``.json``, or whose text starts with ``{``, is read
as JSON (any JSON object). Anything else is YAML, read with PyYAML's safe
loader (python3-yaml), so it means what it means to wandb, which reads config
files the same way: YAML 1.1, where ``yes``/``True``/``off`` are booleans and
``1.0e-08`` is a float. Three rules are added:

- a duplicate key is an error (PyYAML would silently keep the last value);
- keys are strings: ``1:`` or ``true:`` as a key is an error that says to
  quote it (trackd, like wandb, names config entries with strings);
- dates and times stay the text written (``2024-01-01``): a config value has
  no date type.

The document must be a mapping (an empty file is an empty config). Errors are
ConfigFileError with ``file:line:col: message``.

PyYAML is imported when a YAML file is first read, not with the package: the
package itself needs nothing beyond libtrackd, so it works in a venv made
without the system's site-packages; only a YAML config file then asks for it.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Optional


class ConfigFileError(ValueError):
    """The file is not a JSON object or a YAML mapping, or breaks a rule above."""


def _where(name: str, mark: Any) -> str:
    # PyYAML marks are 0-based.
    return f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name


_parse: Optional[Callable[[str, str], Any]] = None


def _yaml_parser() -> Callable[[str, str], Any]:
    """yaml.load with the loader of the rules above, made at first use."""
    global _parse
    if _parse is not None:
        return _parse
    try:
        import yaml
    except ImportError:
        raise ConfigFileError(
            "reading a YAML config file needs PyYAML (Debian: apt-get install python3-yaml; "
            "in a venv: make it with --system-site-packages, or install pyyaml), or give "
            "the config as a JSON file") from None

    class _Loader(yaml.SafeLoader):
        """SafeLoader with the rules above (a subclass: yaml.SafeLoader is untouched)."""

        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Dict[Any, Any]:
            if isinstance(node, yaml.MappingNode):
                seen = set()
                # The keys as written; `<<` merges may be overridden, as YAML allows.
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    if not isinstance(key, str):
                        if isinstance(key_node, yaml.ScalarNode):
                            problem = (f"key {key_node.value!r} is read as {type(key).__name__}, "
                                       f"not a string: quote it")
                        else:
                            problem = f"a key must be a string, not a {type(key).__name__}"
                        raise yaml.constructor.ConstructorError(None, None, problem,
                                                                key_node.start_mark)
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r}", key_node.start_mark)
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

        def construct_timestamp_text(self, node: yaml.ScalarNode) -> str:
            return self.construct_scalar(node)

    _Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_timestamp_text)

    def parse(text: str, name: str) -> Any:
        try:
            return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            problem = e.problem or e.context or "malformed YAML"
            if e.context and e.problem:
                problem = f"{problem} ({e.context})"
            raise ConfigFileError(f"{_where(name, mark)}: {problem}") from None
        except yaml.reader.ReaderError as e:  # a character YAML does not allow
            pos = e.position
            line = text.count("\n", 0, pos)
            mark = yaml.Mark(name, pos, line, pos - text.rfind("\n", 0, pos) - 1, None, None)
            what = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
            raise ConfigFileError(f"{_where(name, mark)}: unacceptable character {what}: "
                                  f"{e.reason}") from None
        except yaml.YAMLError as e:
            raise ConfigFileError(f"{name}: {e}") from None

    _parse = parse
    return parse


def parse_yaml(text: str, name: str = "<string>") -> Dict[str, Any]:
    parse = _yaml_parser()
    try:
        data = parse(text, name)
    except RecursionError:
        raise ConfigFileError(f"{name}: nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{name}: the config must be a YAML mapping (key: value), "
                              f"not a {type(data).__name__}")
    return data


def load(path: "os.PathLike[str] | str") -> Dict[str, Any]:
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json") or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigFileError(f"{path}:{e.lineno}:{e.colno}: {e.msg}") from None
        if not isinstance(data, dict):
            raise ConfigFileError(f"{path}: the config must be a JSON object")
        return data
    return parse_yaml(text, path)
