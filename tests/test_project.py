"""The read-only project model: demo (v4), legacy P12/ layout, v5 job.json, broken jobs."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from csfs.core import csfile
from csfs.core.documents import iso_time
from csfs.core.documents import parse_time as timestamp
from csfs.core.errors import FormatError, NotFoundError
from csfs.core.project import ACTIVE_STATUSES, FINAL_STATUSES, Project, referenced_files


def test_demo_jobs_types_statuses(demo):
    p = Project.open(demo)
    assert p.layout == "v4" and p.uid == "P1" and p.title == "csfs demo"
    assert p.doc["synthetic"] is True and p.problems == []
    assert [w["uid"] for w in p.workspaces] == ["W1", "S1"]          # S1: a Live session
    assert list(p.jobs) == [f"J{i}" for i in range(1, 11)]
    types = {u: j.type for u, j in p.jobs.items()}
    assert types["J1"] == "import_movies" and types["J5"] == "extract_micrographs_multi"
    assert types["J6"] == "class_2D_new" and types["J8"] == "homo_refine_new"
    statuses = {u: j.status for u, j in p.jobs.items()}
    assert statuses["J9"] == "running" and statuses["J10"] == "failed"
    assert p.job("J9").is_active and not p.job("J9").is_final
    assert p.job("J10").is_final and not p.job("J10").is_active
    assert all(j.error is None and j.problems == [] for j in p.jobs.values())
    assert p.job("J8").completed_at and p.job("J9").completed_at is None
    assert p.job("J8").completed_timestamp > p.job("J8").created_timestamp
    assert "running" in ACTIVE_STATUSES and "failed" in FINAL_STATUSES
    assert p.lock_path == demo / "cs.lock" and not p.lock_path.exists()


def test_demo_versions_and_final_metafiles(demo):
    p = Project.open(demo)
    j6 = p.job("j6")
    a2d = j6.group("particles").result("alignments2D")
    assert a2d.versions == list(range(len(a2d.versions))) and len(a2d.versions) >= 3
    assert a2d.metafiles == [f"J6/J6_{v:03d}_particles.cs" for v in a2d.versions]
    assert a2d.final_metafile == a2d.metafiles[-1] and a2d.final_version == a2d.versions[-1]
    blob = j6.group("particles").result("blob")
    assert blob.passthrough and blob.final_metafile == "J6/J6_passthrough_particles.cs"
    assert a2d.metafile("F") == a2d.final_metafile and a2d.metafile(1) == "J6/J6_001_particles.cs"
    with pytest.raises(NotFoundError):
        a2d.metafile(99)
    with pytest.raises(NotFoundError):
        j6.group("nope")
    vol = p.job("J8").group("volume")
    assert {r.name for r in vol.results} >= {"map", "map_sharp", "map_half_A", "map_half_B",
                                              "mask_fsc", "mask_refine", "precision"}
    assert len({r.final_metafile for r in vol.results}) == 1   # several slots, one .cs
    failed = p.job("J10").group("particles").result("location")
    assert failed.versions == [] and failed.final_metafile is None and failed.final_version is None


def test_demo_inputs_name_consumed_versions(demo):
    p = Project.open(demo)
    a2d = p.job("J6").group("particles").result("alignments2D")
    refs = [r for r in p.job("J7").inputs if r.job_uid == "J6" and r.result_name == "alignments2D"]
    assert len(refs) == 1 and refs[0].version in a2d.versions and refs[0].version != a2d.final_version
    consumers = p.consumers("J6")
    assert {u for u, _ in consumers} == {"J7", "J10"}
    tmpl = [r for u, r in consumers if u == "J10"][0]
    assert tmpl.group_name == "class_averages" and isinstance(tmpl.version, int)
    assert p.job("J8").inputs[0].version == "F"


def test_demo_referenced_files_exist(demo):
    p = Project.open(demo)
    n = 0
    for job in p.jobs.values():
        for mf in job.metafiles:
            for rel in referenced_files(p, mf):
                assert (demo / rel).exists(), (mf, rel)
                n += 1
    assert n > 50
    j8 = referenced_files(p, "J8/J8_000_volume.cs")
    assert j8[0] == "J8/J8_000_volume_map.mrc" and len(j8) == 8
    assert referenced_files(p, "J8/J8_000_volume.cs", slots=["map_half_A"]) == ["J8/J8_000_volume_map_half_A.mrc"]
    # J6's passthrough names J5's stacks, once each, in row order, and (location/micrograph_path)
    # the micrographs they were extracted from
    stacks = referenced_files(p, "J6/J6_passthrough_particles.cs", slots=["blob"])
    assert stacks and all(s.startswith("J5/extract/") for s in stacks) and len(stacks) == len(set(stacks))
    mics = referenced_files(p, "J6/J6_passthrough_particles.cs", slots=["location"])
    assert mics and all(s.startswith("J2/motioncorrected/") for s in mics)
    with pytest.raises(NotFoundError):
        referenced_files(p, "J8/nope.cs")
    with pytest.raises(FormatError):
        referenced_files(p, "../outside.cs")


def test_uids_flow_from_picks_to_refinement(demo):
    p = Project.open(demo)

    def uids(juid, group, result):
        return set(csfile.load(demo / p.job(juid).group(group).result(result).final_metafile,
                               fields=["uid"])["uid"].tolist())
    picks, extracted = uids("J4", "particles", "location"), uids("J5", "particles", "blob")
    assert extracted <= picks and len(extracted) > 0
    assert uids("J6", "particles", "alignments2D") == extracted
    assert uids("J7", "particles_class_0", "alignments3D") == extracted
    assert uids("J8", "particles", "alignments3D") == extracted == uids("J8", "particles", "blob")
    mics = uids("J1", "imported_movies", "movie_blob")
    loc = csfile.load(demo / "J4/J4_particles.cs", fields=["location/micrograph_uid"])
    assert set(loc["location/micrograph_uid"].tolist()) <= mics


def test_referenced_files_resolves_gt_prefix(demo, tmp_path):
    p = Project.open(demo)
    arr = np.zeros(3, dtype=[("uid", "<u8"), ("blob/path", "S40"), ("map/path", "S40")])
    arr["blob/path"] = [b">extract/a.mrc", b">extract/a.mrc", b">../J5/b.mrc"]
    arr["map/path"] = [b"J8/m.mrc", b"", b"J8/m.mrc"]
    csfile.save(demo / "J8" / "exported.cs", arr)
    assert referenced_files(p, "J8/exported.cs") == ["J8/extract/a.mrc", "J5/b.mrc", "J8/m.mrc"]


def test_malformed_job_json_is_isolated(demo):
    (demo / "J5" / "job.json").write_text("{not json")
    (demo / "J7" / "job.json").write_text(json.dumps({"uid": "J7", "output_results": [{"name": "x"}]}))
    os.unlink(demo / "J2" / "job.json")
    p = Project.open(demo)
    assert len(p.jobs) == 10
    assert "not valid JSON" in p.job("J5").error and p.job("J5").groups == []
    assert "malformed" in p.job("J7").error
    assert "missing" in p.job("J2").error
    assert p.job("J6").error is None and p.job("J6").groups
    assert any("J5" in x for x in p.all_problems())


def test_uid_mismatch_is_an_error(demo):
    doc = json.loads((demo / "J4" / "job.json").read_text())
    doc["uid"] = "J44"
    (demo / "J4" / "job.json").write_text(json.dumps(doc))
    assert "J44" in Project.open(demo).job("J4").error


def test_missing_metafile_and_dangling_symlink_reported(demo):
    os.unlink(demo / "J8" / "J8_001_volume.cs")
    link = next((demo / "J1" / "imported").iterdir())
    os.unlink(os.readlink(link))
    p = Project.open(demo)
    assert any("J8/J8_001_volume.cs is missing" in x for x in p.job("J8").problems)
    assert any("dangling symlink" in x and link.name in x for x in p.job("J1").problems)
    assert p.job("J6").problems == []


def test_malformed_project_json_keeps_jobs(demo):
    (demo / "project.json").write_text("[1, 2")
    p = Project.open(demo)
    assert p.doc == {} and len(p.jobs) == 10
    assert any("project.json is malformed" in x for x in p.problems)


def test_not_a_project(tmp_path):
    with pytest.raises(NotFoundError):
        Project.open(tmp_path / "missing")
    with pytest.raises(NotFoundError):
        Project.open(tmp_path)
    (tmp_path / "project.json").write_text("nope{")
    with pytest.raises(FormatError):
        Project.open(tmp_path)


def test_unknown_job(demo):
    with pytest.raises(NotFoundError, match="J99"):
        Project.open(demo).job("J99")


def _legacy_project(root: Path, realdata: Path) -> Path:
    """A v2/v3-style P12/ with the real cryosparc_P12_J24_001_particles.cs."""
    proj = root / "P12"
    (proj / "J24").mkdir(parents=True)
    (proj / "J19" / "extract").mkdir(parents=True)
    shutil.copy(realdata / "cryosparc_P12_J24_001_particles.cs", proj / "J24")
    arr = csfile.load(proj / "J24" / "cryosparc_P12_J24_001_particles.cs", fields=["blob/path"])
    for rel in set(arr["blob/path"].tolist()):
        (proj / rel.decode()).write_bytes(b"")
    mf = "J24/cryosparc_P12_J24_001_particles.cs"
    (proj / "J24" / "job.json").write_text(json.dumps({
        "uid": "J24", "project_uid": "P12", "type": "homo_refine", "status": "completed",
        "created_at": {"$date": 1537000000000}, "completed_at": "2018-09-15T10:00:00",
        "output_result_groups": [{"uid": "J24-G1", "type": "particle", "name": "particles",
                                  "title": "Particles", "num_items": 2019}],
        "output_results": [{"uid": "J24-R1", "type": "particle.blob", "group_name": "particles",
                            "name": "blob", "versions": [1], "metafiles": [mf], "num_items": [2019],
                            "passthrough": False}],
        "input_slot_groups": [{"name": "particles", "type": "particle", "connections": [
            {"job_uid": "J19", "group_name": "particles",
             "slots": [{"job_uid": "J19", "group_name": "particles", "result_name": "blob",
                        "version": "F"}]}]}]}))
    (proj / "J19" / "job.json").write_text(json.dumps({"uid": "J19", "type": "extract_micrographs_multi",
                                                       "status": "completed"}))
    return proj


def test_legacy_layout(tmp_path, realdata):
    proj = _legacy_project(tmp_path, realdata)
    p = Project.open(proj)
    assert p.layout == "legacy" and p.uid == "P12" and p.doc == {} and p.problems == []
    assert list(p.jobs) == ["J19", "J24"]
    j = p.job("J24")
    assert j.created_at.startswith("2018-09-15") and timestamp(j.completed_at) is not None
    res = j.group("particles").result("blob")
    assert res.final_metafile == "J24/cryosparc_P12_J24_001_particles.cs" and res.final_version == 1
    files = referenced_files(p, res.final_metafile)
    assert files and all(f.startswith("J19/extract/") and (proj / f).exists() for f in files)
    assert j.inputs[0].job_uid == "J19" and j.problems == []
    assert not p.lock_path.exists()


def test_legacy_detected_by_file_names(tmp_path, realdata):
    """A renamed legacy folder is still recognised by its cryosparc_P… files."""
    proj = _legacy_project(tmp_path, realdata).rename(tmp_path / "old-project")
    assert Project.open(proj).layout == "legacy"


def test_legacy_job_without_job_json_reads_csg(tmp_path, realdata):
    proj = _legacy_project(tmp_path, realdata)
    os.unlink(proj / "J24" / "job.json")
    (proj / "J24" / "cryosparc_P12_J24_particles.csg").write_text(
        "created: 2018-09-15 10:00:00\ngroup: {name: particles, title: Particles, type: particle, description: ''}\n"
        "results:\n  blob: {metafile: '>cryosparc_P12_J24_001_particles.cs', num_items: 2019, type: particle.blob}\n"
        "  ctf: {metafile: '>cryosparc_P12_J24_001_particles.cs', num_items: 2019, type: particle.ctf}\n"
        "version: v2.15.0\n")
    j = Project.open(proj).job("J24")
    # CryoSPARC writes .csg files for finished outputs: the job completed; how it was read is a
    # note, not a problem (verify, show and `csfs jobs` stay clean for a legacy project)
    assert j.error is None and j.status == "completed" and j.problems == []
    assert any(".csg" in x for x in j.notes)
    g = j.group("particles")
    assert g.num_items == 2019 and [r.name for r in g.results] == ["blob", "ctf"]
    assert g.result("ctf").final_metafile == "J24/cryosparc_P12_J24_001_particles.cs"
    assert g.result("blob").final_version == 1


def test_v5_spec_job_json(demo):
    (demo / "J11").mkdir()
    shutil.copy(demo / "J8" / "J8_000_volume.cs", demo / "J11" / "J11_000_volume.cs")
    (demo / "J11" / "job.json").write_text(json.dumps({
        "uid": "J11", "project_uid": "P1", "title": "v5 job", "status": "completed",
        "created_at": "2025-01-02T03:04:05Z", "completed_at": "2025-01-02T04:00:00Z",
        "spec": {"type": "homo_refine_new", "params": {},
                 "inputs": {"volume": {"type": "volume", "title": "Volume", "connections": [
                     {"job_uid": "J8", "output": "volume", "results": [
                         {"name": "map", "dtype": "map", "job_uid": "J8", "output": "volume",
                          "result": "map", "version": 2}]}]}},
                 "outputs": {"volume": {"type": "volume", "title": "Volume", "num_items": 1, "results": [
                     {"name": "map", "dtype": "map", "versions": [0], "metafiles": ["J11/J11_000_volume.cs"],
                      "num_items": [1], "passthrough": False}]}}}}))
    p = Project.open(demo)
    j = p.job("J11")
    assert j.error is None and j.form == "v5" and j.type == "homo_refine_new"
    assert j.group("volume").result("map").type == "volume.map"
    assert j.group("volume").result("map").final_metafile == "J11/J11_000_volume.cs"
    ref = j.inputs[0]
    assert (ref.job_uid, ref.group_name, ref.result_name, ref.version) == ("J8", "volume", "map", 2)
    assert ("J11", ref) in p.consumers("J8")


def test_time_helpers():
    assert iso_time({"$date": "2024-01-01T00:00:00.000Z"}) == "2024-01-01T00:00:00.000Z"
    assert iso_time({"$date": {"$numberLong": "0"}}) == "1970-01-01T00:00:00Z"
    assert iso_time(None) is None and timestamp(None) is None and timestamp("garbage") is None
    assert timestamp("1970-01-01T00:01:00") == 60.0


def test_cli_jobs(demo, csfs):
    r = csfs("jobs", demo)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["UID", "TYPE", "STATUS"]
    assert any(line.startswith("J10 ") and "failed" in line for line in lines)
    assert any(line.startswith("J9 ") and "running" in line for line in lines)
    r = csfs("jobs", demo, "--json")
    doc = json.loads(r.stdout)
    assert [j["uid"] for j in doc["jobs"]] == [f"J{i}" for i in range(1, 11)]
    j6 = [j for j in doc["jobs"] if j["uid"] == "J6"][0]
    assert j6["groups"][0]["results"][0]["versions"]
    (demo / "J3" / "job.json").write_text("garbage")
    r = csfs("jobs", demo)
    assert r.returncode == 0 and "BROKEN" in r.stdout and "J3: job.json is not valid JSON" in r.stdout
    assert "J4 " in r.stdout


def test_cli_jobs_errors(tmp_path, csfs):
    r = csfs("jobs", tmp_path)
    assert r.returncode == 2 and "not a CryoSPARC project" in r.stderr and "Traceback" not in r.stderr
    r = csfs("jobs", tmp_path / "nope")
    assert r.returncode == 2 and "no such directory" in r.stderr


def test_jobs_is_job_list(demo, home, csfs):
    """`csfs jobs` is `csfs job list`: the same table and the same JSON, for a directory and,
    once attached, for its UID (the project object then names it)."""
    def both(*args: object) -> tuple[str, str]:
        a, b = csfs("jobs", *args, home=home), csfs("job", "list", *args, home=home)
        assert a.returncode == b.returncode == 0, a.stderr + b.stderr
        assert a.stdout == b.stdout
        return a.stdout, json.loads(csfs("jobs", *args, "--json", home=home).stdout)

    table, doc = both(demo)
    assert doc["project"]["uid"] is None and doc["project"]["state"] == "not registered"
    assert doc["project"]["layout"] == "v4" and doc["project"]["title"] == "csfs demo"
    assert len(table.splitlines()) == 1 + len(doc["jobs"])      # no problems in the demo
    r = csfs("project", "attach", demo, home=home)
    assert r.returncode == 0, r.stderr
    table_p1, doc_p1 = both("P1")
    assert doc_p1["project"]["uid"] == "P1" and doc_p1["project"]["state"] == "attached"
    assert table_p1 == table and doc_p1["jobs"] == doc["jobs"]
    assert json.loads(csfs("job", "list", "P1", "--json", home=home).stdout) == doc_p1


@pytest.mark.parametrize("where", ["group", "result", "group_name"])
def test_non_string_output_names_are_malformed(demo, where):
    """Group and result names become file names and field prefixes: a list or a number there
    makes the job malformed (was a TypeError in exports, du and clear-intermediate)."""
    path = demo / "J8" / "job.json"
    doc = json.loads(path.read_text())
    if where == "group":
        doc["output_result_groups"][0]["name"] = ["particles"]
    elif where == "result":
        doc["output_results"][0]["name"] = 7
    else:
        doc["output_results"][0]["group_name"] = None
    path.write_text(json.dumps(doc))
    p = Project.open(demo)
    assert "malformed" in p.job("J8").error and p.job("J8").groups == []
    assert p.job("J6").error is None
