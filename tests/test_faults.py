"""The fault suite: every mutating command, killed or failed at its file-system operations.

Each command runs in a forked child (tests/faultinject.py) that is SIGKILLed at a
randomly chosen operation (at once, or a few random milliseconds later from another
thread, so the kill can land anywhere), or sees ENOSPC (once, or from then on) or EIO
there. Afterwards:

- the registry opens, and every document parses (.json, cs.lock, .csg, .cs with
  cryosparc-tools);
- no data file is lost (only the files clear-intermediate plans to delete may go);
- the lock and the registry agree;
- an error is one line (no traceback), and when it says "nothing changed", nothing did;
- re-running the command completes, and then lock and registry agree on the final state;
- `verify` tells the truth: what it reports is really missing or broken, and it misses
  nothing that is.

The default run samples a few operations per command (seeded: CSFS_FAULTS_SEED);
CSFS_FAULTS=long tries every operation of every command with every fault.
"""
from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from csfs.core import consolidate, lifecycle, lock, verify
from csfs.core.atomic import TMP_TAG
from csfs.core.cleanup import clear_intermediate
from csfs.core.instance import Instance
from csfs.core.project import Project

import faultinject as fi
from conftest import copy_demo
from lifecycle_helpers import check_agree, run_main

MODE = os.environ.get("CSFS_FAULTS", "")
LONG = MODE == "long"
SEED = int(os.environ.get("CSFS_FAULTS_SEED", "2026"))
# faults tried per command (None: at every operation); CSFS_FAULTS=N samples N of each kind
KILLS, ENOSPC, EIO = (None, None, None) if LONG else (int(MODE),) * 3 if MODE.isdigit() else (2, 1, 1)
FIGURES: dict[str, dict[str, int]] = {}


@dataclass
class Case:
    """A command, the state it runs from, and what a completed run leaves."""

    state: str
    argv: Callable[[Ctx], list]
    final: str = "attached"                 # the project's state once the command completed
    path: Callable[[Ctx], Path] = lambda c: c.project
    deletes: Callable[[Ctx], set] = lambda c: set()  # project-relative files it may delete
    rerun_ok: tuple[str, ...] = ()          # words in a refusal that still means "already done"


@dataclass
class Ctx:
    work: Path
    home: Path
    project: Path
    extra: dict = field(default_factory=dict)


def _exported_csg(c: Ctx) -> Path:
    return next((c.project / "exports" / "groups").glob("J8_*/J8_particles_exported.csg"))


def _exported_job(c: Ctx) -> Path:
    return next((c.project / "exports" / "jobs").glob("J8_*"))


CASES: dict[str, Case] = {
    "create": Case("fresh", lambda c: ["project", "create", "Fault test", "--dir", c.work],
                   path=lambda c: c.work / "CS-fault-test"),
    "attach": Case("fresh", lambda c: ["project", "attach", c.project]),
    "detach": Case("attached", lambda c: ["project", "detach", "P1"], final="detached"),
    "archive": Case("attached", lambda c: ["project", "archive", "P1"], final="archived"),
    "unarchive": Case("moved", lambda c: ["project", "unarchive", "P1", c.work / "moved"],
                      path=lambda c: c.work / "moved"),
    "mark-completed": Case("attached", lambda c: ["job", "mark-completed", "P1", "J9"],
                           rerun_ok=("already completed",)),
    "mark-killed": Case("running", lambda c: ["job", "mark-killed", "P1", "J9"], rerun_ok=("already killed",)),
    "job-export": Case("attached", lambda c: ["job", "export", "P1", "J8"]),
    "group-export": Case("attached", lambda c: ["group", "export", "P1", "J8", "particles"]),
    "group-import": Case("exported", lambda c: ["group", "import", "P1", _exported_csg(c)]),
    "job-import": Case("exported", lambda c: ["job", "import", "P1", _exported_job(c)]),
    "raw-import": Case("attached", lambda c: ["import", "raw", "--kind", "movies", "P1",
                                              *sorted((c.work / "demo" / "raw").glob("*.mrc"))]),
    "clear-intermediate": Case("attached", lambda c: ["clear-intermediate", "P1", "J8"],
                               deletes=lambda c: c.extra["clearable"]),
}


