"""Changes made to a project while it is mounted, by CryoSPARC (simulated: job.json
rewritten atomically, files added) or the csfs CLI (clear-intermediate, detach), and the
project moved away: each shows through the mount within WITHIN seconds (inotify drops the
caches; the cache times alone would take 5-60 s), checked with the real tools. A reader
in the middle of a file that changes gets the old bytes, never a mix."""
from __future__ import annotations

import errno
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import run_csfs
from mountutil import fusepy_missing, mounted, needs_fuse, run, tar_members

pytestmark = needs_fuse
# the fallback binding too, where it differs (no kernel cache invalidation under libfuse2)
NEEDS_FUSEPY = pytest.mark.skipif(fusepy_missing() is not None, reason=str(fusepy_missing()))
BOTH = pytest.mark.parametrize("live", ["mfusepy", pytest.param("fusepy", marks=NEEDS_FUSEPY)], indirect=True)

WITHIN = 3.0   # seconds: well under the in-process (5 s) and kernel (60 s) cache times


@pytest.fixture
def live(tmp_path, request):
    """(home, project, mount of the project) with the project attached as P1: the v4 demo, or
    each flavour's for a test that takes `flavour`; the binding is the default one unless
    the test is parametrised with BOTH."""
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    demo = request.getfixturevalue("flavour_demo" if "flavour" in request.fixturenames else "demo")
    home = tmp_path / "home"
    lifecycle.attach(Instance(home), demo)
    env = {"CSFS_MOUNT_INLINE_MAX": "0", "CSFS_FUSE": getattr(request, "param", "mfusepy")}
    with mounted(home, tmp_path / "mnt", demo, env=env) as (mnt, _pid):
        yield home, demo, mnt


def _eventually(check: Callable[[], bool], within: float = WITHIN) -> float:
    """Seconds until check() held (fails after `within`)."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < within, "the change did not show in time"
        time.sleep(0.05)
    return time.monotonic() - t0


def _rewrite(path: Path, data: bytes) -> None:
    """Replace a file as CryoSPARC and csfs do: a temporary file renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _set_job(project: Path, juid: str, **fields) -> None:
    p = project / juid / "job.json"
    doc = json.loads(p.read_text())
    doc.update(fields)
    _rewrite(p, json.dumps(doc).encode())


def _ls(path: Path) -> list[str]:
    r = run(["ls", "-1A", str(path)])
    return r.stdout.decode().split() if r.returncode == 0 else []


def test_job_completes_and_its_export_appears(flavour, live, tmp_path):
    home, project, mnt = live
    jobs = mnt / "exports" / "jobs"
    assert not any(n.startswith("J9_") for n in _ls(jobs))     # J9 is running
    before = _ls(mnt / "J9")
    _set_job(project, "J9", status="completed", completed_at="2024-03-04T12:00:00Z")
    _eventually(lambda: any(n.startswith("J9_") for n in _ls(jobs)))
    (name,) = [n for n in _ls(jobs) if n.startswith("J9_")]
    assert _ls(mnt / "J9") == before
    # the new export is complete: tar equals tar -ch of the physical export the CLI writes
    r_v = run(["tar", "-cf", "-", "-C", str(jobs), name])
    assert r_v.returncode == 0 and r_v.stderr == b"", r_v.stderr
    r = run_csfs("job", "export", "P1", "J9", home=home)
    assert r.returncode == 0, r.stderr
    physical = project / "exports" / "jobs" / name
    r_p = run(["tar", "-chf", "-", "-C", str(physical.parent), name])
    assert tar_members(r_v.stdout) == tar_members(r_p.stdout)


@pytest.mark.parametrize("flavour,live", [("legacy", "mfusepy"), ("v4", "mfusepy"), ("v5", "mfusepy"),
                                          pytest.param("v4", "fusepy", marks=NEEDS_FUSEPY)],
                         indirect=["live"])
