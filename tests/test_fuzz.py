"""Fuzz suite: hostile .cs (both forms), .csg, job.json, project.json, workspaces.json, cs.lock.

Every generated input must give a correct result or ONE clean CsfsError: never another
exception (a traceback for the user), never a hang (each case runs under a timer), and
never a change on disk. A sample also goes through the command line (one line on
stderr, exit 2).

Bounded by default (a few seconds per target). `CSFS_FUZZ=long` runs many more cases;
`CSFS_FUZZ_STATS=FILE` keeps per-kind counts (inputs, correct, clean errors) there as JSON,
rewritten after each test.
"""
from __future__ import annotations

import json
import math
import os
import signal
import struct
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from csfs.core import cleanup, csfile, csg, exportplan, lock, safeio, verify
from csfs.core.errors import CsfsError
from csfs.core.project import Project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import copy_demo

LONG = os.environ.get("CSFS_FUZZ") == "long"
DOC_EXAMPLES = 500 if LONG else 15         # a project document case opens, verifies and plans a project
settings.register_profile("default", max_examples=50, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("long", max_examples=3000, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
settings.load_profile("long" if LONG else "default")

CASE_TIMEOUT = 10.0
STATS: dict[str, Counter] = {}


class Hang(Exception):
    pass


@contextmanager
def _deadline(kind: str):
    """Run one case under a timer; count how it ended."""
    def ring(*_):
        raise Hang(f"{kind}: case ran longer than {CASE_TIMEOUT} s")
    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT)
    stats = STATS.setdefault(kind, Counter())
    stats["inputs"] += 1
    try:
        yield
        stats["correct"] += 1
    except CsfsError as e:
        assert str(e) and "\n" not in str(e).strip(), repr(str(e))
        stats["clean errors"] += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(autouse=True)
def _report_stats():
    yield
    out = os.environ.get("CSFS_FUZZ_STATS")
    if out:
        with open(out, "w") as f:
            f.write(json.dumps({k: dict(v) for k, v in STATS.items()}, indent=1) + "\n")


# ---------------------------------------------------------------- byte mutations

@st.composite
def mutated(draw, base: bytes, keep: int = 0) -> bytes:
    """`base` truncated, bit-flipped, overwritten, spliced or extended (the first `keep` bytes kept)."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "delete", "u32"]))
        if not data:
            data += draw(st.binary(max_size=16))
            continue
        i = draw(st.integers(min(keep, len(data) - 1), len(data) - 1))
        if how == "truncate":
            del data[i:]
        elif how == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[i:i + len(chunk)] = chunk
        elif how == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif how == "delete":
            del data[i:i + draw(st.integers(1, 16))]
        else:   # a lying length or count
            data[i:i + 4] = struct.pack("<I", draw(st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1, len(data) * 7])))
    return bytes(data)


def _dataset() -> np.ndarray:
    arr = np.zeros(5, dtype=[("uid", "<u8"), ("blob/path", "S24"), ("blob/idx", "<u4"), ("blob/shape", "<u4", (2,)),
                             ("ctf/df1_A", "<f4"), ("alignments3D/pose", "<f4", (3,))])
    arr["uid"] = np.arange(5) + 10**12
    arr["blob/path"] = [b"J5/extract/a.mrc", b"J5/extract/b.mrc", b">x.mrc", b"", b"J5/extract/a.mrc"]
    arr["blob/idx"] = np.arange(5)
    arr["blob/shape"] = 64
    return arr


CLASSIC = csfile.dumps(_dataset())
CSDAT = csfile.dumps(_dataset(), compressed=True)


def _read_cs(path: Path) -> None:
    """Everything csfs reads from a .cs file, which must agree with itself when it works."""
    i = csfile.info(path)
    arr = csfile.load(path)
    assert len(arr) == i.rows
    np.asarray(arr).tobytes()
    for f in csfile.path_fields(arr):
        values, codes = csfile.load_strings(path, f)
        assert len(codes) == len(arr)
        if len(arr):
            assert np.array_equal(values[codes], np.asarray(arr[f]).astype(values.dtype))


def _cs_case(tmp_path: Path, kind: str, data: bytes) -> None:
    p = tmp_path / "x.cs"
    p.write_bytes(data)
    before = p.stat().st_mtime_ns, data
    with _deadline(kind):
        _read_cs(p)
    assert (p.stat().st_mtime_ns, p.read_bytes()) == before
    assert os.listdir(tmp_path) == ["x.cs"]


@given(data=mutated(CLASSIC))
def test_fuzz_cs_classic(tmp_path_factory, data):
    _cs_case(tmp_path_factory.mktemp("cs"), "cs classic", data)


@given(data=mutated(CSDAT))
def test_fuzz_cs_compressed(tmp_path_factory, data):
    _cs_case(tmp_path_factory.mktemp("cs"), "cs compressed", data)


json_scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12)
                | st.sampled_from(["|O", "<f4", "<u8", "ab", "|S0", "O", "V8", "<M8[s]"]))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4)
                           | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12)


@st.composite
def csdat_headers(draw) -> bytes:
    """Well-formed framing around a lying or odd JSON header."""
    fields = draw(st.lists(st.tuples(st.sampled_from(["uid", "a/path", "b/x", "c/y", "uid"]),
                                     st.sampled_from(["<u8", "<f4", "|O", "<i2", "ab", "|S3", "O"]),
                                     st.one_of(st.none(), st.lists(st.integers(-2, 10**6), max_size=3),
                                               json_values)), max_size=4))
    header = {"length": draw(st.one_of(st.integers(-1, 10**7), json_values)),
              "dtype": [[n, d] + ([s] if s is not None else []) for n, d, s in fields],
              "compression": draw(st.sampled_from(["lz4", None, "zstd", 1])),
              "compressed_fields": draw(st.lists(st.sampled_from(["a/path", "b/x", "zz"]), max_size=2))}
    if draw(st.booleans()):
        header[draw(st.text(max_size=6))] = draw(json_values)
    raw = json.dumps(header).encode()
    body = b"".join(struct.pack("<I", n) + b"\0" * n for n in draw(st.lists(st.integers(0, 64), max_size=5)))
    return b"\x95CSDAT" + struct.pack("<I", len(raw)) + raw + body + draw(st.binary(max_size=32))


@given(data=csdat_headers())
def test_fuzz_cs_compressed_headers(tmp_path_factory, data):
    _cs_case(tmp_path_factory.mktemp("cs"), "cs compressed header", data)


# ---------------------------------------------------------------- .csg

CSG_TEXT = b"""created: 2024-03-04 12:00:00
group: {description: '', name: particles, title: Particles, type: particle}
results:
  blob: {metafile: '>x.cs', num_items: 5, type: particle.blob}
  ctf: {metafile: '>x.cs', num_items: 5, type: particle.ctf}
version: v4.4.1
"""

yaml_tokens = st.sampled_from([b"&a ", b"*a", b"&b [*a, *a, *a]", b"!!binary AAAA", b"!!python/object:os.system ",
                               b"2024-99-99", b"1e400", b".inf", b".nan", b"~", b"[", b"]", b"{", b"}", b"- ",
                               b": ", b"\n", b"'", b'"', b"\t", b"%YAML 1.1\n", b"---\n", b"...", b"<<: *a",
                               b"?", b"\xff", b"\x00", b"9" * 5000, b"[" * 300, b"> ", b"|", b"../../x.cs",
                               b"/etc/passwd"])


@st.composite
def csg_texts(draw) -> bytes:
    text = draw(mutated(CSG_TEXT))
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(yaml_tokens) + text[i:]
    return text


@given(text=csg_texts())
def test_fuzz_csg(tmp_path_factory, text):
    d = tmp_path_factory.mktemp("csg")
    (d / "x.cs").write_bytes(CLASSIC)
    (d / "x.csg").write_bytes(text)
    with _deadline("csg"):
        c = csg.load(d / "x.csg")
        for m in c.metafiles():
            assert csg.resolve_metafile(d / "x.csg", m).is_relative_to(d)
        csg.dumps(c)
    assert sorted(os.listdir(d)) == ["x.cs", "x.csg"] and (d / "x.csg").read_bytes() == text


@given(doc=json_values)
def test_fuzz_csg_documents(tmp_path_factory, doc):
    """Any YAML document a JSON-like value makes (every YAML reader accepts JSON)."""
    d = tmp_path_factory.mktemp("csg")
    (d / "x.csg").write_text(json.dumps(doc))
    with _deadline("csg"):
        csg.load(d / "x.csg")


# ---------------------------------------------------------------- project documents

@pytest.fixture(scope="module")
def project(_demo_master, tmp_path_factory) -> Path:
    return copy_demo(_demo_master, tmp_path_factory.mktemp("fuzz") / "demo")


def _state(top: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root, dirs, files in os.walk(top):
        for f in files + dirs:
            p = os.path.join(root, f)
            st_ = os.lstat(p)
            out[p] = (st_.st_mtime_ns, st_.st_size)
    return out


def _paths(doc, here=()):
    """Every (container, key) in a JSON document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield doc, k
            yield from _paths(v)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield doc, i
            yield from _paths(v)


SPECIAL = st.sampled_from(["1e400", "-1e400", "Infinity", "NaN", "1e300", "-0", "9" * 5000,
                           "[" * 50000 + "]" * 50000, '"\\ud800"', '"a\\u0000b"', '{"$date": 1e300}',
                           '{"$date": "2024-99-99"}', '"Mon, 99 Nov 2024 99:99:99 GMT"', "[[[[[[[[]]]]]]]]",
                           '"../../../etc/passwd"', '"/etc/passwd"'])


@st.composite
def documents(draw, base: dict) -> bytes:
    doc = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 4))):
        spots = list(_paths(doc))
        if not spots:
            break
        box, key = spots[draw(st.integers(0, len(spots) - 1))]
        box[key] = draw(json_values) if draw(st.booleans()) else "__SPECIAL__"
    text = json.dumps(doc, allow_nan=True)
    while "\"__SPECIAL__\"" in text:
        text = text.replace("\"__SPECIAL__\"", draw(SPECIAL), 1)
    raw = text.encode("utf-8", "surrogatepass")
    return draw(mutated(raw)) if draw(st.integers(0, 4)) == 0 else raw