def _build(state: str, master: Path, work: Path) -> Ctx:
    """The state a command starts from, built at `work` (absolute paths stay valid in copies)."""
    project = copy_demo(master, work / "demo")
    ctx = Ctx(work, work / "home", project)
    inst = Instance(ctx.home)
    if state == "fresh":
        inst.allocate_uid()  # so attach gives another UID and renumbers every document
        return ctx
    lifecycle.attach(inst, project)
    assert Project.open(project).jobs["J9"].status == "running"  # the demo's active job
    if state == "running":
        return ctx
    lifecycle.mark_killed(inst, "P1", "J9")  # so nothing blocks detach and archive
    if state == "exported":
        consolidate.export_group(inst, "P1", "J8", "particles")
        consolidate.export_job(inst, "P1", "J8")
    elif state == "moved":
        lifecycle.archive(inst, "P1")
        project.rename(work / "moved")
    return ctx


def _files(top: Path) -> dict[str, str]:
    """Data files of a project (rel -> content digest or link target), without job.json,
    exports/ and hidden temp files."""
    import hashlib

    out = {}
    if not top.is_dir():
        return out
    for root, dirs, files in os.walk(top):
        rel_root = Path(root).relative_to(top)
        if rel_root.parts[:1] == ("exports",):
            continue
        for n in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            p = Path(root, n)
            rel = str(rel_root / n)
            if n.startswith(".") or n == "job.json" or rel_root == Path("."):
                continue
            out[rel] = "-> " + os.readlink(p) if p.is_symlink() else hashlib.sha1(p.read_bytes()).hexdigest()
    return out


_PARSED: set[tuple] = set()  # (path, size, mtime_ns) of documents already parsed: copies keep mtimes


def _documents_parse(top: Path) -> None:
    """Every published document under `top` parses (.json, cs.lock, .csg as YAML, .cs with
    cryosparc-tools). Staging folders of a killed export are unpublished and skipped: the
    re-run must remove them (checked in test_faults)."""
    from cryosparc.dataset import Dataset

    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if TMP_TAG not in d]
        for n in files:
            p = Path(root, n)
            if n.startswith(".") or p.is_symlink():
                continue
            st = p.stat()
            key = (str(p), st.st_size, st.st_mtime_ns)
            if key in _PARSED:
                continue
            if n.endswith(".json") or n == lock.LOCK_NAME:
                json.loads(p.read_bytes())
            elif n.endswith(".csg"):
                assert isinstance(yaml.safe_load(p.read_bytes()), dict), p
            elif n.endswith(".cs"):
                Dataset.load(str(p))
            _PARSED.add(key)


_PATHS: dict[tuple, list | None] = {}  # metafile (path, size, mtime_ns) -> its */path values (None: unreadable)


def _path_values(p: Path) -> list | None:
    from cryosparc.dataset import Dataset

    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _PATHS:
        try:
            ds = Dataset.load(str(p))
            _PATHS[key] = sorted({v.decode() if isinstance(v, bytes) else str(v)
                                  for f in ds.fields() if f.endswith("/path") for v in ds[f].tolist()})
        except Exception:
            _PATHS[key] = None
    return _PATHS[key]


def _truth(path: Path) -> tuple[set[str], set[str]]:
    """What `verify` must report (missing/broken), and every path it may name (the real problems
    plus paths that exist but are unreadable, which it may report too)."""
    must, broken = set(), set()
    proj = Project.open(path)
    for job in proj.jobs.values():
        for root, dirs, files in os.walk(job.dir):
            for n in files + dirs:
                p = Path(root, n)
                if p.is_symlink() and not p.exists():
                    must.add(str(p.relative_to(path)))
        for mf in job.metafiles:
            if not (path / mf).is_file():
                must.add(mf)
                continue
            values = _path_values(path / mf)
            if values is None:
                broken.add(mf)
                continue
            must.update(rel for rel in values if rel and not (path / rel).exists())
    return must, must | broken


def _verify_tells_the_truth(path: Path, where: str) -> None:
    if not (path / "project.json").exists():
        return
    reported = {p.path for p in verify.verify(Project.open(path)) if p.kind != "metadata"}
    must, may = _truth(path)
    assert must <= reported, f"{where}: verify missed {sorted(must - reported)[:5]}"
    assert reported <= may, f"{where}: verify reported {sorted(reported - may)[:5]}, which are fine"


def _registry(home: Path) -> list:
    return [(r.uid, r.state, str(r.path), r.lock_id) for r in Instance(home).projects()]


