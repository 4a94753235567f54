"""Export plans and their physical consolidation (job and group exports)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from csfs.core import consolidate, csfile, csg, exportplan, lifecycle
from csfs.core.errors import ActiveJobError, NotFoundError, RefusedError
from csfs.core.project import Project

from data_helpers import attach, read_tree


@pytest.fixture
def attached(demo, home):
    return attach(demo, home)


@pytest.fixture
def flavour_attached(flavour_demo, home):
    """The demo of each flavour (legacy, v4, v5), attached."""
    return attach(flavour_demo, home)


def _final_rows(project: Project, juid: str, group: str) -> dict[str, np.ndarray]:
    """field -> column (sorted by uid) of a group's final versions, as the job itself holds them."""
    g = project.job(juid).group(group)
    out: dict[str, np.ndarray] = {}
    for r in g.results:
        arr = csfile.load(project.path / r.final_metafile)
        order = np.argsort(arr["uid"])
        out["uid"] = np.asarray(arr["uid"])[order]
        for name in arr.dtype.names:
            if name.startswith(r.name + "/"):
                out[name] = np.asarray(arr[name])[order]
    return out


def test_plan_names_layout_and_sizes(attached):
    _, _, project = attached
    plan = exportplan.job_export_plan(project, "J8")
    assert plan.name == "J8_homo_refine_new"
    assert exportplan.job_export_name(project.job("J8")) == "J8_homo_refine_new"
    assert exportplan.group_export_name(project.job("J8"), "particles") == "J8_particles"
    top = plan.children("")
    assert {"job.json", "events.bson", "gridfs_data", "J8_particles", "J8_volume"} <= set(top)
    assert plan.lookup("").kind == "dir" and plan.lookup(".").kind == "dir"
    assert "J8_particles_exported.cs" in plan.children("J8_particles")
    assert plan.lookup("nope") is None and plan.children("job.json") == []
    # child_entries: the same names, each with the entry lookup() gives
    for rel in ("", "J8_particles", "job.json", "nope"):
        pairs = plan.child_entries(rel)
        assert [n for n, _ in pairs] == plan.children(rel)
        assert all(e == plan.lookup(f"{rel}/{n}" if rel else n) for n, e in pairs)
    assert plan.child_entries("J8_particles")
    # parents come before children (tar order) and every parent exists
    seen = set()
    for e in plan.entries:
        parent = os.path.dirname(e.path)
        assert e.path == "" or parent in seen
        seen.add(e.path)
    for e in plan.entries:
        if e.kind == "generated":
            assert len(e.generate()) == e.size
        elif e.kind == "file":
            assert os.path.isabs(e.source) and not os.path.islink(e.source)
            assert os.stat(e.source).st_size == e.size
    doc = json.loads(plan.lookup("job.json").generate())
    for key in exportplan.STRIPPED_JOB_KEYS:
        assert key not in doc
    assert doc["uid"] == "J8" and doc["type"] == "homo_refine_new"


def test_generated_content_is_deterministic(attached, demo):
    _, _, project = attached
    a = exportplan.job_export_plan(project, "J6")
    os.utime(demo / "J6" / "job.json")  # "now" changes; the export must not
    b = exportplan.job_export_plan(Project.open(demo), "J6")
    assert [(e.path, e.kind, e.size, e.mtime) for e in a.entries] == \
           [(e.path, e.kind, e.size, e.mtime) for e in b.entries]
    for ea, eb in zip(a.entries, b.entries, strict=True):
        if ea.kind == "generated":
            assert ea.generate() == eb.generate()
    assert a.lookup("job.json").mtime == project.job("J6").completed_timestamp


