"""Sizes: CryoSPARC's accounting (files only, links followed, each inode once) against real
`find -L`, Live session rows, and the cache."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from csfs.core import sizes
from csfs.core.project import Project

from data_helpers import attach


def files_size(path) -> int:
    """CryoSPARC's rule with real tools: `find -L` lists every file with its device, inode and
    st_size; each inode is summed once and directories are not counted."""
    out = subprocess.run(["find", "-L", str(path), "-type", "f", "-printf", "%D %i %s\n"],
                         capture_output=True, text=True).stdout
    return sum(int(size) for size in {tuple(line.split()[:2]): line.split()[2]
                                      for line in out.splitlines()}.values())


def du_apparent(path) -> int:
    """`du -sL --apparent-size -B1`: like CryoSPARC's rule, but it adds each directory's size."""
    out = subprocess.run(["du", "-sL", "--apparent-size", "-B1", str(path)], capture_output=True, text=True)
    return int(out.stdout.split()[0])


@pytest.mark.skipif(shutil.which("find") is None, reason="needs findutils")
def test_job_sizes_follow_cryosparc_rule(demo, tmp_path):
    project = Project.open(demo)
    report = sizes.project_sizes(project, tmp_path / "cache")
    assert set(report.jobs) == set(project.jobs)
    for uid, job in project.jobs.items():
        assert report.jobs[uid].bytes == files_size(job.dir), uid
    # folders are not counted: du -sLb is larger by exactly the folders' sizes
    dirs = sum(os.stat(d).st_size for d in [demo / "J5", *(p for p in (demo / "J5").rglob("*") if p.is_dir())])
    assert du_apparent(demo / "J5") == report.jobs["J5"].bytes + dirs
    # import job links to raw data outside the project: their targets are counted
    raw = sum(os.stat(p).st_size for p in (demo / "J1").rglob("*") if p.is_symlink())
    assert raw > 0 and report.jobs["J1"].bytes > raw
    assert report.sessions == {"S1": files_size(demo / "S1")} and report.sessions["S1"] > 0
    assert report.total == sum(j.bytes for j in report.jobs.values()) + report.sessions["S1"] + report.other
    assert report.other >= (demo / "project.json").stat().st_size


def test_each_inode_once_and_loops(tmp_path):
    d = tmp_path / "J1"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(b"x" * 1000)
    os.link(d / "a.bin", d / "sub" / "hard.bin")
    (d / "sub" / "soft.bin").symlink_to(d / "a.bin")
    (d / "sub" / "loop").symlink_to(d)               # a cycle must not hang or double count
    (d / "dangling").symlink_to(tmp_path / "gone")    # counted as nothing
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"y" * 500)
    (d / "out.bin").symlink_to(outside)
    total, files = sizes.tree_size(d)
    assert total == 1000 + 500  # no directory sizes
    assert files == 2
    assert total == files_size(d)


def test_live_sessions_are_rows_of_their_own(demo, tmp_path, home, csfs):
    """A CryoSPARC Live session folder (S<N>/ with exposures.bson) is sized like a job, not lumped
    into "other"; a folder named S<N> without exposures.bson stays "other"."""
    before = sizes.project_sizes(Project.open(demo), tmp_path / "c1")
    s3 = demo / "S3"
    (s3 / "thumbnails").mkdir(parents=True)
    (s3 / "exposures.bson").write_bytes(b"\0" * 300)
    (s3 / "thumbnails" / "t.png").write_bytes(b"p" * 700)
    (demo / "S4").mkdir()
    (demo / "S4" / "notes.txt").write_bytes(b"n" * 50)
    report = sizes.project_sizes(Project.open(demo), tmp_path / "c2")
    assert report.sessions == {**before.sessions, "S3": 1000} and "S1" in report.sessions
    assert report.other == before.other + 50
    assert report.total == before.total + 1050
    _, puid, _ = attach(demo, home)
    r = csfs("du", puid, "--jobs", home=home)
    rows = [line.split()[:2] for line in r.stdout.splitlines()]
    assert r.returncode == 0 and ["S1", "live_session"] in rows and ["S3", "live_session"] in rows
    doc = json.loads(csfs("du", puid, "--json", home=home).stdout)
    assert doc["sessions"] == [{"uid": k, "bytes": v} for k, v in report.sessions.items()]


def test_clearable_reported_for_final_jobs_only(demo, tmp_path):
    report = sizes.project_sizes(Project.open(demo), tmp_path / "cache")
    assert report.jobs["J8"].clearable > 0 and report.jobs["J6"].clearable > 0
    assert report.jobs["J9"].clearable == 0  # running
    assert report.jobs["J1"].clearable == 0  # one version per result


def test_cache_hits_and_invalidation(demo, tmp_path):
    cache = tmp_path / "cache"
    project = Project.open(demo)
    first = sizes.project_sizes(project, cache)
    assert sorted(first.scanned) == sorted(project.jobs)
    second = sizes.project_sizes(Project.open(demo), cache)
    assert second.scanned == ["J9"]  # the running job is always rescanned
    assert second.as_dict() == first.as_dict()
    # a file added to a job dir changes its mtime: that job alone is rescanned
    (demo / "J5" / "new.bin").write_bytes(b"z" * 4321)
    third = sizes.project_sizes(Project.open(demo), cache)
    assert sorted(third.scanned) == ["J5", "J9"]
    assert third.jobs["J5"].bytes == first.jobs["J5"].bytes + 4321
    # a change deep inside (no job-dir mtime change) needs the explicit invalidation csfs does
    stack = sorted((demo / "J5" / "extract").iterdir())[0]
    with open(stack, "ab") as f:
        f.write(b"\0" * 100)
    assert sizes.project_sizes(Project.open(demo), cache).jobs["J5"].bytes == third.jobs["J5"].bytes
    sizes.invalidate(cache, demo, "J5")
    fourth = sizes.project_sizes(Project.open(demo), cache)
    assert "J5" in fourth.scanned and fourth.jobs["J5"].bytes == third.jobs["J5"].bytes + 100
    sizes.invalidate(cache, demo)
    assert sorted(sizes.project_sizes(Project.open(demo), cache).scanned) == sorted(project.jobs)


def test_corrupt_cache_is_ignored(demo, tmp_path):
    cache = tmp_path / "cache"
    first = sizes.project_sizes(Project.open(demo), cache)
    for f in (cache / "sizes").iterdir():
        f.write_text("{not json")
    assert sizes.project_sizes(Project.open(demo), cache).as_dict() == first.as_dict()


def test_cli_du(demo, home, csfs):
    _, puid, project = attach(demo, home)
    r = csfs("du", puid, "--json", home=home)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    jobs = {j["uid"]: j for j in doc["jobs"]}
    assert jobs["J8"]["bytes"] == files_size(demo / "J8")
    assert doc["bytes"] == (sum(j["bytes"] for j in jobs.values()) + sum(x["bytes"] for x in doc["sessions"])
                            + doc["other_bytes"])
    r = csfs("du", puid, "--jobs", home=home)
    assert r.returncode == 0 and "J8" in r.stdout and "CLEARABLE" in r.stdout
    r = csfs("du", str(demo), home=home)  # a directory path works too
    assert r.returncode == 0 and str(doc["bytes"]) in r.stdout
    r = csfs("du", "P99", home=home)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_clearable_follows_changes_in_consuming_jobs(demo, tmp_path):
    """J6's clearable bytes depend on which of its versions other jobs consume: when J10 starts
    consuming another version of J6 (J6 itself unchanged), the cached figure must not be used."""
    cache = tmp_path / "cache"
    first = sizes.project_sizes(Project.open(demo), cache).jobs["J6"].clearable
    path = demo / "J10" / "job.json"
    doc = json.loads(path.read_text())
    doc["input_slot_groups"][0]["connections"][0]["slots"].append(
        {"job_uid": "J6", "group_name": "particles", "result_name": "alignments2D", "version": 0})
    path.write_text(json.dumps(doc))
    from csfs.core.clearplan import clear_plan
    project = Project.open(demo)
    want = clear_plan(project, project.job("J6")).bytes
    assert want < first
    report = sizes.project_sizes(project, cache)
    assert report.jobs["J6"].clearable == want
    assert "J6" not in report.scanned  # its size still comes from the cache: no walk
    # a job whose job.json becomes unreadable may consume anything: nothing is clearable
    (demo / "J7" / "job.json").write_text("{")
    assert sizes.project_sizes(Project.open(demo), cache).jobs["J6"].clearable == 0
