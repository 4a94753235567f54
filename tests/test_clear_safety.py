"""clear-intermediate safety suite: every way a file can be referenced -> nothing referenced is deleted.

Each case makes something in the project name a file of an intermediate version of
J8 (or J6), clears the job, and checks: the referenced file survives, nothing outside
the job folder changed, the kept file is reported, and `du`'s clearable bytes agree
with what the clear deleted.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from csfs.core import cleanup, csfile, csg, imports, sizes, verify
from csfs.core.project import Project

from data_helpers import attach, snapshot

V1_MAP = "J8/J8_001_volume_map.mrc"
V1_CS = "J8/J8_001_volume.cs"


def _sha(p: Path) -> str:
    return hashlib.sha1(p.read_bytes()).hexdigest()


def _clear(inst, puid, demo: Path, juid: str = "J8") -> cleanup.JobClear:
    """Dry run, du and real clear must agree; returns the real plan."""
    (dry,) = cleanup.clear_intermediate(inst, puid, juid, dry_run=True)
    assert not dry.skipped, dry.skipped
    clearable = sizes.project_sizes(Project.open(demo), inst.cache_dir).jobs[juid].clearable
    assert clearable == dry.bytes
    (plan,) = cleanup.clear_intermediate(inst, puid, juid)
    assert [f.path for f in plan.files] == [f.path for f in dry.files]
    assert sizes.project_sizes(Project.open(demo), inst.cache_dir).jobs[juid].clearable == 0
    assert all(f.path.startswith(juid + "/") for f in plan.files)
    return plan


def _outside(demo: Path, juid: str) -> dict[str, str]:
    return {k: v for k, v in snapshot(demo, skip=juid).items() if k not in ("project.json", "workspaces.json")}


def _kept(plan: cleanup.JobClear, rel: str) -> bool:
    return any(k.startswith(rel + ":") for k in plan.kept)


def test_import_raw_link_to_an_intermediate_file(demo, home):
    inst, puid, _ = attach(demo, home)
    before = _sha(demo / V1_MAP)
    juid = imports.import_raw(inst, puid, "volume", [demo / V1_MAP])
    outside = _outside(demo, "J8")
    plan = _clear(inst, puid, demo)
    assert (demo / V1_MAP).is_file() and _sha(demo / V1_MAP) == before
    assert _kept(plan, V1_MAP) and "still used by" in " ".join(plan.kept)
    assert not (demo / "J8/J8_000_volume_map.mrc").exists()       # the rest still goes
    assert _outside(demo, "J8") == outside
    assert verify.verify(Project.open(demo)) == [], juid


def test_group_import_of_a_csg_naming_an_intermediate_metafile(demo, home):
    inst, puid, _ = attach(demo, home)
    c = csg.load(demo / "J8/J8_volume.csg")
    for r in c.results.values():
        r["metafile"] = ">J8_001_volume.cs"
    csg.save(demo / "J8/old_v1.csg", c)
    imports.import_group(inst, puid, demo / "J8/old_v1.csg")
    plan = _clear(inst, puid, demo)
    assert (demo / V1_MAP).is_file() and (demo / V1_CS).is_file()
    assert _kept(plan, V1_CS)
    assert verify.verify(Project.open(demo)) == []


def test_csg_anywhere_in_the_project_keeps_its_metafile_and_data(demo, home):
    inst, puid, _ = attach(demo, home)
    (demo / "notes").mkdir()
    c = csg.load(demo / "J8/J8_volume.csg")
    for r in c.results.values():
        r["metafile"] = ">../J8/J8_001_volume.cs"
    csg.save(demo / "notes/keep_v1.csg", c)
    plan = _clear(inst, puid, demo)
    assert (demo / V1_CS).is_file() and (demo / V1_MAP).is_file()
    assert _kept(plan, V1_CS) and _kept(plan, V1_MAP)


def _move_elsewhere(demo: Path, juid: str, elsewhere: Path) -> Path:
    """Move a job folder to other storage and link it back, as admins do when a disk fills."""
    elsewhere.mkdir(exist_ok=True)
    shutil.move(str(demo / juid), elsewhere / juid)
    os.symlink(elsewhere / juid, demo / juid)
    return elsewhere


def test_consuming_job_folder_is_a_symlink_to_other_storage(demo, home, tmp_path):
    """J10 uses J6 class_averages v3; with J10 moved elsewhere and linked back, v3 stays."""
    inst, puid, _ = attach(demo, home)
    elsewhere = _move_elsewhere(demo, "J10", tmp_path / "other-storage")
    assert "J10" in Project.open(demo).jobs
    v3 = "J6/J6_003_class_averages.mrc"
    before = _sha(demo / v3)
    _clear(inst, puid, demo, "J6")
    assert (demo / v3).is_file() and _sha(demo / v3) == before
    assert not (demo / "J6/J6_001_class_averages.mrc").exists()
    assert (elsewhere / "J10/job.json").is_file()


def test_cleared_job_folder_is_a_symlink(demo, home, tmp_path):
    """The job's own folder lives elsewhere: its files are cleared there, nothing else is."""
    inst, puid, _ = attach(demo, home)
    elsewhere = _move_elsewhere(demo, "J8", tmp_path / "other-storage")
    outside = _outside(demo, "J8")
    plan = _clear(inst, puid, demo)
    assert plan.files and not (elsewhere / "J8/J8_000_volume_map.mrc").exists()
    assert (elsewhere / "J8/J8_003_volume_map.mrc").is_file()
    assert _outside(demo, "J8") == outside
    assert verify.verify(Project.open(demo)) == []


