"""What the kernel caches for us, and dropping it when csfs changes something.

Immutable files (completed jobs, exports) are opened with `keep_cache`, so a second
read never reaches this process. After a control action, every such path of the
affected project is invalidated with libfuse's fuse_invalidate_path (libfuse >= 3.1):
a generated file that changed (an export's job.json after a clear) is read afresh. The
same happens for paths that change behind the mount's back (mountpoints/watch.py).
Without that function, only real data files keep their cache.
"""
from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Sequence

log = logging.getLogger("csfs.mount")


class KernelCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: set[str] = set()
        self._fuse: int | None = None
        self._fn: Callable[[int | None, bytes], int] | None = None   # fuse_invalidate_path
        self._inval_entry: Callable[[int, int, bytes, int], int] | None = None
        self._forgetting = threading.Lock()

    def bind(self) -> None:
        """Call from init(): capture the struct fuse * and the invalidation function."""
        from .fusecompat import INVALIDATE
        from .fusecompat import LIBFUSE as lib

        if not INVALIDATE:   # libfuse2 (fusepy): no fuse_invalidate_path
            self._fn = None
            return
        try:
            fn = lib.fuse_invalidate_path
            fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            fn.restype = ctypes.c_int
            self._fuse = lib.fuse_get_context().contents.fuse
            self._fn = fn
        except (ImportError, AttributeError, OSError):
            self._fn = None
            return
        try:
            inval = lib.fuse_lowlevel_notify_inval_entry
            inval.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t]
            inval.restype = ctypes.c_int
            self._inval_entry = inval
        except AttributeError:
            self._inval_entry = None

    @property
    def session(self) -> int | None:
        """The struct fuse_session * of the mount (struct fuse starts with it), or None."""
        return ctypes.c_void_p.from_address(self._fuse).value if self._fuse else None

    @property
    def enabled(self) -> bool:
        return self._fn is not None and bool(self._fuse)

    def record(self, path: str) -> None:
        with self._lock:
            self._paths.add(path)

    def invalidate(self, prefix: str = "") -> None:
        """Drop the kernel's cached pages, listings and attributes of recorded paths under
        `prefix` (all with ""). Waits at most 5 s: a notification must never block the
        request that triggered it."""
        self.invalidate_paths([], prefixes=[prefix])

    def invalidate_paths(self, paths: list[str], prefixes: Sequence[str] = (), wait: bool = True) -> None:
        """Drop the kernel's pages and attributes of `paths` (whether recorded or not: a path
        the kernel does not know is skipped) and of every recorded path under `prefixes`."""
        fn = self._fn
        if fn is None or not self.enabled:
            return
        with self._lock:
            hit = set(paths)
            for prefix in prefixes:
                if prefix:
                    hit |= {p for p in self._paths if p == prefix or p.startswith(prefix.rstrip("/") + "/")}
                else:
                    hit |= self._paths
            self._paths -= hit
        if not hit:
            return

        def run() -> None:
            for p in sorted(hit, key=len, reverse=True):
                fn(self._fuse, p.encode("utf-8", "surrogateescape"))
        t = threading.Thread(target=run, daemon=True)
        t.start()
        if wait:
            t.join(5.0)
            if t.is_alive():
                log.warning("kernel cache invalidation still running after 5 s")

    def forget_tree(self, names: list[str]) -> bool:
        """Ask the kernel to drop its entries for the root's `names` and everything below
        them (in a thread; False when one is running or libfuse cannot). The kernel then
        forgets those inodes and libfuse frees its node for each: the mount's entry budget
        (fs.CsfsFS). Entries in use (a cwd, an open file) stay; the rest is looked up again
        when next used."""
        fn, session = self._inval_entry, self.session
        if fn is None or not session or not self._forgetting.acquire(blocking=False):
            return False

        def run() -> None:
            try:
                for name in names:
                    raw = name.encode("utf-8", "surrogateescape")
                    fn(session, ROOT_ID, raw, len(raw))
            finally:
                self._forgetting.release()
        threading.Thread(target=run, daemon=True, name="csfs-forget").start()
        return True


ROOT_ID = 1   # FUSE_ROOT_ID: the kernel's node id of the mount's root
