"""Real document variants of every CryoSPARC version (core.documents): reading, attach
renumbering, legacy projects after attach, v5 exports and imports, round trips across versions."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from csfs.core import cleanup, documents, exportplan, ids, lifecycle, sizes, verify
from csfs.core.instance import Instance
from csfs.core.project import Project

from conftest import REPO, copy_demo
from data_helpers import attach
from doc_variants import edit_json, make_numbered

RFC1123 = "Mon, 04 Nov 2024 20:29:09 GMT"
RFC1123_TS = dt.datetime(2024, 11, 4, 20, 29, 9, tzinfo=dt.UTC).timestamp()


# -- one time parser ---------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    (RFC1123, RFC1123_TS),
    ({"$date": int(RFC1123_TS * 1000)}, RFC1123_TS),
    ({"$date": {"$numberLong": str(int(RFC1123_TS * 1000))}}, RFC1123_TS),
    ({"$date": "2024-11-04T20:29:09.000Z"}, RFC1123_TS),
    ("2024-11-04T20:29:09Z", RFC1123_TS),
    ("2024-11-04T20:29:09", RFC1123_TS),            # naive: UTC
    ("2024-11-04T21:29:09+01:00", RFC1123_TS),
    (int(RFC1123_TS * 1000), RFC1123_TS),
    (None, None), ("", None), ("garbage", None), (True, None), ({"$date": None}, None),
])
def test_one_time_parser(value, expected):
    assert documents.parse_time(value) == expected
    if expected is not None:
        assert documents.parse_time(documents.iso_time(value)) == expected


def test_rfc1123_dates_keep_exports_deterministic(demo):
    """created_at as the API returns it: the export's times come from it, not from job.json's
    mtime (which attach and every commit change)."""
    edit_json(demo / "J8" / "job.json", lambda d: {**d, "completed_at": RFC1123})
    plan = exportplan.job_export_plan(Project.open(demo), "J8")
    assert plan.lookup("").mtime == RFC1123_TS
    os.utime(demo / "J8" / "job.json", (1, 1))
    assert exportplan.job_export_plan(Project.open(demo), "J8").lookup("").mtime == RFC1123_TS


# -- tolerant reading of v4.x variants ------------------------------------------------------------

def _spec_typed(d: dict) -> dict:
    """cryosparc-tools' v4 spec: num_items one int, and no output_result_groups at all."""
    d = dict(d)
    for r in d["output_results"]:
        r["num_items"] = r["num_items"][-1] if r["num_items"] else 0
    del d["output_result_groups"]
    return d


def test_int_num_items_and_no_groups(demo, home):
    n = Project.open(demo).job("J6").group("particles").num_items
    edit_json(demo / "J6" / "job.json", _spec_typed)
    project = Project.open(demo)
    j6 = project.job("J6")
    assert j6.error is None and j6.problems == []
    g = j6.group("particles")
    assert g.num_items == n and g.type == "particle"
    r = g.result("alignments2D")
    assert r.num_items == [n] * len(r.versions) and r.final_version == max(r.versions)
    exportplan.job_export_plan(project, "J6")
    exportplan.group_export_plan(project, "J6", "particles")
    inst, puid, project = attach(demo, home)
    plans = {p.job: p for p in cleanup.clear_intermediate(inst, puid)}
    assert not plans["J6"].skipped and plans["J6"].files
    assert verify.verify(Project.open(demo)) == []
    # the cleared versions are gone from the document, num_items stays one int
    doc = json.loads((demo / "J6" / "job.json").read_text())
    r = [x for x in doc["output_results"] if x["name"] == "alignments2D"][0]
    assert isinstance(r["num_items"], int) and len(r["versions"]) == len(r["metafiles"]) < 5


def test_group_passthrough_names_an_input(demo):
    def named(d: dict) -> dict:
        for g in d["output_result_groups"]:
            g["passthrough"] = "micrographs" if g["name"] == "micrographs" else False
        return d
    edit_json(demo / "J5" / "job.json", named)
    j5 = Project.open(demo).job("J5")
    assert j5.error is None
    assert j5.group("micrographs").passthrough == "micrographs" and j5.group("particles").passthrough == ""


def test_final_metafile_names(tmp_path):
    assert documents.metafile_version("cryosparc_P12_J24_final_particles.cs", 7) == 7
    assert documents.metafile_version("J24_final_particles.cs") is None
    assert documents.metafile_version("cryosparc_P12_J24_003_particles.cs") == 3


def test_micrograph_path_is_a_data_path(demo):
    """location/micrograph_path names the micrograph: it is exported with the particles and a
    missing micrograph is reported by verify."""
    project = Project.open(demo)
    plan = exportplan.group_export_plan(project, "J5", "particles")
    mics = [e.path for e in plan.entries if e.path.startswith("J2/") and e.kind == "file"]
    assert mics, "the micrographs named by location/micrograph_path are part of the export"
    os.unlink(demo / mics[0])
    assert any(p.kind == "missing-data" and p.path == mics[0] for p in verify.verify(Project.open(demo)))


