"""Control files on a live mount act on complete commands only, whatever way the bytes
arrive (every split, byte by byte, multi-line, retries), and refuse abuse (garbage,
binary, huge or out-of-order writes, concurrent writers) with an errno: never a wrong
job, never a crash of the mount, never a change on disk."""
from __future__ import annotations

import errno
import itertools
import os
import random
import subprocess
import threading
from pathlib import Path

import pytest

from mountutil import fusepy_missing, mounted, needs_fuse, run
from test_mount_control import _snapshot, inst_mount  # noqa: F401 (a fixture)

pytestmark = needs_fuse


def _splits(data: bytes) -> list[list[bytes]]:
    """Every way to cut `data` into consecutive non-empty pieces."""
    out = []
    for cuts in itertools.product((False, True), repeat=max(len(data) - 1, 0)):
        pieces, start = [], 0
        for i, cut in enumerate(cuts, 1):
            if cut:
                pieces.append(data[start:i])
                start = i
        out.append(pieces + [data[start:]])
    return out


def _send(path: Path, pieces: list[bytes], flags: int = os.O_WRONLY | os.O_TRUNC) -> int:
    """os.write each piece on one fd (as a writer with a small buffer does), then close:
    0, or the errno the writer got from a write() or from close()."""
    fd = os.open(path, flags)
    got = 0
    try:
        for p in pieces:
            while p:   # a short write: write the rest, as stdio does
                n = os.write(fd, p)
                p = p[n:]
    except OSError as e:
        got = e.errno
    try:
        os.close(fd)
    except OSError as e:
        got = got or e.errno
    return got


def _last(path: Path) -> str:
    return path.read_text()


# (command bytes, errno, what the outcome must name): J1 is a completed job, so acting on
# the fragment "J1" of "J10" (a failed job) would export J1; "J9" is running (EBUSY)
COMMANDS = [
    (b"J10\n", errno.EPERM, "J10"),
    (b"J10", errno.EPERM, "J10"),                  # no newline: acted on at close()
    (b"J999\n", errno.ENOENT, "J999"),
    (b"J999", errno.ENOENT, "J999"),
    (b" J10 \r\n", errno.EPERM, "J10"),
    (b"\n\nJ10\n", errno.EPERM, "J10"),            # blank lines are skipped
    (b"J1 J2\n", errno.EINVAL, "J1 J2"),
    (b"J1J2", errno.EINVAL, "J1J2"),
    (b"garbage\n", errno.EINVAL, "garbage"),
    (b"\n\n", errno.EINVAL, "(empty)"),
    (b"J10\nJ1\n", errno.EPERM, "J10"),            # the first line fails: nothing more is run
]


@pytest.fixture
def fusepy_mount(demo, tmp_path):
    """inst_mount on the fallback binding (fusepy, libfuse2: no noflush, flush at every close)."""
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    if fusepy_missing():
        pytest.skip(fusepy_missing())
    inst = Instance(tmp_path / "home")
    lifecycle.attach(inst, demo)
    with mounted(inst.home, tmp_path / "mnt", env={"CSFS_FUSE": "fusepy"}) as (mnt, pid):
        yield inst, demo, mnt, mnt / demo.name, pid


@pytest.mark.parametrize("binding", ["mfusepy", "fusepy"])
def test_every_split_of_every_command(request, binding):
    """Each command written in every split on one fd: the errno and outcome of the whole
    command, never of a fragment; nothing changes on disk (no job gets exported)."""
    inst, project, mnt, folder, _pid = request.getfixturevalue("inst_mount" if binding == "mfusepy"
                                                               else "fusepy_mount")
    ctl = folder / "control" / "export-job"
    before = _snapshot(inst, project)
    tried = 0
    for data, want, names in COMMANDS:
        assert _send(ctl, [data]) == want, data
        for pieces in _splits(data):
            got = _send(ctl, pieces)
            tried += 1
            assert got == want, (pieces, errno.errorcode.get(got, got))
            assert f" {names}: failed" in _last(ctl), (pieces, _last(ctl))
    assert tried > 350
    assert _snapshot(inst, project) == before
    assert not (project / "exports").exists() or not any((project / "exports").rglob("J1_*"))


def test_split_success_acts_once_on_the_whole_command(inst_mount):  # noqa: F811 (the fixture imported above)
    """`J8` byte by byte exports J8; two commands in one write act in turn, and when the
    second fails the writer gets a short write, then the errno for the rest."""
    inst, project, mnt, folder, _pid = inst_mount
    ctl = folder / "control" / "export-job"
    assert _send(ctl, [b"J", b"8"]) == 0
    assert "export-job J8: ok" in _last(ctl)
    assert sorted(p.name for p in (project / "exports" / "jobs").iterdir()) == ["J8_homo_refine_new"]
    fd = os.open(ctl, os.O_WRONLY | os.O_TRUNC)
    try:
        assert os.write(fd, b"J7\nJ10\n") == 3          # J7 done, J10 not taken
        assert "export-job J10: failed (EPERM)" in _last(ctl)
        try:
            os.write(fd, b"J10\n")
            raise AssertionError("J10 was accepted")
        except OSError as e:
            assert e.errno == errno.EPERM
    finally:
        os.close(fd)
    assert sorted(p.name for p in (project / "exports" / "jobs").iterdir()) == [
        "J7_homo_abinit", "J8_homo_refine_new"]


