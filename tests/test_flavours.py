"""The demo's three flavours (legacy <= v3.3, v4 with its real variants, v5) are the same project in
three versions' documents: csfs must read them alike, and keep each faithful through the lifecycle."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from csfs.core import consolidate, csfile, lifecycle
from csfs.core.demo_docs import LEGACY_NO_JOB_JSON
from csfs.core.errors import RefusedError
from csfs.core.instance import Instance
from csfs.core.project import Project

from conftest import FLAVOURS, copy_demo
from data_helpers import attach
from lifecycle_helpers import job_data


def _outline(project: Project) -> dict:
    """What must not depend on the version: groups, results, versions kept, final rows, inputs, times."""
    out = {}
    for uid, job in project.jobs.items():
        groups = {}
        for g in job.groups:
            for r in g.results:
                rows = csfile.load(project.path / r.final_metafile)["uid"] if r.final_metafile else []
                groups[(g.name, r.name)] = (len(r.versions), r.passthrough, np.sort(np.asarray(rows)).tobytes())
        out[uid] = {"groups": groups, "error": job.error,
                    # the slots asked for (v4/v5 also list passed-through results, with no slot name)
                    "inputs": sorted((i.job_uid, i.group_name, i.result_name, str(i.version))
                                     for i in job.inputs if i.slot_name),
                    "type": job.type, "status": job.status,
                    "created": job.created_timestamp, "completed": job.completed_timestamp}
    return out


def test_every_flavour_reads_as_the_same_project(demo_masters):
    """Same seed, three versions' documents: `type`/`job_type`/`spec.type`, $date ms/ISO/plain ISO,
    num_items lists/ints, groups present/derived, v4/v5 inputs all read to one model."""
    v4, v5, legacy = (_outline(Project.open(next(p for p in demo_masters(f).iterdir() if p.name != "raw")))
                      for f in ("v4", "v5", "legacy"))
    assert list(v4) == [f"J{i}" for i in range(1, 11)] and all(j["error"] is None for j in v4.values())
    assert v5 == v4
    for uid, job in legacy.items():
        if int(uid[1:]) in LEGACY_NO_JOB_JSON:
            # known from its .csg files alone: the final version of each result, the same rows
            assert {k: v[2] for k, v in job["groups"].items()} == {k: v[2] for k, v in v4[uid]["groups"].items()}, uid
        else:
            assert job == v4[uid], uid
    assert v4["J7"]["inputs"] == [("J6", "particles", "alignments2D", "2"), ("J6", "particles", "blob", "F"),
                                  ("J6", "particles", "ctf", "F")]
    assert v4["J4"]["created"] == v4["J3"]["created"] + 3600          # ms dates and ISO dates agree
    passed = [i for i in Project.open(demo_masters("v4") / "CS-csfs-demo").job("J8").inputs if not i.slot_name]
    assert [(i.job_uid, i.result_name, i.version) for i in passed] == [("J7", "alignments2D", "F")]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_lifecycle_keeps_each_version_faithful(flavour, demo_masters, tmp_path):
    """attach as P2 (every field naming the project renumbered, nothing else reshaped), archive, move,
    unarchive at the new place, detach: the job data never changes and the version stays readable."""
    project = copy_demo(demo_masters(flavour), tmp_path / "demo")
    inst = Instance(tmp_path / "home")
    (tmp_path / "other").mkdir()
    lifecycle.create(inst, "first", tmp_path / "other")
    data = job_data(project)
    shapes = {p.parent.name: set(json.loads(p.read_text())) for p in project.glob("J*/job.json")}
    rec = lifecycle.attach(inst, project)
    assert rec.uid == "P2"
    pdoc = json.loads((project / "project.json").read_text())
    assert pdoc["uid"] == "P2" and pdoc.get("uid_num", 2) == 2
    if flavour != "legacy":
        assert pdoc["uid_num"] == 2 and pdoc["project_dir"] == str(project)
        for ws in json.loads((project / "workspaces.json").read_text()):
            assert ws["project_uid"] == "P2" and ws["project_uid_num"] == 2, ws
    for p in project.glob("J*/job.json"):
        d = json.loads(p.read_text())
        assert d["project_uid"] == "P2" and d["project_uid_num"] == 2, p
        assert set(d) == shapes[p.parent.name], (p, set(d) ^ shapes[p.parent.name])
    assert {p.parent.name for p in project.glob("J*/job.json")} == set(shapes)   # no job.json invented
    opened = Project.open(project)
    assert opened.layout == ("legacy" if flavour == "legacy" else "v4")   # v5 has the v4 folder layout
    assert all(j.error is None and j.groups for j in opened.jobs.values() if j.uid != "J10")
    if flavour == "v5":
        assert all("spec" in json.loads(p.read_text()) and "output_results" not in json.loads(p.read_text())
                   for p in project.glob("J*/job.json"))
    lifecycle.mark_killed(inst, "P2", "J9")
    lifecycle.archive(inst, "P2")
    moved = tmp_path / "moved" / project.name
    moved.parent.mkdir()
    shutil.move(str(project), str(moved))
    lifecycle.unarchive(inst, "P2", moved)
    if flavour != "legacy":
        assert json.loads((moved / "project.json").read_text())["project_dir"] == str(moved)
    lifecycle.detach(inst, "P2")
    assert not (moved / "cs.lock").exists()
    # and on to another instance, where it is P1: renumbered again, the same documents' shapes
    assert lifecycle.attach(Instance(tmp_path / "home-B"), moved).uid == "P1"
    for p in moved.glob("J*/job.json"):
        d = json.loads(p.read_text())
        assert (d["project_uid"], d["project_uid_num"]) == ("P1", 1) and set(d) == shapes[p.parent.name], p
    assert json.loads((moved / "project.json").read_text())["uid"] == "P1"
    assert job_data(moved) == data
    assert Project.open(moved).job("J6").group("particles").result("alignments2D").versions == [0, 1, 2, 3, 4]


def test_job_type_key_alone_names_the_export(demo, home):
    """v4 jobs with `job_type` only (J4-J6) or both keys (J1-J3): the type names the export folder."""
    inst, puid, project = attach(demo, home)
    assert "type" not in json.loads((demo / "J5" / "job.json").read_text())
    assert consolidate.export_job(inst, puid, "J5").name == "J5_extract_micrographs_multi"
    assert consolidate.export_job(inst, puid, "J1").name == "J1_import_movies"
    exported = json.loads((demo / "exports" / "jobs" / "J5_extract_micrographs_multi" / "job.json").read_text())
    assert exported["job_type"] == "extract_micrographs_multi"
    assert not {"output_results", "parents", "children", "queued_to_lane"} & set(exported)


def test_final_named_metafiles_are_the_final_version(demo, home):
    """J7's last version is `…_final_…` (versions 0, 100): it is the final, kept by clearing, exported."""
    inst, puid, project = attach(demo, home)
    r = project.job("J7").group("particles_class_0").result("alignments3D")
    assert r.versions == [0, 100] and r.final_metafile == "J7/J7_class_00_final_particles.cs"
    from csfs.core import cleanup

    (plan,) = cleanup.clear_intermediate(inst, puid, "J7")
    assert (demo / "J7" / "J7_class_00_final_particles.cs").exists()
    assert not (demo / "J7" / "J7_class_00_00000_particles.cs").exists()
    dest = consolidate.export_group(inst, puid, "J7", "particles_class_0")
    rows = csfile.load(dest / "J7_particles_class_0_exported.cs")
    final = csfile.load(demo / "J7" / "J7_class_00_final_particles.cs")
    assert np.array_equal(np.sort(rows["uid"]), np.sort(final["uid"]))
    assert np.array_equal(rows[np.argsort(rows["uid"])]["alignments3D/pose"],
                          final[np.argsort(final["uid"])]["alignments3D/pose"])


@pytest.fixture
def legacy(demo_masters, tmp_path) -> Path:
    return copy_demo(demo_masters("legacy"), tmp_path / "legacy")


def test_legacy_jobs_without_job_json_are_no_problem(legacy):
    assert Project.open(legacy).all_problems() == []


def test_legacy_job_without_job_json_exports(legacy, home):
    """Its groups export (it completed: CryoSPARC wrote its .csg files); it has no job.json, so
    no job export: that is refused with what to do instead."""
    inst, puid, project = attach(legacy, home)
    dest = consolidate.export_group(inst, puid, "J5", "particles")
    rows = csfile.load(dest / "J5_particles_exported.cs")
    final = csfile.load(legacy / "J5" / "cryosparc_P12_J5_particles.cs")
    assert np.array_equal(np.sort(rows["uid"]), np.sort(final["uid"]))
    with pytest.raises(RefusedError, match="export its output groups"):
        consolidate.export_job(inst, puid, "J5")
