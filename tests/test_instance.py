"""The instance registry, cs.lock and the store's write checks."""
from __future__ import annotations

import json
import uuid

import pytest
from csfs.core import ids, lifecycle, lock, store
from csfs.core.errors import ArchivedError, ForeignLockError, FormatError, NotFoundError, RefusedError, UsageError
from csfs.core.instance import Instance
from csfs.core.project import Project

from lifecycle_helpers import make_project, snapshot


def test_instance_id_is_a_stable_uuid(tmp_path):
    a = Instance(tmp_path / "a")
    assert uuid.UUID(a.id)
    assert Instance(tmp_path / "a").id == a.id
    assert Instance(tmp_path / "b").id != a.id
    assert (tmp_path / "a" / "registry.sqlite3").is_file()
    assert a.cache_dir == tmp_path / "a" / "cache" and a.cache_dir.is_dir()


def test_damaged_id_file_is_a_format_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "instance_id").write_text("not a uuid")
    with pytest.raises(FormatError, match="instance id"):
        Instance(tmp_path / "a")


def test_uids_are_never_reused(tmp_path):
    inst = Instance(tmp_path / "h")
    p1 = lifecycle.create(inst, "one", tmp_path)
    p2 = lifecycle.create(inst, "two", tmp_path)
    assert (p1.uid, p2.uid) == ("P1", "P2")
    lifecycle.detach(inst, "P2")
    lifecycle.forget(inst, "P2")
    assert [r.uid for r in inst.projects()] == ["P1"]
    assert lifecycle.create(inst, "three", tmp_path).uid == "P3"
    # a reservation that was never used is not handed out again either
    assert inst.allocate_uid() == "P4"
    assert lifecycle.create(inst, "four", tmp_path).uid == "P5"


def test_resolve_by_uid_and_path(tmp_path):
    inst = Instance(tmp_path / "h")
    rec = lifecycle.create(inst, "Resolve Me", tmp_path)
    assert inst.resolve("P1") == rec
    assert inst.resolve("p1") == rec
    assert inst.resolve(str(rec.path)) == rec
    assert inst.resolve(str(rec.path) + "/") == rec
    (tmp_path / "alias").symlink_to(rec.path)
    assert inst.resolve(str(tmp_path / "alias")) == rec
    for bad in ("P2", "P", "3", "x", str(tmp_path / "nowhere"), str(tmp_path)):
        with pytest.raises(NotFoundError):
            inst.resolve(bad)
    with pytest.raises(UsageError):
        inst.resolve(" ")
    assert ids.project_num("P12") == 12 and ids.project_num("P1x") is None and ids.project_num("J1") is None


def test_registry_lists_workspaces_and_jobs(tmp_path):
    inst = Instance(tmp_path / "h")
    path = make_project(tmp_path, statuses=("completed", "failed", "running"))
    rec = lifecycle.attach(inst, path)
    assert inst.workspaces(rec.uid) == [("W1", "first")]
    assert [(j[0], j[3]) for j in inst.jobs(rec.uid)] == [("J1", "completed"), ("J2", "failed"), ("J3", "running")]
    assert inst.info()["attached"] == 1


# -- cs.lock ---------------------------------------------------------------------------------

def test_lock_is_exclusive_and_names_its_owner(tmp_path):
    doc = lock.new_doc("11111111-2222-3333-4444-555555555555", "P4", tmp_path / "home")
    info = lock.create(tmp_path, doc)
    assert info.is_ours(doc["instance_id"]) and not info.is_ours("other")
    assert json.loads((tmp_path / "cs.lock").read_text()) == doc
    before = snapshot(tmp_path)
    with pytest.raises(ForeignLockError, match="11111111-2222-3333-4444-555555555555 on host"):
        lock.create(tmp_path, lock.new_doc("66666666-2222-3333-4444-555555555555", "P1"))
    assert snapshot(tmp_path) == before  # the loser left nothing behind
    read = lock.read(tmp_path)
    assert read.doc == doc and read.describe().startswith("instance 11111111")


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b'{"host": "x"}', b"\xff\xfe"])
def test_unreadable_lock_is_foreign(tmp_path, content):
    (tmp_path / "cs.lock").write_bytes(content)
    info = lock.read(tmp_path)
    assert info is not None and not info.readable
    assert not info.is_ours("anything")
    if content == b'{"host": "x"}':
        assert info.describe() == 'a lock not written by csfs: {"host": "x"}'
    else:
        assert "unreadable lock" in info.describe()


