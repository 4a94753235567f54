"""The mount's entry budget (CSFS_MOUNT_MAX_ENTRIES): past it, the kernel is asked to forget
every entry it holds, so libfuse frees its node for each and the mount's memory does not
grow with what has been walked. A walk through the trims must show exactly what a mount
without a budget shows, through the real tools, on every flavour."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from conftest import copy_demo
from mountutil import mounted, needs_fuse, run

pytestmark = needs_fuse


def _forgets(log: Path, start: int) -> int:
    """FORGET and BATCH_FORGET requests (-o debug) logged after byte `start` of the mount log."""
    with open(log, "rb") as f:
        f.seek(start)
        return len(re.findall(rb"opcode: (?:BATCH_)?FORGET\b", f.read()))


def _walk(mnt: Path) -> tuple[str, str, str]:
    """`ls -lanR` (full-iso times), `du -sb` and a hash of the tar of exports/."""
    ls = run(["ls", "-lanR", "--time-style=full-iso", "."], cwd=mnt)
    assert ls.returncode == 0, ls.stderr
    lines = ls.stdout.decode().splitlines()
    del lines[3]    # the mountpoint's parent (`..`): not the mount's
    # virtual folders show the mount's start: each mount its own (compared as STARTED)
    started = " ".join(next(ln for ln in lines if ln.endswith(" sizes")).split()[5:7])
    listing = "\n".join(lines).replace(started, "STARTED")
    du = run(["du", "-sb", "."], cwd=mnt)
    assert du.returncode == 0, du.stderr
    tar = run(["tar", "-cf", "-", "--sort=name", "--mtime=@0", "exports"], cwd=mnt)
    assert tar.returncode == 0, tar.stderr
    return listing, du.stdout.decode(), hashlib.sha256(tar.stdout).hexdigest()


def test_walks_through_forgetting_are_exact(flavour, demo_masters, tmp_path):
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    project = copy_demo(demo_masters(flavour), tmp_path / "demo")
    home = tmp_path / "home"
    lifecycle.attach(Instance(home), project)
    seen = {}
    for budget in ("200", "100000000"):
        with mounted(home, tmp_path / f"mnt{budget}", project, env={"CSFS_MOUNT_MAX_ENTRIES": budget},
                     extra=["-o", "debug"]) as (mnt, _pid):
            log = next((home / "logs").glob(f"mount_*mnt{budget}.log"))
            start = log.stat().st_size
            seen[budget] = [_walk(mnt) for _ in range(2)]
            forgets = _forgets(log, start)
        if budget == "200":
            assert forgets > 0          # the kernel was asked to forget, and did
        else:
            assert forgets == 0         # nothing forgotten without a budget
    assert seen["200"][0] == seen["200"][1] == seen["100000000"][0] == seen["100000000"][1]
    assert seen["200"][0][0].count("\n") > 300
