"""Imports: result group round trip between instances, exported job import, raw data import."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from csfs.core import consolidate, csfile, exportplan, imports, lifecycle, mrc, verify
from csfs.core.errors import FormatError, NotFoundError, UsageError
from csfs.core.instance import Instance
from csfs.core.project import Project

from data_helpers import attach


@pytest.fixture
def two(demo, tmp_path):
    """Project A (the demo) attached to instance A; an empty project B in instance B."""
    return _two(demo, tmp_path)


@pytest.fixture
def two_flavours(flavour_demo, tmp_path):
    """`two` with project A the demo of each flavour (legacy, v4, v5)."""
    return _two(flavour_demo, tmp_path)


def _two(demo: Path, tmp_path: Path):
    inst_a, puid_a, proj_a = attach(demo, tmp_path / "home-A")
    inst_b = Instance(tmp_path / "home-B")
    (tmp_path / "b").mkdir()
    rec_b = lifecycle.create(inst_b, "target", tmp_path / "b")
    return inst_a, puid_a, proj_a, inst_b, rec_b.uid, rec_b.path


def _by_uid(arr: np.ndarray) -> np.ndarray:
    return np.asarray(arr)[np.argsort(arr["uid"])]


def _assert_same_dataset(a: np.ndarray, a_dir: Path, b: np.ndarray, b_dir: Path) -> None:
    """Equal fields and values (uids included); path fields must name files with equal bytes."""
    assert sorted(a.dtype.names) == sorted(b.dtype.names)
    a, b = _by_uid(a), _by_uid(b)
    assert np.array_equal(a["uid"], b["uid"])
    for name in a.dtype.names:
        if name.endswith("/path"):
            for va, vb in zip(a[name], b[name], strict=True):
                pa, pb = va.decode(), vb.decode()
                fa = a_dir / pa[1:] if pa.startswith(">") else a_dir / pa
                fb = b_dir / pb[1:] if pb.startswith(">") else b_dir / pb
                assert fa.read_bytes() == fb.read_bytes()
        else:
            assert np.array_equal(a[name], b[name]), name


def test_group_round_trip_between_instances(two_flavours):
    inst_a, puid_a, proj_a, inst_b, puid_b, path_b = two_flavours
    dest = consolidate.export_group(inst_a, puid_a, "J8", "particles")
    exported = csfile.load(dest / "J8_particles_exported.cs")
    juid = imports.import_group(inst_b, puid_b, dest / "J8_particles_exported.csg")
    proj_b = Project.open(path_b)
    job = proj_b.job(juid)
    assert job.type == "import_result_group" and job.status == "completed"
    g = job.group("particles")
    assert {r.name for r in g.results} == {r.name for r in proj_a.job("J8").group("particles").results}
    imported = csfile.load(path_b / g.results[0].final_metafile)
    _assert_same_dataset(exported, dest, imported, path_b)
    # data referenced from the new job's directory, as symlinks
    for rel in set(np.asarray(imported["blob/path"]).tolist()):
        p = path_b / rel.decode()
        assert p.is_symlink() and str(p.relative_to(path_b)).startswith(f"{juid}/imported/")
    assert verify.verify(proj_b) == []
    # the imported group exports again with the same rows
    again = exportplan.group_export_plan(proj_b, juid, "particles")
    assert again.lookup(f"{juid}_particles_exported.cs").size > 0


def test_group_import_copy(two):
    inst_a, puid_a, proj_a, inst_b, puid_b, path_b = two
    dest = consolidate.export_group(inst_a, puid_a, "J6", "class_averages")
    juid = imports.import_group(inst_b, puid_b, dest / "J6_class_averages_exported.csg", copy=True)
    files = [p for p in (path_b / juid / "imported").rglob("*") if not p.is_dir()]
    assert files and all(not p.is_symlink() for p in files)
    exported = csfile.load(dest / "J6_class_averages_exported.cs")
    imported = csfile.load(path_b / juid / f"{juid}_class_averages.cs")
    _assert_same_dataset(exported, dest, imported, path_b)


def test_job_import(two_flavours):
    inst_a, puid_a, proj_a, inst_b, puid_b, path_b = two_flavours
    dest = consolidate.export_job(inst_a, puid_a, "J8")
    juid = imports.import_job(inst_b, puid_b, dest)
    job = Project.open(path_b).job(juid)
    assert job.type == "homo_refine_new" and job.status == "completed"
    assert {g.name for g in job.groups} == {"particles", "volume"}
    assert (path_b / juid / "events.bson").read_bytes() == (proj_a.path / "J8" / "events.bson").read_bytes()
    assert job.doc["imported_from"]["job_uid"] == "J8"
    vol = csfile.load(path_b / job.group("volume").results[0].final_metafile)
    src = csfile.load(dest / "J8_volume" / "J8_volume_exported.cs")
    _assert_same_dataset(src, dest / "J8_volume", vol, path_b)
    # the imported job is a usable, exportable job of project B
    assert verify.verify(Project.open(path_b)) == []
    assert consolidate.export_job(inst_b, puid_b, juid).is_dir()


def test_import_raw_kinds(two, demo):
    _, _, proj_a, inst_b, puid_b, path_b = two
    raw = demo.parent / "raw"
    movies = sorted(raw.glob("*.mrc"))
    juid = imports.import_raw(inst_b, puid_b, "movies", [str(m) for m in movies])
    job = Project.open(path_b).job(juid)
    assert job.type == "import_movies"
    arr = csfile.load(path_b / job.group("imported_movies").results[0].final_metafile)
    assert len(arr) == len(movies) and len(set(arr["uid"])) == len(movies)
    h = mrc.read_header(movies[0])
    assert list(arr["movie_blob/shape"][0]) == [h.nz, h.ny, h.nx]
    for m, p in zip(movies, arr["movie_blob/path"], strict=True):
        link = path_b / p.decode()
        assert link.is_symlink() and os.readlink(link) == str(m)
    stacks = sorted((demo / "J5" / "extract").glob("*.mrc"))[:2]
    juid = imports.import_raw(inst_b, puid_b, "particles", stacks)
    arr = csfile.load(path_b / Project.open(path_b).job(juid).group("imported_particles").results[0].final_metafile)
    assert len(arr) == sum(mrc.read_header(s).nz for s in stacks)
    assert arr["blob/idx"].max() == mrc.read_header(stacks[0]).nz - 1
    vol = sorted((demo / "J8").glob("*_volume_map.mrc"))[-1]
    juid = imports.import_raw(inst_b, puid_b, "volume", [vol])
    arr = csfile.load(path_b / Project.open(path_b).job(juid).group("imported_volume_1").results[0].final_metafile)
    assert arr["map/psize_A"][0] == pytest.approx(mrc.read_header(vol).voxel_size)
    assert verify.verify(Project.open(path_b)) == []


def test_import_refusals_change_nothing(two, tmp_path):
    inst_a, puid_a, proj_a, inst_b, puid_b, path_b = two
    before = sorted(p.name for p in path_b.iterdir())
    with pytest.raises(NotFoundError):
        imports.import_raw(inst_b, puid_b, "movies", [tmp_path / "nope.tif"])
    with pytest.raises(UsageError):
        imports.import_raw(inst_b, puid_b, "tomograms", [tmp_path])
    evil = tmp_path / "evil.csg"
    evil.write_text("created: 2024-01-01\ngroup: {name: x, type: particle}\n"
                    "results: {blob: {metafile: '>../../etc/x.cs', num_items: 1, type: particle.blob}}\n")
    with pytest.raises(FormatError):
        imports.import_group(inst_b, puid_b, evil)
    dest = consolidate.export_group(inst_a, puid_a, "J5", "particles")
    next(p for p in (dest / "J5" / "extract").iterdir()).unlink()
    with pytest.raises(NotFoundError, match="missing"):
        imports.import_group(inst_b, puid_b, dest / "J5_particles_exported.csg")
    assert sorted(p.name for p in path_b.iterdir()) == before


def test_cli_imports(two, csfs, demo):
    inst_a, puid_a, proj_a, inst_b, puid_b, path_b = two
    dest = consolidate.export_group(inst_a, puid_a, "J5", "particles")
    home_b = inst_b.home
    r = csfs("group", "import", puid_b, dest / "J5_particles_exported.csg", "--json", home=home_b)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["job"]["uid"] == "J1"
    r = csfs("import", "raw", puid_b, "--kind", "movies", demo.parent / "raw", home=home_b)
    assert r.returncode == 0 and f"as {puid_b} J2" in r.stdout, r.stderr
    r = csfs("job", "import", puid_b, demo, home=home_b)  # not an exported job folder
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_import_a_jobs_own_csg(two):
    """A job's own .csg (inside the source project, project-relative paths) imports too."""
    inst_a, puid_a, proj_a, inst_b, puid_b, path_b = two
    csgs = sorted((proj_a.path / "J5").glob("*particles*.csg"))
    assert csgs
    juid = imports.import_group(inst_b, puid_b, csgs[0])
    job = Project.open(path_b).job(juid)
    arr = csfile.load(path_b / job.groups[0].results[0].final_metafile)
    src = {r.name: r for r in proj_a.job("J5").group("particles").results}
    ref = csfile.load(proj_a.path / src["blob"].final_metafile)
    assert sorted(arr["uid"]) == sorted(ref["uid"])
    assert verify.verify(Project.open(path_b)) == []


