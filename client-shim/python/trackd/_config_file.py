"""Reading a run's config from a file: JSON, or a small safe subset of YAML.

There is no YAML library on the machines trackd targets (and PyYAML would be a
third-party dependency), so YAML files are read by the minimal parser below,
which accepts what config files are usually made of and refuses the rest with
``file:line: message`` rather than guessing:

- ``key: value`` lines and nested mappings by indentation (spaces only);
- comments (``#`` at the start of a line or after a space), blank lines, a
  leading ``---``;
- scalars: ``null``/``~``/empty → None, ``true``/``false`` (any case) → bool,
  decimal / ``0x`` / ``0o`` integers, floats (with ``.inf``, ``.nan``), single-
  or double-quoted strings (JSON escapes in double quotes), anything else a
  plain string;
- lists of scalars as a key's value: a block sequence (``- item`` lines, at
  the key's indent or deeper, as PyYAML writes them) or a flow sequence on one
  line (``[0.9, 0.999]``);
- refused: lists of collections (nested lists, mappings in lists), flow
  mappings, anchors/aliases, tags, block scalars (``|``, ``>``), several
  documents, tabs in indentation, duplicate keys.

A file whose name ends in ``.json``, or whose text starts with ``{``, is read
as JSON (any JSON object).
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Dict, List, Optional, Tuple

_INT = re.compile(r"^[-+]?[0-9]+$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_OCT = re.compile(r"^0o[0-7]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(inf|Inf|INF)$")
_NAN = re.compile(r"^\.(nan|NaN|NAN)$")


class ConfigFileError(ValueError):
    """The file is not JSON or the YAML subset described above."""


def load(path: "os.PathLike[str] | str") -> Dict[str, Any]:
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json") or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigFileError(f"{path}:{e.lineno}: {e.msg}") from None
        if not isinstance(data, dict):
            raise ConfigFileError(f"{path}: the config must be a JSON object")
        return data
    return parse_yaml(text, path)


def _strip_comment(line: str) -> str:
    """The line without a trailing comment (quotes respected)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
            continue
        if c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _split_key(content: str) -> Optional[Tuple[str, str]]:
    """('key', 'rest') at the first ': ' (or a trailing ':') outside quotes."""
    if content[:1] in "'\"":
        q = content[0]
        end = content.find(q, 1)
        while q == "'" and end != -1 and content[end + 1:end + 2] == "'":
            end = content.find(q, end + 2)
        if end == -1:
            return None
        key = _scalar_string(content[:end + 1])
        rest = content[end + 1:]
        if not rest.startswith(":") or (len(rest) > 1 and rest[1] != " "):
            return None
        return key, rest[1:].strip()
    m = re.search(r":( |$)", content)
    if not m:
        return None
    return content[:m.start()].rstrip(), content[m.end():].strip()


def _scalar_string(s: str) -> str:
    if s[0] == '"':
        return json.loads(s)
    return s[1:-1].replace("''", "'")


def _scalar(s: str, where: str) -> Any:
    if s == "" or s in ("~", "null", "Null", "NULL"):
        return None
    if s[0] in "'\"":
        end = s.rfind(s[0])
        if end == 0 or s[end + 1:].strip():
            raise ConfigFileError(f"{where}: unterminated or trailing text after quoted string")
        try:
            return _scalar_string(s[:end + 1])
        except json.JSONDecodeError as e:
            raise ConfigFileError(f"{where}: bad string: {e.msg}") from None
    if s[0] == "[":
        return _flow_list(s, where)
    if s[0] == "{":
        raise ConfigFileError(f"{where}: flow mappings ({{...}}) are not supported")
    if s[0] in "&*!|>%@`":
        raise ConfigFileError(f"{where}: YAML feature {s[0]!r} is not supported")
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if _INT.match(s):
        return int(s)
    if _HEX.match(s):
        return int(s, 16)
    if _OCT.match(s):
        return int(s[2:], 8)
    if _FLOAT.match(s):
        return float(s)
    if _INF.match(s):
        return -math.inf if s.startswith("-") else math.inf
    if _NAN.match(s):
        return math.nan
    return s


