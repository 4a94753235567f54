"""verify and relink: the raw data moved, symlinks broke, and were repointed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from csfs.core import consolidate, verify
from csfs.core.errors import RefusedError, UsageError
from csfs.core.project import Project

from conftest import REPO
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
    # each broken link once, where it lives: not again as missing data of every job using it
    assert _kinds(problems) == {"broken-symlink"}
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


def test_verify_names_the_moved_folder_and_the_relink_that_repairs_it(demo, home, tmp_path, monkeypatch):
    inst, puid, _ = attach(demo, home)
    raw = demo.parent / "raw"
    n_links = sum(1 for p in (demo / "J1").rglob("*") if p.is_symlink() and os.readlink(p).startswith(str(raw)))
    moved = tmp_path / "new-storage" / "raw"
    moved.parent.mkdir()
    raw.rename(moved)
    problems = verify.verify(Project.open(demo))
    assert len(problems) == n_links
    assert verify.relink_hints(problems) == [verify.RelinkHint(str(raw), n_links)]
    # a relative --from/--to is taken from the current folder
    monkeypatch.chdir(demo.parent)
    done = verify.relink(inst, puid, "raw", os.path.relpath(moved), dry_run=True)
    assert len(done) == n_links and all(c.new_target.startswith(str(moved) + "/") for c in done)
    with pytest.raises(UsageError, match="no symlink .* points into"):
        verify.relink(inst, puid, "no-such-raw", "elsewhere", dry_run=True)


def test_cli_verify_prints_the_repair_command_and_it_works(demo, home, csfs, tmp_path):
    _, puid, _ = attach(demo, home)
    raw = demo.parent / "raw"
    raw.rename(tmp_path / "moved")
    r = csfs("verify", puid, home=home)
    assert r.returncode == 1
    (command,) = [ln.strip() for ln in r.stdout.splitlines() if ln.strip().startswith("csfs relink")]
    assert command == f"csfs relink {puid} --from {raw} --to NEWDIR --dry-run"
    doc = json.loads(csfs("verify", puid, "--json", home=home).stdout)
    assert doc["relink"] == [{"from": str(raw), "link_count": len(doc["problems"]), "command": command}]
    args = command.replace("NEWDIR", str(tmp_path / "moved")).replace(" --dry-run", "").split()[1:]
    r = csfs(*args, home=home)
    assert r.returncode == 0 and f"relinked {len(doc['problems'])} symlink(s)" in r.stdout, r.stderr
    assert csfs("verify", puid, home=home).returncode == 0
    # run again: nothing left to relink, and that is fine
    assert csfs(*args, home=home).returncode == 0
    # relative prefixes from the folder the command runs in
    r = subprocess.run([sys.executable, "-m", "csfs", "relink", puid, "--from", "moved", "--to", "raw", "--dry-run"],
                       capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "CSFS_HOME": str(home),
                                                                           "PYTHONPATH": str(REPO)})
    assert r.returncode == 1 and "do not exist" in r.stderr     # tmp_path/raw does not exist: refused
    r = subprocess.run([sys.executable, "-m", "csfs", "relink", puid, "--from", "moved", "--to", "moved2",
                        "--dry-run"], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "CSFS_HOME": str(home), "PYTHONPATH": str(REPO)})
    assert r.returncode == 1 and str(tmp_path / "moved2") in r.stderr


def test_job_problems_are_verify_findings(demo):
    """One rule for both: every problem `csfs job list` shows for a job, verify reports too
    (verify adds what only reading the metafiles finds)."""
    (demo / "J1" / "imported" / "dangling").symlink_to(demo / "gone")
    os.unlink(next((demo / "J6").glob("J6_00*_class_averages.cs")))
    (demo / "J10" / "job.json").write_text("{broken")
    (demo / "J8" / "J8_003_volume.cs").write_bytes(b"garbage, not a .cs file")
    project = Project.open(demo)
    shown = {m for j in project.jobs.values() for m in j.problems}
    found = verify.verify(project)
    assert shown and shown <= {p.message for p in found}
    assert {p.kind for p in found} >= {"broken-symlink", "missing-metafile", "metadata", "unreadable-metafile"}
    assert not project.job("J8").problems   # what only reading its metafiles shows is verify's
