"""verify and relink: the raw data moved, symlinks broke, and were repointed."""
from __future__ import annotations

import json
import os

import pytest

from csfs.core import consolidate, verify
from csfs.core.errors import RefusedError, UsageError
from csfs.core.project import Project

from data_helpers import attach


def _kinds(problems) -> set[str]:
    return {p.kind for p in problems}


def test_clean_demo_verifies(flavour_demo):
    assert verify.verify(Project.open(flavour_demo)) == []


def test_moved_raw_data_then_relink(demo, home, tmp_path):
    inst, puid, _ = attach(demo, home)
    exported = consolidate.export_job(inst, puid, "J1")  # its links to raw data move too
    raw = demo.parent / "raw"
    moved = tmp_path / "new-storage" / "raw"
    moved.parent.mkdir()
    raw.rename(moved)
    problems = verify.verify(Project.open(demo))
    assert "broken-symlink" in _kinds(problems) and "missing-data" in _kinds(problems)
    assert all(p.job in ("J1", None) for p in problems if p.kind == "broken-symlink")
    # refused: the new target does not exist; nothing changes
    assert any(p.job is None and p.path.startswith("exports/") for p in problems)
    links = {p: os.readlink(p) for top in (demo / "J1", exported) for p in top.rglob("*") if p.is_symlink()
             and os.readlink(p).startswith(str(raw))}
    with pytest.raises(RefusedError, match="do not exist"):
        verify.relink(inst, puid, str(raw), str(tmp_path / "elsewhere"))
    assert {p: os.readlink(p) for p in links} == links
    # dry run lists, changes nothing
    planned = verify.relink(inst, puid, str(raw) + "/", str(moved), dry_run=True)
    assert len(planned) == len(links) and {p: os.readlink(p) for p in links} == links
    done = verify.relink(inst, puid, str(raw), str(moved))
    assert [c.new_target for c in done] == [c.new_target for c in planned]
    assert all(os.readlink(p).startswith(str(moved) + "/") for p in links)
    assert verify.verify(Project.open(demo)) == []
    with pytest.raises(UsageError):
        verify.relink(inst, puid, str(moved), str(moved) + "/")


def test_missing_and_unreadable_files(demo):
    stack = sorted((demo / "J5" / "extract").iterdir())[0]
    stack.unlink()
    mf = demo / "J8" / "J8_003_volume.cs"
    mf.write_bytes(b"garbage, not a .cs file")
    (demo / "J7" / "J7_volume_class_0.csg").unlink(missing_ok=True)
    os.unlink(next((demo / "J6").glob("J6_00*_class_averages.cs")))
    (demo / "J10" / "job.json").write_text("{broken")
    problems = verify.verify(Project.open(demo))
    by_kind = {p.kind: p for p in problems}
    assert by_kind["missing-data"].path == str(stack.relative_to(demo))
    assert by_kind["unreadable-metafile"].path == "J8/J8_003_volume.cs"
    assert by_kind["missing-metafile"].job == "J6"
    assert by_kind["metadata"].job == "J10"


def test_cli(demo, home, csfs, tmp_path):
    _, puid, _ = attach(demo, home)
    r = csfs("verify", puid, home=home)
    assert r.returncode == 0 and r.stdout.startswith("ok:")
    raw = demo.parent / "raw"
    raw.rename(tmp_path / "raw2")
    r = csfs("verify", puid, "--json", home=home)
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and not doc["ok"] and doc["problems"]
    r = csfs("relink", puid, "--from", raw, "--to", tmp_path / "nope", home=home)
    assert r.returncode == 1 and "do not exist" in r.stderr and "Traceback" not in r.stderr
    r = csfs("relink", puid, "--from", raw, "--to", tmp_path / "raw2", "--dry-run", home=home)
    assert r.returncode == 0 and "would relink" in r.stdout
    assert csfs("verify", puid, home=home).returncode == 1
    r = csfs("relink", puid, "--from", raw, "--to", tmp_path / "raw2", home=home)
    assert r.returncode == 0 and "relinked" in r.stdout
    assert csfs("verify", puid, home=home).returncode == 0
