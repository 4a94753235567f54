"""Lifecycle actions end to end through the real CLI: the two-instance round trip and the refusals."""
from __future__ import annotations

import json
import shutil

import pytest
from csfs.core import lock, store
from csfs.core.errors import ArchivedError
from csfs.core.instance import Instance
from csfs.core.project import Project

from lifecycle_helpers import check_agree, job_data, make_legacy, make_project, ok, refused, run_main, snapshot


@pytest.fixture
def cli():
    """The CLI run in-process (fast); the round trip below uses real subprocesses."""
    def run(*args, home):
        return run_main(*args, home=home)
    return run


@pytest.fixture
def homes(tmp_path):
    return tmp_path / "home-A", tmp_path / "home-B"


def test_round_trip_between_two_instances(csfs, homes, tmp_path):
    """create in A -> detach in A -> attach in B -> archive in B -> move -> unarchive in B ->
    detach in B -> attach in A again."""
    A, B = homes
    ok(csfs("project", "create", "Round Trip", "--dir", tmp_path, home=B))  # B already has a P1
    rec = json.loads(ok(csfs("project", "create", "Round Trip 2", "--dir", tmp_path, "--json", home=A)).stdout)
    path = tmp_path / "CS-round-trip-2"
    assert rec == {"action": "create",
                   "project": {"uid": "P1", "path": str(path), "state": "attached", "title": "Round Trip 2"}}
    inst_a = Instance(A)
    for status in ("completed", "failed", "killed"):
        store.new_job(inst_a, path, "homo_refine", f"a {status} job", {"status": status})
    (path / "J1" / "J1_volume.mrc").write_bytes(b"\x01" * 1000)
    data = job_data(path)

    ok(csfs("project", "detach", "P1", home=A))
    assert not (path / "cs.lock").exists()
    assert json.loads((path / "project.json").read_text())["detached"] is True

    out = ok(csfs("project", "attach", path, home=B)).stdout
    assert out.startswith("attached P2 (attached):")
    assert check_agree(Instance(B), path) == "attached"
    assert lock.read(path).instance_id == Instance(B).id
    refused(csfs("project", "attach", path, home=A), 1, Instance(B).id)  # a real process: one line, exit 1
    assert json.loads((path / "J2" / "job.json").read_text())["project_uid"] == "P2"
    ok(csfs("job", "mark-completed", "P2", "J2", home=B))

    ok(csfs("project", "archive", str(path), home=B))
    assert check_agree(Instance(B), path) == "archived"
    moved = tmp_path / "archive" / "renamed"
    moved.parent.mkdir()
    shutil.move(path, moved)
    ok(csfs("project", "unarchive", "P2", moved, home=B))
    assert check_agree(Instance(B), moved) == "attached"
    assert Instance(B).resolve("P2").path == moved
    ok(csfs("job", "mark-completed", moved, "J3", home=B))  # writable again at its new path

    ok(csfs("project", "detach", "P2", home=B))
    out = ok(csfs("project", "attach", moved, home=A)).stdout
    assert out.startswith("attached P2 (attached):")  # A's P1 was the old location; UIDs never reused
    assert check_agree(Instance(A), moved) == "attached"
    proj = Project.open(moved)
    assert [(j.uid, j.status) for j in proj.jobs.values()] == [("J1", "completed"), ("J2", "completed"),
                                                               ("J3", "completed")]
    assert job_data(moved) == data  # no job file lost or changed on the way
    listing = json.loads(ok(csfs("project", "list", "--json", home=A)).stdout)["projects"]
    assert [(p["uid"], p["state"]) for p in listing] == [("P1", "detached"), ("P2", "attached")]
    ok(csfs("project", "forget", "P1", home=A))
    assert [p.uid for p in Instance(A).projects()] == ["P2"]


