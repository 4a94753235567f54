"""`csfs mount` as a command: signals, FUSE's own errors, a non-empty or forgotten mountpoint,
and an /etc/fstab line mounted and unmounted with the real mount(8) and umount(8)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from csfs.mountpoints.mounting import STOP_SIGNALS

from conftest import REPO
from mountutil import force_unmount, is_mounted, needs_fuse

pytestmark = needs_fuse


def _env(home: Path) -> dict:
    return {**os.environ, "CSFS_HOME": str(home), "PYTHONPATH": str(REPO)}


@contextlib.contextmanager
def _foreground(demo: Path, mnt: Path, home: Path) -> Iterator[subprocess.Popen]:
    """`csfs mount -f`, once it serves, with the stop signals at their defaults as a shell
    leaves them (under nohup SIGHUP comes ignored, and libfuse then rightly leaves it
    ignored); unmounted and stopped at the end whatever happened."""
    def defaults() -> None:
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_DFL)
    mnt.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "csfs", "mount", demo, mnt, "-f"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=_env(home), cwd=REPO, preexec_fn=defaults)
    try:
        assert _wait(lambda: is_mounted(mnt)), "the mount did not come up"
        assert (mnt / "project.json").is_file()
        yield p
    finally:
        force_unmount(mnt, p.pid if p.poll() is None else None)


def _wait(cond, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_foreground_mount_stops_cleanly_on_signals(demo, home, tmp_path, sig):
    mnt = tmp_path / "mnt"
    with _foreground(demo, mnt, home) as p:
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert "Traceback" not in err and "RuntimeError" not in err
        assert "Ignoring invalid max threads" not in err     # a sane thread limit is passed
        assert not is_mounted(mnt)


def test_bad_option_reports_fuses_own_message(demo, home, tmp_path, csfs):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        r = csfs("mount", demo, mnt, "-o", "bogusopt", home=home)
        assert r.returncode == 1 and "unknown option(s)" in r.stderr and "bogusopt" in r.stderr, r.stderr
        assert "RuntimeError" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert not is_mounted(mnt)
        # in the foreground FUSE's message is printed as it is, then one csfs line
        r = csfs("mount", demo, mnt, "-f", "-o", "bogusopt", home=home)
        assert r.returncode == 1 and "bogusopt" in r.stderr and "Traceback" not in r.stderr
    finally:
        force_unmount(mnt, None)


def test_background_mount_is_ready_when_the_command_returns(demo, home, tmp_path, csfs):
    """The server is forked after the checks, in its own session: when `csfs mount` returns the
    mount answers at once, and the server outlives the command. A mount the kernel refuses gives
    one line naming why, and leaves no server behind."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    pid = None
    try:
        r = csfs("mount", demo, mnt, "--json", home=home)
        assert r.returncode == 0, r.stderr
        pid = json.loads(r.stdout)["pid"]
        assert (mnt / "project.json").is_file() and "J1" in os.listdir(mnt)
        assert os.getsid(pid) == pid
        assert csfs("umount", mnt, home=home).returncode == 0
        assert _wait(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10), "the server outlived its mount"
        pid = None
        before = set(_servers(mnt))
        r = csfs("mount", demo, mnt, "-o", "max_read=-5", home=home)
        assert r.returncode == 1 and r.stderr.count("mount failed") == 1, r.stderr
        assert "Invalid argument" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not is_mounted(mnt) and set(_servers(mnt)) == before
    finally:
        force_unmount(mnt, pid)


def test_non_empty_mountpoint_needs_nonempty(demo, home, tmp_path, csfs):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (mnt / "keep.txt").write_text("mine")
    r = csfs("mount", demo, mnt, home=home)
    assert r.returncode == 1 and "not empty" in r.stderr and "-o nonempty" in r.stderr
    assert not is_mounted(mnt)
    pid = None
    try:
        r = csfs("mount", demo, mnt, "-o", "nonempty", "--json", home=home)
        assert r.returncode == 0, r.stderr
        pid = __import__("json").loads(r.stdout)["pid"]
        assert (mnt / "project.json").is_file() and not (mnt / "keep.txt").exists()
        r = csfs("umount", mnt, home=home)
        assert r.returncode == 0, r.stderr
        pid = None
    finally:
        force_unmount(mnt, pid)
    assert (mnt / "keep.txt").read_text() == "mine"


