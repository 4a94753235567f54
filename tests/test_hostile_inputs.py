"""Hostile project contents: no hang, no traceback, the bad job reported alone, nothing changed.

FIFOs and devices where documents or metafiles belong, symlink loops in gridfs_data,
YAML alias bombs and bad dates in .csg files, deep nesting and impossible numbers in
job.json, metafiles without uid or with NUL bytes in paths, lying CSDAT headers.
Everything runs through the real command line under a timeout.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from csfs.core import consolidate, csfile, csg, exportplan
from csfs.core.errors import FormatError
from csfs.core.project import Project

from data_helpers import attach, snapshot
from test_safeio import BOMB

TIMEOUT = 60


def _clean(r: subprocess.CompletedProcess, code: int | None = 2) -> None:
    assert "Traceback" not in r.stderr, r.stderr
    if code is not None:
        assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    if r.returncode and r.stderr.strip():      # (verify exits 1 with its report on stdout)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def _snap(demo: Path) -> dict:
    """The project's files (FIFOs and devices skipped: reading them would block)."""
    return dict(snapshot(demo)) if not _specials(demo) else {
        str(p.relative_to(demo)): p.stat().st_mtime_ns for p in demo.rglob("*")
        if p.is_file() and not p.is_symlink()}


def _specials(top: Path) -> bool:
    return any(not (p.is_file() or p.is_dir()) and not p.is_symlink() for p in top.rglob("*"))


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize("doc", ["J8/job.json", "project.json", "workspaces.json"])
def test_fifo_documents_do_not_hang_the_cli(demo, home, csfs, doc):
    _fifo(demo / doc)
    r = csfs("jobs", demo, timeout=TIMEOUT)
    _clean(r, None)
    assert r.returncode == 0 and "J7" in r.stdout
    if doc == "J8/job.json":
        assert "J8" in r.stdout and "FIFO" in r.stdout + r.stderr
    r = csfs("project", "attach", demo, home=home, timeout=TIMEOUT)
    _clean(r, None)


@pytest.mark.parametrize("what", ["fifo", "zero"])
def test_special_lock_is_refused_cleanly(demo, home, csfs, what):
    if what == "fifo":
        os.mkfifo(demo / "cs.lock")
    else:
        os.symlink("/dev/zero", demo / "cs.lock")
    r = csfs("project", "attach", demo, home=home, timeout=TIMEOUT)
    _clean(r, None)
    assert r.returncode != 0 and "cs.lock" in r.stderr


def test_fifo_metafile(demo, home, csfs):
    _, puid, _ = attach(demo, home)
    _fifo(demo / "J8/J8_003_volume.cs")
    for args in (("jobs", demo), ("du", puid), ("verify", puid), ("group", "export", puid, "J8", "volume"),
                 ("job", "export", puid, "J8"), ("clear-intermediate", puid, "J8", "--dry-run"),
                 ("cs", "show", demo / "J8/J8_003_volume.cs")):
        r = csfs(*args, home=home, timeout=TIMEOUT)
        _clean(r, None)


def test_gridfs_symlink_loop(demo, home):
    inst, puid, _ = attach(demo, home)
    g = demo / "J8/gridfs_data"
    (g / "img.png").write_bytes(b"png")
    (g / "a").symlink_to(".")
    (g / "sub").mkdir()
    (g / "sub" / "up").symlink_to("..")
    plan = exportplan.job_export_plan(Project.open(demo), "J8")
    paths = [e.path for e in plan.entries if e.path.startswith("gridfs_data")]
    assert "gridfs_data/img.png" in paths and max(p.count("/") for p in paths) <= 2, paths
    dest = consolidate.export_job(inst, puid, "J8")
    depth = max(len(p.relative_to(dest).parts) for p in dest.rglob("*"))
    assert depth < 6
    with tarfile.open(fileobj=open(os.devnull, "wb"), mode="w|") as tar:   # tar -ch of it ends
        tar.dereference = True
        tar.add(dest, arcname="x")


def test_metafile_without_uid(demo, home, csfs):
    _, puid, _ = attach(demo, home)
    mf = demo / "J8/J8_003_volume.cs"
    arr = csfile.load(mf)
    names = [n for n in arr.dtype.names if n != "uid"]
    out = np.zeros(len(arr), dtype=[(n, arr.dtype[n]) for n in names])
    for n in names:
        out[n] = arr[n]
    csfile.save(mf, out)
    before = snapshot(demo)
    r = csfs("group", "export", puid, "J8", "volume", home=home, timeout=TIMEOUT)
    _clean(r)
    assert "uid" in r.stderr
    r = csfs("job", "export", puid, "J8", home=home, timeout=TIMEOUT)
    _clean(r, None)
    after = snapshot(demo)
    assert {k: v for k, v in after.items() if not k.startswith("exports/")} == before


