"""`csfs demo`: the synthetic project is structurally faithful, deterministic and self-consistent."""
from __future__ import annotations

import json
import os
from pathlib import Path

import bson
import numpy as np
import pytest
from csfs.core import csfile, csg, mrc
from csfs.core.demo import PROJECT_DIR, SCALES, make_demo, summarize
from csfs.core.errors import RefusedError, UsageError
from csfs.core.project import Project, referenced_files


def test_project_files(demo):
    doc = json.loads((demo / "project.json").read_text())
    assert doc["synthetic"] is True and doc["detached"] is True and doc["title"] == "csfs demo"
    assert demo.name == "CS-csfs-demo" and not (demo / "cs.lock").exists()
    assert json.loads((demo / "workspaces.json").read_text())[0]["uid"] == "W1"
    manifest = json.loads((demo / "job_manifest.json").read_text())
    assert [j["uid"] for j in manifest["jobs"]] == [f"J{i}" for i in range(1, 11)]


def test_every_job_dir_has_bookkeeping(demo):
    for i in range(1, 11):
        d = demo / f"J{i}"
        assert (d / "gridfs_data").is_dir() and (d / "job.log").stat().st_size > 0
        doc = json.loads((d / "job.json").read_text())
        assert doc["uid"] == f"J{i}" and doc["project_uid"] == "P1"
        events = bson.decode_all((d / "events.bson").read_bytes())
        assert len(events) >= 2 and all(e["job_uid"] == f"J{i}" for e in events)
        assert isinstance(events[0]["created_at"], type(events[-1]["created_at"]))
    plots = bson.decode_all((demo / "J8" / "gridfs_data" / "gridfsdata_0").read_bytes())
    assert plots[0]["filename"] == "J8_000_fsc.png" and plots[0]["data"].startswith(b"\x89PNG")


def test_parents_children_match_inputs(demo):
    docs = {i: json.loads((demo / f"J{i}" / "job.json").read_text()) for i in range(1, 11)}
    assert docs[8]["parents"] == ["J7"] and "J8" in docs[7]["children"]
    assert set(docs[6]["children"]) == {"J7", "J10"} and docs[1]["parents"] == []


def test_import_symlinks_are_absolute_into_raw(demo):
    raw = demo.parent / "raw"
    links = list((demo / "J1" / "imported").iterdir())
    assert len(links) == SCALES["tiny"].mics
    for link in links:
        target = os.readlink(link)
        assert link.is_symlink() and os.path.isabs(target) and Path(target).parent == raw
        assert mrc.read_header(link).nz == SCALES["tiny"].frames
    # the only links in the project are the imports
    others = [p for p in demo.rglob("*") if p.is_symlink() and p.parent.name != "imported"]
    assert others == []


def test_one_csg_per_output_group(demo):
    p = Project.open(demo)
    for job in p.jobs.values():
        for g in job.groups:
            path = job.dir / f"{job.uid}_{g.name}.csg"
            if not any(r.versions for r in g.results):
                assert not path.exists()
                continue
            c = csg.load(path)
            assert c.group["name"] == g.name and c.group["type"] == g.type
            assert set(c.results) == {r.name for r in g.results}
            for slot, res in c.results.items():
                mf = csg.resolve_metafile(path, res["metafile"])
                assert mf == demo / g.result(slot).final_metafile and mf.is_file()
                assert res["type"] == g.result(slot).type


def test_class2d_intermediate_versions(demo):
    names = sorted(p.name for p in (demo / "J6").glob("J6_0*_particles.cs"))
    assert names == [f"J6_{v:03d}_particles.cs" for v in range(SCALES["tiny"].iters2d)]
    assert len(list((demo / "J6").glob("J6_0*_class_averages.mrc"))) == SCALES["tiny"].iters2d


def test_refine_writes_per_iteration_volumes(demo):
    for v in range(SCALES["tiny"].iters_refine):
        for slot in ("map", "map_sharp", "map_half_A", "map_half_B", "mask_fsc", "mask_fsc_auto",
                     "mask_refine", "precision"):
            h = mrc.read_header(demo / "J8" / f"J8_{v:03d}_volume_{slot}.mrc")
            assert h.ispg == 1 and h.nx == h.ny == h.nz == SCALES["tiny"].vol


def test_particle_stacks_are_real_mrc(demo):
    p = Project.open(demo)
    rows = csfile.load(demo / "J5" / "J5_particles.cs", fields=["blob/path", "blob/idx", "blob/shape"])
    for rel in referenced_files(p, "J5/J5_particles.cs"):
        h = mrc.read_header(demo / rel)
        mine = rows[rows["blob/path"] == rel.encode()]
        assert h.nz == len(mine) and sorted(mine["blob/idx"].tolist()) == list(range(h.nz))
        assert (h.ny, h.nx) == tuple(mine["blob/shape"][0]) and (demo / rel).stat().st_size == h.file_size
        data = mrc.read(demo / rel)
        assert data.shape == (h.nz, h.ny, h.nx) and float(np.abs(data).sum()) > 0   # tiny is dense