def test_demo_attaches_with_all_jobs_and_active_job_blocks(cli, home, flavour_demo):
    demo = flavour_demo
    ok(cli("project", "attach", demo, home=home))
    proj = Project.open(demo)
    inst = Instance(home)
    assert [j[0] for j in inst.jobs("P1")] == list(proj.jobs)
    active = [j.uid for j in proj.jobs.values() if j.is_active]
    assert active, "the demo has a running job"
    before = snapshot(demo)
    for action in ("detach", "archive"):
        refused(cli("project", action, "P1", home=home), 1, active[0], "active")
    assert snapshot(demo) == before
    rows = json.loads(ok(cli("job", "list", "P1", "--json", home=home)).stdout)["jobs"]
    assert [r["uid"] for r in rows] == list(proj.jobs)
    table = ok(cli("job", "list", demo, home=home)).stdout.splitlines()
    assert table[0].split()[:4] == ["UID", "TYPE", "STATUS", "TITLE"] and len(table) == len(proj.jobs) + 1
    # a job left running by a dead instance: marking it killed unblocks detach
    for uid in active:
        ok(cli("job", "mark-killed", "P1", uid, home=home))
        doc = json.loads((demo / uid / "job.json").read_text())
        assert doc["status"] == "killed" and doc["killed_at"]
    refused(cli("job", "mark-killed", "P1", active[0], home=home), 1, "already killed")
    ok(cli("project", "detach", "P1", home=home))
    assert not (demo / "cs.lock").exists()


def test_refusals_change_nothing(cli, homes, tmp_path):
    A, B = homes
    path = make_project(tmp_path, statuses=("completed", "failed", "running"))
    ok(cli("project", "attach", path, home=A))
    inst_a = Instance(A)
    before = snapshot(path)

    # a foreign lock names its owner; nothing changes, B registers nothing
    refused(cli("project", "attach", path, home=B), 1, inst_a.id, "locked")
    assert Instance(B).projects() == []
    # the active job is named
    refused(cli("project", "detach", "P1", home=A), 1, "J3 (running)")
    refused(cli("project", "archive", path, home=A), 1, "J3")
    # only killed/failed jobs can be marked completed
    refused(cli("job", "mark-completed", "P1", "J3", home=A), 1, "running")
    refused(cli("job", "mark-completed", "P1", "J1", home=A), 1, "already completed")
    refused(cli("job", "mark-completed", "P1", "J9", home=A), 2, "J9")
    # only active jobs can be marked killed
    refused(cli("job", "mark-killed", "P1", "J1", home=A), 1, "completed")
    refused(cli("job", "mark-killed", "P1", "J2", home=A), 1, "failed")
    # forget of an attached project; unarchive of a project that is not archived
    refused(cli("project", "forget", "P1", home=A), 1, "detach")
    refused(cli("project", "unarchive", "P1", tmp_path, home=A), 1, "not archived")
    # bad UIDs and paths
    for args in (("project", "detach", "P9"), ("project", "show", "Pxyz"), ("job", "list", "P2"),
                 ("project", "archive", tmp_path / "nowhere"), ("project", "attach", tmp_path / "nowhere"),
                 ("project", "attach", A)):
        refused(cli(*args, home=A), 2)
    assert snapshot(path) == before
    assert [(r.uid, r.state) for r in inst_a.projects()] == [("P1", "attached")]
    # an attached project, attached again by the same instance
    assert "already attached" in ok(cli("project", "attach", path, home=A)).stdout  # idempotent
    # B's rescue without the flag explains and changes nothing
    r = ok(cli("project", "rescue", path, home=B))
    assert "--other-instance-is-down" in r.stdout and "copy" in r.stdout and inst_a.id in r.stdout
    assert snapshot(path) == before


def test_archived_project_is_read_only(cli, home, tmp_path):
    path = make_project(tmp_path, statuses=("failed", "completed"))
    ok(cli("project", "attach", path, home=home))
    ok(cli("project", "archive", "P1", home=home))
    before = snapshot(path)
    refused(cli("job", "mark-completed", "P1", "J1", home=home), 1, "archived")
    refused(cli("project", "detach", "P1", home=home), 1, "archived")
    assert "already archived" in ok(cli("project", "archive", "P1", home=home)).stdout  # idempotent
    refused(cli("project", "forget", "P1", home=home), 1, "archived")
    refused(cli("project", "attach", path, home=home), 1, "unarchive")
    inst = Instance(home)
    with pytest.raises(ArchivedError):
        store.new_job(inst, path, "t", "x")
    assert snapshot(path) == before
    # unarchive in place (not moved) works too
    ok(cli("project", "unarchive", "P1", path, home=home))
    ok(cli("job", "mark-completed", "P1", "J1", home=home))