def test_cli_kinds_match_core():
    from csfs import cmd_import
    assert sorted(cmd_import.RAW_KINDS) == sorted(imports.RAW_KINDS)


def _csg_variant(dest: Path, name: str, old: str, new: str) -> Path:
    src = dest / "J5_particles_exported.csg"
    out = dest / name
    text = src.read_text()
    assert old in text
    out.write_text(text.replace(old, new))
    return out


def test_bad_csg_contents_refused_and_nothing_created(two, csfs):
    """Group names become file names: '../x', 'a/b' or '' are refused before any job is made,
    as are metafiles without uid or without the slot's columns."""
    inst_a, puid_a, proj_a, inst_b, puid_b, path_b = two
    dest = consolidate.export_group(inst_a, puid_a, "J5", "particles")
    before = sorted(p.name for p in path_b.iterdir())
    bad = [_csg_variant(dest, f"g{i}.csg", "name: particles", f"name: '{n}'")
           for i, n in enumerate(["../../evil", "a/b", "", "."])]
    bad.append(_csg_variant(dest, "slot.csg", "  blob:\n", "  nosuchslot:\n"))
    arr = np.array(csfile.load(dest / "J5_particles_exported.cs"))
    names = [n for n in arr.dtype.names if n != "uid"]
    csfile.save(dest / "nouid.cs", np.array(arr[names]))
    bad.append(_csg_variant(dest, "nouid.csg", ">J5_particles_exported.cs", ">nouid.cs"))
    for csg_path in bad:
        with pytest.raises(FormatError):
            imports.import_group(inst_b, puid_b, csg_path)
        r = csfs("group", "import", puid_b, csg_path, home=inst_b.home)
        assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert sorted(p.name for p in path_b.iterdir()) == before