def test_path_with_nul(demo, home, csfs):
    _, puid, _ = attach(demo, home)
    mf = demo / "J8/J8_003_volume.cs"
    arr = np.array(csfile.load(mf))
    f = csfile.path_fields(arr)[0]
    arr[f] = b"J8/a\0b.mrc"          # numpy strips trailing NULs only: this one stays
    csfile.save(mf, arr)
    assert b"\0" in csfile.load(mf)[f][0]
    for args in (("group", "export", puid, "J8", "volume"), ("job", "export", puid, "J8"), ("verify", puid),
                 ("du", puid), ("jobs", demo)):
        _clean(csfs(*args, home=home, timeout=TIMEOUT), None)


def _legacy_csg(demo: Path, text: bytes) -> Path:
    p = demo / "J8" / "J8_bomb.csg"
    p.write_bytes(text)
    return p


@pytest.mark.parametrize("text,why", [(BOMB, "aliases"), (b"created: 2024-99-99\ngroup: {name: x}\n", "month"),
                                      (b"a: " + b"[" * 50000, "YAML"),
                                      (b"group: {name: '" + b"x" * (8 << 20) + b"'}\n", "too large")],
                         ids=["bomb", "bad-date", "deep", "huge"])
def test_hostile_csg(demo, home, csfs, tmp_path, text, why):
    _, puid, _ = attach(demo, home)
    p = _legacy_csg(demo, text)
    with pytest.raises(FormatError, match=why):
        csg.load(p)
    before = sorted(os.listdir(demo))
    r = csfs("group", "import", puid, p, home=home, timeout=TIMEOUT)
    _clean(r)
    assert sorted(os.listdir(demo)) == before        # no job left "building"
    _clean(csfs("jobs", demo, timeout=TIMEOUT), 0)
    _clean(csfs("clear-intermediate", puid, "--dry-run", home=home, timeout=TIMEOUT), None)


def test_bomb_in_a_legacy_job_is_reported_alone(flavour_demo, csfs, flavour):
    if flavour != "legacy":
        pytest.skip("legacy jobs read their .csg files when job.json is missing")
    p = Project.open(flavour_demo)
    job = next(j for j in p.jobs.values() if list(Path(j.dir).glob("*.csg")))
    (Path(job.dir) / "job.json").unlink(missing_ok=True)
    (Path(job.dir) / "zz_bomb.csg").write_bytes(BOMB)
    r = csfs("jobs", flavour_demo, timeout=TIMEOUT)
    _clean(r, 0)
    assert job.uid in r.stdout


@pytest.mark.parametrize("patch", [{"created_at": 1e300}, {"created_at": {"$date": 1e300}},
                                   "num_items_inf", "versions_1e400", "deep"],
                         ids=["created-1e300", "date-1e300", "num-items-inf", "versions-1e400", "deep"])
def test_impossible_numbers_in_job_json(demo, home, csfs, patch):
    _, puid, _ = attach(demo, home)
    jj = demo / "J7/job.json"
    doc = json.loads(jj.read_text())
    if isinstance(patch, dict):
        text = json.dumps({**doc, **patch})
    elif patch == "num_items_inf":
        text = json.dumps(doc).replace('"num_items": [', '"num_items": [Infinity, ', 1)
    elif patch == "versions_1e400":
        text = json.dumps(doc).replace('"versions": [', '"versions": [1e400, ', 1)
    else:
        text = json.dumps(doc)[:-1] + ', "deep": ' + "[" * 50000 + "]" * 50000 + "}"
    jj.write_text(text)
    before = snapshot(demo)
    r = csfs("jobs", demo, timeout=TIMEOUT)
    _clean(r, 0)
    assert "J8" in r.stdout
    for args in (("project", "show", puid), ("verify", puid), ("du", puid),
                 ("clear-intermediate", puid, "J8", "--dry-run")):
        _clean(csfs(*args, home=home, timeout=TIMEOUT), None)
    assert snapshot(demo) == before


def _csdat(tmp_path: Path, shape) -> Path:
    header = json.dumps({"length": 2, "dtype": [["uid", "<u8"], ["x", "<f4", shape]],
                         "compression": "lz4", "compressed_fields": ["x"]}).encode()
    body = struct.pack("<I", 16) + b"\0" * 16 + struct.pack("<I", 8) + b"\0" * 8 + b"\0"
    p = tmp_path / "bad.cs"
    p.write_bytes(b"\x95CSDAT" + struct.pack("<I", len(header)) + header + body)
    return p


@pytest.mark.parametrize("shape", [[100000, 100000], "ab", [-1], [2.5], [True], [1] * 40, [[2]]],
                         ids=lambda s: repr(s)[:20])
def test_lying_csdat_shapes(tmp_path, csfs, shape):
    p = _csdat(tmp_path, shape)
    with pytest.raises(csfile.CsFormatError):
        csfile.load(p)
    _clean(csfs("cs", "show", p, timeout=TIMEOUT))
