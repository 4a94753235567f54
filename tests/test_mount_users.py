"""A second user on an --allow-other mount reads exactly what they could read in the
project itself: file by file, `cat` as `nobody` through the mount against `cat` of the
sources, for the real tree, exports/jobs, exports/groups, sizes/ and control/."""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import run_csfs
from mountutil import force_unmount, is_mounted, needs_fuse

pytestmark = needs_fuse + [pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"),
                                              reason="needs root and runuser")]


def _lock_down(p: Path) -> None:
    """The issue's setup, plus other owners and modes a real project shows."""
    os.chmod(p / "J8", 0o700)
    os.chmod(p / "J5", 0o700)
    os.chmod(p / "J8" / "job.json", 0o600)
    for f in (p / "J8").glob("*.cs"):
        os.chmod(f, 0o600)
    os.chown(p / "J3" / "job.json", 65534, 65534)   # nobody's own file, closed to others
    os.chmod(p / "J3" / "job.json", 0o600)
    for f in (p / "J7").glob("*.mrc"):                # group-readable only
        os.chmod(f, 0o640)
    os.chmod(p / "J6", 0o711)                         # traversable, not listable
    os.chmod(p / "J4" / "gridfs_data", 0o700)
    os.chmod(p / "J2" / "events.bson", 0o600)