def _set_paths(mf: Path, field_prefix: str, value: str) -> None:
    arr = np.array(csfile.load(mf))
    names = [n for n in arr.dtype.names if n.startswith(field_prefix) and n.endswith("/path")]
    width = max(len(value) + 1, arr.dtype[names[0]].itemsize)
    descr = [(n, f"|S{width}") if n in names else (n, arr.dtype[n].base.str, arr.dtype[n].shape)
             if arr.dtype[n].shape else (n, arr.dtype[n].str) for n in arr.dtype.names]
    out = np.zeros(len(arr), dtype=descr)
    for n in arr.dtype.names:
        out[n] = value.encode() if n in names else arr[n]
    csfile.save(mf, out)


def test_final_metafile_names_the_file_by_absolute_path(demo, home):
    """v3 (final) names v1's map absolutely, v1 names it relatively: it is one file, kept."""
    inst, puid, _ = attach(demo, home)
    _set_paths(demo / "J8/J8_003_volume.cs", "map/", str(demo / V1_MAP))
    plan = _clear(inst, puid, demo)
    assert (demo / V1_MAP).is_file() and _kept(plan, V1_MAP)
    assert not (demo / V1_CS).exists()


def test_absolute_path_from_the_projects_old_location(demo, home):
    inst, puid, _ = attach(demo, home)
    _set_paths(demo / "J8/J8_003_volume.cs", "map/", f"/old/storage/{demo.name}/{V1_MAP}")
    _clear(inst, puid, demo)
    assert (demo / V1_MAP).is_file()


def test_other_jobs_metafile_with_gt_relative_path(demo, home):
    """Another job's (intermediate) metafile names J8's file as `>../J8/...`."""
    inst, puid, _ = attach(demo, home)
    mf = demo / "J7" / sorted(p.name for p in (demo / "J7").glob("J7_class_00_0000*_volume.cs"))[0]
    _set_paths(mf, "map/", f">../{V1_MAP}")
    _clear(inst, puid, demo)
    assert (demo / V1_MAP).is_file()


def test_symlinked_final_version(demo, home):
    """J8_003_volume.cs -> J8_002_volume.cs: v2's metafile and its data are the final version's."""
    inst, puid, _ = attach(demo, home)
    (demo / "J8/J8_003_volume.cs").unlink()
    os.symlink("J8_002_volume.cs", demo / "J8/J8_003_volume.cs")
    plan = _clear(inst, puid, demo)
    assert (demo / "J8/J8_002_volume.cs").is_file() and (demo / "J8/J8_002_volume_map.mrc").is_file()
    assert _kept(plan, "J8/J8_002_volume.cs")
    assert not (demo / "J8/J8_001_volume_map.mrc").exists()
    assert verify.verify(Project.open(demo)) == []


def test_link_to_a_folder_keeps_everything_under_it(demo, home):
    inst, puid, _ = attach(demo, home)
    os.symlink("../J8", demo / "J5" / "look_at_J8")
    plan = _clear(inst, puid, demo)
    assert plan.files == [] and plan.kept
    assert (demo / "J8/J8_000_volume_map.mrc").is_file()


def test_hard_link_elsewhere_is_kept_and_reported(demo, home):
    inst, puid, _ = attach(demo, home)
    os.link(demo / V1_MAP, demo / "J5" / "copy_of_v1.mrc")
    plan = _clear(inst, puid, demo)
    assert (demo / V1_MAP).is_file() and any("hard link" in k for k in plan.kept)


