"""`import raw` as CryoSPARC does it: glob patterns, per-kind default patterns that skip EPU
sidecars, headers read and checked (MRC, TIFF, EER), counts in text and JSON."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile
from csfs.core import csfile, imports, mrc, rawfiles
from csfs.core.errors import FormatError, NotFoundError, UsageError
from csfs.core.instance import Instance
from csfs.core.lifecycle import create
from csfs.core.project import Project


@pytest.fixture
def session(tmp_path):
    """An EPU-like session folder: 3 TIFF movies (5 frames, 64x48), each with a .jpg and an .xml."""
    raw = tmp_path / "session1"
    raw.mkdir()
    for i in range(3):
        stem = f"FoilHole_{i}_Data_fractions"
        tifffile.imwrite(raw / f"{stem}.tif", np.zeros((5, 48, 64), np.uint8))
        (raw / f"{stem}.jpg").write_bytes(b"\xff\xd8\xff\xe0 thumbnail")
        (raw / f"{stem}.xml").write_text("<MicroscopeImage/>")
    return raw


@pytest.fixture
def target(tmp_path):
    inst = Instance(tmp_path / "home")
    rec = create(inst, "Raw Target", tmp_path)
    return inst, rec


def _dataset(rec, juid: str, group: str) -> np.ndarray:
    job = Project.open(rec.path).job(juid)
    return csfile.load(rec.path / job.group(group).results[0].final_metafile)


def test_folder_takes_the_kinds_files_and_skips_sidecars(session, target):
    inst, rec = target
    report: dict = {}
    juid = imports.import_raw(inst, rec.uid, "movies", [session], report=report)
    arr = _dataset(rec, juid, "imported_movies")
    assert len(arr) == 3 and [list(s) for s in arr["movie_blob/shape"]] == [[5, 48, 64]] * 3
    assert report["file_count"] == 3 and len(report["skipped"]) == 6
    assert sorted(os.path.splitext(p)[1] for p in report["skipped"]) == [".jpg"] * 3 + [".xml"] * 3
    assert sorted(p.name for p in (rec.path / juid / "imported").iterdir()) == sorted(
        p.name for p in session.glob("*.tif"))


def test_glob_pattern_like_cryosparc(session, target, tmp_path):
    inst, rec = target
    juid = imports.import_raw(inst, rec.uid, "movies", [str(session / "*_0_*.tif"), str(session / "*_2_*.tif")])
    assert len(_dataset(rec, juid, "imported_movies")) == 2
    with pytest.raises(NotFoundError, match="matches no files"):
        imports.import_raw(inst, rec.uid, "movies", [str(session / "*.eer")])
    # a pattern that takes the sidecars too names the first one that is not raw data
    with pytest.raises(UsageError, match=r"\.jpg: not a format csfs imports"):
        imports.import_raw(inst, rec.uid, "movies", [str(session / "*")])


@pytest.mark.parametrize("name", ["bad.tif", "bad.eer", "bad.mrc", "short.mrc"])
def test_bad_headers_are_refused_by_name_and_nothing_is_imported(session, target, name):
    inst, rec = target
    bad = session / name
    if name == "short.mrc":   # a real header whose data was cut off
        mrc.write(bad, np.zeros((2, 16, 16), np.float32))
        os.truncate(bad, 1024 + 100)
    else:
        bad.write_bytes(os.urandom(4096))
    jobs_before = sorted(p.name for p in rec.path.iterdir())
    with pytest.raises(FormatError, match=rf"{name}: not a valid"):
        imports.import_raw(inst, rec.uid, "movies", [session])
    assert sorted(p.name for p in rec.path.iterdir()) == jobs_before


def test_tiff_eer_and_bigtiff_headers(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((7, 30, 40), np.uint16))
    tifffile.imwrite(tmp_path / "b.tiff", np.zeros((30, 40), np.uint8), bigtiff=True)
    tifffile.imwrite(tmp_path / "c.eer", np.zeros((6, 20, 10), np.uint8), byteorder=">", photometric="minisblack")
    assert rawfiles.read_header(tmp_path / "a.tif").shape == (7, 30, 40)
    assert rawfiles.read_header(tmp_path / "b.tiff").shape == (1, 30, 40)
    eer = rawfiles.read_header(tmp_path / "c.eer")
    assert eer.shape == (6, 20, 10) and eer.format == "eer"
    (tmp_path / "loop.tif").write_bytes(b"II*\x00\x08\x00\x00\x00\x00\x00\x08\x00\x00\x00")   # IFD -> itself
    with pytest.raises(FormatError, match="loop.tif"):
        rawfiles.read_header(tmp_path / "loop.tif")


def test_mrc_movies_keep_their_shape_and_pixel_size(tmp_path, target):
    inst, rec = target
    raw = tmp_path / "mrcs"
    raw.mkdir()
    for i in range(2):
        mrc.write(raw / f"m{i}.mrc", shape=(4, 32, 32), voxel_size=0.83)
    (raw / "m0.mrc.xml").write_text("<x/>")
    juid = imports.import_raw(inst, rec.uid, "movies", [raw])
    arr = _dataset(rec, juid, "imported_movies")
    assert [list(s) for s in arr["movie_blob/shape"]] == [[4, 32, 32]] * 2
    assert arr["movie_blob/psize_A"] == pytest.approx([0.83, 0.83])


def test_cli_counts_in_text_and_json(session, tmp_path, csfs):
    home = tmp_path / "home"
    assert csfs("project", "create", "Raw CLI", "--dir", tmp_path, home=home).returncode == 0
    r = csfs("import", "raw", "P1", "--kind", "movies", session, home=home)
    assert r.returncode == 0, r.stderr
    assert "imported 3 movies file(s) as P1 J1" in r.stdout and "imported_movies (3 items)" in r.stdout
    assert "skipped 6 other file(s) in the folder(s): 3 .jpg, 3 .xml" in r.stdout
    r = csfs("import", "raw", "P1", "--kind", "movies", str(session / "*.tif"), "--json", home=home)
    doc = json.loads(r.stdout)
    assert doc["job"]["uid"] == "J2" and doc["job"]["groups"][0]["num_items"] == 3
    assert doc["source"]["file_count"] == 3 and doc["source"]["skipped_count"] == 0
    (session / "junk.eer").write_bytes(b"not an eer")
    r = csfs("import", "raw", "P1", "--kind", "movies", session, home=home)
    assert r.returncode == 2 and "junk.eer: not a valid EER file" in r.stderr and len(r.stderr.splitlines()) == 1
