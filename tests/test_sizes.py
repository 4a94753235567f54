"""Sizes: CryoSPARC's accounting against a real `du -sL --apparent-size`, and the cache."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from csfs.core import sizes
from csfs.core.project import Project

from data_helpers import attach


def du_apparent(path) -> int:
    """`du -sL --apparent-size -B1`: links followed, each inode once, st_size summed."""
    out = subprocess.run(["du", "-sL", "--apparent-size", "-B1", str(path)], capture_output=True, text=True)
    return int(out.stdout.split()[0])


@pytest.mark.skipif(shutil.which("du") is None, reason="needs coreutils du")
def test_job_sizes_match_du(demo, tmp_path):
    project = Project.open(demo)
    report = sizes.project_sizes(project, tmp_path / "cache")
    assert set(report.jobs) == set(project.jobs)
    for uid, job in project.jobs.items():
        assert report.jobs[uid].bytes == du_apparent(job.dir), uid
    # import job links to raw data outside the project: their targets are counted
    raw = sum(os.stat(p).st_size for p in (demo / "J1").rglob("*") if p.is_symlink())
    assert raw > 0 and report.jobs["J1"].bytes > raw
    assert report.total == sum(j.bytes for j in report.jobs.values()) + report.other
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
    dirs = os.stat(d).st_size + os.stat(d / "sub").st_size
    assert total == 1000 + 500 + dirs
    assert files == 2
    assert total == du_apparent(d)


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
    assert jobs["J8"]["bytes"] == du_apparent(demo / "J8")
    assert doc["bytes"] == sum(j["bytes"] for j in jobs.values()) + doc["other_bytes"]
    r = csfs("du", puid, "--jobs", home=home)
    assert r.returncode == 0 and "J8" in r.stdout and "CLEARABLE" in r.stdout
    r = csfs("du", str(demo), home=home)  # a directory path works too
    assert r.returncode == 0 and str(doc["bytes"]) in r.stdout
    r = csfs("du", "P99", home=home)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_python_walk_matches_du_path(demo, monkeypatch):
    """Without coreutils du the Python walk gives the same numbers."""
    project = Project.open(demo)
    with_du = sizes.project_sizes(project)
    monkeypatch.setattr(sizes, "_DU", None)
    assert sizes.du_bytes(demo) is None
    assert sizes.project_sizes(project).as_dict() == with_du.as_dict()
    mkdir = demo / "J5" / "odd name\twith tab"
    mkdir.mkdir()
    (mkdir / "f").write_bytes(b"1" * 77)
    monkeypatch.setattr(sizes, "_DU", shutil.which("du"))
    assert sizes.du_bytes(mkdir) == sizes.tree_size(mkdir)[0]


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
    from csfs.core.cleanup import clear_plan
    project = Project.open(demo)
    want = clear_plan(project, project.job("J6")).bytes
    assert want < first
    report = sizes.project_sizes(project, cache)
    assert report.jobs["J6"].clearable == want
    assert "J6" not in report.scanned  # its size still comes from the cache: no walk
    # a job whose job.json becomes unreadable may consume anything: nothing is clearable
    (demo / "J7" / "job.json").write_text("{")
    assert sizes.project_sizes(Project.open(demo), cache).jobs["J6"].clearable == 0