def test_job_import_refuses_a_non_string_type(two, tmp_path):
    inst_a, puid_a, proj_a, inst_b, puid_b, path_b = two
    (tmp_path / "x").mkdir()
    before = sorted(p.name for p in path_b.iterdir())
    for bad in ({"a": 1}, "x/../../../evil"):  # the type names the job's export folder
        (tmp_path / "x" / "job.json").write_text(json.dumps({"type": bad, "title": "t"}))
        with pytest.raises(FormatError):
            imports.import_job(inst_b, puid_b, tmp_path / "x")
    assert sorted(p.name for p in path_b.iterdir()) == before


def test_job_import_does_not_keep_the_source_jobs_directory_or_clear_record(two):
    """job_dir names the job's own folder (CryoSPARC reads it); the source's clear record lists
    files of another project. Neither may come along."""
    from csfs.core import cleanup

    inst_a, puid_a, proj_a, inst_b, puid_b, path_b = two
    cleanup.clear_intermediate(inst_a, puid_a, "J8")
    assert json.loads((proj_a.path / "J8" / "job.json").read_text())["job_dir"] == "J8"
    dest = consolidate.export_job(inst_a, puid_a, "J8")
    assert cleanup.RECORD_KEY in json.loads((dest / "job.json").read_text())
    juid = imports.import_job(inst_b, puid_b, dest)
    doc = Project.open(path_b).job(juid).doc
    assert doc.get("job_dir", juid) == juid
    assert cleanup.RECORD_KEY not in doc