def _use_project(path: Path, juid: str | None) -> bool:
    """What the CLI does with a project: open, list, verify, plan exports and clears.
    True when the project reports the document as bad (the job alone, or a project problem)."""
    p = Project.open(path)
    for j in p.jobs.values():
        (j.uid, j.type, j.status, j.created_at, j.completed_at, [g.name for g in j.groups])
    if juid is not None and juid in p.jobs and not p.jobs[juid].error:
        job = p.jobs[juid]
        try:
            exportplan.job_export_plan(p, juid)
        except CsfsError:
            pass
        if job.is_final:
            cleanup.clear_plan(p, job)
    verify.verify(p)
    return bool(p.problems or (juid and (juid not in p.jobs or p.jobs[juid].error)))


def _document_case(project: Path, rel: str, raw: bytes, juid: str | None) -> None:
    target = project / rel
    original = target.read_bytes()
    try:
        target.write_bytes(raw)
        before = _state(project)
        kind = rel.split("/")[-1]
        with _deadline(kind):
            if _use_project(project, juid):
                STATS[kind]["reported bad, others usable"] += 1
        assert _state(project) == before
    finally:
        target.write_bytes(original)


def _base(project: Path, rel: str):
    return json.loads((project / rel).read_bytes())


def test_fuzz_job_json(project):
    @settings(max_examples=DOC_EXAMPLES)
    @given(raw=documents(_base(project, "J7/job.json")))
    def run(raw):
        _document_case(project, "J7/job.json", raw, "J7")
    run()