def test_unarchive_refuses_the_wrong_directory(cli, homes, tmp_path):
    A, B = homes
    path = make_project(tmp_path / "a")
    ok(cli("project", "attach", path, home=A))
    ok(cli("project", "archive", "P1", home=A))
    unlocked = make_project(tmp_path / "b")
    ours_other = make_project(tmp_path / "c", name="CS-ours-other")
    ok(cli("project", "attach", ours_other, home=A))  # P2: our lock, but another project
    foreign = make_project(tmp_path / "d")
    ok(cli("project", "attach", foreign, home=B))
    snaps = {p: snapshot(p) for p in (path, unlocked, ours_other, foreign)}
    refused(cli("project", "unarchive", "P1", unlocked, home=A), 1, "no cs.lock")
    refused(cli("project", "unarchive", "P1", ours_other, home=A), 1, "not the archived P1")
    refused(cli("project", "unarchive", "P1", foreign, home=A), 1, Instance(B).id)
    refused(cli("project", "unarchive", "P1", tmp_path / "nowhere", home=A), 2)
    refused(cli("project", "unarchive", "P1", tmp_path, home=A), 2, "not a CryoSPARC project")
    assert {p: snapshot(p) for p in snaps} == snaps
    assert Instance(A).get("P1").state == "archived"


def test_corrupted_project_json_is_refused(cli, home, tmp_path):
    path = make_project(tmp_path)
    (path / "project.json").write_text('{"uid": "P7", "title": ')
    before = snapshot(path)
    refused(cli("project", "attach", path, home=home), 2, "project.json", "not valid JSON")
    (path / "project.json").write_text("[]")
    refused(cli("project", "attach", path, home=home), 2, "project.json")
    assert {k: v for k, v in snapshot(path).items() if k != "project.json"} == \
        {k: v for k, v in before.items() if k != "project.json"}
    assert not (path / "cs.lock").exists() and Instance(home).projects() == []
    # corrupted while attached: writes are refused, nothing changes
    (path / "project.json").write_text(json.dumps({"uid": "P7", "title": "x"}))
    ok(cli("project", "attach", path, home=home))
    (path / "project.json").write_text("{garbage")
    before = snapshot(path)
    refused(cli("project", "detach", "P1", home=home), 2, "project.json")
    assert snapshot(path) == before


def test_legacy_directory_attaches_and_gets_project_json(cli, homes, tmp_path):
    A, B = homes
    path = make_legacy(tmp_path, "P12", jobs=3)
    data = job_data(path)
    ok(cli("project", "attach", path, home=A))
    doc = json.loads((path / "project.json").read_text())
    assert doc["uid"] == "P1" and doc["title"] == "P12" and doc["detached"] is False
    assert json.loads((path / "workspaces.json").read_text()) == []
    assert [j[0] for j in Instance(A).jobs("P1")] == ["J1", "J2", "J3"]
    assert check_agree(Instance(A), path) == "attached"
    ok(cli("project", "detach", "P1", home=A))
    ok(cli("project", "attach", path, home=B))
    assert job_data(path) == data


def test_copy_of_an_attached_project_is_not_ours(cli, home, tmp_path):
    path = make_project(tmp_path / "orig")
    ok(cli("project", "attach", path, home=home))
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    before = snapshot(copy)
    refused(cli("project", "attach", copy, home=home), 1, "copy")
    refused(cli("project", "detach", copy, home=home), 2)  # not registered
    assert snapshot(copy) == before


def test_rescue_replaces_a_dead_instance_lock(cli, homes, tmp_path):
    A, B = homes
    path = make_project(tmp_path)
    ok(cli("project", "attach", path, home=A))
    old = (path / "cs.lock").read_bytes()
    r = ok(cli("project", "rescue", path, "--other-instance-is-down", home=B))
    assert "rescued" in r.stdout and "P1" in r.stdout
    (saved,) = path.glob("cs.lock.rescued-*.json")
    assert json.loads(saved.read_text())["old_lock_raw"] == old.decode()
    assert check_agree(Instance(B), path) == "attached"
    # A's writes are now refused, naming B
    refused(cli("job", "mark-completed", "P1", "J1", home=A), 1, Instance(B).id)
    # nothing to rescue from ourselves, nor from an unlocked directory
    refused(cli("project", "rescue", path, home=B), 1, "itself")
    refused(cli("project", "rescue", make_project(tmp_path / "x"), home=B), 1, "no cs.lock")