def test_exports_links_keep_exported_files(demo, home):
    """A physical export (links into the job) of an intermediate version keeps its files."""
    inst, puid, _ = attach(demo, home)
    (demo / "exports/mine").mkdir(parents=True)
    os.symlink(f"../../{V1_MAP}", demo / "exports/mine/map.mrc")
    _clear(inst, puid, demo)
    assert (demo / V1_MAP).is_file()


@pytest.mark.parametrize("how", ["relative", "absolute", "dotdot"])
def test_never_deletes_outside_the_job_folder(demo, home, how):
    """A dropped version naming another job's file (any spelling): that file stays."""
    inst, puid, _ = attach(demo, home)
    foreign = sorted((demo / "J7").glob("*.mrc"))[0]
    value = {"relative": str(foreign.relative_to(demo)), "absolute": str(foreign),
             "dotdot": f"J8/../{foreign.relative_to(demo)}"}[how]
    _set_paths(demo / V1_CS, "map/", value)
    outside = _outside(demo, "J8")
    _clear(inst, puid, demo)
    assert foreign.is_file() and _outside(demo, "J8") == outside


def test_unreadable_metafile_elsewhere_blocks_clearing(demo, home):
    """A metafile that cannot be read may name anything: clear nothing, say which."""
    inst, puid, _ = attach(demo, home)
    bad = sorted((demo / "J7").glob("J7_class_00_0000*_volume.cs"))[0]
    bad.write_bytes(b"\x93NUMPY garbage")
    before = snapshot(demo)
    plans = {p.job: p for p in cleanup.clear_intermediate(inst, puid, dry_run=True)}
    assert plans["J8"].skipped and bad.name in plans["J8"].skipped
    with pytest.raises(cleanup.RefusedError, match=bad.name):
        cleanup.clear_intermediate(inst, puid, "J8")
    assert snapshot(demo) == before
    assert sizes.project_sizes(Project.open(demo), inst.cache_dir).jobs["J8"].clearable == 0


def test_clearable_bytes_follow_a_new_reference(demo, home):
    """du's cached clearable bytes drop when another job starts linking to the job's files."""
    inst, puid, _ = attach(demo, home)
    first = sizes.project_sizes(Project.open(demo), inst.cache_dir).jobs["J8"].clearable
    imports.import_raw(inst, puid, "volume", [demo / V1_MAP])
    second = sizes.project_sizes(Project.open(demo), inst.cache_dir).jobs["J8"].clearable
    assert second == first - (demo / V1_MAP).stat().st_size


def test_cli_reports_kept_files(demo, home, csfs):
    inst, puid, _ = attach(demo, home)
    imports.import_raw(inst, puid, "volume", [demo / V1_MAP])
    r = csfs("clear-intermediate", puid, "J8", home=home)
    assert r.returncode == 0 and f"kept {V1_MAP}: still used by" in r.stdout, r.stdout + r.stderr
    assert (demo / V1_MAP).is_file()


@pytest.mark.parametrize("how", ["link", "hard-link", "csg", "link-to-folder"])
def test_every_flavour(flavour_demo, home, how):
    """On each demo flavour (legacy, v4, v5): a file of a cleared version that something else
    names stays, and the rest of the clear still happens."""
    inst, puid, _ = attach(flavour_demo, home)
    plans = [p for p in cleanup.clear_intermediate(inst, puid, dry_run=True) if p.files]
    assert plans, "every flavour has intermediate versions to clear"
    plan = plans[0]
    metafile = next(f.path for f in plan.files if f.path.endswith(".cs"))
    target = next((f.path for f in plan.files if not f.path.endswith(".cs")), metafile)
    (flavour_demo / "notes").mkdir()
    if how == "link":
        os.symlink(flavour_demo / target, flavour_demo / "notes" / "mine")
    elif how == "hard-link":
        os.link(flavour_demo / target, flavour_demo / "notes" / "mine")
    elif how == "csg":
        target = metafile
        (flavour_demo / "notes" / "keep.csg").write_text(
            "group: {name: g, type: particle}\n"
            f"results: {{x: {{metafile: '>../{metafile}', num_items: 1, type: particle.x}}}}\n")
    else:
        os.symlink(flavour_demo / os.path.dirname(target), flavour_demo / "notes" / "folder")
    before = _sha(flavour_demo / target)
    (done,) = cleanup.clear_intermediate(inst, puid, plan.job)
    assert (flavour_demo / target).is_file() and _sha(flavour_demo / target) == before
    assert _kept(done, target)
    if how != "link-to-folder":
        assert done.files and not any((flavour_demo / f.path).exists() for f in done.files)