def test_imports_from_the_same_project_link_relatively(two, tmp_path):
    """Data imported from inside the project itself is linked relatively: the project can then
    be archived, moved and unarchived without breaking the new job's links."""
    inst_a, puid_a, proj_a, inst_b, puid_b, path_b = two
    dest = consolidate.export_group(inst_a, puid_a, "J5", "particles")
    juid = imports.import_group(inst_a, puid_a, dest / "J5_particles_exported.csg")
    vol = proj_a.path / "J8" / "J8_003_volume_map.mrc"
    juid_raw = imports.import_raw(inst_a, puid_a, "volume", [vol])
    links = [p for p in (proj_a.path / juid).rglob("*") if p.is_symlink()]
    links += [p for p in (proj_a.path / juid_raw).rglob("*") if p.is_symlink()]
    assert links and all(not os.path.isabs(os.readlink(p)) for p in links)
    assert all(p.resolve().is_relative_to(proj_a.path.resolve()) for p in links)
    doc = json.loads((proj_a.path / "J9" / "job.json").read_text())
    (proj_a.path / "J9" / "job.json").write_text(json.dumps({**doc, "status": "killed"}))
    lifecycle.archive(inst_a, puid_a)
    moved = tmp_path / "moved" / proj_a.path.name
    moved.parent.mkdir()
    os.rename(proj_a.path, moved)
    lifecycle.unarchive(inst_a, puid_a, moved)
    problems = verify.verify(Project.open(moved))
    assert not [p for p in problems if p.job in (juid, juid_raw)], problems


def test_data_path_naming_a_directory_is_refused(two, tmp_path):
    """A `*/path` value must name a file: a directory is refused before any job is made
    (with --copy it was a failed job left behind)."""
    inst_a, puid_a, proj_a, inst_b, puid_b, path_b = two
    (tmp_path / "g" / "sub").mkdir(parents=True)
    arr = np.zeros(2, dtype=[("uid", "<u8"), ("blob/path", "|S5"), ("blob/idx", "<u4")])
    arr["uid"], arr["blob/path"] = [1, 2], b">sub"
    csfile.save(tmp_path / "g" / "x.cs", arr)
    (tmp_path / "g" / "x.csg").write_text("group: {name: particles, type: particle}\nresults:\n"
                                          "  blob: {metafile: '>x.cs', num_items: 2, type: particle.blob}\n")
    before = sorted(p.name for p in path_b.iterdir())
    for copy in (False, True):
        with pytest.raises(NotFoundError, match="sub"):
            imports.import_group(inst_b, puid_b, tmp_path / "g" / "x.csg", copy=copy)
    assert sorted(p.name for p in path_b.iterdir()) == before


def test_job_import_refuses_two_groups_of_one_name(two):
    """A stray copy of a group folder in the export (same group name twice) would overwrite the
    first group's .cs and list the group twice: refused, nothing created."""
    import shutil

    inst_a, puid_a, proj_a, inst_b, puid_b, path_b = two
    dest = consolidate.export_job(inst_a, puid_a, "J8")
    shutil.copytree(dest / "J8_particles", dest / "J8_particles.bak", symlinks=True)
    before = sorted(p.name for p in path_b.iterdir())
    with pytest.raises(FormatError, match="particles"):
        imports.import_job(inst_b, puid_b, dest)
    assert sorted(p.name for p in path_b.iterdir()) == before
