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