def test_all_mrc_files_have_valid_headers(demo):
    mrcs = [p for p in demo.rglob("*.mrc") if not p.is_symlink()]
    assert len(mrcs) > 50
    for path in mrcs:
        assert path.stat().st_size == mrc.read_header(path).file_size, path


def test_cs_files_match_cryosparc_tools(demo):
    from cryosparc import dataset  # a test dependency: missing, the test fails (no silent skip)
    metafiles = [mf for j in Project.open(demo).jobs.values() for mf in j.metafiles]
    assert len(metafiles) >= 40
    for rel in metafiles:
        ds = dataset.Dataset.load(demo / rel)
        mine = csfile.load(demo / rel)
        assert len(ds) == len(mine) and set(ds.fields()) == set(mine.dtype.names)
        assert np.array_equal(ds["uid"], mine["uid"])


def test_deterministic_for_a_seed(tmp_path):
    a = make_demo(tmp_path / "a", seed=5)
    b = make_demo(tmp_path / "b", seed=5)
    c = make_demo(tmp_path / "c", seed=6)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and not p.is_symlink())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and not p.is_symlink())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        assert (a / rel).stat().st_mtime == (b / rel).stat().st_mtime
    assert (a / "J5/J5_particles.cs").read_bytes() != (c / "J5/J5_particles.cs").read_bytes()
    assert (a / "J8").stat().st_mtime < 1.8e9          # from the fixed base, not now


def test_refuses_existing_and_bad_scale(tmp_path):
    make_demo(tmp_path)
    with pytest.raises(RefusedError):
        make_demo(tmp_path)
    with pytest.raises(UsageError):
        make_demo(tmp_path / "x", scale="huge")
    assert not (tmp_path / "x" / PROJECT_DIR).exists()


def test_small_scale(tmp_path):
    root = make_demo(tmp_path, scale="small", seed=2)
    info = summarize(root)
    assert info["micrographs"] == SCALES["small"].mics and info["jobs"] == 10
    assert info["particles"] > 0.9 * SCALES["small"].mics * SCALES["small"].ppm
    st = os.stat(next((root / "J5" / "extract").iterdir()))
    assert st.st_blocks * 512 < st.st_size                 # sparse data sections
    assert all(j.error is None and not j.problems for j in Project.open(root).jobs.values())


def test_cli_demo(tmp_path, csfs):
    r = csfs("demo", tmp_path, "--seed", "3", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["project"]["path"] == str(tmp_path / PROJECT_DIR) and info["job_count"] == 10
    assert info["file_count"] > 100
    assert info["scale"] == "tiny" and info["seed"] == 3
    r = csfs("demo", tmp_path)
    assert r.returncode == 1 and "already exists" in r.stderr and "Traceback" not in r.stderr
    r = csfs("demo", tmp_path / "y", "--scale", "huge")
    assert r.returncode == 2
    r = csfs("demo", tmp_path / "z")
    assert r.returncode == 0 and r.stdout.splitlines()[0] == str(tmp_path / "z" / PROJECT_DIR)
    r = csfs("demo", "--help")
    assert r.returncode == 0 and "--scale" in r.stdout and "large" in r.stdout


def test_mrc_roundtrip(tmp_path):
    data = np.arange(2 * 3 * 4, dtype="<f4").reshape(2, 3, 4)
    assert mrc.write(tmp_path / "v.mrc", data, voxel_size=1.5, volume=True, label="x") == 1024 + data.nbytes
    h = mrc.read_header(tmp_path / "v.mrc")
    assert (h.nx, h.ny, h.nz, h.mode, h.ispg, h.label) == (4, 3, 2, 2, 1, "x") and h.voxel_size == 1.5
    assert np.array_equal(mrc.read(tmp_path / "v.mrc"), data)
    mrc.write(tmp_path / "s.mrc", shape=(5, 8, 8), mode=12)
    assert os.path.getsize(tmp_path / "s.mrc") == 1024 + 5 * 64 * 2
    (tmp_path / "none.txt").write_text("not an MRC file")
    with pytest.raises(ValueError):
        mrc.read_header(tmp_path / "none.txt")
    import mrcfile  # a test dependency (pyproject's test extras): missing, the test fails
    assert mrcfile.validate(str(tmp_path / "v.mrc"), print_file=open(os.devnull, "w"))
    with mrcfile.open(tmp_path / "s.mrc") as m:
        assert m.is_image_stack() and m.data.shape == (5, 8, 8)


def test_negative_seed_is_a_usage_error(tmp_path, csfs):
    with pytest.raises(UsageError, match="seed"):
        make_demo(tmp_path / "x", seed=-1)
    assert not (tmp_path / "x").exists()
    r = csfs("demo", tmp_path / "y", "--seed", "-1")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