def test_fuzz_project_json(project):
    @settings(max_examples=DOC_EXAMPLES)
    @given(raw=documents(_base(project, "project.json")))
    def run(raw):
        _document_case(project, "project.json", raw, None)
    run()


def test_fuzz_workspaces_json(project):
    @settings(max_examples=DOC_EXAMPLES)
    @given(raw=documents({"ws": _base(project, "workspaces.json")}))
    def run(raw):
        _document_case(project, "workspaces.json", raw, None)
    run()


LOCK = json.dumps({"instance_id": "0" * 32, "lock_id": "1" * 32, "project_uid": "P1", "host": "h",
                   "created_at": "2024-01-01T00:00:00Z"}).encode()


@given(raw=st.one_of(mutated(LOCK), documents(json.loads(LOCK)), st.binary(max_size=64)))
def test_fuzz_cs_lock(tmp_path_factory, raw):
    d = tmp_path_factory.mktemp("lock")
    (d / "cs.lock").write_bytes(raw)
    with _deadline("cs.lock"):
        info = lock.read(d)     # never raises: an unreadable lock is someone else's
        assert info is not None
        if info.readable:
            assert isinstance(info.doc, dict) and isinstance(info.doc.get("instance_id"), str)
    assert (d / "cs.lock").read_bytes() == raw


@given(raw=st.one_of(st.binary(max_size=64), documents({"a": [1, {"b": "c"}], "n": 1.5})))
def test_fuzz_safeio_json(raw):
    with _deadline("json"):
        doc = safeio.parse_json(raw)
        for box, key in _paths(doc):
            v = box[key]
            assert not (isinstance(v, float) and not math.isfinite(v))


# ---------------------------------------------------------------- through the command line

@settings(max_examples=200 if LONG else 6)
@given(data=st.one_of(mutated(CLASSIC), mutated(CSDAT), csdat_headers()))
def test_fuzz_cli_cs_show(tmp_path_factory, csfs, data):
    p = tmp_path_factory.mktemp("cli") / "x.cs"
    p.write_bytes(data)
    r = csfs("cs", "show", p, timeout=60)
    stats = STATS.setdefault("cli cs show", Counter())
    stats["inputs"] += 1
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode in (0, 2), (r.returncode, r.stderr)
    if r.returncode:
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        stats["clean errors"] += 1
    else:
        stats["correct"] += 1


def test_fuzz_cli_job_json(project, csfs):
    @settings(max_examples=150 if LONG else 4)
    @given(raw=documents(_base(project, "J7/job.json")))
    def run(raw):
        target = project / "J7/job.json"
        original = target.read_bytes()
        try:
            target.write_bytes(raw)
            before = _state(project)
            r = csfs("jobs", project, timeout=60)
            stats = STATS.setdefault("cli jobs", Counter())
            stats["inputs"] += 1
            assert "Traceback" not in r.stderr, r.stderr
            assert r.returncode == 0 and "J8" in r.stdout, (r.returncode, r.stderr)   # the bad job alone
            stats["correct"] += 1
            assert _state(project) == before
        finally:
            target.write_bytes(original)
    run()
