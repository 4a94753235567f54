"""Helpers for the mount tests: skip without FUSE, mount with a timeout, ALWAYS unmount."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from conftest import run_csfs


def fuse_missing() -> str | None:
    """Why FUSE tests cannot run here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (no FUSE in this machine/container)"
    if not shutil.which("fusermount3"):
        return "fusermount3 is missing (install the Debian package fuse3)"
    return None


needs_fuse = [pytest.mark.fuse, pytest.mark.skipif(fuse_missing() is not None, reason=str(fuse_missing()))]


def is_mounted(mountpoint: Path) -> bool:
    target = os.path.abspath(mountpoint)
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == target for line in f)


def force_unmount(mountpoint: Path, pid: int | None) -> None:
    """Last resort after `csfs umount`: lazy unmount and kill the server."""
    if is_mounted(mountpoint):
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True, timeout=30)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def mounted(home: Path, mountpoint: Path, source: Path | str | None = None,
            timeout: float = 60, env: dict | None = None) -> Iterator[tuple[Path, int]]:
    """Mount with `csfs mount` (background), yield (mountpoint, server pid), always unmount."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    args = ["mount"] + ([str(source)] if source else []) + [str(mountpoint)]
    r = run_csfs(*args, home=home, timeout=timeout, env=env)
    m = re.search(r"\(pid (\d+)\)", r.stdout)
    pid = int(m.group(1)) if m else None
    try:
        assert r.returncode == 0, f"csfs mount failed: {r.stderr}"
        assert is_mounted(mountpoint)
        yield mountpoint, pid or 0
    finally:
        try:
            run_csfs("umount", str(mountpoint), home=home, timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        force_unmount(mountpoint, pid)
        assert not is_mounted(mountpoint)


def run(cmd: list[str] | str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run a real tool with a timeout (a hung mount fails the test instead of the suite)."""
    return subprocess.run(cmd, capture_output=True, timeout=timeout, shell=isinstance(cmd, str), **kw)