def test_physical_export_twice_identical_and_matches_plan(flavour_attached):
    inst, puid, project = flavour_attached
    dest = consolidate.export_job(inst, puid, "J8")
    assert dest == project.path / "exports" / "jobs" / "J8_homo_refine_new"
    first = read_tree(dest)
    stat1 = {p: os.stat(dest / p).st_mtime_ns for p in first}
    dest2 = consolidate.export_job(inst, puid, "J8")
    assert dest2 == dest and read_tree(dest) == first
    assert {p: os.stat(dest / p).st_mtime_ns for p in first} == stat1
    plan = exportplan.job_export_plan(project, "J8")
    assert set(first) == {e.path or "." for e in plan.entries}
    for e in plan.entries:
        path = dest / e.path
        st = os.stat(path)
        assert abs(st.st_mtime - e.mtime) < 1e-6, e.path
        if e.kind == "file":
            assert path.is_symlink() and os.path.realpath(path) == e.source
            assert first[e.path][1] == Path(e.source).read_bytes()
        elif e.kind == "generated":
            assert not path.is_symlink() and first[e.path][1] == e.generate()
    # data is linked, never copied; no leftovers of the temporary folder
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]
    # an export that was tampered with is repaired in place; stray files go
    link = next(dest / e.path for e in plan.entries if e.kind == "file")
    link.unlink()
    link.symlink_to("/nonexistent")
    (dest / "job.json").write_text("{}")
    (dest / "stray.txt").write_text("x")
    (dest / "gridfs_data" / "stray").mkdir()
    stats: dict = {}
    consolidate.export_job(inst, puid, "J8", stats=stats)
    assert read_tree(dest) == first and stats["changed"] == 4
    assert {p: os.stat(dest / p).st_mtime_ns for p in first} == stat1


def test_exported_cs_loads_in_cryosparc_tools(flavour_attached):
    from cryosparc.dataset import Dataset

    inst, puid, project = flavour_attached
    dest = consolidate.export_group(inst, puid, "J8", "particles")
    cs = dest / "J8_particles_exported.cs"
    ds = Dataset.load(str(cs))
    expected = _final_rows(project, "J8", "particles")
    assert len(ds) == len(expected["uid"]) > 0
    order = np.argsort(ds["uid"])
    for name, col in expected.items():
        got = np.asarray(ds[name])[order]
        if name.endswith("/path"):
            # '>' paths relative to the export folder name the same files as the job's paths
            for g, want in zip(got[:50], col[:50], strict=True):
                want = want.decode() if isinstance(want, bytes) else want
                assert g.startswith(">")
                assert os.path.samefile(dest / g[1:], project.path / want)
        elif col.dtype.kind == "S":  # cryosparc-tools decodes strings
            assert list(got) == [v.decode() for v in col], name
        else:
            assert np.array_equal(got, col), name
    c = csg.load(dest / "J8_particles_exported.csg")
    assert c.group["name"] == "particles"
    assert set(c.results) == {r.name for r in project.job("J8").group("particles").results}
    assert all(r["metafile"] == ">J8_particles_exported.cs" and r["num_items"] == len(ds)
               for r in c.results.values())


def test_job_export_group_folders_hold_group_exports(attached):
    inst, puid, project = attached
    job_dest = consolidate.export_job(inst, puid, "J6")
    group_dest = consolidate.export_group(inst, puid, "J6", "class_averages")
    assert read_tree(job_dest / "J6_class_averages") == read_tree(group_dest)


def test_non_completed_jobs_refused_until_marked(attached):
    inst, puid, project = attached
    with pytest.raises(ActiveJobError):
        exportplan.job_export_plan(project, "J9")
    with pytest.raises(RefusedError, match="mark-completed"):
        consolidate.export_job(inst, puid, "J10")
    lifecycle.mark_completed(inst, puid, "J10")
    dest = consolidate.export_job(inst, puid, "J10")
    assert (dest / "job.json").is_file()


def test_unknown_group_and_missing_data(attached, demo):
    inst, puid, project = attached
    with pytest.raises(NotFoundError, match="no output group"):
        exportplan.group_export_plan(project, "J5", "nope")
    stack = sorted((demo / "J5" / "extract").iterdir())[0]
    stack.unlink()
    plan = exportplan.group_export_plan(Project.open(demo), "J5", "particles")
    assert str(stack.relative_to(demo)) in plan.missing
    with pytest.raises(RefusedError, match="missing"):
        consolidate.export_group(inst, puid, "J5", "particles")
    # a group whose final metafile is gone: the job's plan keeps its other parts
    (demo / project.job("J8").group("volume").results[0].final_metafile).unlink()
    plan = exportplan.job_export_plan(Project.open(demo), "J8")
    assert plan.lookup("J8_volume") is None and plan.lookup("J8_particles") is not None
    assert any(m.startswith("volume:") for m in plan.missing)
    with pytest.raises(NotFoundError, match="missing"):
        exportplan.group_export_plan(Project.open(demo), "J8", "volume")
    with pytest.raises(RefusedError, match="missing"):
        consolidate.export_job(inst, puid, "J8")


