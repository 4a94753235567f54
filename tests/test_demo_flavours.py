"""`csfs demo --flavour legacy|v4|v5`: each flavour writes its CryoSPARC version's real document shapes."""
from __future__ import annotations

import json
import re

import bson
import pytest
from csfs.core import csfile, csg
from csfs.core.demo import make_demo
from csfs.core.demo_docs import PROJECT_UIDS

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _jobs(project):
    return {int(p.name[1:]): json.loads((p / "job.json").read_text())
            for p in project.iterdir() if p.name.startswith("J") and (p / "job.json").exists()}


def test_legacy_shape(demo_masters):
    project = demo_masters("legacy") / "P12"
    assert sorted(p.name for p in project.iterdir()) == sorted(f"J{i}" for i in range(1, 11))  # no root files
    docs = _jobs(project)
    assert sorted(docs) == [6, 7, 8, 9, 10]            # J1-J5 predate job.json
    for n in range(1, 6):
        d = project / f"J{n}"
        assert list(d.glob("*.csg")) and all(m.name.startswith(f"cryosparc_P12_J{n}_") for m in d.glob("*.cs"))
        for path in d.glob("*.csg"):
            c = csg.load(path)
            for res in c.results.values():
                assert csg.resolve_metafile(path, res["metafile"]).is_file()
    assert (project / "J8" / "cryosparc_P12_J8_003_volume_map.mrc").is_file()
    for d in docs.values():
        assert "type" not in d and d["job_type"] and d["project_uid"] == "P12"
        assert isinstance(d["created_at"]["$date"], int)
        assert all(m.split("/")[1].startswith(f"cryosparc_P12_{d['uid']}_")
                   for r in d["output_results"] for m in r["metafiles"])


def test_v4_mixes_real_variants(demo_masters):
    project = demo_masters("v4") / "CS-csfs-demo"
    docs = _jobs(project)
    assert {n for n, d in docs.items() if "type" in d and "job_type" in d} == {1, 2, 3}
    assert {n for n, d in docs.items() if "job_type" in d and "type" not in d} == {4, 5, 6}
    assert all(d["uid_num"] == n and d["project_uid_num"] == 1 for n, d in docs.items())
    dates = {n: d["created_at"]["$date"] for n, d in docs.items() if n != 10}
    assert {n for n, v in dates.items() if isinstance(v, int)} == {1, 2, 3, 4, 5}
    assert all(ISO_Z.match(v) for n, v in dates.items() if 5 < n < 10)
    assert docs[10]["created_at"] == "Mon, 04 Mar 2024 19:00:00 GMT"       # RFC 1123, as the API gives it
    groups = {(n, g["name"]): g for n, d in docs.items() for g in d.get("output_result_groups", [])}
    assert groups[(8, "particles")]["passthrough"] == "particles"          # forwarded from an input
    assert groups[(8, "volume")]["passthrough"] is False
    assert [c["name"] for c in groups[(8, "volume")]["contains"]][:2] == ["map", "map_sharp"]
    j7 = {r["name"]: r for r in docs[7]["output_results"] if r["group_name"] == "particles_class_0"}
    assert j7["alignments3D"]["versions"] == [0, 100]
    assert j7["alignments3D"]["metafiles"][-1] == "J7/J7_class_00_final_particles.cs"
    assert csfile.load(project / "J4" / "J4_particles.cs")["location/micrograph_path"][0].startswith(b"J2/")
    man = json.loads((project / "job_manifest.json").read_text())
    assert len(man["jobs"]) == 10
    pdoc = json.loads((project / "project.json").read_text())
    assert pdoc["uid"] == "P1" and pdoc["uid_num"] == 1 and pdoc["project_dir"].endswith("/CS-csfs-demo")


def test_v4_live_session(demo_masters):
    project = demo_masters("v4") / "CS-csfs-demo"
    exposures = bson.decode_all((project / "S1" / "exposures.bson").read_bytes())
    assert len(exposures) == 4 and {e["session_uid"] for e in exposures} == {"S1"}
    for e in exposures:
        assert (project / e["groups"]["exposure"]["micrograph_blob"]["path"]).is_file()
    ws = json.loads((project / "workspaces.json").read_text())
    assert [(w["uid"], w["workspace_type"]) for w in ws] == [("W1", "base"), ("S1", "live")]


def test_v5_shape(demo_masters):
    project = demo_masters("v5") / "CS-csfs-demo"
    docs = _jobs(project)
    assert sorted(docs) == list(range(1, 11))
    for n, d in docs.items():
        assert set(d["spec"]) >= {"type", "params", "inputs", "outputs"}
        assert "type" not in d and "output_results" not in d and "input_slot_groups" not in d
        assert ISO_Z.match(d["created_at"]) and ISO_Z.match(d["dumped_at"]) and d["last_dumped_version"] == "v5.0.0"
        assert d["uid_num"] == n and d["project_uid"] == "P3" and d["project_uid_num"] == 3
    out = docs[8]["spec"]["outputs"]
    assert out["particles"]["passthrough"] == "particles" and out["volume"]["passthrough"] is None
    res = {r["name"]: r for r in out["particles"]["results"]}
    assert res["alignments3D"]["dtype"] == "alignments3D" and len(res["alignments3D"]["versions"]) == 4
    conn = docs[8]["spec"]["inputs"]["particles"]["connections"][0]
    assert conn["job_uid"] == "J7" and {r["result"]: r["name"] for r in conn["results"]} == {
        "blob": "blob", "ctf": "ctf", "alignments3D": "alignments3D", "alignments2D": None}   # None: passed through
    assert docs[6]["spec"]["params"] == {"class2D_K": 4}
    pdoc = json.loads((project / "project.json").read_text())
    assert pdoc["uid"] == "P3" and pdoc["uid_num"] == 3 and ISO_Z.match(pdoc["created_at"])
    assert pdoc["last_dumped_version"] == "v5.0.0" and pdoc["detached"] is True
    (ws,) = json.loads((project / "workspaces.json").read_text())
    assert ws["uid"] == "W1" and ws["project_uid"] == "P3" and ws["project_uid_num"] == 3
    assert not (project / "S1").exists()


@pytest.mark.parametrize("flavour", ["legacy", "v5"])
def test_flavour_deterministic(tmp_path, flavour):
    a = make_demo(tmp_path / "a", seed=4, flavour=flavour)
    b = make_demo(tmp_path / "b", seed=4, flavour=flavour)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and not p.is_symlink())
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and not p.is_symlink())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        assert (a / rel).stat().st_mtime == (b / rel).stat().st_mtime, rel


def test_cli_flavours(tmp_path, csfs):
    r = csfs("demo", tmp_path / "l", "--flavour", "legacy", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["project"]["path"] == str(tmp_path / "l" / PROJECT_UIDS["legacy"]) and info["flavour"] == "legacy"
    assert info["job_count"] == 10 and info["micrographs"] == 4 and info["particles"] > 0
    r = csfs("demo", tmp_path / "x", "--flavour", "v9")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = csfs("demo", "--help")
    assert "--flavour" in r.stdout and "legacy" in r.stdout and "v5" in r.stdout
