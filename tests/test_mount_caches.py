"""The mount's timed caches (mountpoints/context.TimedCache): entries live `ttl` seconds,
at most `maxsize` are kept (the oldest go first), and a renewed entry counts as new."""
from __future__ import annotations

import time

from csfs.mountpoints.context import TimedCache


def test_entries_expire_after_their_ttl():
    c = TimedCache(maxsize=10, ttl=0.05)
    c["a"] = 1
    assert c.get("a") == 1 and c.get("b", "miss") == "miss"
    time.sleep(0.08)
    assert c.get("a", "miss") == "miss"
    c["b"] = 2              # an insertion also drops what expired
    assert c.keys() == ["b"] and len(c) == 1


def test_bounded_oldest_first_and_renewal_moves_to_the_young_end():
    c = TimedCache(maxsize=3, ttl=60)
    for k in "abc":
        c[k] = k
    c["a"] = "A"            # renewed: now the youngest
    c["d"] = "d"            # full: the oldest ("b") goes
    assert c.keys() == ["c", "a", "d"]
    assert c.get("a") == "A" and c.get("b") is None
    assert c.pop("c") == "c" and c.pop("c", "gone") == "gone"
    c.clear()
    assert len(c) == 0 and c.keys() == []