def test_export_refused_when_not_attached(demo, home):
    doc = json.loads((demo / "J9" / "job.json").read_text())
    (demo / "J9" / "job.json").write_text(json.dumps({**doc, "status": "killed"}))
    inst, puid, _ = attach(demo, home)
    lifecycle.detach(inst, puid)
    with pytest.raises(RefusedError):
        consolidate.export_job(inst, str(demo), "J8")
    assert not (demo / "exports").exists()


def test_cli_exports(attached, home, csfs):
    _, puid, project = attached
    r = csfs("job", "export", puid, "J5", "--json", home=home)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert Path(out["path"]).name == "J5_extract_micrographs_multi" and out["link_count"] > 0
    assert out["written_bytes"] < out["data_bytes"] and out["job"] == {"uid": "J5"}
    r = csfs("group", "export", puid, "J5", "particles", home=home)
    assert r.returncode == 0 and "exports/groups/J5_particles" in r.stdout
    r = csfs("job", "export", puid, "J9", home=home)
    assert r.returncode == 1 and "running" in r.stderr and "Traceback" not in r.stderr
    r = csfs("group", "export", puid, "J5", "nope", home=home)
    assert r.returncode == 2 and "no output group" in r.stderr


def test_killed_mid_export_leaves_no_half_export(attached, home, csfs):
    inst, puid, project = attached
    r = csfs("job", "export", puid, "J5", home=home, env={"CSFS_FAULT": "export-entry:20"})
    assert r.returncode == -9
    jobs = project.path / "exports" / "jobs"
    assert not (jobs / "J5_extract_micrographs_multi").exists()
    assert [p.name for p in jobs.iterdir()][0].startswith(".J5_extract_micrographs_multi.csfs-tmp-")
    dest = consolidate.export_job(inst, puid, "J5")
    assert [p.name for p in jobs.iterdir()] == [dest.name]  # the dead export's leftovers are gone
    # killed while updating an existing export in place: running it again repairs it
    first = read_tree(dest)
    (dest / "job.json").write_text("{}")
    for link in list((dest / "J5_particles" / "J5" / "extract").iterdir())[:3]:
        link.unlink()
    r = csfs("job", "export", puid, "J5", home=home, env={"CSFS_FAULT": "export-entry:2"})
    assert r.returncode == -9
    assert csfs("job", "export", puid, "J5", home=home).returncode == 0
    assert read_tree(dest) == first


def test_compressed_metafiles_export_the_same(attached, demo):
    """Jobs whose metafiles are in the compressed (CSDAT) form export the same bytes."""
    _, _, project = attached
    before = exportplan.group_export_plan(project, "J8", "particles")
    want = before.lookup("J8_particles_exported.cs").generate()
    for mf in project.job("J8").metafiles:
        arr = np.array(csfile.load(demo / mf))
        csfile.save(demo / mf, arr, compressed=True)
        assert csfile.info(demo / mf).format == "csdat"
    after = exportplan.group_export_plan(Project.open(demo), "J8", "particles")
    e = after.lookup("J8_particles_exported.cs")
    assert e.size == len(want) and e.generate() == want