def test_cleared_job_shrinks(flavour, live, request):
    """csfs clear-intermediate from the CLI: deleted files leave the kernel-cached listing of
    the completed job, du and sizes/ shrink, the export's job.json is the new one. (libfuse2:
    the kernel may still stat a deleted file until its attribute timeout; opening it fails.)"""
    home, project, mnt = live
    from csfs.core.exportplan import job_export_name
    from csfs.core.project import Project

    export = mnt / "exports" / "jobs" / job_export_name(Project.open(project).job("J8"))
    listed = sorted(p.name for p in (mnt / "J8").iterdir())     # now cached by the kernel
    assert run(["tar", "-cf", "/dev/null", "-C", str(export.parent), export.name]).returncode == 0
    du_before = int(run(["du", "-sb", str(mnt)]).stdout.split()[0])
    size_before = int((mnt / "sizes" / "J8").read_text())
    r = run_csfs("clear-intermediate", "P1", "J8", home=home)
    assert r.returncode == 0, r.stderr
    native = sorted(os.listdir(project / "J8"))
    assert native != listed
    _eventually(lambda: sorted(os.listdir(mnt / "J8")) == native)
    for gone in set(listed) - set(native):
        with pytest.raises(FileNotFoundError):
            if request.node.callspec.params.get("live") == "fusepy":
                open(mnt / "J8" / gone, "rb")
            else:
                os.stat(mnt / "J8" / gone)
    _eventually(lambda: int((mnt / "sizes" / "J8").read_text()) < size_before)
    assert int(run(["du", "-sb", str(mnt)]).stdout.split()[0]) < du_before
    from csfs.core.exportplan import job_export_plan

    want = job_export_plan(Project.open(project), "J8").lookup("job.json").generate()
    _eventually(lambda: (export / "job.json").read_bytes() == want)
    assert os.stat(export / "job.json").st_size == len(want)


@BOTH
def test_files_added_show(live, request):
    """A new file in a completed job, a file growing in a running one, a new job folder."""
    _home, project, mnt = live
    os.listdir(mnt / "J8"), os.listdir(mnt)                      # cached listings
    log = mnt / "J9" / "job.log"
    old = log.read_bytes()
    (project / "J8" / "note.txt").write_text("added\n")
    with open(project / "J9" / "job.log", "ab") as f:
        f.write(b"more output\n" * 100)
    (project / "J11").mkdir()
    (project / "J11" / "job.log").write_text("new job\n")
    _eventually(lambda: "note.txt" in _ls(mnt / "J8"))
    assert (mnt / "J8" / "note.txt").read_text() == "added\n"
    _eventually(lambda: os.stat(log).st_size == len(old) + 1200)
    assert log.read_bytes() == (project / "J9" / "job.log").read_bytes()
    _eventually(lambda: "J11" in _ls(mnt))
    _eventually(lambda: "J11" in run(["find", str(mnt), "-maxdepth", "1", "-name", "J11"]).stdout.decode())
    assert (mnt / "J11" / "job.log").read_text() == "new job\n"
    # and removed again
    shutil.rmtree(project / "J11")
    _eventually(lambda: "J11" not in _ls(mnt))
    if request.node.callspec.params.get("live") != "fusepy":   # libfuse2: the kernel's 60 s
        _eventually(lambda: not os.path.exists(mnt / "J11" / "job.log"))
    with pytest.raises(FileNotFoundError):
        open(mnt / "J11" / "job.log", "rb")


def test_detached_then_moved_away(live, tmp_path):
    home, project, mnt = live
    assert "cs.lock" in _ls(mnt)
    _set_job(project, "J9", status="completed")
    r = run_csfs("project", "detach", "P1", home=home)
    assert r.returncode == 0, r.stderr
    _eventually(lambda: "cs.lock" not in _ls(mnt))
    assert json.loads((mnt / "project.json").read_text()) == json.loads((project / "project.json").read_text())
    with pytest.raises(OSError) as e:                  # not ours any more: control refuses
        with open(mnt / "control" / "export-job", "w") as f:
            f.write("J8\n")
    assert e.value.errno in (errno.EPERM, errno.EINVAL, errno.ENOENT, errno.EROFS)
    away = tmp_path / "elsewhere"
    os.rename(project, away)
    _eventually(lambda: _ls(mnt) == [])
    with pytest.raises(FileNotFoundError):
        os.stat(mnt / "project.json")
    os.rename(away, project)                           # back at its path: shown again
    _eventually(lambda: "project.json" in _ls(mnt), within=WITHIN + 5)


