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


def test_sweep_drops_only_what_expired_without_an_insertion():
    c = TimedCache(maxsize=10, ttl=0.05)
    c["old"] = 1
    time.sleep(0.08)
    c2 = TimedCache(maxsize=10, ttl=60)
    c2["fresh"] = 2
    assert len(c) == 1          # expired, but nothing inserted since: still held
    assert c.sweep() == 1 and len(c) == 0
    assert c2.sweep() == 0 and c2.keys() == ["fresh"]


def test_context_sweep_covers_every_timed_cache_and_the_plans(tmp_path, monkeypatch):
    from csfs.mountpoints import context as ctxmod
    ctx = ctxmod.Context(tmp_path, str(tmp_path / "mnt"))
    ctx.cached(("lstat", "/x"), lambda: "st", long=True)
    ctx.cached(("lstat", "/y"), lambda: "st", long=False)
    ctx.obj(("project", "/p"), lambda: "model")
    ctx.obj(("plan", "/p", "J1"), lambda: ["entry"], plans=True)
    assert ctx.sweep() == 0
    later = time.monotonic() + 3600
    monkeypatch.setattr(ctxmod.time, "monotonic", lambda: later)
    ctx._plans.expire(later)    # cachetools' own clock: expire as the sweep would then
    ctx.obj(("plan", "/p", "J2"), lambda: ["entry"], plans=True)
    assert ctx.sweep() == 3     # the lstat, the listing and the project; J1's plan went above
    assert ctx.cached(("lstat", "/x"), lambda: "again", long=True) == "again"
