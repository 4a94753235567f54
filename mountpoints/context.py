"""State shared by every view of one mount: inode numbers, caches, the instance, the owner.

Caches hold lstat results, directory listings and projects (TimedCache: a lookup is one
dict access) and export plans (cachetools, sized by entries). Entries under a
completed job, virtual exports and plans live long (their sources do not change
behind csfs's back); the rest lives one second. Every cache is bounded: by items, and the
plans by their entries in all (PLAN_ENTRIES, `CSFS_MOUNT_PLAN_ENTRIES`; a plan read back
from the disk index costs a fraction of a second), so the mount's memory does not grow
with what has been walked. `invalidate()` drops everything and is called whenever csfs
itself changes something (a control action).
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache

from .perms import Perms
from .statinfo import Inodes, ns

if TYPE_CHECKING:
    from csfs.core.instance import Instance

LONG_TTL = 60.0
SHORT_TTL = 1.0
PROJECT_TTL = 5.0
PLAN_ENTRIES = int(os.environ.get("CSFS_MOUNT_PLAN_ENTRIES", 150_000))   # plan entries kept in memory


class Context:
    def __init__(self, home: Path, mountpoint: str, plain: bool = False) -> None:
        self.home = home
        self.plain = plain      # the project(s) only: no exports/, sizes/, control/
        self.mountpoint = os.path.abspath(mountpoint)
        self.uid = os.getuid()
        self.gid = os.getgid()
        self.allow_other = False   # others may read: permissions also count the folders above
        self.perms = Perms(self)
        self.started_ns = ns(time.time())
        self.inodes = Inodes()
        self._lock = threading.RLock()
        # bounded: the kernel holds attributes for a minute anyway; this saves rescans and
        # lstat calls when it asks again, and caps the process at a few tens of MB
        self._long = TimedCache(maxsize=30_000, ttl=LONG_TTL)
        self._short = TimedCache(maxsize=10_000, ttl=SHORT_TTL)
        self._objects = TimedCache(maxsize=4096, ttl=PROJECT_TTL)
        self._plans: TTLCache = TTLCache(maxsize=PLAN_ENTRIES, ttl=600, getsizeof=len)
        self._oversize: tuple[Any, Any] | None = None   # the last plan bigger than the whole cache
        self._instance: Instance | None = None
        self.watcher: Any = None    # mountpoints.watch.Watcher once the mount runs (None: TTLs only)
        self.action_lock = threading.Lock()   # one control action at a time

    # -- caches -------------------------------------------------------------
    def cached(self, key: Any, compute: Callable[[], Any], long: bool) -> Any:
        """An lstat result or listing from the long or short cache, computed on a miss."""
        return _timed(self._long if long else self._short, key, compute)

    def obj(self, key: Any, compute: Callable[[], Any], plans: bool = False) -> Any:
        """A core object (Project, SizeReport, Plan) cached for a few seconds (plans: minutes)."""
        return self._get(self._plans, key, compute) if plans else _timed(self._objects, key, compute)

    def put(self, key: Any, value: Any) -> None:
        """Keep a plan computed along with another one (the other exports of its job)."""
        with self._lock:
            self._store(self._plans, key, value)

    def _get(self, cache: TTLCache, key: Any, compute: Callable[[], Any]) -> Any:
        with self._lock:
            hit = cache.get(key, _MISS)
            if hit is _MISS and self._oversize is not None and self._oversize[0] == key:
                hit = self._oversize[1]
        if hit is not _MISS:
            return hit
        value = compute()
        with self._lock:
            self._store(cache, key, value)
        return value

    def _store(self, cache: TTLCache, key: Any, value: Any) -> None:
        try:
            cache[key] = value
        except ValueError:      # larger than the cache itself: keep only the last such one
            self._oversize = (key, value)

    def invalidate(self) -> None:
        """Forget every cached listing, lstat, project and plan."""
        with self._lock:
            for c in (self._long, self._short, self._objects, self._plans):
                c.clear()
            self._oversize = None

    def forget(self, base: str | None = None, paths: Iterable[str] = ()) -> None:
        """Drop what was cached about `paths` (their lstat, stat and listing) and, with
        `base`, everything of the project directory `base` (its model, plans, sizes and
        every path below it) and the list of the instance's projects."""
        under = (base.rstrip("/") + "/") if base else None
        exact = set(paths)

        def hit(key: Any) -> bool:
            if key == ("folders",):
                return base is not None
            for k in key[1:2] if not base else key[1:]:
                if isinstance(k, str) and (k in exact or (under is not None and (k == base or k.startswith(under)))):
                    return True
            return False
        with self._lock:
            for c in (self._long, self._short, self._objects, self._plans):
                for key in [k for k in list(c.keys()) if hit(k)]:
                    c.pop(key, None)
            if self._oversize is not None and hit(self._oversize[0]):
                self._oversize = None

    def drop(self, key: Any) -> None:
        """Forget one cached object."""
        with self._lock:
            for c in (self._long, self._short, self._objects, self._plans):
                c.pop(key, None)
            if self._oversize is not None and self._oversize[0] == key:
                self._oversize = None

    def watch(self, path: Path | str, recursive: bool = True) -> None:
        """Watch a directory tree for changes made behind the mount's back (once running)."""
        if self.watcher is not None:
            self.watcher.watch_tree(str(path), recursive)

    # -- the instance -------------------------------------------------------
    def instance(self) -> Instance:
        """The csfs instance (core.instance.Instance) this mount acts for."""
        if self._instance is None:
            from csfs.core.instance import Instance

            self._instance = Instance(self.home)
        return self._instance

    def inside_mount(self, path: str) -> bool:
        """True when `path` lies under this mount: acting on it would deadlock the FS."""
        p = os.path.abspath(path)
        return p == self.mountpoint or p.startswith(self.mountpoint.rstrip("/") + "/")


class TimedCache:
    """key -> value for `ttl` seconds, at most `maxsize` of them: the lstat and listing
    caches. A lookup is one dict access and a clock read, without a lock; an insertion
    drops what expired and, when full, the oldest (all entries share one ttl, so the
    oldest are the first to expire)."""

    __slots__ = ("_d", "_lock", "maxsize", "ttl")

    def __init__(self, maxsize: int, ttl: float) -> None:
        self._d: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.maxsize = maxsize
        self.ttl = ttl

    def get(self, key: Any, default: Any = None) -> Any:
        hit = self._d.get(key)
        if hit is None or hit[0] < time.monotonic():
            return default
        return hit[1]

    def __setitem__(self, key: Any, value: Any) -> None:
        now = time.monotonic()
        d = self._d
        with self._lock:
            d[key] = (now + self.ttl, value)
            d.move_to_end(key)
            while len(d) > self.maxsize or next(iter(d.values()))[0] < now:
                d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)

    def keys(self) -> list[Any]:
        with self._lock:
            return list(self._d)

    def pop(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            hit = self._d.pop(key, None)
        return default if hit is None else hit[1]

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


def _timed(cache: TimedCache, key: Any, compute: Callable[[], Any]) -> Any:
    hit = cache.get(key, _MISS)
    if hit is _MISS:
        hit = cache[key] = compute()
    return hit


class _Miss:
    pass


_MISS = _Miss()
