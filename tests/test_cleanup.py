"""clear-intermediate: keeps final and consumed versions, deletes nothing outside the job dir."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from csfs.core import cleanup, csfile, documents, sizes, verify
from csfs.core.errors import ActiveJobError, RefusedError
from csfs.core.project import Project

from data_helpers import attach, snapshot


def _files_of(project: Project, juid: str, group: str, result: str, version: int) -> set[str]:
    from csfs.core.project import referenced_files
    r = project.job(juid).group(group).result(result)
    mf = r.metafile(version)
    return {mf} | {f for f in referenced_files(project, mf) if f.startswith(juid + "/")}


def _outside(demo, juid: str) -> dict[str, str]:
    """Every file outside the job dir except the project metadata a commit rewrites."""
    return {k: v for k, v in snapshot(demo, skip=juid).items() if k not in ("project.json", "workspaces.json")}


def test_dry_run_lists_and_deletes_nothing(demo, home):
    inst, puid, project = attach(demo, home)
    before = snapshot(demo)
    plans = cleanup.clear_intermediate(inst, puid, "J6", dry_run=True)
    (plan,) = plans
    assert plan.files and plan.bytes == sum(os.path.getsize(demo / f.path) for f in plan.files)
    assert snapshot(demo) == before


def test_keeps_final_and_consumed_versions(flavour_demo, home):
    demo = flavour_demo
    inst, puid, project = attach(demo, home)
    # J7 consumes J6 particles.alignments2D version 2, J10 consumes class_averages version 3
    keep = (_files_of(project, "J6", "particles", "alignments2D", 2)
            | _files_of(project, "J6", "particles", "alignments2D", 4)
            | _files_of(project, "J6", "class_averages", "blob", 3)
            | _files_of(project, "J6", "class_averages", "blob", 4))
    gone = _files_of(project, "J6", "particles", "alignments2D", 0) | \
        _files_of(project, "J6", "class_averages", "blob", 1)
    outside = _outside(demo, "J6")
    (plan,) = cleanup.clear_intermediate(inst, puid, "J6")
    assert plan.versions == {"particles.alignments2D": [0, 1, 3], "class_averages.blob": [0, 1, 2]}
    for f in keep:
        assert (demo / f).exists(), f
    for f in gone:
        assert not (demo / f).exists(), f
    assert all(f.path.startswith("J6/") for f in plan.files)
    assert _outside(demo, "J6") == outside
    job = Project.open(demo).job("J6")
    rec = job.doc[cleanup.RECORD_KEY][-1]
    assert rec["bytes"] == plan.bytes and sorted(rec["files"]) == sorted(f.path for f in plan.files)
    assert job.group("particles").result("alignments2D").versions == [2, 4]
    # the project is still consistent and nothing more is clearable
    assert verify.verify(Project.open(demo)) == []
    (again,) = cleanup.clear_intermediate(inst, puid, "J6", dry_run=True)
    assert again.files == []
    assert sizes.project_sizes(Project.open(demo), inst.cache_dir).jobs["J6"].clearable == 0


def test_never_deletes_outside_the_job_dir(demo, home):
    inst, puid, project = attach(demo, home)
    # an intermediate version whose metafile names a file of another job
    r = project.job("J8").group("volume").result("map")
    mf = demo / r.metafile(r.versions[0])
    arr = np.array(csfile.load(mf))
    foreign = sorted((demo / "J7").glob("*.mrc"))[0]
    arr["map/path"] = str(foreign.relative_to(demo)).encode()
    csfile.save(mf, arr.astype(arr.dtype))
    outside = _outside(demo, "J8")
    cleanup.clear_intermediate(inst, puid, "J8")
    assert foreign.exists()
    assert _outside(demo, "J8") == outside


def test_refusals(demo, home):
    inst, puid, project = attach(demo, home)
    before = snapshot(demo)
    with pytest.raises(ActiveJobError, match="J9"):
        cleanup.clear_intermediate(inst, puid, "J9")
    doc = json.loads((demo / "J3" / "job.json").read_text())
    (demo / "J3" / "job.json").write_text(json.dumps({**doc, "status": "building"}))
    with pytest.raises(RefusedError, match="building"):
        cleanup.clear_intermediate(inst, puid, "J3")
    # all jobs: the active one is skipped, the others are cleared
    plans = {p.job: p for p in cleanup.clear_intermediate(inst, puid)}
    assert plans["J9"].skipped and plans["J8"].files and plans["J3"].skipped
    assert all((demo / f).exists() or not f.startswith("J9/") for f in before)


def test_cli(demo, home, csfs):
    _, puid, _ = attach(demo, home)
    r = csfs("clear-intermediate", puid, "J8", "--dry-run", home=home)
    assert r.returncode == 0 and "would delete" in r.stdout and "J8/J8_000_volume_map.mrc" in r.stdout
    assert (demo / "J8" / "J8_000_volume_map.mrc").exists()
    r = csfs("clear-intermediate", puid, "J8", "--json", home=home)
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["bytes"] > 0 and not (demo / "J8" / "J8_000_volume_map.mrc").exists()
    r = csfs("clear-intermediate", puid, "J9", home=home)
    assert r.returncode == 1 and "running" in r.stderr and "Traceback" not in r.stderr


def test_killed_mid_clear_then_rerun_finishes(demo, home, csfs):
    """SIGKILL after a few deletions: re-running the clear removes the rest and records it."""
    inst, puid, project = attach(demo, home)
    (plan,) = cleanup.clear_intermediate(inst, puid, "J8", dry_run=True)
    r = csfs("clear-intermediate", puid, "J8", home=home, env={"CSFS_FAULT": "clear-unlink:5"})
    assert r.returncode == -9
    left = [f.path for f in plan.files if (demo / f.path).exists()]
    assert 0 < len(left) < len(plan.files)
    json.loads((demo / "J8" / "job.json").read_text())  # still valid, versions still listed
    assert csfs("clear-intermediate", puid, "J8", home=home).returncode == 0
    assert not [f.path for f in plan.files if (demo / f.path).exists()]
    assert verify.verify(Project.open(demo)) == []


def test_drop_versions_v4_and_v5_forms():
    r4 = {"group_name": "volume", "name": "map", "versions": [0, 1, 2], "metafiles": ["a", "b", "c"],
          "num_items": [1, 1, 1]}
    doc4 = documents.drop_versions({"output_results": [r4]}, {"volume.map": [0, 1]})
    assert r4["versions"] == [0, 1, 2]  # the input is left as it was
    assert doc4["output_results"][0] == {"group_name": "volume", "name": "map", "versions": [2], "metafiles": ["c"],
                                         "num_items": [1]}
    r5 = {"name": "map", "versions": [0, 1, 2], "metafiles": ["a", "b", "c"], "num_items": [1, 1, 1]}
    doc5 = documents.drop_versions({"spec": {"outputs": {"volume": {"type": "volume", "results": [r5]}}}},
                                   {"volume.map": [1]})
    r5 = doc5["spec"]["outputs"]["volume"]["results"][0]
    assert r5["versions"] == [0, 2] and r5["metafiles"] == ["a", "c"]


def test_unreadable_job_json_elsewhere_blocks_clearing(demo, home):
    """J7 consumes J6's alignments2D v2: with J7's job.json unreadable, what it uses is unknown,
    so nothing may be cleared in J6 (whose children J7 is) until it is fixed. Jobs whose
    children lists leave J7 out are unrelated to it and are cleared as usual."""
    inst, puid, project = attach(demo, home)
    (demo / "J7" / "job.json").write_text('{"uid": "J7", "trunc')
    before = snapshot(demo)
    with pytest.raises(RefusedError, match="J7"):
        cleanup.clear_intermediate(inst, puid, "J6")
    plans = {p.job: p for p in cleanup.clear_intermediate(inst, puid)}
    assert plans["J6"].skipped and "J7" in plans["J6"].skipped and not plans["J6"].files
    assert not plans["J8"].skipped and plans["J8"].files
    after = snapshot(demo)
    assert {k: v for k, v in after.items() if not k.startswith(("J8/", "project.json"))} == \
        {k: v for k, v in before.items() if not k.startswith(("J8/", "project.json"))}
    # without a children list to go by, an unreadable job may consume anything: nothing is cleared
    edit = json.loads((demo / "J8" / "job.json").read_text())
    del edit["children"]
    (demo / "J8" / "job.json").write_text(json.dumps(edit))
    with pytest.raises(RefusedError, match="J7"):
        cleanup.clear_intermediate(inst, puid, "J8")
    assert sizes.project_sizes(Project.open(demo), inst.cache_dir).jobs["J6"].clearable == 0


def test_unreadable_kept_metafile_refuses_the_job(demo, home):
    """The files a kept version needs are known only from its metafile: when it cannot be read,
    clearing could delete them (here v0 shares the final map), so the job is refused."""
    inst, puid, project = attach(demo, home)
    r = project.job("J8").group("volume").result("map")
    first, final = demo / r.metafile(r.versions[0]), demo / r.final_metafile
    arr = np.array(csfile.load(first))
    shared = csfile.load(final)["map/path"][0]
    arr["map/path"] = shared
    csfile.save(first, arr.astype(arr.dtype))
    final.write_bytes(b"garbage")
    before = snapshot(demo)
    with pytest.raises(RefusedError, match="J8_003_volume.cs"):
        cleanup.clear_intermediate(inst, puid, "J8")
    plans = {p.job: p for p in cleanup.clear_intermediate(inst, puid)}
    assert plans["J8"].skipped and not plans["J8"].files
    assert (demo / shared.decode()).exists()
    assert {k: v for k, v in snapshot(demo).items() if k.startswith("J8/")} == \
        {k: v for k, v in before.items() if k.startswith("J8/")}