def _flow_list(s: str, where: str) -> List[Any]:
    """[a, b, …] of scalars on one line."""
    if not s.endswith("]"):
        raise ConfigFileError(f"{where}: a flow list must end on its line with ']'")
    inner = s[1:-1].strip()
    if not inner:
        return []
    items, quote, start = [], None, 0
    for i, c in enumerate(inner):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c in "[]{}":
            raise ConfigFileError(f"{where}: lists of collections are not supported")
        elif c == ",":
            items.append(inner[start:i].strip())
            start = i + 1
    items.append(inner[start:].strip())
    if any(item == "" for item in items):
        raise ConfigFileError(f"{where}: empty element in a flow list")
    return [_scalar(item, where) for item in items]


def _list_item(body: str, where: str) -> Any:
    """The scalar of a `- item` line."""
    item = body[1:].strip()
    if item == "-" or item.startswith("- ") or item[:1] in "[{" or \
            (item[:1] not in "'\"" and _split_key(item) is not None):
        raise ConfigFileError(f"{where}: lists of collections are not supported")
    return _scalar(item, where)


def parse_yaml(text: str, name: str = "<string>") -> Dict[str, Any]:
    root: Dict[str, Any] = {}
    # (indent of the mapping's keys, the mapping); the root's indent is set
    # by its first key.
    stack: List[Tuple[Optional[int], Dict[str, Any]]] = [(None, root)]
    pending: Optional[Tuple[Dict[str, Any], str, int]] = None  # "key:" awaiting a block
    seq: Optional[Tuple[List[Any], int]] = None  # the block list being read, its indent
    seen_content = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        where = f"{name}:{lineno}"
        line = _strip_comment(raw).rstrip()
        if not line.strip():
            continue
        body = line.lstrip(" ")
        indent = len(line) - len(body)
        if body.startswith("\t") or "\t" in line[:indent]:
            raise ConfigFileError(f"{where}: tabs are not allowed in indentation")
        if body in ("---", "..."):
            if seen_content:
                raise ConfigFileError(f"{where}: several documents are not supported")
            continue
        seen_content = True
        if body == "-" or body.startswith("- "):
            if pending is not None and indent >= pending[2]:
                parent, key, _ = pending
                pending = None
                seq = ([], indent)
                parent[key] = seq[0]
            elif seq is None or indent != seq[1]:
                raise ConfigFileError(f"{where}: a list item must follow 'key:' or another "
                                      "item at its indent")
            seq[0].append(_list_item(body, where))
            continue
        if seq is not None and indent > seq[1]:
            raise ConfigFileError(f"{where}: lists of collections are not supported")
        seq = None
        if pending is not None:
            parent, key, parent_indent = pending
            pending = None
            if indent > parent_indent:
                child: Dict[str, Any] = {}
                parent[key] = child
                stack.append((indent, child))
            else:
                parent[key] = None
        while len(stack) > 1 and stack[-1][0] is not None and stack[-1][0] > indent:
            stack.pop()
        level, mapping = stack[-1]
        if level is None:
            stack[-1] = (indent, mapping)
        elif level != indent:
            raise ConfigFileError(f"{where}: indentation does not match any enclosing level")
        split = _split_key(body)
        if split is None:
            raise ConfigFileError(f"{where}: expected 'key: value'")
        key, rest = split
        if key == "":
            raise ConfigFileError(f"{where}: empty key")
        if key in mapping:
            raise ConfigFileError(f"{where}: duplicate key {key!r}")
        if rest == "":
            mapping[key] = None
            pending = (mapping, key, indent)
        else:
            mapping[key] = _scalar(rest, where)
    return root
