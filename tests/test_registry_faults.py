"""Faults between the instance and its projects: a full disk during attach, a damaged or
locked registry and `csfs instance recover`, lock ids the registry lost, detach hitting the
wrong folder, and re-runs of completed actions."""
from __future__ import annotations

import errno
import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from csfs.core import lifecycle, lock
from csfs.core.instance import Instance

import faultinject as fi
from lifecycle_helpers import check_agree, job_data, make_project, ok, refused, run_main, snapshot

# -- a full disk during attach -------------------------------------------------------------

def test_attach_on_a_full_disk_completes_or_leaves_no_lock(tmp_path):
    """ENOSPC from some operation on (the disk stays full): attach either completes, or leaves
    no cs.lock and the registry as it was; `verify`-relevant data is untouched; a re-run
    with space completes."""
    home = tmp_path / "home"
    path = make_project(tmp_path, statuses=("completed",) * 4)
    inst = Instance(home)
    inst.allocate_uid()
    data, reg = job_data(path), [(r.uid, r.state) for r in inst.projects()]
    master = tmp_path / "master"
    shutil.copytree(path, master)
    count = fi.run(["project", "attach", path], home, fi.Plan(), tmp_path)
    assert count.code == 0, count.stderr
    ops = count.ops
    lock_op = next(i for i, op, p in count.log if op == "link" and p.endswith(".tmp"))
    commits = [i for i, op, p in count.log if op == "commit"]
    points = sorted({1, lock_op, lock_op + 1, *commits, ops, *range(2, ops, max(1, ops // 8))})
    tried = 0
    for at in points:
        for sticky in (True, False):
            run_main("project", "detach", path, home=home)  # undo a completed attach
            run_main("project", "forget", path, home=home)
            shutil.rmtree(path)
            shutil.copytree(master, path)
            reg = [(r.uid, r.state) for r in Instance(home).projects()]
            out = fi.run(["project", "attach", path], home, fi.Plan(at=at, error=errno.ENOSPC, sticky=sticky),
                         tmp_path)
            tried += 1
            assert job_data(path) == data
            if out.code == 0:
                assert check_agree(Instance(home), path) == "attached"
                continue
            err = out.stderr.strip()
            assert out.code == 1 and "\n" not in err and "Traceback" not in err, err
            assert "No space left" in err or "no space left" in err, err
            assert lock.read(path) is None, f"op {at} ({count.log[at - 1]}): {err}"
            assert [(r.uid, r.state) for r in Instance(home).projects()] == reg, err
            assert not [p for p in path.iterdir() if p.name.startswith(".cs.lock")], \
                f"op {at} {count.log[at - 1]} sticky={sticky}: {err}"
            ok(run_main("project", "attach", path, home=home))
            assert check_agree(Instance(home), path) == "attached"
    assert tried >= 10


# -- a damaged registry ------------------------------------------------------------------------

def _three_projects(tmp_path: Path, home: Path) -> tuple[Instance, dict[str, Path]]:
    inst = Instance(home)
    a = make_project(tmp_path / "a", statuses=("completed", "failed"))
    b = make_project(tmp_path / "b")
    c = make_project(tmp_path / "c")
    ra, rb, rc = (lifecycle.attach(inst, p) for p in (a, b, c))
    lifecycle.archive(inst, rb.uid)
    moved = tmp_path / "b-moved"
    b.rename(moved)
    lifecycle.detach(inst, rc.uid)
    return inst, {ra.uid: a, rb.uid: moved, rc.uid: c}


@pytest.mark.parametrize("damage", ["truncated", "garbage", "deleted"])
def test_damaged_registry_is_reported_and_recovered(tmp_path, damage):
    home = tmp_path / "home"
    inst, paths = _three_projects(tmp_path, home)
    before = [(r.uid, r.state, r.path, r.lock_id, r.title) for r in inst.projects()]
    jobs = inst.jobs("P1")
    db = inst.registry_path
    if damage == "truncated":
        db.write_bytes(b"")
    elif damage == "garbage":
        db.write_bytes(b"this is not SQLite" * 100)
    else:
        db.unlink()
    snaps = {p: snapshot(p) for p in paths.values()}
    for args in (("project", "list"), ("project", "show", "P1"), ("project", "attach", tmp_path / "x")):
        refused(run_main(*args, home=home), 1, "registry is damaged", "csfs instance recover", "3 project")
    r = ok(run_main("instance", "recover", "--json", home=home))
    rep = json.loads(r.stdout)
    assert damage == "deleted" or Path(rep["old_registry"]).exists()
    after = Instance(home)
    # P-uids, states, paths and lock ids as before: P1 attached, P2 archived (moved: kept as
    # the registry had it, so unarchive finds it), P3 detached
    assert [(r.uid, r.state, r.path, r.lock_id, r.title) for r in after.projects()] == before
    assert after.jobs("P1") == jobs
    assert after.next_uid() == "P4"
    assert {p: snapshot(p) for p in paths.values()} == snaps  # nothing on disk touched
    ok(run_main("project", "unarchive", "P2", paths["P2"], home=home))
    ok(run_main("project", "detach", "P1", home=home))
    assert check_agree(after, paths["P1"]) == "detached"


def test_recover_from_named_directories_when_everything_is_lost(tmp_path):
    home = tmp_path / "home"
    inst, paths = _three_projects(tmp_path, home)
    lifecycle.unarchive(inst, "P2", paths["P2"])
    inst.registry_path.unlink()
    inst.known_path.unlink()  # nothing left: the user names where the projects are
    foreign = make_project(tmp_path / "f", name="CS-foreign")
    lifecycle.attach(Instance(tmp_path / "other"), foreign)
    r = ok(run_main("instance", "recover", tmp_path / "a", tmp_path, tmp_path / "f", home=home))
    assert "skipped" in r.stdout and "CS-foreign" in r.stdout
    after = Instance(home)
    assert [(r.uid, r.state) for r in after.projects()] == [("P1", "attached"), ("P2", "attached")]
    assert check_agree(after, paths["P1"]) == "attached" and check_agree(after, paths["P2"]) == "attached"
    assert after.next_uid() == "P3"
    refused(run_main("instance", "recover", tmp_path / "nowhere", home=home), 2, "no such directory")


def test_locked_registry_says_so_quickly(tmp_path, monkeypatch):
    home = tmp_path / "home"
    path = make_project(tmp_path)
    Instance(home)
    holder = sqlite3.connect(home / Instance.DB_FILE, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        monkeypatch.setenv("CSFS_REGISTRY_TIMEOUT", "0.3")
        t = time.monotonic()
        err = refused(run_main("project", "attach", path, home=home), 1, "locked by another process", "fuser")
        assert time.monotonic() - t < 5
        assert "unusable" not in err
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert lock.read(path) is None  # the attach that could not register left no lock
    ok(run_main("project", "attach", path, home=home))


def test_full_home_disk_at_the_registry_commit(tmp_path):
    """The registry's COMMIT fails with 'database or disk is full': a clear message, never
    'cannot rollback', and the attach leaves no lock."""
    home = tmp_path / "home"
    path = make_project(tmp_path)
    Instance(home)
    count = fi.run(["project", "attach", path], home, fi.Plan(), tmp_path)
    lifecycle.detach(Instance(home), path)
    lifecycle.forget(Instance(home), path)
    last_commit = max(i for i, op, p in count.log if op == "commit")
    out = fi.run(["project", "attach", path], home, fi.Plan(at=last_commit, error=errno.ENOSPC), tmp_path)
    assert out.code == 1 and "no space left" in out.stderr and "rollback" not in out.stderr, out.stderr
    assert "Free space" in out.stderr and "nothing changed" in out.stderr
    assert lock.read(path) is None
    assert Instance(home).projects() == []


# -- lock ids ----------------------------------------------------------------------------------

def test_lock_id_the_registry_lost_is_adopted_by_attach(tmp_path):
    """The lock was restored from a backup (or the registry was): the lock id differs, but the
    instance id and the project UID match and no other directory holds the registered lock."""
    home = tmp_path / "home"
    path = make_project(tmp_path)
    inst = Instance(home)
    rec = lifecycle.attach(inst, path)
    info = lock.read(path)
    lock.replace(path, info, {**info.doc, "lock_id": "restored0from0a0backup"})
    err = refused(run_main("project", "archive", "P1", home=home), 1, "attach")
    assert "adopt" in err
    r = ok(run_main("project", "attach", path, home=home))
    assert "adopted" in r.stdout
    assert Instance(home).get("P1").lock_id == "restored0from0a0backup"
    assert check_agree(Instance(home), path) == "attached"
    ok(run_main("project", "archive", "P1", home=home))
    # the same after a move while archived: unarchive adopts it too
    moved = tmp_path / "moved"
    path.rename(moved)
    info = lock.read(moved)
    lock.replace(moved, info, {**info.doc, "lock_id": "another0restored0lock"})
    r = ok(run_main("project", "unarchive", "P1", moved, home=home))
    assert "adopted" in r.stdout and check_agree(Instance(home), moved) == "attached"
    assert rec.uid == "P1"


def test_copy_with_our_lock_is_still_refused(tmp_path):
    home = tmp_path / "home"
    path = make_project(tmp_path / "orig")
    lifecycle.attach(Instance(home), path)
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    info = lock.read(copy)
    lock.replace(copy, info, {**info.doc, "lock_id": "a0copy"})
    before = snapshot(copy)
    refused(run_main("project", "attach", copy, home=home), 1, "copy")
    refused(run_main("project", "unarchive", "P1", copy, home=home), 1, "not archived")
    assert snapshot(copy) == before and check_agree(Instance(home), path) == "attached"


# -- detach hitting the wrong folder --------------------------------------------------------------

def test_detach_refuses_another_project_at_the_old_path(tmp_path):
    """attach, move the project away, put another project at the old path, detach: refused,
    naming the way out; the real project keeps our lock and its row."""
    home = tmp_path / "home"
    old = make_project(tmp_path / "p", name="CS-real")
    lifecycle.attach(Instance(home), old)
    new = tmp_path / "elsewhere"
    old.rename(new)
    other = make_project(tmp_path / "p", name="CS-real", uid="P7")  # another project, same place
    before = snapshot(other), snapshot(new)
    refused(run_main("project", "detach", "P1", home=home), 1, "no cs.lock", "may have moved", "--registry-only")
    assert (snapshot(other), snapshot(new)) == before
    # the same when the old path holds another project of ours (its own lock)
    shutil.rmtree(other)
    lifecycle.attach(Instance(home), make_project(tmp_path / "q", name="CS-real", uid="P7"))  # P2
    (tmp_path / "q" / "CS-real").rename(other)  # moved to P1's old path
    before = snapshot(other)
    refused(run_main("project", "detach", "P1", home=home), 1, "not the lock", "P1")
    assert snapshot(other) == before
    # attach at the new place records it, then detach works
    r = ok(run_main("project", "attach", new, home=home))
    assert "new place recorded" in r.stdout
    ok(run_main("project", "detach", "P1", home=home))
    assert check_agree(Instance(home), new) == "detached"
    assert "new place recorded" in ok(run_main("project", "attach", other, home=home)).stdout  # P2 moved too
    assert check_agree(Instance(home), other) == "attached"


def test_detach_under_a_foreign_lock_names_it_and_registry_only_marks_it(tmp_path):
    A, B = tmp_path / "A", tmp_path / "B"
    path = make_project(tmp_path)
    lifecycle.attach(Instance(A), path)
    (path / "cs.lock").unlink()
    lifecycle.attach(Instance(B), path)  # taken by B without a rescue record
    before = snapshot(path)
    refused(run_main("project", "detach", "P1", home=A), 1, Instance(B).id, "--registry-only")
    r = ok(run_main("project", "detach", "P1", "--registry-only", home=A))
    assert "nothing on disk" in r.stdout and snapshot(path) == before
    assert Instance(A).get("P1").state == "detached" and check_agree(Instance(B), path) == "attached"


# -- re-runs of completed actions --------------------------------------------------------------

def test_rerun_of_a_completed_action_succeeds(tmp_path):
    home = tmp_path / "home"
    path = make_project(tmp_path)
    ok(run_main("project", "attach", path, home=home))
    assert "already attached" in ok(run_main("project", "attach", path, home=home)).stdout
    ok(run_main("project", "archive", "P1", home=home))
    snap = snapshot(path)
    r = ok(run_main("project", "archive", "P1", home=home))
    assert "already archived" in r.stdout and snapshot(path) == snap
    ok(run_main("project", "unarchive", "P1", path, home=home))
    assert "already unarchived" in ok(run_main("project", "unarchive", "P1", path, home=home)).stdout
    ok(run_main("project", "detach", "P1", home=home))
    assert "already detached" in ok(run_main("project", "detach", "P1", home=home)).stdout
    assert check_agree(Instance(home), path) == "detached"


def test_archive_killed_after_its_registry_commit_reruns_as_success(tmp_path):
    home = tmp_path / "home"
    path = make_project(tmp_path)
    Instance(home)
    ok(run_main("project", "attach", path, home=home))
    count = fi.run(["project", "archive", "P1"], home, fi.Plan(), tmp_path)
    lifecycle.unarchive(Instance(home), "P1", path)
    last_commit = max(i for i, op, p in count.log if op == "commit")
    out = fi.run(["project", "archive", "P1"], home, fi.Plan(at=last_commit + 1, kill=True), tmp_path)
    assert out.code in (-9, 0)
    r = ok(run_main("project", "archive", "P1", home=home))
    assert check_agree(Instance(home), path) == "archived", r.stdout


# -- a real full disk (a small tmpfs, when we may mount one) ------------------------------------

@pytest.fixture
def tiny_tmpfs(tmp_path):
    import os
    import subprocess

    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path) -> Path:
    """Fill a file system to the last byte; returns the filler file."""
    import os

    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 16, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("full", ["home", "project"])
def test_attach_on_a_real_full_disk(tmp_path, tiny_tmpfs, full):
    """The instance home (or the project) on a full tmpfs: attach says what is wrong and what
    to do (never 'cannot rollback'), leaves no lock and no registry change; with space again,
    attach completes."""
    home = (tiny_tmpfs if full == "home" else tmp_path) / "home"
    parent = tiny_tmpfs if full == "project" else tmp_path
    path = make_project(parent, statuses=("completed",) * 3)
    inst = Instance(home)
    lifecycle.attach(inst, make_project(tmp_path / "other", name="CS-other"))  # the registry has a row
    before = [(r.uid, r.state, r.lock_id) for r in inst.projects()]
    data = job_data(path)
    filler = _fill(tiny_tmpfs)
    err = refused(run_main("project", "attach", path, home=home), 1)
    assert "rollback" not in err and ("no space left" in err.lower()), err
    assert "Free space" in err or "free space" in err, err
    assert lock.read(path) is None and job_data(path) == data
    filler.unlink()
    assert [(r.uid, r.state, r.lock_id) for r in Instance(home).projects()] == before
    ok(run_main("project", "attach", path, home=home))
    assert check_agree(Instance(home), path) == "attached"
