"""Where the instance lives: --home, else $CSFS_HOME, else the per-user data directory."""
from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "csfs"


def resolve_home(cli_value: str | None = None) -> Path:
    """The instance directory to use (not created here)."""
    if cli_value:
        return Path(cli_value).expanduser().absolute()
    env = os.environ.get("CSFS_HOME")
    if env:
        return Path(env).expanduser().absolute()
    return default_home()