# -- strict where safety needs it, and one bad job reported alone ------------------------------------

def test_unknown_version_is_refused_for_that_job_alone(demo, home):
    edit_json(demo / "J7" / "job.json", lambda d: {**d, "last_dumped_version": "v6.0.0"})
    project = Project.open(demo)
    assert "v6" in project.job("J7").error
    assert all(j.error is None for j in project.jobs.values() if j.uid != "J7")
    with pytest.raises(Exception, match="v6"):
        exportplan.job_export_plan(project, "J7")
    exportplan.job_export_plan(project, "J8")  # the others still export


@pytest.mark.parametrize("metafile", ["/etc/passwd", "../other/J1_particles.cs", "J8/../../x.cs"])
def test_metafile_leaving_the_project_is_refused(demo, metafile):
    def bad(d: dict) -> dict:
        d["output_results"][0]["metafiles"][-1] = metafile
        return d
    edit_json(demo / "J8" / "job.json", bad)
    project = Project.open(demo)
    assert "leaves the project" in project.job("J8").error
    with pytest.raises(Exception, match="leaves the project"):
        exportplan.group_export_plan(project, "J8", "particles")
    assert all(j.error is None for j in project.jobs.values() if j.uid != "J8")


def test_malformed_job_does_not_block_unrelated_jobs(demo, home):
    """A whole, parsable job.json that is malformed is reported alone; clearing jobs it never
    names goes on (J10 consumes only J3/J4... here J8, a leaf, is made malformed)."""
    edit_json(demo / "J8" / "job.json", lambda d: {**d, "output_results": "oops"})
    inst, puid, project = attach(demo, home)
    assert project.job("J8").error and "output_results" in project.job("J8").error
    plans = {p.job: p for p in cleanup.clear_intermediate(inst, puid)}
    assert not plans["J6"].skipped and plans["J6"].files  # J8 never names J6
    assert plans["J7"].skipped and "J8" in plans["J7"].skipped  # J8 consumes J7: unknown versions
    assert "J8" in plans and plans["J8"].skipped
    probs = verify.verify(Project.open(demo))
    assert probs and {p.job for p in probs} == {"J8"}


# -- attach renumbers every field that names the project --------------------------------------------

def _project_fields(project: Path) -> set:
    pj = json.loads((project / "project.json").read_text())
    out = {("project", pj.get("uid"), pj.get("uid_num"), pj.get("project_dir"))}
    for w in json.loads((project / "workspaces.json").read_text()):
        out.add(("workspace", w.get("project_uid"), w.get("project_uid_num")))
    for jj in project.glob("J*/job.json"):
        d = json.loads(jj.read_text())
        out.add(("job", d.get("project_uid"), d.get("project_uid_num")))
    return out


def test_attach_renumbers_every_field(demo, home):
    make_numbered(demo, 12)
    inst, puid, project = attach(demo, home)
    n = int(puid[1:])
    assert n != 12
    assert _project_fields(demo) == {("project", puid, n, str(demo)), ("workspace", puid, n), ("job", puid, n)}
    assert verify.verify(project) == []