def _disagreements(home: Path, dirs: set[Path]) -> list[str]:
    """Where the registry and the directories disagree: every live row must find its lock (same
    lock id), this project's UID and its state in its directory (an archived one may have moved
    away), and every lock of ours in `dirs` must belong to a live row."""
    inst = Instance(home)  # raises if the registry is damaged
    out = []
    rows = inst.projects()
    for rec in rows:
        if rec.state == "detached" or (rec.state == "archived" and not rec.path.exists()):
            continue
        info = lock.read(rec.path)
        doc = json.loads((rec.path / "project.json").read_bytes()) if (rec.path / "project.json").exists() else {}
        if info is None and doc.get("uid") == rec.uid and doc.get("detached") is True:
            out.append(f"{rec.uid} {rec.state} at {rec.path} has no lock, and project.json says detached")
        elif info is None or not info.is_ours(inst.id) or info.lock_id != rec.lock_id:
            out.append(f"{rec.uid} {rec.state} at {rec.path}, whose lock is {info and info.doc}")
        elif doc.get("uid") != rec.uid:
            out.append(f"{rec.uid} {rec.state}, but project.json says uid {doc.get('uid')}")
        elif doc.get("detached") is not False or doc.get("archived") is not (rec.state == "archived"):
            out.append(f"{rec.uid} {rec.state}, but project.json (same uid) says "
                       f"detached {doc.get('detached')} archived {doc.get('archived')}")
    live = {r.lock_id for r in rows if r.state != "detached"}
    for d in dirs:
        info = lock.read(d) if d.is_dir() else None
        if info is not None and info.is_ours(inst.id) and info.lock_id not in live:
            out.append(f"{d} holds our lock {info.lock_id} but no live row has it")
    return out


def _interrupted(problem: str) -> bool:
    """The states a kill may leave between two steps of a lifecycle action, which a re-run
    completes: a lock written but not yet registered (attach/create), a project.json flushed
    before its lock is removed or its row updated (detach, archive, unarchive)."""
    return "no live row has it" in problem or "project.json (same uid) says" in problem or \
        "has no lock, and project.json says detached" in problem


def _plans(name: str, ops: int, rng: random.Random) -> list[fi.Plan]:
    """The faults to try for a command with `ops` operations."""
    every = range(1, ops + 1)

    def pick(n: int | None) -> list[int]:
        return list(every) if n is None else sorted(rng.sample(list(every), min(n, ops)))
    plans = [fi.Plan(at=i, kill=True, delay=rng.choice([0.0, rng.uniform(0, 0.004)])) for i in pick(KILLS)]
    full = pick(ENOSPC)  # a full disk: failing once, and staying full
    if LONG or MODE.isdigit():
        plans += [fi.Plan(at=i, error=errno.ENOSPC, sticky=s) for i in full for s in (False, True)]
    else:
        plans += [fi.Plan(at=i, error=errno.ENOSPC, sticky=rng.random() < 0.5) for i in full]
    plans += [fi.Plan(at=i, error=errno.EIO) for i in pick(EIO)]
    return plans


@pytest.fixture(scope="module")
def states(_demo_master, tmp_path_factory):
    """Each starting state, built once at one work path (the registry holds absolute paths),
    kept as a master copy; get(state) restores it into the work path."""
    base = tmp_path_factory.mktemp("faults")
    work, built = base / "w", {}

    def get(state: str) -> Ctx:
        if state not in built:
            _remove(work)
            built[state] = (_build(state, _demo_master, work), base / f"m-{state}")
            _copy(work, built[state][1])
        ctx, master = built[state]
        _remove(work)
        _copy(master, work)
        return ctx
    return get


def _remove(path: Path) -> None:
    subprocess.run(["rm", "-rf", str(path)], check=True)