def test_forgotten_mountpoint_is_named(demo, home, tmp_path, csfs):
    assert csfs("project", "attach", demo, home=home).returncode == 0
    for source in ("P1", str(demo)):
        r = csfs("mount", source, home=home)
        assert r.returncode == 2 and "mountpoint is missing" in r.stderr and "MOUNTPOINT" in r.stderr, r.stderr
        assert "mkdir" not in r.stderr


def _fstab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "mounting from /etc/fstab needs root"
    for tool in ("unshare", "mount", "umount"):
        if not shutil.which(tool):
            return f"{tool} is missing (util-linux)"
    if not (shutil.which("mount.fuse3") or os.path.exists("/sbin/mount.fuse3")):
        return "mount.fuse3 is missing (Debian package fuse3)"
    return None


@pytest.mark.skipif(_fstab_unavailable() is not None, reason=str(_fstab_unavailable()))
@pytest.mark.parametrize("source", ["project", "instance"])
def test_fstab_line_mounts_with_mount_and_umount(demo, home, tmp_path, source):
    """`SOURCE MNT fuse.csfs defaults,_netdev,home=HOME 0 0`: mount(8) -> mount.fuse3 -> `csfs SOURCE
    MNT -o ...`. Run in a private mount namespace where /etc/fstab is ours and /usr/local/sbin
    holds a `csfs` running this checkout (mount runs helpers without PATH): nothing of the host
    is touched."""
    if source == "instance":
        r = subprocess.run([sys.executable, "-m", "csfs", "project", "attach", demo], capture_output=True,
                           text=True, env=_env(home), cwd=REPO)
        assert r.returncode == 0, r.stderr
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    (sbin / "csfs").write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m csfs "$@"\n')
    (sbin / "csfs").chmod(0o755)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    src = demo if source == "project" else "csfs"
    fstab = tmp_path / "fstab"
    fstab.write_text(f"# csfs test\n{src} {mnt} fuse.csfs defaults,_netdev,home={home} 0 0\n")
    want = "project.json" if source == "project" else "CS-csfs-demo/project.json"
    script = f"""set -e
mount --make-rprivate /
mount --bind {sbin} /usr/local/sbin
mount --bind {fstab} /etc/fstab
mount {mnt}
grep -q ' {mnt} .* fuse.csfs ' /proc/self/mountinfo
test -f {mnt}/{want}
tar -cf /dev/null -C {mnt} .
umount {mnt}
if grep -q ' {mnt} ' /proc/self/mountinfo; then echo still mounted; exit 1; fi
echo ok
"""
    try:
        r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                           env={k: v for k, v in os.environ.items() if k != "CSFS_HOME"}, cwd=tmp_path)
        assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
    finally:   # the server exits once unmounted; if the test failed half-way, stop it
        if not _wait(lambda: not _servers(mnt), timeout=10):
            for pid in _servers(mnt):
                os.kill(pid, signal.SIGKILL)


def _servers(mnt: Path) -> list[int]:
    """Pids of the mount servers serving `mnt` (a csfs command line that names it, in this test's tmp)."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(mnt).encode() in cmd and b"csfs" in cmd:
                out.append(int(pid))
    return out


def test_only_libfuses_loop_takes_the_stop_signals(demo, home, tmp_path):
    """Every thread of the server but the main one (in libfuse's loop) blocks SIGINT, SIGTERM
    and SIGHUP: libfuse's handler, run on another thread, ends the session without waking
    the loop, and the server hung. A signal aimed at another thread still stops it."""
    mnt = tmp_path / "mnt"
    with _foreground(demo, mnt, home) as p:
        stop = sum(1 << (s - 1) for s in STOP_SIGNALS)   # SigBlk: bit n-1 for signal n
        others = [int(t) for t in os.listdir(f"/proc/{p.pid}/task") if int(t) != p.pid]
        assert others
        for tid in others:
            with open(f"/proc/{p.pid}/task/{tid}/status") as f:
                blocked = int(next(ln for ln in f if ln.startswith("SigBlk:")).split()[1], 16)
            assert blocked & stop == stop, f"thread {tid} takes stop signals"
        os.kill(others[0], signal.SIGHUP)   # kill(2) of a thread id: that thread first, if it takes it
        p.communicate(timeout=30)
        assert p.returncode == 0 and not is_mounted(mnt)