class Checks:
    """Shell tests run in one go as `nobody`: which of them pass."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, cond: str) -> int:
        self.lines.append(f"if {cond}; then echo {len(self.lines)}; fi")
        return len(self.lines) - 1

    def run(self, base: Path) -> set[int]:
        script = base / "checks.sh"
        script.write_text("\n".join(self.lines) + "\n")
        os.chmod(script, 0o644)
        r = subprocess.run(["runuser", "-u", "nobody", "--", "sh", str(script)],
                           capture_output=True, text=True, timeout=600)
        return {int(x) for x in r.stdout.split()}


def _cat(path: str | Path) -> str:
    return f"cat {shlex.quote(str(path))} >/dev/null 2>&1"


def _ls(path: str | Path) -> str:
    return f"ls {shlex.quote(str(path))} >/dev/null 2>&1"


def _lists(path: str | Path) -> str:
    q = shlex.quote(str(path))
    return f"test -r {q} -a -x {q}"


@contextlib.contextmanager
def _mounted_copy(demo: Path, *, closed: bool = False, locked: bool = False, instance: bool = False):
    """A copy of the demo, attached and mounted --allow-other (alone, or in an instance
    mount) under a fresh folder; with `closed` the copy sits in a 0700 folder, with `locked`
    it is locked down. Yields (project, its folder in the mount, base); always unmounted."""
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    base = Path(tempfile.mkdtemp(prefix="csfs-users-"))
    os.chmod(base, 0o755)
    mnt = base / "mnt"
    try:
        parent = base
        if closed:
            parent = base / "closed"
            parent.mkdir(mode=0o700)
        project = Path(shutil.copytree(demo, parent / demo.name, symlinks=True))
        if locked:
            _lock_down(project)
        inst = Instance(base / "home")
        lifecycle.attach(inst, project)
        mnt.mkdir()
        source = [] if instance else [str(project)]
        r = run_csfs("mount", *source, str(mnt), "--allow-other", home=inst.home)
        assert r.returncode == 0, r.stderr
        try:
            yield project, (mnt / project.name if instance else mnt), base
        finally:
            run_csfs("umount", str(mnt), home=inst.home)
    finally:
        if is_mounted(mnt):
            force_unmount(mnt, None)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["project", "instance"])
def shared(demo, request):
    """(project, its folder in the mount, base) with the project locked down and mounted
    --allow-other (alone, or in an instance mount), all under a folder nobody may traverse."""
    with _mounted_copy(demo, locked=True, instance=request.param == "instance") as got:
        yield got


def test_second_user_reads_exactly_what_the_project_allows(shared):
    from csfs.core import exportplan
    from csfs.core.project import Project

    project, mnt, base = shared
    checks = Checks()
    pairs: list[tuple[str, str, int, int]] = []   # (tree, mount path, via mount, via project)

    def pair(tree: str, via_mount: str, via_project: str, path: Path) -> None:
        pairs.append((tree, str(path), checks.add(via_mount), checks.add(via_project)))

    # the real tree: the same path on both sides
    for dirpath, _dirnames, filenames in os.walk(project):
        rel = os.path.relpath(dirpath, project)
        for n in filenames:
            pair("real", _cat(mnt / rel / n), _cat(Path(dirpath) / n), mnt / rel / n)
        pair("real", _ls(mnt / rel), _ls(dirpath), mnt / rel)
    # exports: an entry is readable iff its job folder is traversable and
    # every source it is made from is readable
    proj = Project.open(project)
    for uid, job in sorted(proj.jobs.items()):
        if job.error or job.status != "completed":
            continue
        plans = [("jobs", exportplan.job_export_plan(proj, uid))]
        plans += [("groups", exportplan.group_export_plan(proj, uid, g.name)) for g in job.groups
                  if any(r.metafiles for r in g.results)]
        jdir = Path(job.dir)
        for kind, plan in plans:
            root = mnt / "exports" / kind / plan.name
            assert root.is_dir(), root
            pair(kind, _ls(root), _ls(jdir), root)
            for e in plan.entries:
                if e.kind == "dir":
                    continue
                sources = [e.source] if e.kind == "file" else list(e.sources)
                assert sources, e.path
                want = " && ".join([f"test -x {shlex.quote(str(jdir))}"] + [_cat(s) for s in sources])
                pair(kind, _cat(root / e.path), want, root / e.path)
    # sizes/: who may list the job folder (all of them, for the total)
    jobs = sorted(n for n in os.listdir(mnt / "sizes") if n != "total")
    for n in jobs:
        pair("sizes", _cat(mnt / "sizes" / n), _lists(project / n), mnt / "sizes" / n)
    pair("sizes", _cat(mnt / "sizes" / "total"),
         " && ".join(_lists(project / n) for n in jobs), mnt / "sizes" / "total")
    # control/: the mounting user's alone (an instance mount's own control/ too)
    top = mnt.parent / "control" if mnt.name == project.name else mnt / "control"
    for ctl in {mnt / "control", top}:
        for n in os.listdir(ctl):
            pair("control", _cat(ctl / n), "false", ctl / n)

    passed = checks.run(base)
    leaks = [(t, p) for t, p, m, s in pairs if m in passed and s not in passed]
    denied = [(t, p) for t, p, m, s in pairs if s in passed and m not in passed]
    assert leaks == []
    assert denied == []
    # the setup really closes and opens things on every tree
    for tree in ("real", "jobs", "groups", "sizes", "control"):
        mine = [(m in passed) for t, _, m, _ in pairs if t == tree]
        assert False in mine, tree
        assert tree == "control" or True in mine, tree
    print(f"{len(pairs)} paths compared, {sum(1 for _, _, m, _ in pairs if m not in passed)} closed")


def test_project_in_a_closed_folder_stays_closed(demo):
    """The folders above the project count: mounted from a folder nobody may enter, the
    mount's project folder is closed to nobody too (it was 0755 through the mount)."""
    with _mounted_copy(demo, closed=True) as (project, mnt, base):
        checks = Checks()
        for c in (_cat(project / "project.json"), _cat(mnt / "project.json"), _ls(mnt),
                  _cat(mnt / "sizes" / "total"),
                  _cat(mnt / "exports" / "jobs" / "J8_homo_refine_new" / "job.json")):
            checks.add(c)
        assert checks.run(base) == set()
        assert (mnt / "project.json").read_bytes() == (project / "project.json").read_bytes()  # the owner
