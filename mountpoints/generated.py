"""Work kept out of the mount process: building export plans (which reads result .cs
files) and generating big export files (a joined `_exported.cs`).

Both run in a small pool of long-lived worker processes (spawned once, recycled after a
number of tasks), so the mount's own memory stays small and no request pays for a new
interpreter. A big generated file is written once into the instance cache and then
served from there like real data (read_buf, page cache).

No export can wedge the others: each task has a time limit (LIMIT for a plan, more for
a big file, by its size), enforced inside the worker by an alarm that interrupts a
blocking call (a FIFO opened as a metafile) and, should that fail, by killing the worker
(the other tasks it held are run again on a new one). A task that failed by timing out
fails again at once for FAILED_TTL seconds, so `ls` and `tar` do not wait on it again;
the mount answers EIO for that path only.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csfs.core.errors import CsfsError

if TYPE_CHECKING:
    from csfs.core.project import Project

# generated files up to this size are kept in memory instead (tunable for tests)
BIG = int(os.environ.get("CSFS_MOUNT_INLINE_MAX", 8 * 1024 * 1024))
LIMIT = float(os.environ.get("CSFS_MOUNT_TASK_LIMIT", 120.0))   # seconds for one plan
WRITE_RATE = 20e6               # bytes/s a big generated file is granted beyond LIMIT
GRACE = 10.0                    # after the worker's own alarm, before it is killed
FAILED_TTL = 60.0
WORKERS = 2                     # one slow export leaves the other worker serving
TASKS_PER_WORKER = 200          # recycle a worker so its memory never accumulates
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_failed: dict[tuple, tuple[float, str]] = {}   # task key -> (until, message)


class TaskTimeout(CsfsError):
    """A worker task ran past its limit (EIO on the path that needed it)."""


def _get_pool() -> ProcessPoolExecutor:
    global _pool
    with _guard:
        if _pool is None:
            _pool = ProcessPoolExecutor(max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn"),
                                        max_tasks_per_child=TASKS_PER_WORKER,
                                        initializer=_end_with_parent, initargs=(os.getpid(),))
        return _pool


def _drop(pool: ProcessPoolExecutor, kill: bool = False) -> None:
    """Forget a pool (broken, or holding a stuck task); with `kill`, end its workers now."""
    global _pool
    with _guard:
        if _pool is pool:
            _pool = None
    if kill:
        for proc in list(getattr(pool, "_processes", {}).values()):   # no public API for this
            try:
                proc.kill()
            except Exception:
                pass
    pool.shutdown(wait=False, cancel_futures=True)


def _call(fn: Callable[..., Any], *args: Any, limit: float = LIMIT) -> Any:
    """Run fn(*args) in a worker within `limit` seconds; its CsfsError reaches the caller
    as is. Refused at once while the same task is remembered as having timed out."""
    key = (fn.__name__,) + args
    failed = _failed.get(key)
    if failed is not None and failed[0] > time.monotonic():
        raise TaskTimeout(failed[1])
    for attempt in (1, 2):
        pool = _get_pool()
        try:
            return _wait(pool, pool.submit(_bounded, limit, fn, *args), limit)
        except TaskTimeout as e:
            _failed[key] = (time.monotonic() + FAILED_TTL, str(e))
            raise
        except BrokenProcessPool:   # a worker died (or was killed for another task): run again
            _drop(pool)
            if attempt == 2:
                raise CsfsError("the mount's export worker died (out of memory?); try again") from None
    raise AssertionError("unreachable")


def _wait(pool: ProcessPoolExecutor, fut: Future, limit: float) -> Any:
    """The task's result; kill the workers if the task is still not done well after its
    own alarm. A task counts as running once it is queued for a worker, where it may wait
    for one other task: hence twice the limit."""
    started = None
    while True:
        try:
            return fut.result(timeout=1.0)
        except FutureTimeout:
            now = time.monotonic()
            if fut.running() and started is None:
                started = now
            if started is not None and now - started > 2 * limit + GRACE:
                _drop(pool, kill=True)
                raise TaskTimeout(f"an export task did not finish in {limit:.0f} s; "
                                  "its worker was stopped") from None


def shutdown() -> None:
    """Stop the workers (at unmount)."""
    with _guard:
        pool = _pool
    if pool is not None:
        _drop(pool, kill=True)


def _bounded(limit: float, fn: Callable[..., Any], *args: Any) -> Any:
    """In the worker: fn(*args), interrupted by SIGALRM after `limit` seconds (and again
    `limit` seconds later, should the task catch the first and block again)."""
    def expired(signum: int, frame: Any) -> None:
        signal.setitimer(signal.ITIMER_REAL, limit)
        raise TaskTimeout(f"reading the sources took more than {limit:.0f} s "
                          "(a FIFO or a device where a file belongs?)")
    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        return fn(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


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
        _call(_write_generated, str(project), kind, juid, group, rel, str(out),
              limit=LIMIT + size / WRITE_RATE)
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
        self._sources: dict[str, tuple[str, ...]] = {}
        for path, kind, size, mtime, source, mode, data, sources in entries:
            self._by_path[path] = (kind, size, mtime, source, mode, data)
            if sources:
                self._sources[path] = tuple(sources)
            if path:
                parent, _, base = path.rpartition("/")
                self._children.setdefault(parent, []).append(base)

    def lookup(self, rel: str) -> tuple | None:
        """(kind, size, mtime, source, mode, inline bytes or None) of `rel` ("" = the root)."""
        return self._by_path.get(rel.strip("/"))

    def children(self, rel: str) -> list[str]:
        return self._children.get(rel.strip("/"), [])

    def sources(self, rel: str) -> tuple[str, ...]:
        """The files a generated entry is made from (for its permissions)."""
        return self._sources.get(rel.strip("/"), ())


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
    if kind == "jobs":
        return exportplan.job_export_plan(proj, juid)
    assert group is not None, "a group export names its group"
    return exportplan.group_export_plan(proj, juid, group)


def _plan_entries(project: str, kind: str, juid: str, group: str | None) -> tuple[str, list[list], str]:
    from csfs.core.project import Project

    plan = _build(project, kind, juid, group)
    entries = [[e.path, e.kind, e.size, e.mtime, str(e.source) if e.source else None, e.mode,
                e.generate() if e.kind == "generated" and e.size <= BIG else None, list(e.sources)]
               for e in plan.entries]
    return plan.name, entries, inputs_version(Project.open(project), juid)


def inputs_version(project: Project, juid: str) -> str:
    """What generated export files are made of: the job's job.json and final metafiles
    (inode, size, mtime of each), hashed."""
    job = project.job(juid)
    paths = [Path(job.dir) / "job.json"]
    paths += [Path(project.path) / mf for g in job.groups for r in g.results if (mf := r.final_metafile)]
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
