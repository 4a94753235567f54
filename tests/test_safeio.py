"""core/safeio.py: documents and metafiles are read only from bounded regular files."""
from __future__ import annotations

import json
import os

import pytest
from csfs.core import csfile, csg, lock, safeio
from csfs.core.errors import FormatError, NotFoundError
from csfs.core.project import Project

from data_helpers import snapshot

BOMB = b"""a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
"""


@pytest.mark.parametrize("text,why", [
    (b"[1e400]", "out of range"), (b'{"num_items": Infinity}', "Infinity"), (b"[NaN]", "NaN"),
    (b"[" * 50000 + b"]" * 50000, "nested"), (b"[" * 50000, "nested"),
    (b'{"a": [' * 300 + b"1" + b"]}" * 300, "nested"),
    (b"\xff\xfe{", "JSON"), (b'{"a": 1', "JSON")], ids=lambda v: repr(v)[:30])
def test_json_refusals_are_one_format_error(text, why):
    with pytest.raises(FormatError, match=why):
        safeio.parse_json(text, "x.json")


def test_json_reads_real_numbers():
    assert safeio.parse_json(b'{"created_at": 1e300, "n": -0.5, "big": 123456789012345678901234567890}') == \
        {"created_at": 1e300, "n": -0.5, "big": 123456789012345678901234567890}


@pytest.mark.parametrize("text,why", [
    (BOMB, "aliases are expanded"), (b"created: 2024-99-99\n", "month"),
    (b"a: [" * 50000, "YAML"), (b"- " * 50000 + b"x", "nested"),
    (b"a: &a [*a]\n", "YAML"), (b"x: " + b"9" * 5000 + b"\n", "YAML")], ids=lambda v: repr(v)[:30])
def test_yaml_refusals_are_one_format_error(text, why):
    with pytest.raises(FormatError, match=why):
        safeio.parse_yaml(text, "x.csg")


def test_yaml_keeps_harmless_aliases():
    assert safeio.parse_yaml(b"a: &x {n: 1}\nb: *x\n") == {"a": {"n": 1}, "b": {"n": 1}}


@pytest.fixture
def specials(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    return {"fifo": fifo, "device": "/dev/zero", "directory": tmp_path}


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_special_files_are_refused_without_blocking(specials, kind):
    path = specials[kind]
    for read in (safeio.read_bytes, safeio.load_json, safeio.load_yaml, csfile.load, csfile.info, csg.load):
        with pytest.raises(FormatError, match="not a regular file"):
            read(path)
    assert csfile.is_cs(path) is False


def test_size_limit(tmp_path):
    p = tmp_path / "big.csg"
    p.write_bytes(b"x: '" + b"a" * (safeio.CSG_LIMIT + 10) + b"'\n")
    with pytest.raises(FormatError, match="too large"):
        csg.load(p)
    with pytest.raises(NotFoundError):
        safeio.read_bytes(tmp_path / "missing")


def test_fifo_lock_is_unreadable_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "cs.lock")
    info = lock.read(tmp_path)
    assert info is not None and not info.readable
    os.unlink(tmp_path / "cs.lock")
    os.symlink("/dev/zero", tmp_path / "cs.lock")
    assert not lock.read(tmp_path).readable


@pytest.mark.parametrize("bad", ["fifo", "deep", "inf", "overflow", "created_huge"])
def test_one_bad_job_json_is_reported_alone(demo, bad):
    before = snapshot(demo)
    jj = demo / "J3" / "job.json"
    doc = json.loads(jj.read_text())
    jj.unlink()
    if bad == "fifo":
        os.mkfifo(jj)
    elif bad == "deep":
        jj.write_text('{"uid": "J3", "x": ' + "[" * 50000 + "]" * 50000 + "}")
    elif bad == "inf":
        jj.write_text(json.dumps({**doc, "output_results": [{**r, "num_items": float("inf")}
                                                           for r in doc.get("output_results", [])]}))
    elif bad == "overflow":
        jj.write_text(json.dumps(doc)[:-1] + ', "versions_x": [1e400]}')
    elif bad == "created_huge":
        jj.write_text(json.dumps({**doc, "created_at": 1e300, "completed_at": {"$date": 1e300}}))
    p = Project.open(demo)
    others = [j for j in p.jobs.values() if j.uid != "J3"]
    assert others and all(not j.error for j in others)
    if bad == "created_huge":   # a date no calendar holds is shown as unknown, not a traceback
        assert not p.job("J3").error or "J3" in p.job("J3").error
    else:
        assert p.job("J3").error and p.job("J3").error.startswith("J3: job.json")
    before.pop("J3/job.json")
    if bad == "fifo":
        jj.unlink()   # the snapshot reads every file
    after = snapshot(demo)
    after.pop("J3/job.json", None)
    assert after == before


@pytest.mark.parametrize("name", ["project.json", "workspaces.json"])
def test_fifo_project_documents(demo, name):
    (demo / name).unlink()
    os.mkfifo(demo / name)
    p = Project.open(demo)
    assert any("regular file" in x for x in p.problems)
