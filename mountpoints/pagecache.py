"""Which version of each immutable file the kernel may keep pages of: old-or-new reads.

Each open handle serves one version (its own fd or bytes). A reader sees either the old
or the new version of a file, never a mix: the version the kernel may cache is counted
while open; another version is served with direct_io until the old one is closed, then
the kernel's pages and attributes are dropped (kcache) and the next open starts afresh.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from .handles import Handle
from .kcache import KernelCache
from .nodes import Node

MAX_VERSIONS = 200_000
MAX_REPLACED = 10_000


class PageCache:
    def __init__(self, kcache: KernelCache, attr_timeout: float) -> None:
        self.kcache = kcache
        self.attr_timeout = attr_timeout
        self._lock = threading.Lock()
        # path -> [version, open handles of it, its size, direct_io until (monotonic)]
        self._versions: dict[str, list[Any]] = {}
        # real path -> until when (monotonic): files changed behind our back lately, whose old
        # attributes the kernel may still hold under another name (an export's copy of them)
        self._replaced: dict[str, float] = {}

    def note_replaced(self, paths: Iterable[str]) -> None:
        """These source files changed behind the mount's back (inotify)."""
        now = time.monotonic()
        until = now + self.attr_timeout
        with self._lock:
            if len(self._replaced) > MAX_REPLACED:
                self._replaced = {p: t for p, t in self._replaced.items() if t > now}
            for p in paths:
                self._replaced[p] = until

    def shown_size(self, path: str, size: int) -> int:
        """The size getattr reports: an older version's while it is still being read, so no
        reader is cut short."""
        v = self._versions.get(path)
        return v[2] if v is not None and v[1] else size

    def choose(self, path: str, node: Node, fi: Any, h: Handle) -> None:
        """Set keep_cache or direct_io in `fi` for handle `h` of the immutable `node`:
        - the version the kernel may hold pages of (or the first open): keep_cache,
          counted while open;
        - another version while that one is still being read: direct_io (no page cache, no
          size limit), so neither reader sees the other's pages;
        - another version, nobody reading the old one: direct_io too, and the kernel's pages
          and attributes are dropped (libfuse3; libfuse2 cannot, so it stays direct until the
          attribute timeout has passed)."""
        now = time.monotonic()
        src = node.origin
        if src is not None and self._replaced.get(src, 0.0) > now:
            fi.direct_io = 1   # its file changed lately: the kernel may hold its old size
            return
        version = h.identity()
        with self._lock:
            v = self._versions.get(path)
            if v is None or (v[0] == version and now >= v[3]):
                keep = self._keep(path, node)
                if v is None:
                    if len(self._versions) > MAX_VERSIONS:
                        self._forget()
                    v = self._versions[path] = [version, 0, h.size, 0.0]
                    keep = 0    # pages of an older version may linger: drop them now
                v[1] += 1
                h.version = version
                fi.keep_cache = keep
                return
            fi.direct_io = 1
            if v[1] or v[0] == version:
                return
            del self._versions[path]
            if not self.kcache.enabled:
                self._versions[path] = [version, 0, h.size, now + self.attr_timeout]
        self.kcache.invalidate_paths([path], wait=False)

    def release(self, path: str, h: Handle) -> None:
        """Handle `h` of `path` was closed."""
        if h.version is None:
            return
        with self._lock:
            v = self._versions.get(path)
            if v is not None and v[0] == h.version and v[1]:
                v[1] -= 1

    def _forget(self) -> None:
        """Bound the table: forget files nobody has open (their next open drops their pages)."""
        for p in [p for p, v in self._versions.items() if not v[1]]:
            del self._versions[p]

    def _keep(self, path: str, node: Node) -> int:
        """keep_cache, remembered so a control action can drop it. Without invalidation only
        files backed by a source keep their cache (generated ones may change)."""
        if self.kcache.enabled:
            self.kcache.record(path)
            return 1
        return 1 if node.origin is not None else 0
