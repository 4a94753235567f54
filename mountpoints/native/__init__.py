"""Native tricks: every place the mount reaches past its FUSE binding's public API.

Each trick is one module here, has one name and is on by default. The environment
variable CSFS_NATIVE switches them: `0` (or `off`, `none`) turns all of them off,
`-dircache,-readdir` turns those off, unset or `1` leaves all on. A trick also stays
off where it cannot work (another libfuse layout, another binding). With all off the
mount behaves the same, only slower.

They were checked against mfusepy 3.x (pinned below 4 in pyproject.toml), libfuse
3.0-3.16 and fusepy on libfuse 2.9.

The server writes the tricks in use to its log and to a small state file that
`csfs mounts` reads (state_path()).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import stat as S
import tempfile

ENV = "CSFS_NATIVE"
TRICKS = {
    "zerocopy": "read_buf hands libfuse a hand-built fuse_bufvec: it reads or splices the data itself",
    "dircache": "wraps the session's low-level opendir and sets fuse_file_info bits: kernel-cached listings",
    "threadstate": "overrides the binding's _wrapper to keep one Python thread state per libfuse thread",
    "readdir": "replaces mfusepy's readdir_fuse_3 with a leaner filler loop",
    "readahead": "raises the mount's read_ahead_kb under /sys/class/bdi (root only)",
    "readdirplus": "readdirplus replies carry the real tree's attributes, with offsets (libfuse 3.14 drops them at 0)",
    "getattr": "replaces mfusepy's getattr_fuse_3 with one that fills the struct stat directly",
}
OFF_WORDS = ("0", "off", "none", "no", "false")

_active: set[str] = set()


def wanted(name: str) -> bool:
    """Whether CSFS_NATIVE leaves trick `name` on (checked again on every call)."""
    assert name in TRICKS, name
    words = [w.strip().lower() for w in os.environ.get(ENV, "").split(",") if w.strip()]
    if any(w in OFF_WORDS for w in words):
        return False
    return f"-{name}" not in words


def problem() -> str:
    """A one-line complaint about CSFS_NATIVE words that name no trick ("" when fine)."""
    words = [w.strip().lower() for w in os.environ.get(ENV, "").split(",") if w.strip()]
    bad = [w for w in words if w not in OFF_WORDS + ("1", "on") and w.lstrip("-") not in TRICKS]
    if not bad:
        return ""
    return f"{ENV}: unknown {', '.join(bad)}; use 0, 1 or -NAME for NAME in {', '.join(TRICKS)}"


def use(name: str, works: bool = True) -> bool:
    """Record whether trick `name` is in use: wanted and `works` here. Returns that."""
    on = wanted(name) and works
    if on:
        _active.add(name)
    else:
        _active.discard(name)
    return on


def active() -> list[str]:
    """The tricks in use in this process, in TRICKS order."""
    return [n for n in TRICKS if n in _active]


def summary() -> str:
    """'zerocopy, dircache (off: readdir)': the tricks in use, then the others."""
    on = active()
    off = [n for n in TRICKS if n not in on]
    return (", ".join(on) or "none") + (f" (off: {', '.join(off)})" if off else "")


def report(mountpoint: str) -> None:
    """Once the server's tricks are settled: say which are in use in the mount's log and
    in its state file (`csfs mounts`)."""
    logging.getLogger("csfs.native").info("native tricks: %s", summary())
    write_state(mountpoint)


def _state_dir() -> str | None:
    """A directory only this user can write (None if the usual one is not safe)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = os.path.join(base, f"csfs-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return None
    if not S.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return path


def state_path(mountpoint: str) -> str | None:
    """Where the server of `mountpoint` keeps its state (pid, tricks in use)."""
    d = _state_dir()
    key = "".join(c if c.isalnum() else "_" for c in os.path.abspath(mountpoint))
    return None if d is None else os.path.join(d, f"mount{key}.json")


def write_state(mountpoint: str) -> None:
    """Called by the server once its tricks are settled (see read_state)."""
    from csfs.core import atomic

    path = state_path(mountpoint)
    if path is not None:
        atomic.write_json(path, {"pid": os.getpid(), "native": active()})


def read_state(mountpoint: str) -> list[str] | None:
    """The tricks the live server of `mountpoint` uses (None: unknown, e.g. another user's)."""
    from csfs.core import atomic

    path = state_path(mountpoint)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            state = json.loads(f.read())
    except (OSError, ValueError):
        return None
    pid = state.get("pid") if isinstance(state, dict) else None
    if not isinstance(pid, int) or pid <= 0 or not atomic.pid_alive(pid):
        return None
    return [n for n in state.get("native", []) if n in TRICKS]


def clear_state(mountpoint: str) -> None:
    path = state_path(mountpoint)
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)
