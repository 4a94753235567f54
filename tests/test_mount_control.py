"""The mount's control files, instance mode, concurrency, and mount/umount failure handling."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import run_csfs
from mountutil import is_mounted, mounted, needs_fuse

pytestmark = needs_fuse


@pytest.fixture
def inst_mount(demo, tmp_path):
    """(instance, project dir, instance mountpoint, project folder in the mount, server pid)."""
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    inst = Instance(tmp_path / "home")
    lifecycle.attach(inst, demo)
    with mounted(inst.home, tmp_path / "mnt") as (mnt, pid):
        yield inst, demo, mnt, mnt / demo.name, pid


def _write(path: Path, text: str) -> int:
    """Write like `echo text > path`; 0 on success, else the errno the writer got."""
    try:
        with open(path, "w") as f:
            f.write(text + "\n")
        return 0
    except OSError as e:
        return e.errno


def _snapshot(inst, project: Path) -> tuple:
    files = {}
    for dirpath, dirnames, filenames in os.walk(project):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            files[os.path.relpath(p, project)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return files, [(r.uid, str(r.path), r.state) for r in inst.projects()]


def _set_status(project: Path, juid: str, status: str) -> None:
    """What CryoSPARC does when a job finishes: rewrite its job.json."""
    p = project / juid / "job.json"
    doc = json.loads(p.read_text())
    doc["status"] = status
    p.write_text(json.dumps(doc))


def test_instance_root(inst_mount):
    inst, project, mnt, folder, _pid = inst_mount
    assert sorted(os.listdir(mnt)) == sorted(["control", project.name])
    assert sorted(os.listdir(mnt / "control")) == ["attach", "unarchive"]
    assert sorted(os.listdir(folder / "control")) == sorted(
        ["detach", "archive", "clear-intermediate", "export-job", "export-group"])
    assert (folder / "project.json").read_bytes() == (project / "project.json").read_bytes()
    assert "no attach yet" in (mnt / "control" / "attach").read_text()


def test_bad_control_input_changes_nothing(inst_mount, tmp_path):
    inst, project, mnt, folder, _pid = inst_mount
    not_a_project = tmp_path / "empty"
    not_a_project.mkdir()
    cases = [
        (folder / "control" / "export-job", "garbage", errno.EINVAL),
        (folder / "control" / "export-job", "J1 J2", errno.EINVAL),
        (folder / "control" / "export-job", "J999", errno.ENOENT),
        (folder / "control" / "export-job", "J9", errno.EBUSY),          # running
        (folder / "control" / "export-group", "J8", errno.EINVAL),
        (folder / "control" / "export-group", "J8 nosuchgroup", errno.ENOENT),
        (folder / "control" / "clear-intermediate", "everything", errno.EINVAL),
        (folder / "control" / "clear-intermediate", "J9", errno.EBUSY),
        (folder / "control" / "detach", "maybe", errno.EINVAL),
        (folder / "control" / "detach", "1", errno.EBUSY),               # J9 is running
        (folder / "control" / "archive", "1", errno.EBUSY),
        (mnt / "control" / "attach", "relative/path", errno.EINVAL),
        (mnt / "control" / "attach", str(not_a_project), errno.ENOENT),
        (mnt / "control" / "attach", str(mnt / project.name), errno.EINVAL),  # inside the mount
        (mnt / "control" / "unarchive", "garbage", errno.EINVAL),
        (mnt / "control" / "unarchive", f"P1 {not_a_project}", errno.EPERM),  # not archived
    ]
    before = _snapshot(inst, project)
    for path, text, want in cases:
        got = _write(path, text)
        assert got == want, (path.name, text, errno.errorcode.get(got, got))
        outcome = path.read_text()
        assert outcome.count("\n") == 1 and "failed" in outcome and path.name in outcome, outcome
    assert "J9" in (folder / "control" / "detach").read_text()      # says which job is active
    assert _snapshot(inst, project) == before


def test_detach_then_attach_through_control(inst_mount):
    inst, project, mnt, folder, _pid = inst_mount
    assert _write(folder / "control" / "detach", "1") == errno.EBUSY
    _set_status(project, "J9", "completed")
    assert _write(folder / "control" / "detach", "1") == 0
    assert "ok" in (folder / "control" / "detach").read_text()
    assert not (project / "cs.lock").exists()
    assert [r.state for r in inst.projects()] == ["detached"]
    # still shown, but its control now refuses
    assert _write(folder / "control" / "export-job", "J8") != 0
    assert "failed" in (folder / "control" / "export-job").read_text()
    assert _write(mnt / "control" / "attach", str(project)) == 0
    assert (project / "cs.lock").exists()
    assert "attached" in (mnt / "control" / "attach").read_text()
    assert sorted(r.state for r in inst.projects()) == ["attached", "detached"]  # a new P-uid
    assert sorted(os.listdir(mnt)) == sorted(["control", project.name])
    assert _write(mnt / project.name / "control" / "export-job", "J8") == 0   # writable again


def test_export_and_clear_through_control(inst_mount):
    inst, project, mnt, folder, _pid = inst_mount
    assert _write(folder / "control" / "export-job", "J8") == 0
    out = (folder / "control" / "export-job").read_text()
    assert "ok" in out and "exported to" in out
    assert (project / "exports" / "jobs").is_dir()
    assert _write(folder / "control" / "export-group", "J8 particles") == 0
    assert (project / "exports" / "groups" / "J8_particles").is_dir()
    # O_TRUNC and truncate(2) work on control files, nowhere else
    os.truncate(folder / "control" / "export-job", 0)
    from csfs.core.exportplan import job_export_name, job_export_plan
    from csfs.core.project import Project

    jj = folder / "exports" / "jobs" / job_export_name(Project.open(project).job("J8")) / "job.json"
    old_doc = jj.read_bytes()                                  # now in the kernel's page cache
    before = int((folder / "sizes" / "total").read_text())
    listed = {j: _walk(folder / j) for j in ("J6", "J8")}     # now cached by the kernel
    assert listed == {j: _walk(folder / j) for j in ("J6", "J8")}
    assert _write(folder / "control" / "clear-intermediate", "all") == 0
    assert "cleared" in (folder / "control" / "clear-intermediate").read_text()
    assert int((folder / "sizes" / "total").read_text()) < before
    # the mount shows the deletions at once, despite the kernel caches
    after = {j: _walk(folder / j) for j in ("J6", "J8")}
    assert after == {j: _walk(project / j) for j in ("J6", "J8")}
    assert after != listed
    # a generated export file that changed is read afresh (its kernel cache was dropped)
    fresh = job_export_plan(Project.open(project), "J8").lookup("job.json").generate()
    assert fresh != old_doc and jj.read_bytes() == fresh and os.stat(jj).st_size == len(fresh)


def _walk(top: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, n), top) for d, ds, fs in os.walk(top) for n in ds + fs}


def test_eight_tar_readers_while_an_action_runs(inst_mount):
    inst, project, mnt, folder, _pid = inst_mount
    exports = [folder / "exports" / k / n for k in ("jobs", "groups")
               for n in sorted(os.listdir(folder / "exports" / k))][:8]
    assert len(exports) == 8
    procs = [subprocess.Popen(f"tar -cf - -C '{e.parent}' '{e.name}' | wc -c", shell=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for e in exports]
    results = {}

    def act():
        results["export"] = _write(folder / "control" / "export-job", "J8")
        results["group"] = _write(folder / "control" / "export-group", "J5 particles")
    t = threading.Thread(target=act)
    t.start()
    outs = [p.communicate(timeout=120) for p in procs]
    t.join(timeout=120)
    assert not t.is_alive(), "control action deadlocked"
    assert results == {"export": 0, "group": 0}
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and err == b"", err
        assert int(out) > 0


def test_killed_server_then_umount_recovers(demo, tmp_path):
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    inst = Instance(tmp_path / "home")
    lifecycle.attach(inst, demo)
    before = _snapshot(inst, demo)
    with mounted(inst.home, tmp_path / "mnt", demo) as (mnt, pid):
        os.listdir(mnt)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.stat(mnt)
            except OSError as e:
                assert e.errno in (errno.ENOTCONN, errno.ECONNABORTED)
                break
            time.sleep(0.05)
        listing = run_csfs("mounts", home=inst.home)
        assert "stale" in listing.stdout
        again = run_csfs("mount", str(demo), str(mnt), home=inst.home)
        assert again.returncode != 0 and "csfs umount" in again.stderr
        r = run_csfs("umount", str(mnt), home=inst.home)
        assert r.returncode == 0, r.stderr
        assert not is_mounted(mnt)
        assert os.listdir(mnt) == []
    assert _snapshot(inst, demo) == before


def test_mount_errors_are_one_line(demo, tmp_path):
    home = tmp_path / "home"
    r = run_csfs("mount", str(demo), str(tmp_path / "nowhere"), home=home)
    assert r.returncode == 2 and "no such directory" in r.stderr and r.stderr.count("\n") == 1
    r = run_csfs("mount", str(tmp_path), str(tmp_path / "m"), home=home)
    assert r.returncode == 2 and "not a CryoSPARC project" in r.stderr, r.stderr
    (tmp_path / "m").mkdir()
    with mounted(home, tmp_path / "m", demo):
        r = run_csfs("mount", str(demo), str(tmp_path / "m"), home=home)
        assert r.returncode == 1 and "busy" in r.stderr and r.stderr.count("\n") == 1
    r = run_csfs("umount", str(tmp_path / "m"), home=home)
    assert r.returncode == 2 and "not mounted" in r.stderr


def test_missing_fuse_names_the_package(monkeypatch):
    from csfs.core.errors import CsfsError
    from csfs.mountpoints import mounting

    real_exists = os.path.exists
    monkeypatch.setattr(mounting.os.path, "exists", lambda p: False if p == "/dev/fuse" else real_exists(p))
    with pytest.raises(CsfsError, match="fuse3"):
        mounting.check_fuse()
    monkeypatch.undo()
    monkeypatch.setattr(mounting.shutil, "which", lambda name: None)
    with pytest.raises(CsfsError, match="fuse3"):
        mounting.check_fuse()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root and runuser")
def test_allow_other_reads_but_only_the_owner_acts(demo):
    """--allow-other: another user reads the mount, gets EACCES on control, EROFS elsewhere."""
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    base = Path(tempfile.mkdtemp(prefix="csfs-other-"))   # outside pytest's private tmp dirs
    try:
        os.chmod(base, 0o755)
        # the project too: through the mount, nobody reads only what they could read directly
        demo = Path(shutil.copytree(demo, base / demo.name, symlinks=True))
        inst = Instance(base / "home")
        lifecycle.attach(inst, demo)
        (base / "mnt").mkdir()
        r = run_csfs("mount", str(demo), str(base / "mnt"), "--allow-other", home=inst.home)
        assert r.returncode == 0, r.stderr
        try:
            mnt = base / "mnt"

            def as_nobody(cmd: str) -> subprocess.CompletedProcess:
                return subprocess.run(["runuser", "-u", "nobody", "--", "sh", "-c", cmd],
                                      capture_output=True, text=True, timeout=60)
            assert as_nobody(f"cat '{mnt}/project.json'").returncode == 0
            denied = as_nobody(f"echo J8 > '{mnt}/control/export-job'")
            assert denied.returncode != 0 and "Permission denied" in denied.stderr
            touched = as_nobody(f"touch '{mnt}/x'")
            assert touched.returncode != 0 and not (mnt / "x").exists()
            assert _write(mnt / "control" / "export-job", "J8") == 0   # the owner still acts
        finally:
            run_csfs("umount", str(base / "mnt"), home=inst.home)
    finally:
        if is_mounted(base / "mnt"):
            subprocess.run(["fusermount3", "-u", "-z", str(base / "mnt")])
        shutil.rmtree(base, ignore_errors=True)
