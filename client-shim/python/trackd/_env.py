"""The W&B environment variables trackd honours, as W&B reads them.

A job launched by a scheduler configured for W&B carries WANDB_PROJECT,
WANDB_ENTITY, WANDB_RUN_ID … in its environment; trackd.init, trackd.wandb.init
and libtrackd's td_init (client-shim/include/trackd/trackd.h) all read them for
what the caller left unset, so such a job lands in the same project whichever
client it uses. An explicit argument always wins, as in W&B.

    WANDB_PROJECT, WANDB_ENTITY, WANDB_NAME, WANDB_NOTES, WANDB_RUN_ID,
    WANDB_RUN_GROUP, WANDB_JOB_TYPE   the run's identity (empty = unset)
    WANDB_TAGS                        comma-separated tags
    WANDB_MODE                        online | offline | disabled (W&B's old
                                      names: run = online, dryrun = offline)
    WANDB_DISABLED                    true: mode disabled
    WANDB_RESUME                      allow | must | never | auto
    WANDB_SILENT                      true: no terminal output of the run
    WANDB_CONSOLE                     off: no console capture

Pure functions of a mapping (os.environ by default), so tests need no process.
"""
from __future__ import annotations

import os
from typing import List, Mapping, Optional

_TRUE = ("1", "true", "yes", "on")

_MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline",
          "disabled": "disabled"}


def text(name: str, env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The variable's value, None when unset or empty."""
    value = (os.environ if env is None else env).get(name)
    return value if value else None


def flag(name: str, env: Optional[Mapping[str, str]] = None) -> bool:
    """A W&B boolean variable ("true", "1", "yes", "on"; case ignored)."""
    value = text(name, env)
    return value is not None and value.strip().lower() in _TRUE


def tags(env: Optional[Mapping[str, str]] = None) -> Optional[List[str]]:
    """WANDB_TAGS split at commas, blanks dropped (None when unset)."""
    value = text("WANDB_TAGS", env)
    if value is None:
        return None
    return [t.strip() for t in value.split(",") if t.strip()]


def mode(env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """online / offline / disabled from WANDB_DISABLED and WANDB_MODE (None if
    neither says; ValueError naming the variable for a value W&B refuses)."""
    if flag("WANDB_DISABLED", env):
        return "disabled"
    value = text("WANDB_MODE", env)
    if value is None:
        return None
    if value.lower() not in _MODES:
        raise ValueError(f"WANDB_MODE must be online, offline or disabled; got {value!r}")
    return _MODES[value.lower()]


def normalise_mode(value: str, what: str = "mode") -> str:
    """W&B's mode names (with the legacy run / dryrun) as trackd's."""
    if not isinstance(value, str) or value.lower() not in _MODES:
        raise ValueError(f"{what} must be online, offline or disabled; got {value!r}")
    return _MODES[value.lower()]
