"""Work kept out of the mount process: building export plans (which reads result .cs
files) and generating big export files (a joined `_exported.cs`).

Both run in one long-lived worker process (spawned once, recycled after a number of
tasks), so the mount's own memory stays small and no request pays for a new
interpreter. A big generated file is written once into the instance cache and then
served from there like real data (read_buf, page cache).
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable

from csfs.core.errors import CsfsError

# generated files up to this size are kept in memory instead (tunable for tests)
BIG = int(os.environ.get("CSFS_MOUNT_INLINE_MAX", 8 * 1024 * 1024))
TIMEOUT = 1800.0
TASKS_PER_WORKER = 200          # recycle the worker so its memory never accumulates
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run fn(*args) in the worker process; its CsfsError reaches the caller as is."""
    global _pool
    with _guard:
        if _pool is None:
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                        max_tasks_per_child=TASKS_PER_WORKER,
                                        initializer=_end_with_parent, initargs=(os.getpid(),))
        pool = _pool
    try:
        return pool.submit(fn, *args).result(timeout=TIMEOUT)
    except BrokenProcessPool:
        with _guard:
            if _pool is pool:
                _pool = None
        raise CsfsError("the mount's export worker died (out of memory?); try again") from None


def shutdown() -> None:
    """Stop the worker (at unmount)."""
    global _pool
    with _guard:
        pool, _pool = _pool, None
    if pool is not None:
        workers = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for w in workers:      # the mount is ending: no worker may outlive it (orphaned, idle)
            w.terminate()


def materialize(cache_dir: Path, project: Path, kind: str, juid: str, group: str | None,
                rel: str, size: int, mtime: float, version: str = "") -> Path:
    """The cached file holding this generated entry's bytes (made now if missing). `version`
    (the plan's: its inputs' identities) keeps a file made from older inputs from being reused."""
    key = hashlib.sha1(json.dumps([str(project), kind, juid, group, rel, size, mtime, version]).encode()).hexdigest()
    out = Path(cache_dir) / "mount-generated" / f"{key}.bin"
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if out.is_file() and out.stat().st_size == size:
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        _call(_write_generated, str(project), kind, juid, group, rel, str(out))
        if out.stat().st_size != size:
            raise CsfsError(f"generated {rel} has {out.stat().st_size} bytes, the plan said {size}")
        return out


class LightPlan:
    """An export plan as the mount keeps it: entries without generators, small generated
    bytes inline. Built in the worker (load_plan), so reading the result .cs files never
    raises the mount process's memory."""

    def __init__(self, name: str, entries: list[list], version: str = "") -> None:
        self.name = name
        self.version = version    # identities of the files the plan was built from
        self.checked = time.monotonic()   # when `version` was last compared with the files
        self._by_path: dict[str, tuple] = {}
        self._children: dict[str, list[str]] = {}
        for path, kind, size, mtime, source, mode, data in entries:
            self._by_path[path] = (kind, size, mtime, source, mode, data)
            if path:
                parent, _, base = path.rpartition("/")
                self._children.setdefault(parent, []).append(base)

    def lookup(self, rel: str) -> tuple | None:
        """(kind, size, mtime, source, mode, inline bytes or None) of `rel` ("" = the root)."""
        return self._by_path.get(rel.strip("/"))

    def children(self, rel: str) -> list[str]:
        return self._children.get(rel.strip("/"), [])


def load_plan(project: Path, kind: str, juid: str, group: str | None) -> LightPlan:
    """Build a job ("jobs") or group ("groups") export plan in the worker."""
    name, entries, version = _call(_plan_entries, str(project), kind, juid, group)
    return LightPlan(name, entries, version)


# -- run in the worker process ------------------------------------------------------------

def _end_with_parent(parent: int) -> None:
    """The worker ends when the mount process has ended, however it ended (unmounted while
    a request was starting a worker, killed): an orphaned worker would idle for ever."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)
    threading.Thread(target=watch, daemon=True).start()


def _build(project: str, kind: str, juid: str, group: str | None) -> Any:
    from csfs.core import exportplan
    from csfs.core.project import Project

    proj = Project.open(project)
    return (exportplan.job_export_plan(proj, juid) if kind == "jobs"
            else exportplan.group_export_plan(proj, juid, group))


def _plan_entries(project: str, kind: str, juid: str, group: str | None) -> tuple[str, list[list], str]:
    from csfs.core.project import Project

    plan = _build(project, kind, juid, group)
    entries = [[e.path, e.kind, e.size, e.mtime, str(e.source) if e.source else None, e.mode,
                e.generate() if e.kind == "generated" and e.size <= BIG else None]
               for e in plan.entries]
    return plan.name, entries, inputs_version(Project.open(project), juid)


def inputs_version(project: Any, juid: str) -> str:
    """What generated export files are made of: the job's job.json and final metafiles
    (inode, size, mtime of each), hashed."""
    job = project.job(juid)
    paths = [Path(job.dir) / "job.json"]
    paths += [Path(project.path) / r.final_metafile for g in job.groups for r in g.results if r.metafiles]
    ids = []
    for p in paths:
        try:
            st = os.stat(p)
            ids.append([str(p), st.st_ino, st.st_size, st.st_mtime_ns])
        except OSError:
            ids.append([str(p)])
    return hashlib.sha1(json.dumps(ids).encode()).hexdigest()


def _write_generated(project: str, kind: str, juid: str, group: str | None, rel: str, out: str) -> None:
    from csfs.core.atomic import write_bytes

    plan = _build(project, kind, juid, group)
    entry = plan.lookup(rel)
    if entry is None or entry.generate is None:
        raise CsfsError(f"{rel}: not a generated entry of {plan.name}")
    write_bytes(out, entry.generate())