def test_rescue_of_an_unreadable_lock_keeps_archived_state(cli, home, tmp_path):
    path = make_project(tmp_path)
    doc = json.loads((path / "project.json").read_text())
    (path / "project.json").write_text(json.dumps(dict(doc, archived=True)))
    (path / "cs.lock").write_bytes(b"\x00garbage")
    refused(cli("project", "attach", path, home=home), 1, "unreadable lock")
    r = ok(cli("project", "rescue", path, "--other-instance-is-down", home=home))
    assert "unarchive" in r.stdout
    assert check_agree(Instance(home), path) == "archived"
    ok(cli("project", "unarchive", "P1", path, home=home))


def test_create_refuses_existing_and_bad_titles(cli, home, tmp_path):
    ok(cli("project", "create", "Twice", "--dir", tmp_path, home=home))
    # the same create again (say, re-run after a kill that landed once it had completed) succeeds
    assert "(already created)" in ok(cli("project", "create", "Twice", "--dir", tmp_path, home=home)).stdout
    refused(cli("project", "create", "twice!", "--dir", tmp_path, home=home), 1, "already exists")
    refused(cli("project", "create", "!!!", "--dir", tmp_path, home=home), 2, "title")
    refused(cli("project", "create", "x", "--dir", tmp_path / "nowhere", home=home), 2, "no such directory")
    assert [p.uid for p in Instance(home).projects()] == ["P1"]


def test_detach_of_a_project_whose_dir_vanished(cli, home, tmp_path):
    path = make_project(tmp_path)
    ok(cli("project", "attach", path, home=home))
    shutil.rmtree(path)
    refused(cli("project", "detach", "P1", home=home), 2, "gone")
    refused(cli("project", "forget", "P1", home=home), 1, "forget --missing P1")
    r = json.loads(ok(cli("project", "show", "P1", "--json", home=home)).stdout)
    assert r["project"]["state"] == "attached" and r["project"]["missing"] and "missing" in r["problems"][0]
    listing = ok(cli("project", "list", home=home)).stdout
    assert "attached, missing" in listing and "forget --missing" in listing
    (row,) = json.loads(ok(cli("project", "list", "--missing", "--json", home=home)).stdout)["projects"]
    assert row["uid"] == "P1" and row["missing"] is True
    r = json.loads(ok(cli("project", "forget", "--missing", "P1", "--json", home=home)).stdout)
    assert r == {"action": "forget", "project": {"uid": "P1", "path": str(path), "state": "attached",
                                                 "title": "hand made"}}
    assert Instance(home).projects() == []


def test_forget_missing_refuses_a_project_still_on_disk(cli, home, tmp_path):
    path = make_project(tmp_path)
    ok(cli("project", "attach", path, home=home))
    before = snapshot(path)
    refused(cli("project", "forget", "--missing", "P1", home=home), 1, "still there", "detach")
    assert snapshot(path) == before and Instance(home).get("P1").state == "attached"


def test_every_command_has_help(cli, home):
    for args in (("project",), ("project", "create"), ("project", "attach"), ("project", "detach"),
                 ("project", "archive"), ("project", "unarchive"), ("project", "forget"), ("project", "rescue"),
                 ("project", "list"), ("project", "show"), ("job", "list"), ("job", "mark-completed"),
                 ("instance", "info")):
        r = ok(cli(*args, "--help", home=home))
        assert "usage: csfs" in r.stdout and len(r.stdout.splitlines()) > 4


def test_moved_while_attached_is_recorded_by_attach(cli, home, tmp_path):
    path = make_project(tmp_path / "old")
    ok(cli("project", "attach", path, home=home))
    assert "already attached" in ok(cli("project", "attach", path, home=home)).stdout
    new = tmp_path / "new"
    path.rename(new)
    refused(cli("project", "detach", "P1", home=home), 2, "attach NEWPATH")
    ok(cli("project", "attach", new, home=home))
    assert Instance(home).get("P1").path == new and check_agree(Instance(home), new) == "attached"
    ok(cli("project", "detach", "P1", home=home))


def test_detach_after_another_instance_rescued(cli, homes, tmp_path):
    A, B = homes
    path = make_project(tmp_path)
    ok(cli("project", "attach", path, home=A))
    ok(cli("project", "rescue", path, "--other-instance-is-down", home=B))
    before = snapshot(path)
    ok(cli("project", "detach", "P1", home=A))  # only A's registry row changes
    assert snapshot(path) == before
    assert Instance(A).get("P1").state == "detached" and check_agree(Instance(B), path) == "attached"
    ok(cli("project", "forget", "P1", home=A))