def test_lock_remove_refuses_a_changed_lock(tmp_path):
    mine = lock.create(tmp_path, lock.new_doc("a", "P1"))
    (tmp_path / "cs.lock").write_text(json.dumps(lock.new_doc("b", "P1")))
    with pytest.raises(ForeignLockError, match="instance b"):
        lock.remove(tmp_path, mine)
    assert (tmp_path / "cs.lock").exists()
    assert lock.read(tmp_path / "missing") is None


# -- store ---------------------------------------------------------------------------------

def test_commit_rewrites_all_metadata(tmp_path):
    inst = Instance(tmp_path / "h")
    rec = lifecycle.attach(inst, make_project(tmp_path, statuses=("failed", "completed")))
    proj = Project.open(rec.path)
    doc = dict(proj.jobs["J1"].doc, title="renamed")
    store.commit(inst, proj, job_docs={"J1": doc}, workspaces=[{"uid": "W1", "title": "new ws"}])
    again = Project.open(rec.path)
    assert again.jobs["J1"].title == "renamed"
    assert again.workspaces == [{"uid": "W1", "title": "new ws"}]
    assert again.doc["uid"] == rec.uid and "last_exported" in again.doc
    assert inst.jobs(rec.uid)[0][2] == "renamed"
    assert not list(rec.path.rglob("*.csfs-tmp-*"))
    with pytest.raises(NotFoundError):
        store.commit(inst, proj, job_docs={"J9": doc})
    with pytest.raises(UsageError):
        store.commit(inst, proj, job_docs={"../x": doc})


def test_new_job_allocates_next_uid_with_gridfs(tmp_path):
    inst = Instance(tmp_path / "h")
    rec = lifecycle.attach(inst, make_project(tmp_path, statuses=("completed",)))
    (rec.path / "J5").mkdir()  # a stray job directory still counts
    uid, d = store.new_job(inst, Project.open(rec.path), "import_particles", "Import", {"status": "completed"})
    assert (uid, d) == ("J6", rec.path / "J6")
    assert (d / "gridfs_data").is_dir()
    job = Project.open(rec.path).jobs["J6"]
    assert (job.type, job.title, job.status) == ("import_particles", "Import", "completed")
    assert job.doc["project_uid"] == "P1"
    assert job.doc["workspace_uids"] == ["W1"]
    assert ("J6", "import_particles", "Import", "completed") in inst.jobs(rec.uid)
    assert store.new_job(inst, rec.path, "t", "again")[0] == "J7"


def test_check_writable_refusals(tmp_path):
    a, b = Instance(tmp_path / "a"), Instance(tmp_path / "b")
    rec = lifecycle.attach(a, make_project(tmp_path))
    assert store.check_writable(a, rec.path) == rec
    with pytest.raises(ForeignLockError, match=a.id):
        store.check_writable(b, rec.path)
    with pytest.raises(ForeignLockError, match=a.id):
        store.new_job(b, rec.path, "t", "x")
    lifecycle.archive(a, rec.uid)
    with pytest.raises(ArchivedError, match="unarchive"):
        store.check_writable(a, rec.path)
    with pytest.raises(ArchivedError):
        store.commit(a, rec.path)
    other = make_project(tmp_path, name="CS-other")
    with pytest.raises(RefusedError, match="not attached"):
        store.check_writable(a, other)
    # a lock of ours that is not the one registered for the project (a copy) is refused
    lifecycle.unarchive(a, rec.uid, rec.path)
    (rec.path / "cs.lock").write_text(json.dumps(lock.new_doc(a.id, rec.uid)))
    with pytest.raises(ForeignLockError, match="copy"):
        store.check_writable(a, rec.path)


def test_cli_instance_info_and_list(csfs, home, tmp_path):
    r = csfs("instance", "info", "--json", home=home)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert uuid.UUID(info["instance"]["id"]) and info["instance"]["home"] == str(home)
    assert info["counts"]["total"] == 0
    r = csfs("project", "create", "CLI Made", "--dir", tmp_path, "--json", home=home)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["project"] == {"uid": "P1", "path": str(tmp_path / "CS-cli-made"),
                                               "state": "attached", "title": "CLI Made"}
    r = csfs("project", "list", home=home)
    assert r.stdout.split("\n")[0].split() == ["UID", "STATE", "TITLE", "PATH"]
    assert "P1" in r.stdout and "CLI Made" in r.stdout
    r = csfs("project", "show", "P1", "--json", home=home)
    facts = json.loads(r.stdout)
    assert facts["lock"] == "this instance (P1)" and facts["project"]["project_json_uid"] == "P1"
    assert facts["job_count"] == 0
    assert csfs("instance", "info", home=home).stdout.startswith("id:")
