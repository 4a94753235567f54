"""The mount's export workers (real worker processes): a task blocked on a FIFO ends in
a clean error at its time limit, the worker survives it, the other worker serves
meanwhile, and the same task then fails at once instead of blocking again."""
from __future__ import annotations

import os
import threading
import time

import pytest


@pytest.fixture
def workers():
    from csfs.mountpoints import generated

    yield generated
    generated.shutdown()


def test_blocked_task_is_bounded_and_isolated(workers, tmp_path):
    generated = workers
    fifo = tmp_path / "J8_002_particles.cs"
    os.mkfifo(fifo)
    first = generated._call(os.getpid)
    out: dict[str, object] = {}

    def blocked() -> None:
        t0 = time.monotonic()
        try:
            generated._call(open, str(fifo), "rb", limit=3)   # open() of a FIFO blocks
        except generated.TaskTimeout as e:
            out["error"] = str(e)
        out["took"] = time.monotonic() - t0
    t = threading.Thread(target=blocked)
    t.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    other = generated._call(os.getpid)              # served by the other worker meanwhile
    assert time.monotonic() - t0 < 2.5
    t.join(timeout=60)
    assert not t.is_alive()
    assert "more than 3 s" in str(out.get("error")) and 2.5 < out["took"] < 30, out
    # the workers survived (the alarm interrupted the task, nobody was killed)
    assert {generated._call(os.getpid) for _ in range(4)} <= {first, other}
    # the same task is refused at once for a while
    t0 = time.monotonic()
    with pytest.raises(generated.TaskTimeout):
        generated._call(open, str(fifo), "rb", limit=3)
    assert time.monotonic() - t0 < 1.0


def test_pool_is_replaced_after_its_task_budget(workers, monkeypatch):
    """After TASKS_PER_POOL tasks a new pool takes over, and every task still runs, those
    queued on the old pool when it was replaced included. (csfs used Python's own recycling,
    max_tasks_per_child, until test_views found a pool left with no worker and a task
    waiting on it for ever: CPython gh-115634.)"""
    from concurrent.futures import ThreadPoolExecutor

    generated = workers
    monkeypatch.setattr(generated, "TASKS_PER_POOL", 2)
    t0 = time.monotonic()
    pools = []                           # kept alive, so their ids stay distinct
    with ThreadPoolExecutor(3) as callers:
        for r in range(8):
            got = list(callers.map(lambda i: generated._call(pow, i, 1, limit=5), range(3 * r, 3 * r + 3)))
            assert got == list(range(3 * r, 3 * r + 3))
            pools.append(generated._pool)
    assert time.monotonic() - t0 < 60
    assert len({id(p) for p in pools}) >= 4, "24 tasks, 2 per pool: the pool must have been replaced"