@pytest.mark.parametrize("name", list(CASES))
def test_faults(name, states, tmp_path):
    case = CASES[name]
    ctx = states(case.state)
    work = ctx.work
    if name == "clear-intermediate":
        (plan,) = clear_intermediate(Instance(ctx.home), "P1", "J8", dry_run=True)
        ctx.extra["clearable"] = {f.path for f in plan.files}
        assert ctx.extra["clearable"]
    argv = case.argv(ctx)
    path = case.path(ctx)
    count = fi.run(argv, ctx.home, fi.Plan(), tmp_path)
    assert count.code == 0, count.stderr
    assert count.ops > 3, count.log
    rng = random.Random(f"{SEED}-{name}")
    figures = FIGURES.setdefault(name, {"ops": count.ops, "kills": 0, "killed_then_rerun_ok": 0,
                                        "enospc": 0, "eio": 0, "violations": 0})
    plans = _plans(name, count.ops, rng)
    for k, plan in enumerate(plans):
        states(case.state)
        src = ctx.project if case.state != "moved" else work / "moved"
        before_files, before_reg = _files(src), _registry(ctx.home)
        before_all = {**before_files, **_snap_docs(src)}
        where = f"{name} {plan}"
        t0 = time.monotonic()
        out = fi.run(argv, ctx.home, plan, tmp_path)
        if os.environ.get("CSFS_FAULTS_TRACE"):
            print(f"{name} {plan} -> {out.code} in {time.monotonic() - t0:.2f} s")
        op = next((o for o in count.log if o[0] == plan.at), None)
        where += f" at {op}"
        if plan.kill:
            figures["kills"] += 1
            assert out.code in (-9, 0), f"{where}: exit {out.code}: {out.stderr}"
        else:
            figures["enospc" if plan.error == errno.ENOSPC else "eio"] += 1
            assert out.code in (0, 1, 2), f"{where}: exit {out.code}: {out.stderr}"
            if out.code:
                err = out.stderr.strip()
                assert err.startswith("csfs: ") and "\n" not in err and "Traceback" not in out.stderr, \
                    f"{where}: {out.stderr}"
                if "nothing changed" in err:  # an honest claim
                    assert _registry(ctx.home) == before_reg, f"{where}: registry changed: {err}"
                    after = {**_files(src), **_snap_docs(src)}
                    assert after == before_all, f"{where}: files changed: {_diff(before_all, after)}"
        # invariants after the fault
        for top in {src, path}:
            if top.exists():
                _documents_parse(top)
        now = _files(src)
        lost = {k for k in before_files if now.get(k) != before_files[k]}
        assert lost <= case.deletes(ctx), f"{where}: data files lost or changed: {sorted(lost)[:5]}"
        problems = _disagreements(ctx.home, {src, path})
        if out.code == -9 or "could not be undone" in out.stderr:  # the message says: run it again
            problems = [p for p in problems if not _interrupted(p)]
        assert not problems, f"{where}: lock and registry disagree: {problems}"
        _verify_tells_the_truth(path if path.exists() else src, where + " (after the fault)")
        # a re-run completes (or, the action having completed, says so)
        r = run_main(*argv, home=ctx.home)
        assert r.returncode == 0 or (r.returncode in (1, 2) and any(w in r.stderr for w in case.rerun_ok)), \
            f"{where}: re-run failed: {r.stderr}"
        assert not _disagreements(ctx.home, {src, path}), f"{where} (re-run)"
        staged = [str(d) for top in {src, path} if top.exists() for d in top.rglob(f"*{TMP_TAG}*") if d.is_dir()]
        assert not staged, f"{where}: staging folders left after the re-run: {staged}"
        state = check_agree(Instance(ctx.home), path)
        assert state == case.final, f"{where}: after the re-run the project is {state}, not {case.final}"
        _documents_parse(path)
        if LONG or k == len(plans) - 1:  # verify is the slow part: once per command by default
            _verify_tells_the_truth(path, where + " (after the re-run)")
        if plan.kill and out.code == -9:
            figures["killed_then_rerun_ok"] += 1
    print(f"\nfaults {name}: {json.dumps(figures)}")
    if os.environ.get("CSFS_FAULTS_STATS"):
        Path(os.environ["CSFS_FAULTS_STATS"]).write_text(json.dumps(FIGURES, indent=1))


def _copy(src: Path, dst: Path) -> None:
    """A copy keeping symlinks, modes and mtimes (cp -a: much faster than shutil.copytree)."""
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def _snap_docs(top: Path) -> dict[str, str]:
    """job.json, project-level documents and cs.lock of a project (rel -> bytes digest)."""
    import hashlib

    out = {}
    if not top.is_dir():
        return out
    for p in [*top.glob("*.json"), top / lock.LOCK_NAME, *top.glob("J*/job.json")]:
        if p.is_file():
            out[str(p.relative_to(top))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def _diff(a: dict, b: dict) -> list:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))[:8]
