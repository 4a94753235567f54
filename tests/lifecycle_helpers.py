"""Helpers for the lifecycle, instance and crash tests: small projects, tree snapshots, invariants."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
from pathlib import Path

from csfs.core import lock
from csfs.core.instance import Instance


def make_project(parent: Path, name: str = "CS-hand-made", statuses: tuple[str, ...] = ("completed",) * 3,
                 uid: str = "P7") -> Path:
    """A small v4 project directory, detached and unlocked, with one job per status."""
    path = parent / name
    path.mkdir(parents=True)
    (path / "project.json").write_text(json.dumps({
        "uid": uid, "title": name[3:].replace("-", " "), "description": "test", "created_at": "2024-01-01T00:00:00",
        "archived": False, "detached": True}))
    (path / "workspaces.json").write_text(json.dumps([{"uid": "W1", "title": "first", "project_uid": uid}]))
    for i, status in enumerate(statuses, 1):
        j = path / f"J{i}"
        (j / "gridfs_data").mkdir(parents=True)
        (j / "gridfs_data" / "img.png").write_bytes(b"\x89PNG" + bytes([i]) * 50)
        (j / "events.bson").write_bytes(b"\x05\x00\x00\x00\x00")
        (j / "job.log").write_text(f"log of J{i}\n")
        (j / f"J{i}_data.mrc").write_bytes(os.urandom(300))
        (j / "job.json").write_text(json.dumps({
            "uid": f"J{i}", "project_uid": uid, "type": "homo_refine", "title": f"job {i}", "status": status,
            "created_at": "2024-01-01T00:00:00", "completed_at": None, "parents": [], "children": [],
            "input_slot_groups": [], "output_result_groups": [], "output_results": [],
            "workspace_uids": ["W1"]}))
    return path


def make_legacy(parent: Path, name: str = "P12", jobs: int = 2) -> Path:
    """A legacy (<= v3.3) project: P12/ with cryosparc_P12_J<n>_ file names, no project.json, no lock."""
    path = parent / name
    for i in range(1, jobs + 1):
        j = path / f"J{i}"
        j.mkdir(parents=True)
        (j / f"cryosparc_{name}_J{i}_particles.cs").write_bytes(b"x" * 10)
        (j / "job.json").write_text(json.dumps({"uid": f"J{i}", "project_uid": name, "type": "extract_micrographs",
                                                "title": f"legacy {i}", "status": "completed"}))
    return path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root: files by content hash and mode, links by target, dirs by presence."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
    return out


def job_data(root: Path) -> dict[str, tuple]:
    """snapshot() of the job directories without job.json (which lifecycle actions may rewrite)."""
    return {k: v for k, v in snapshot(root).items()
            if k.split("/")[0].startswith("J") and not k.endswith("/job.json")}


def all_json_parses(root: Path) -> None:
    for p in root.rglob("*.json"):
        json.loads(p.read_bytes())
    if (root / "cs.lock").exists():
        json.loads((root / "cs.lock").read_bytes())


def check_agree(inst: Instance, path: Path) -> str:
    """Assert that the registry and the directory agree; return the state ('none' if unregistered)."""
    rec = inst.find_path(path)
    info = lock.read(path)
    doc = json.loads((path / "project.json").read_bytes()) if (path / "project.json").exists() else {}
    if rec is None or rec.state == "detached":
        assert info is None or not info.is_ours(inst.id) or (rec is not None and info.lock_id != rec.lock_id), \
            f"our lock without a live registry row: {info and info.doc}"
        return rec.state if rec else "none"
    assert info is not None and info.is_ours(inst.id), f"{rec} but lock is {info and info.doc}"
    assert info.lock_id == rec.lock_id
    assert doc.get("uid") == rec.uid
    assert doc.get("archived") is (rec.state == "archived")
    assert doc.get("detached") is False
    return rec.state


def run_main(*args, home: Path) -> subprocess.CompletedProcess:
    """Run the real CLI entry point in this process (fast); same result shape as conftest's run_csfs."""
    from csfs.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["--home", str(home), *map(str, args)])
        except SystemExit as e:  # argparse errors and --help
            code = e.code if isinstance(e.code, int) else 2
    return subprocess.CompletedProcess(["csfs", *map(str, args)], code, out.getvalue(), err.getvalue())


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """The command succeeded."""
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    return r


def refused(r: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """The command failed with `code` and one clear line naming `words`, no traceback."""
    assert r.returncode == code, f"exit {r.returncode} (wanted {code}): {r.stdout}{r.stderr}"
    err = r.stderr.strip()
    assert err.startswith("csfs: ") and "\n" not in err and "Traceback" not in r.stderr, err
    for w in words:
        assert w in err, f"{w!r} not in {err!r}"
    return err
