"""Atomic file writes: temp file in the same folder, fsync, rename, fsync the folder.

A crash at any instant leaves either the old or the new file, never half of one.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from . import faults


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so a rename inside it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


TMP_TAG = ".csfs-tmp-"


def tmp_path(path: Path) -> Path:
    """The temp sibling an atomic write of `path` uses: hidden, unique per process and thread."""
    return path.with_name(f".{path.name}{TMP_TAG}{os.getpid()}-{threading.get_ident()}")


def remove_stale_tmp(path: Path) -> None:
    """Remove temp siblings of `path` left by killed processes (live writers' are kept)."""
    prefix = f".{path.name}{TMP_TAG}"
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix)]
    except FileNotFoundError:
        return
    for n in names:
        pid = n[len(prefix):].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            (path.parent / n).unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this host)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def symlink(target: str, link: Path) -> None:
    """Atomically create or replace the symlink `link` -> `target`."""
    tmp = tmp_path(link)
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def write_file(path: str | os.PathLike, fill: Callable[[BinaryIO], Any], mode: int = 0o644) -> None:
    """Atomically replace `path` with what `fill(f)` writes to the open temp file `f`
    (for contents too large to build in memory first)."""
    path = Path(path)
    tmp = tmp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            fill(f)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    faults.point("atomic-before-rename")
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
    """Atomically replace `path` with `data`."""
    write_file(path, lambda f: f.write(data), mode)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


def dumps_json(obj: Any) -> bytes:
    """The JSON form csfs writes: indented, keys in insertion order, newline at the end."""
    return (json.dumps(obj, indent=4, default=str) + "\n").encode()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_bytes(path, dumps_json(obj))


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or malformed file raises FormatError naming it."""
    from . import safeio

    return safeio.load_json(path)