def test_errno_reaches_shell_writers(inst_mount):  # noqa: F811 (the fixture imported above)
    """echo (newline: errno from write()) and coreutils printf (no newline: errno from
    close()) both fail with the action's errno; a retry of a failed write acts again."""
    inst, project, mnt, folder, _pid = inst_mount
    ctl = folder / "control" / "export-job"
    r = run(["bash", "-c", f"echo J999 > '{ctl}'"])   # dash's echo says "I/O error" for any errno
    assert r.returncode != 0 and b"No such file" in r.stderr, r.stderr
    r = run(f"env printf J10 > '{ctl}'")          # coreutils printf checks close()
    assert r.returncode != 0 and b"not permitted" in r.stderr, r.stderr
    assert "export-job J10: failed (EPERM)" in _last(ctl)
    r = run(f"env printf 'J8 ' > '{ctl}'")
    assert r.returncode == 0, r.stderr
    assert "export-job J8: ok" in _last(ctl)
    # Python's buffered writer retries a failed write at close: the same command again
    try:
        with open(ctl, "w") as f:
            f.write("J999\n")
        raise AssertionError("J999 was accepted")
    except OSError as e:
        assert e.errno == errno.ENOENT
    assert "export-job J999: failed (ENOENT)" in _last(ctl)


def test_control_abuse(inst_mount, tmp_path):  # noqa: F811 (the fixture imported above)
    """Garbage, 100 MB, binary, writes at offsets, O_APPEND, concurrent writers on every
    control file: EINVAL (or the action's errno), the mount stays up, nothing changes."""
    inst, project, mnt, folder, pid = inst_mount
    ctl = folder / "control" / "export-job"
    before = _snapshot(inst, project)
    controls = [folder / "control" / a for a in
                ("detach", "archive", "clear-intermediate", "export-job", "export-group")]
    controls += [mnt / "control" / "attach", mnt / "control" / "unarchive"]
    rng = random.Random(10)
    cases = 0
    for c in controls:
        for data in (b"\0", b"\xff\xfe", b"J8\0\n", b"\x1b[2J\n", "J8\u00e9x\n".encode(), b"-1\n",
                     b"../../etc\n", b"J8 J8 J8 J8\n", b"y" * 5000, b"x\n" * 10, b"%s%n\n",
                     bytes(rng.randrange(256) for _ in range(64))):
            got = _send(c, [data])
            cases += 1
            assert got in (errno.EINVAL, errno.ENOENT), (c.name, data, got)
    # 100 MB of zeros and of text without newline: refused at the first write
    for src in ("/dev/zero", "/dev/urandom"):
        r = run(f"head -c 100M {src} > '{ctl}'", timeout=60)
        assert r.returncode != 0 and b"Invalid argument" in r.stderr, r.stderr
    r = run(f"head -c 100M /dev/zero | tr '\\0' J > '{ctl}'", timeout=60)
    assert r.returncode != 0 and b"Invalid argument" in r.stderr, r.stderr
    # 100 MB of valid-looking lines: the first fails, the writer stops
    r = run(f"yes J999 | head -c 100M > '{ctl}'", timeout=60)
    assert r.returncode != 0 and b"No such file" in r.stderr, r.stderr
    # writes at an offset, or skipping ahead, never run anything
    fd = os.open(ctl, os.O_WRONLY)
    try:
        for off in (1, 100, 1 << 40):
            try:
                os.pwrite(fd, b"J8\n", off)
                raise AssertionError(f"write at {off} accepted")
            except OSError as e:
                assert e.errno == errno.EINVAL
            cases += 1
    finally:
        os.close(fd)
    assert "offset" in _last(ctl)
    # >> (O_APPEND: the kernel picks the offsets) works like >
    assert _send(ctl, [b"J9", b"99\n"], os.O_WRONLY | os.O_APPEND) == errno.ENOENT
    # eight concurrent writers, each byte by byte on its own fd
    results: list[int] = []

    def writer(cmd: bytes) -> None:
        for _ in range(5):
            results.append(_send(ctl, [bytes([b]) for b in cmd]))
    threads = [threading.Thread(target=writer, args=(cmd,)) for cmd in (b"J10\n", b"J999\n") * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert sorted(set(results)) == sorted({errno.EPERM, errno.ENOENT}) and len(results) == 40
    os.kill(pid, 0)                                   # the server is alive
    assert (folder / "project.json").read_bytes() == (project / "project.json").read_bytes()
    assert _snapshot(inst, project) == before
    assert cases >= 80
    r = subprocess.run(["stat", str(folder / "exports" / "jobs")], capture_output=True, timeout=30)
    assert r.returncode == 0