def test_legacy_project_with_a_real_cryosparc_metafile(realdata, tmp_path, home):
    """A legacy P12/ project whose J24 output is a real CryoSPARC file (cryosparc_P12_J24_…)."""
    from cryosparc.dataset import Dataset

    proj = tmp_path / "P12"
    real = realdata / "cryosparc_P12_J24_001_particles.cs"
    arr = csfile.load(real)
    for rel in set(np.asarray(arr["blob/path"]).tolist()):
        (proj / rel.decode()).parent.mkdir(parents=True, exist_ok=True)
        with open(proj / rel.decode(), "wb") as f:
            f.truncate(4096)
    (proj / "J19" / "job.json").write_text(json.dumps({"uid": "J19", "type": "extract_micrographs_multi",
                                                        "status": "completed"}))
    (proj / "J24").mkdir()
    meta = "J24/cryosparc_P12_J24_001_particles.cs"
    (proj / meta).write_bytes(real.read_bytes())
    (proj / "J24" / "job.json").write_text(json.dumps({
        "uid": "J24", "project_uid": "P12", "type": "homo_refine", "title": "refine", "status": "completed",
        "created_at": "2019-01-01T00:00:00", "completed_at": "2019-01-02T00:00:00",
        "output_result_groups": [{"uid": "J24-G1", "type": "particle", "name": "particles", "title": "Particles",
                                  "description": "", "num_items": len(arr), "passthrough": False}],
        "output_results": [
            {"uid": f"J24-R{i}", "type": f"particle.{slot}", "group_name": "particles", "name": slot,
             "versions": [1], "metafiles": [meta], "num_items": [len(arr)], "passthrough": False}
            for i, slot in enumerate(["blob", "ctf", "alignments3D"])]}))
    assert Project.open(proj).layout == "legacy"
    inst, puid, project = attach(proj, home)  # attaching gives it a project.json
    dest = consolidate.export_group(inst, puid, "J24", "particles")
    ds = Dataset.load(str(dest / "J24_particles_exported.cs"))
    assert len(ds) == len(arr) and list(ds["uid"]) == list(arr["uid"])
    assert np.array_equal(ds["alignments3D/pose"], arr["alignments3D/pose"])
    assert all(p.startswith(">J19/extract/") for p in ds["blob/path"][:10])
    assert len(list((dest / "J19" / "extract").iterdir())) == 50
    assert consolidate.export_job(inst, puid, "J24").name == "J24_homo_refine"


def test_cli_filesystem_error_is_one_line(attached, home, csfs):
    """An OS error on the way (here `exports` is a plain file) is one line and exit 1, no traceback."""
    _, puid, project = attached
    (project.path / "exports").write_text("not a folder")
    r = csfs("group", "export", puid, "J5", "particles", home=home)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("csfs: ") and len(r.stderr.splitlines()) == 1 and "exports" in r.stderr


@pytest.mark.parametrize("what", ["type", "group"])
def test_names_from_job_json_never_escape_exports(attached, demo, what):
    """Export folder names come from job.json (type, group names): '../' in them must not
    make csfs write outside exports/."""
    from csfs.core.errors import FormatError

    inst, puid, _ = attached
    path = demo / "J5" / "job.json"
    doc = json.loads(path.read_text())
    evil = "x/../../../../evil"
    if what == "type":
        doc["type"] = evil
    else:
        for g in doc["output_result_groups"]:
            if g["name"] == "particles":
                g["name"] = evil
        for r in doc["output_results"]:
            if r["group_name"] == "particles":
                r["group_name"] = evil
    path.write_text(json.dumps(doc))
    before = sorted(p.name for p in demo.parent.iterdir())
    with pytest.raises(FormatError, match="outside the export"):
        consolidate.export_job(inst, puid, "J5")
    if what == "group":
        with pytest.raises(FormatError, match="outside the export"):
            consolidate.export_group(inst, puid, "J5", evil)
    assert sorted(p.name for p in demo.parent.iterdir()) == before
    assert not list((demo / "exports").rglob("*evil*")) if (demo / "exports").exists() else True
    # the plan itself refuses, so the mount's virtual view can never serve such a path either
    project = Project.open(demo)
    with pytest.raises(FormatError, match="outside the export"):
        exportplan.job_export_plan(project, "J5")
    assert exportplan.plain_name("J5_extract") and not exportplan.plain_name(f"J5_{evil}")


def test_unnormalised_data_paths_export(attached, demo):
    """'J5/extract//x' and './J5/extract/x' name the same files: exported normalised, not refused."""
    inst, puid, project = attached
    mf = demo / project.job("J5").group("particles").result("blob").final_metafile
    arr = csfile.load(mf)
    descr = [(n, "|S300") if n == "blob/path" else (n, *arr.dtype.descr[i][1:])
             for i, n in enumerate(arr.dtype.names)]
    new = np.zeros(len(arr), dtype=descr)
    for n in arr.dtype.names:
        new[n] = arr[n]
    new["blob/path"] = [(b"./" + v) if i % 2 else v.replace(b"/extract/", b"/extract//")
                        for i, v in enumerate(np.asarray(arr["blob/path"]))]
    csfile.save(mf, new)
    dest = consolidate.export_group(inst, puid, "J5", "particles")
    out = csfile.load(dest / "J5_particles_exported.cs")
    want = sorted({">" + v.decode() for v in np.asarray(arr["blob/path"])})
    assert sorted({v.decode() for v in out["blob/path"]}) == want
    assert all((dest / v[1:]).is_file() for v in want)
