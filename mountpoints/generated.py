"""Work kept out of the mount process: building a job's export index (which reads result
.cs files; see core/exportindex.py) and generating export files (a joined `_exported.cs`).

Both run in a small pool of long-lived worker processes (spawned once, replaced after a
number of tasks), so the mount's own memory stays small and no request pays for a new
interpreter. Indexes are built in parallel, one job per worker (`prefetch`), and kept on
disk in the instance cache, so the next mount reads them without a worker. A big
generated file is written once into the instance cache and then served from there like
real data (read_buf, page cache); a small one is made at each open.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csfs.core import exportindex
from csfs.core.errors import CsfsError
from csfs.core.plan import ExportKey, Plan

# generated files up to this size are kept in memory instead (tunable for tests)
BIG = int(os.environ.get("CSFS_MOUNT_INLINE_MAX", 8 * 1024 * 1024))
LIMIT = float(os.environ.get("CSFS_MOUNT_TASK_LIMIT", 120.0))   # seconds for one plan
WRITE_RATE = 20e6               # bytes/s a big generated file is granted beyond LIMIT
GRACE = 10.0                    # after the worker's own alarm, before it is killed
FAILED_TTL = 60.0
WORKERS = 2                     # one slow export leaves the other worker serving
TASKS_PER_POOL = 400            # then a new pool: worker memory never accumulates
IDLE = float(os.environ.get("CSFS_MOUNT_WORKER_IDLE", 10.0))   # seconds before idle workers end
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_failed: dict[tuple, tuple[float, str]] = {}   # task key -> (until, message)
_running: dict[tuple, tuple[ProcessPoolExecutor, Future]] = {}   # task key -> (its pool, its future)
_last_use = 0.0                                # when a task was last queued or finished (monotonic)
_queued = 0                                    # tasks queued on the current pool


class TaskTimeout(CsfsError):
    """A worker task ran past its limit (EIO on the path that needed it)."""


def _get_pool() -> ProcessPoolExecutor:
    """The pool (started on first use, replaced after TASKS_PER_POOL tasks: the old one ends
    once its queued tasks are done; call with _guard held). Not max_tasks_per_child: up to
    Python 3.12 an executor can hang once its workers have retired (CPython gh-115634)."""
    global _pool, _last_use, _queued
    _last_use = time.monotonic()
    _queued += 1
    if _pool is not None and _queued > TASKS_PER_POOL:
        _pool.shutdown(wait=False)
        _pool = None
    if _pool is None:
        _queued = 1
        _pool = ProcessPoolExecutor(max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_end_with_parent, initargs=(os.getpid(),))
        threading.Thread(target=_stop_when_idle, args=(_pool,), name="csfs-workers-idle", daemon=True).start()
    return _pool


def _stop_when_idle(pool: ProcessPoolExecutor) -> None:
    """End the workers once they have had nothing to do for IDLE seconds: an idle mount
    holds no worker memory (the next task starts them again, in about a second)."""
    global _pool
    while True:
        time.sleep(min(1.0, IDLE))
        with _guard:     # decided and forgotten at once: no task can be queued on it meanwhile
            if _pool is not pool:
                return
            if _running or time.monotonic() - _last_use < IDLE:
                continue
            _pool = None
        pool.shutdown(wait=False)
        return


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


def _submit(fn: Callable[..., Any], *args: Any, limit: float = LIMIT) -> tuple[ProcessPoolExecutor, Future]:
    """Queue fn(*args) for a worker, or join the same task already queued or running (on
    the pool it was queued on, which may since have been replaced)."""
    key = (fn.__name__,) + args
    with _guard:
        joined = _running.get(key)
        if joined is not None:
            return joined
        pool = _get_pool()
        fut = pool.submit(_bounded, limit, fn, *args)
        _running[key] = (pool, fut)
    fut.add_done_callback(lambda f: _done(key, f))   # may run at once: not under _guard
    return pool, fut


def _done(key: tuple, fut: Future) -> None:
    global _last_use
    with _guard:
        _last_use = time.monotonic()
        if key in _running and _running[key][1] is fut:
            del _running[key]


def _call(fn: Callable[..., Any], *args: Any, limit: float = LIMIT) -> Any:
    """Run fn(*args) in a worker within `limit` seconds; its CsfsError reaches the caller
    as is. Refused at once while the same task is remembered as having timed out."""
    key = (fn.__name__,) + args
    failed = _failed.get(key)
    if failed is not None and failed[0] > time.monotonic():
        raise TaskTimeout(failed[1])
    for attempt in (1, 2):
        pool, fut = _submit(fn, *args, limit=limit)
        try:
            return _wait(pool, fut, limit)
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


def materialize(cache_dir: Path, project: Path, juid: str, group: str | None, rel: str, size: int,
                version: str) -> Path:
    """The cached file holding this generated entry's bytes (made now if missing). `version`
    (the index's: its inputs' identities) keeps a file made from older inputs from being reused."""
    key = hashlib.sha1(json.dumps([str(project), juid, group, rel, size, version]).encode()).hexdigest()
    out = Path(cache_dir) / "mount-generated" / f"{key}.bin"
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if out.is_file() and out.stat().st_size == size:
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        _call(_write_generated, str(project), juid, group, rel, str(out), limit=LIMIT + size / WRITE_RATE)
        if out.stat().st_size != size:
            raise CsfsError(f"{rel} changed while it was being made; try again")
        return out


def render(project: Path, juid: str, group: str | None, rel: str, size: int) -> bytes:
    """A small generated entry's bytes, made by a worker (CsfsError if not `size` long: its
    sources changed since the index was made)."""
    data = _call(_render, str(project), juid, group, rel)
    if len(data) != size:
        raise CsfsError(f"{rel} changed while it was being made; try again")
    return data


@dataclass
class Loaded:
    """An export's plan (or why it has none) as the mount keeps it, with the identities of
    its inputs, last compared with the files at `checked` (monotonic)."""

    plan: Plan | CsfsError
    inputs: list[Any]
    checked: float

    @property
    def version(self) -> str:
        return exportindex.version(self.inputs)

    def __len__(self) -> int:   # its weight in the mount's plan cache
        return len(self.plan) if isinstance(self.plan, Plan) else 1


def load_index(cache_dir: Path | None, project: Path, juid: str, key: ExportKey) -> dict[ExportKey, Loaded]:
    """The export `key` of a job from the disk cache, else every export of the job, indexed
    by a worker (which also writes them to the disk cache)."""
    now = time.monotonic()
    if cache_dir is not None:
        got = exportindex.read(cache_dir, project, juid, key)
        if got is not None:
            return {key: Loaded(got[0], got[1], now)}
    index = _call(_build_index, str(project), juid, None if cache_dir is None else str(cache_dir))
    return {k: Loaded(p, index.inputs, now) for k, p in index.plans.items()}


def prefetch(cache_dir: Path, project: Path, exports: list[tuple[str, ExportKey]]) -> None:
    """Have the workers index the jobs of these (job uid, export) pairs whose disk cache is
    not up to date, in the background (one task per job, two workers)."""
    for juid in dict.fromkeys(j for j, key in exports if not exportindex.current(cache_dir, project, j, key)):
        try:
            _submit(_build_index, str(project), juid, str(cache_dir))
        except Exception:   # a pool being torn down: the next request builds it
            return


# -- run in the worker process ------------------------------------------------------------

def _end_with_parent(parent: int) -> None:
    """The worker ends when the mount process has ended, however it ended (unmounted while
    a request was starting a worker, killed): an orphaned worker would idle for ever."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)
    threading.Thread(target=watch, daemon=True).start()


def _build_index(project: str, juid: str, cache_dir: str | None) -> exportindex.JobIndex:
    from csfs.core.project import Project

    index = exportindex.build(Project.open(project), juid, cache_dir)
    for plan in index.plans.values():
        if isinstance(plan, Plan):
            plan.drop_generators()      # the mount makes generated bytes with render()
    return index


def _render(project: str, juid: str, group: str | None, rel: str) -> bytes:
    from csfs.core.exportplan import render
    from csfs.core.project import Project

    return render(Project.open(project), juid, group, rel)


def _write_generated(project: str, juid: str, group: str | None, rel: str, out: str) -> None:
    from csfs.core.atomic import write_bytes

    write_bytes(out, _render(project, juid, group, rel))
