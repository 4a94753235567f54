"""FIFOs and devices where a project keeps files never hang the mount: ls and tar under
exports/ finish, the bad job alone answers EIO or EINVAL (or is served without the bad
part), every other export is whole, and a second look does not wait again."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mountutil import mounted, needs_fuse, run

pytestmark = needs_fuse

LIMIT = 3   # CSFS_MOUNT_TASK_LIMIT for these mounts: the worst a bad task may take


def _clean(r) -> bool:
    """A tool run that succeeded, or met only the clean errnos of a bad job."""
    lines = [ln for ln in r.stderr.decode(errors="replace").splitlines() if ln.strip()]
    return all("Input/output error" in ln or "Invalid argument" in ln or "Exiting with failure" in ln
               for ln in lines) and (r.returncode == 0 or bool(lines))


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _devzero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


# name -> (job made bad, how)
CASES = {
    "metafile-fifo": ("J8", lambda p: [_fifo(f) for f in p.glob("J8/J8_*_particles.cs")]),
    "metafile-devzero": ("J8", lambda p: [_devzero(f) for f in p.glob("J8/J8_*_volume.cs")]),
    "every-metafile-fifo": ("J5", lambda p: [_fifo(f) for f in p.glob("J5/J5_*.cs")]),
    "job.json-fifo": ("J7", lambda p: _fifo(p / "J7" / "job.json")),
    "job.json-devzero": ("J7", lambda p: _devzero(p / "J7" / "job.json")),
    "csg-fifo": ("J2", lambda p: _fifo(p / "J2" / "J2_micrographs.csg")),
    "events.bson-fifo": ("J4", lambda p: _fifo(p / "J4" / "events.bson")),
    "control-export-with-fifo-metafile": ("J8", lambda p: [_fifo(f) for f in p.glob("J8/J8_*_volume.cs")]),
    "gridfs-fifo-and-device": ("J4", lambda p: (os.mkfifo(p / "J4" / "gridfs_data" / "pipe"),
                                                (p / "J4" / "gridfs_data" / "zero").symlink_to("/dev/zero"))),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_special_files_never_hang_exports(demo, tmp_path, case):
    bad, make = CASES[case]
    make(demo)
    env = {"CSFS_MOUNT_TASK_LIMIT": str(LIMIT)}
    with mounted(tmp_path / "home", tmp_path / "mnt", demo, env=env) as (mnt, pid):
        exports = mnt / "exports"
        # a whole walk and a whole tar of exports/ finish (EIO for the bad job at most)
        r = run(["ls", "-lR", str(exports)], timeout=120)
        assert _clean(r), r.stderr
        r = run(["tar", "-cf", "/dev/null", "-C", str(exports), "."], timeout=120)
        assert _clean(r), r.stderr
        # every export of another job is whole; the bad job's fail with EIO only
        names = [(k, n) for k in ("jobs", "groups") for n in sorted(os.listdir(exports / k))]
        assert len(names) > 10
        for kind, name in names:
            r = run(["tar", "-cf", "-", "-C", str(exports / kind), name], timeout=120)
            if not name.startswith(bad + "_"):
                assert r.returncode == 0 and r.stderr == b"", (name, r.stderr)
                assert len(r.stdout) > 10240
            else:
                assert _clean(r), (name, r.stderr)
            assert b"/dev/zero" not in r.stdout and len(r.stdout) < 50 << 20
        # a second look at the bad job does not wait for the worker again
        t0 = time.monotonic()
        run(["ls", "-lR"] + [str(exports / k / n) for k, n in names if n.startswith(bad + "_")], timeout=120)
        assert time.monotonic() - t0 < LIMIT
        if case.startswith("control"):        # a control action reading the FIFO: an errno
            from csfs.core import lifecycle
            from csfs.core.instance import Instance

            lifecycle.attach(Instance(tmp_path / "home"), demo)
            r = run(["bash", "-c", f"echo {bad} > '{mnt}/control/export-job'"], timeout=120)
            assert r.returncode != 0 and b"write error" in r.stderr, r.stderr
            assert "failed" in (mnt / "control" / "export-job").read_text()
        os.kill(pid, 0)                       # the server is alive
        assert (mnt / "project.json").read_bytes() == (demo / "project.json").read_bytes()


def test_a_stuck_export_leaves_the_others_served(demo, tmp_path):
    """While one export waits on a FIFO (up to its time limit), the other exports are
    served at once by the other worker, and the stuck one ends in a clean errno."""
    import threading

    for f in demo.glob("J8/J8_*_particles.cs"):
        _fifo(f)
    limit = 20
    env = {"CSFS_MOUNT_TASK_LIMIT": str(limit)}
    with mounted(tmp_path / "home", tmp_path / "mnt", demo, env=env) as (mnt, pid):
        stuck: dict[str, object] = {}

        def look() -> None:
            stuck["r"] = run(["ls", "-l", str(mnt / "exports" / "groups" / "J8_particles")], timeout=120)
        t = threading.Thread(target=look)
        t.start()
        time.sleep(1.0)
        t0 = time.monotonic()
        r = run(["tar", "-cf", "-", "-C", str(mnt / "exports" / "jobs"), "J7_homo_abinit"], timeout=120)
        assert r.returncode == 0 and len(r.stdout) > 10240, r.stderr
        assert time.monotonic() - t0 < limit / 2
        t.join(timeout=120)
        assert not t.is_alive() and _clean(stuck["r"]), stuck
        os.kill(pid, 0)