@pytest.mark.parametrize("fault", ["commit-job:4", "commit-workspaces"])
def test_attach_renumbering_killed_then_rerun(demo, tmp_path, fault):
    make_numbered(demo, 12)
    home = tmp_path / "home"
    Instance(home).allocate_uid()
    env = {**os.environ, "CSFS_FAULT": fault}
    r = subprocess.run([sys.executable, "-m", "csfs", "--home", str(home), "project", "attach", str(demo)],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert ("project", "P12", 12, "/old/place/CS-csfs-demo") in _project_fields(demo)  # half done
    rec = lifecycle.attach(Instance(home), demo)
    n = int(rec.uid[1:])
    assert _project_fields(demo) == {("project", rec.uid, n, str(demo)), ("workspace", rec.uid, n),
                                     ("job", rec.uid, n)}


def test_unarchive_at_a_new_place_updates_project_dir(demo, home, tmp_path):
    make_numbered(demo, 12)
    inst, puid, _ = attach(demo, home)
    lifecycle.mark_killed(inst, puid, "J9")
    lifecycle.archive(inst, puid)
    moved = demo.rename(tmp_path / "moved")
    lifecycle.unarchive(inst, puid, moved)
    assert json.loads((moved / "project.json").read_text())["project_dir"] == str(moved)


# -- legacy projects stay legacy after attach ------------------------------------------------------

def test_legacy_project_stays_readable_after_attach(demo_masters, tmp_path, home, csfs):
    legacy = copy_demo(demo_masters("legacy"), tmp_path / "legacy")
    before = Project.open(legacy)
    assert before.layout == "legacy" and before.job("J5").error is None
    inst, puid, project = attach(legacy, home)
    assert (legacy / "project.json").exists()
    assert project.layout == "legacy" and project.uid == puid
    j5 = project.job("J5")
    assert j5.error is None and j5.form == "csg" and j5.group("particles").results
    assert verify.verify(project) == []
    assert csfs("verify", puid, home=home).returncode == 0
    # the jobs downstream of J5 (whose inputs are therefore known) are cleared
    plans = {p.job: p for p in cleanup.clear_intermediate(inst, puid)}
    assert not plans["J6"].skipped and plans["J6"].files
    assert not plans["J8"].skipped and plans["J8"].files
    assert verify.verify(Project.open(legacy)) == []


def test_legacy_csg_job_is_completed_and_its_groups_export(demo_masters, tmp_path, home, csfs):
    """A legacy job known from its .csg files finished (CryoSPARC writes .csg files for final
    outputs): its groups export, it has no job export (no job.json), and no false problem."""
    legacy = copy_demo(demo_masters("legacy"), tmp_path / "legacy")
    r = csfs("jobs", legacy)
    assert r.returncode == 0 and "problems" not in r.stdout, r.stdout
    inst, puid, project = attach(legacy, home)
    j5 = project.job("J5")
    assert j5.status == "completed" and j5.problems == [] and j5.notes
    assert csfs("group", "export", puid, "J5", "particles", home=home).returncode == 0
    r = csfs("job", "export", puid, "J5", home=home)
    assert r.returncode != 0 and "group" in r.stderr and "Traceback" not in r.stderr


def test_legacy_csg_job_keeps_what_its_metafiles_name(demo_masters, tmp_path, home):
    """A job known from .csg files only may use any version: the files its metafiles name are
    never cleared from the jobs it comes from."""
    legacy = copy_demo(demo_masters("legacy"), tmp_path / "legacy")
    inst, puid, project = attach(legacy, home)
    plan = cleanup.clear_plan(project, project.job("J4"))
    named = set()
    for mf in project.job("J5").metafiles:
        from csfs.core.project import referenced_files
        named |= set(referenced_files(project, mf))
    assert not named & {f.path for f in plan.files}


# -- v5 documents -----------------------------------------------------------------------------------

def test_v5_project_reads_like_v4(demo_masters, tmp_path):
    v4 = Project.open(copy_demo(demo_masters("v4"), tmp_path / "v4"))
    v5 = Project.open(copy_demo(demo_masters("v5"), tmp_path / "v5"))
    assert v5.form == "v5" and v4.form == "v4"
    for uid, j in v4.jobs.items():
        k = v5.job(uid)
        assert k.form == "v5" and k.error is None and j.error is None
        assert (k.type, k.status) == (j.type, j.status)
        assert documents.parse_time(k.completed_at) == documents.parse_time(j.completed_at)
        assert [(g.name, [(r.name, r.versions) for r in g.results]) for g in k.groups] == \
            [(g.name, [(r.name, r.versions) for r in g.results]) for g in j.groups]
        assert [(i.job_uid, i.group_name, i.result_name, i.version) for i in k.inputs] == \
            [(i.job_uid, i.group_name, i.result_name, i.version) for i in j.inputs]


def test_v5_export_strips_instance_fields(demo_masters, tmp_path):
    demo = copy_demo(demo_masters("v5"), tmp_path / "v5")
    plan = exportplan.job_export_plan(Project.open(demo), "J8")
    doc = json.loads(plan.lookup("job.json").generate())
    for key in ("dumped_at", "last_dumped_version", "autodump", "_id", "job_dir_size", "parents", "children"):
        assert key not in doc, key
    assert doc["spec"]["type"] == "homo_refine_new"
    assert all("results" not in o for o in doc["spec"]["outputs"].values())


@pytest.mark.parametrize("src_form,dst_form", [("v5", "v5"), ("v5", "v4"), ("v4", "v5"), ("legacy", "v4"),
                                               ("v4", "legacy")])
def test_job_export_imports_across_versions(demo_masters, tmp_path, csfs, src_form, dst_form):
    """A job exported from a project of one version imports into another instance's project of
    another: the new job is a document of the target's version, its outputs name its own
    metafiles, the particle uids are kept and verify is clean."""
    src = copy_demo(demo_masters(src_form), tmp_path / "src")
    dst = copy_demo(demo_masters(dst_form), tmp_path / "dst")
    home_a, home_b = tmp_path / "A", tmp_path / "B"
    inst_a, puid_a, _ = attach(src, home_a)
    inst_b, puid_b, _ = attach(dst, home_b)
    r = csfs("job", "export", puid_a, "J8", home=home_a)
    assert r.returncode == 0, r.stderr
    (exported,) = (src / "exports" / "jobs").iterdir()
    r = csfs("job", "import", puid_b, str(exported), "--json", home=home_b)
    assert r.returncode == 0, r.stderr
    project = Project.open(dst)
    new = max(project.jobs.values(), key=lambda j: ids.job_num(j.uid) or 0)
    assert new.error is None and new.type == "homo_refine_new" and new.status == "completed"
    assert new.form == ("v5" if dst_form == "v5" else "v4")
    assert new.doc["uid_num"] == ids.job_num(new.uid) and new.doc["project_uid"] == puid_b
    assert new.doc["project_uid_num"] == int(puid_b[1:])
    if dst_form == "v5":
        spec = new.doc["spec"]
        assert spec["type"] == "homo_refine_new" and set(spec) >= {"params", "inputs", "outputs"}
        assert "output_results" not in new.doc and "type" not in new.doc
    else:
        assert new.doc["job_type"] == new.doc["type"] == "homo_refine_new"
        assert all(g["contains"] for g in new.doc["output_result_groups"])
    for mf in new.metafiles:
        assert mf.startswith(f"{new.uid}/"), mf
    from csfs.core import csfile
    src_uids = csfile.load(src / Project.open(src).job("J8").group("particles").results[0].final_metafile)["uid"]
    new_uids = csfile.load(dst / new.group("particles").results[0].final_metafile)["uid"]
    assert sorted(src_uids.tolist()) == sorted(new_uids.tolist())
    assert csfs("verify", puid_b, home=home_b).returncode == 0
    assert verify.verify(project) == []


# -- imports carry what a real document of the project's version carries ------------------------------

@pytest.mark.parametrize("form", ["v4", "v5"])
def test_imported_raw_job_document_shape(demo_masters, home, form, tmp_path):
    demo = copy_demo(demo_masters(form), tmp_path / form)
    inst, puid, _ = attach(demo, home)
    raw = tmp_path / "raw.mrc"
    from csfs.core import mrc
    mrc.write(raw, shape=(4, 4, 4), volume=True)
    from csfs.core import imports
    juid = imports.import_raw(inst, puid, "volume", [raw])
    doc = json.loads((demo / juid / "job.json").read_text())
    assert doc["uid_num"] == int(juid[1:]) and doc["project_uid_num"] == int(puid[1:])
    if form == "v5":
        assert doc["spec"]["type"] == "import_volumes" and doc["spec"]["params"]["blob_paths"] == [str(raw)]
        out = doc["spec"]["outputs"]["imported_volume_1"]
        assert out["results"][0]["metafiles"] == [f"{juid}/{juid}_imported_volume_1.cs"]
        assert documents.job_form(doc) == "v5" and "type" not in doc
        # the fields cryosparc-tools' v5 Job model requires
        assert set(doc) >= {"uid", "uid_num", "project_uid", "project_uid_num", "spec", "job_dir", "status",
                            "status_num", "build_errors"}
    else:
        assert doc["type"] == doc["job_type"] == "import_volumes"
        (g,) = doc["output_result_groups"]
        assert g["contains"] == [{"uid": f"{juid}-R1", "type": "volume.map", "group_name": "imported_volume_1",
                                  "name": "map", "passthrough": False}]
    assert verify.verify(Project.open(demo)) == []
    assert sizes.project_sizes(Project.open(demo)).jobs[juid].bytes >= 1024


def test_unstripped_v5_export_imports_with_its_own_outputs(demo_masters, tmp_path, csfs):
    """A v5 job export whose job.json still holds the source's spec.outputs (exported by
    CryoSPARC itself, or by hand): the new job's spec is rewritten, naming its own metafiles."""
    src = copy_demo(demo_masters("v5"), tmp_path / "src")
    dst = copy_demo(demo_masters("v5"), tmp_path / "dst")
    inst_a, puid_a, _ = attach(src, tmp_path / "A")
    inst_b, puid_b, _ = attach(dst, tmp_path / "B")
    assert csfs("job", "export", puid_a, "J8", home=tmp_path / "A").returncode == 0
    (exported,) = (src / "exports" / "jobs").iterdir()
    (exported / "job.json").unlink()  # a link or generated file: replace it by the full document
    (exported / "job.json").write_text((src / "J8" / "job.json").read_text())
    r = csfs("job", "import", puid_b, exported, home=tmp_path / "B")
    assert r.returncode == 0, r.stderr
    project = Project.open(dst)
    new = max(project.jobs.values(), key=lambda j: ids.job_num(j.uid) or 0)
    assert new.type == "homo_refine_new" and new.metafiles
    assert all(mf.startswith(f"{new.uid}/") for mf in new.metafiles), new.metafiles
    assert new.doc["spec"]["inputs"] == {} and "dumped_at" not in new.doc
    assert verify.verify(project) == []
