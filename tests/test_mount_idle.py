"""The mount's housekeeping (mountpoints/idle.py): it sweeps and trims only on a tick with
no request since the previous one, and survives a failing sweep."""
from __future__ import annotations

import time

from csfs.mountpoints.idle import Housekeeper


def _run(activity, sweep, ticks: float = 0.3) -> Housekeeper:
    h = Housekeeper(activity, sweep, tick=0.02)
    h.start()
    time.sleep(ticks)
    h.stop()
    h._thread.join(1)
    return h


def test_a_busy_mount_is_left_alone():
    counter = iter(range(10**6))
    swept = []
    _run(lambda: next(counter), lambda: swept.append(1) or 0)
    assert swept == []


def test_a_quiet_mount_is_swept_and_trimmed():
    swept = []
    h = _run(lambda: 7, lambda: swept.append(1) or 5)
    assert len(swept) >= 3
    if h._trim is not None:     # glibc
        assert h.trims == len(swept)


def test_a_failing_sweep_does_not_stop_the_housekeeping():
    calls = []

    def sweep() -> int:
        calls.append(1)
        raise RuntimeError("boom")
    h = _run(lambda: 0, sweep)
    assert len(calls) >= 3 and not h._thread.is_alive()
