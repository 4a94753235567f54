"""Helpers for the mount tests: skip without FUSE, mount with a timeout, ALWAYS unmount."""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_csfs


def fuse_missing() -> str | None:
    """Why FUSE tests cannot run here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (no FUSE in this machine/container)"
    if not shutil.which("fusermount3"):
        return "fusermount3 is missing (install the Debian package fuse3)"
    return None


def fusepy_missing() -> str | None:
    """Why the fusepy binding cannot be tested here, or None."""
    import ctypes.util
    import importlib.util

    if importlib.util.find_spec("fuse") is None:
        return "fusepy is not installed (pip install fusepy, or pip install -e '.[test]')"
    if ctypes.util.find_library("fuse") is None:
        return "libfuse2 is missing (apt-get install libfuse2)"
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
            timeout: float = 60, env: dict | None = None,
            extra: list[str] | None = None) -> Iterator[tuple[Path, int]]:
    """Mount with `csfs mount` (background; `extra` options such as --plain), yield
    (mountpoint, server pid), always unmount."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    args = ["mount"] + list(extra or []) + ([str(source)] if source else []) + [str(mountpoint)]
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


def tar_members(data: bytes) -> dict[str, tuple]:
    """A tar archive's members: name -> (type, link target, permission bits, file bytes)."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            body = tf.extractfile(m).read() if m.isfile() else None
            name = m.name.rstrip("/")
            out[name] = (m.type if m.type != tarfile.AREGTYPE else tarfile.REGTYPE,
                         m.linkname or None, m.mode & 0o777, body)
    return out


def write_sparse(path: Path) -> None:
    """A sparse file: 4 KiB of data, a 4 MiB hole, 4 KiB of data."""
    with open(path, "wb") as f:
        f.write(b"head" * 1024)
        f.seek(4 * 1024 * 1024, os.SEEK_CUR)
        f.write(b"tail" * 1024)


def ls_links_shared(listing: bytes) -> bytes:
    """Native `ls -l` output as a default mount shows it: each regular file has one link more
    (the mount may show it again under exports/, as a hard link)."""
    out = []
    for line in listing.split(b"\n"):
        if line.startswith(b"-"):
            perms, links, rest = line.split(b" ", 2)
            line = b" ".join([perms, str(int(links) + 1).encode(), rest])
        out.append(line)
    return b"\n".join(out)


def check_inodes(mnt: Path) -> None:
    """Every inode in the mount is distinct (hard links aside) and readdir agrees with lstat."""
    inos: dict[int, str] = {}
    for dirpath, _dirnames, _filenames in os.walk(mnt):
        with os.scandir(dirpath) as it:
            for e in it:
                st = os.lstat(e.path)
                assert e.inode() == st.st_ino, e.path
                if st.st_nlink == 1 or stat.S_ISDIR(st.st_mode):
                    assert st.st_ino not in inos, (e.path, inos.get(st.st_ino))
                inos[st.st_ino] = e.path


def check_du_and_sizes(home: Path, project: Path, mnt: Path) -> None:
    """`du -s` of the mounted project is non-zero; sizes/ says what `csfs du` counts; per job,
    du through the mount equals du of the real directory."""
    from csfs.core.instance import Instance
    from csfs.core.project import Project
    from csfs.core.sizes import project_sizes

    r = run(["du", "-s", str(mnt)])
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[0]) > 0
    report = project_sizes(Project.open(project), cache_dir=Instance(home).cache_dir)
    assert int((mnt / "sizes" / "total").read_text()) == report.total > 0
    for uid, js in report.jobs.items():
        assert int((mnt / "sizes" / uid).read_text()) == js.bytes
        # du through the mount counts exactly what du counts natively
        via = run(["du", "-s", "-B1", str(mnt / uid)]).stdout.split()[0]
        native = run(["du", "-s", "-B1", str(project / uid)]).stdout.split()[0]
        assert via == native, uid
        # and the apparent bytes following links are csfs's accounting plus directory sizes
        apparent = int(run(["du", "-s", "-b", "-L", str(mnt / uid)]).stdout.split()[0])
        ndirs = sum(1 for _ in os.walk(mnt / uid, followlinks=True))
        assert js.bytes <= apparent <= js.bytes + 4096 * ndirs, uid