def test_instance_mount_project_moved_away(demo, tmp_path):
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    inst = Instance(tmp_path / "home")
    lifecycle.attach(inst, demo)
    with mounted(inst.home, tmp_path / "mnt") as (mnt, _pid):
        assert _ls(mnt) == sorted(["control", demo.name])
        _set_job(demo, "J9", status="completed")
        assert run_csfs("project", "archive", "P1", home=inst.home).returncode == 0
        away = tmp_path / "archive" / demo.name
        away.parent.mkdir()
        os.rename(demo, away)
        _eventually(lambda: _ls(mnt) == ["control"])
        r = run_csfs("project", "unarchive", "P1", str(away), home=inst.home)
        assert r.returncode == 0, r.stderr
        _eventually(lambda: _ls(mnt) == sorted(["control", demo.name]))
        assert (mnt / demo.name / "project.json").read_bytes() == (away / "project.json").read_bytes()


def _half_read(path: Path) -> tuple[int, bytes, int]:
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    return fd, os.read(fd, size // 2), size


def _rest(fd: int) -> bytes:
    out = b""
    while chunk := os.read(fd, 65536):
        out += chunk
    os.close(fd)
    return out


@BOTH
def test_reader_mid_change_gets_old_bytes(live):
    """An export's generated job.json, its joined .cs (made on disk) and a data file, each
    half read, then changed (smaller) behind the mount: the reader gets the whole old file;
    a new reader gets the whole new one, at its new size."""
    _home, project, mnt = live
    from csfs.core.exportplan import job_export_name
    from csfs.core.project import Project

    proj = Project.open(project)
    export = mnt / "exports" / "jobs" / job_export_name(proj.job("J8"))
    cs = next(export.glob("*/*_exported.cs"))
    data = next(p for p in export.rglob("*.mrc") if p.stat().st_size > 4096)
    files = [export / "job.json", cs, data]
    old = {p: p.read_bytes() for p in files}              # cached by the kernel
    readers = {p: _half_read(p) for p in files}
    # the change: a shorter job.json, and the data file replaced by a smaller one
    doc = json.loads((project / "J8" / "job.json").read_text())
    doc["description"] = ""
    doc["title"] = "t"
    _rewrite(project / "J8" / "job.json", json.dumps(doc).encode())
    ino = os.stat(data).st_ino                            # a hard link of the project file
    src = next(p for p in project.rglob(data.name) if os.lstat(p).st_ino == ino)
    _rewrite(src, b"N" * 1000)
    time.sleep(1.0)                                        # the watcher has dropped caches
    assert os.stat(data).st_size == len(old[data])         # still being read: the old size
    for p, (fd, head, size) in readers.items():
        assert len(head) == size // 2 and head + _rest(fd) == old[p], p
    _eventually(lambda: data.read_bytes() == b"N" * 1000)
    assert os.stat(data).st_size == 1000
    new_doc = (export / "job.json").read_bytes()
    assert b'"title": "t"' in new_doc and os.stat(export / "job.json").st_size == len(new_doc)
    assert new_doc != old[export / "job.json"]


def test_plan_rebuilt_when_its_inputs_change_unseen(demo, tmp_path):
    """Without inotify (another host writing to a network filesystem), an export's plan is
    checked against its inputs every PROJECT_TTL seconds and rebuilt when they changed."""
    from csfs.mountpoints import generated
    from csfs.mountpoints.context import Context
    from csfs.mountpoints.control import Controls
    from csfs.mountpoints.project_view import ProjectView

    ctx = Context(tmp_path / "home", str(tmp_path / "mnt"))
    view = ProjectView(ctx, Controls(ctx), demo, "")
    (name,) = [n for n in view.export_index()["jobs"] if n.startswith("J8_")]
    plan = view.plan("jobs", name)
    assert view.plan("jobs", name) is plan
    _set_job(demo, "J8", title="renamed elsewhere")
    assert view.plan("jobs", name) is plan            # within PROJECT_TTL: kept
    plan.checked -= 60
    ctx.drop(("project", str(demo)))                  # the project model's own 5 s
    new = view.plan("jobs", name)
    assert new is not plan and new.version != plan.version
    size = new.plan.lookup("job.json").size
    assert size != plan.plan.lookup("job.json").size
    assert b"renamed elsewhere" in generated.render(demo, "J8", None, "job.json", size)
    generated.shutdown()
