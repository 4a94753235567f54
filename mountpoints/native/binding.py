"""Tricks `threadstate`, `readdir`, `readdirplus` and `getattr`: overrides of the FUSE
binding's own methods."""
from __future__ import annotations

import ctypes
import sys
import threading
from typing import Any

from .. import native


def tuned(base: Any, fuse_major: int) -> Any:
    """A subclass of the binding's FUSE class `base` with the tricks that are on."""
    pinned = threading.local()
    threadstate = native.use("threadstate")
    # mfusepy's libfuse3 readdir; fusepy and libfuse2 call other methods
    readdir = native.use("readdir", fuse_major == 3 and hasattr(base, "readdir_fuse_3"))
    # libfuse3 readdirplus with attributes; getattr filling the struct directly (mfusepy only)
    plus = native.use("readdirplus", readdir)
    getattr3 = native.use("getattr", fuse_major == 3 and hasattr(base, "getattr_fuse_3"))
    c_stat: Any = getattr(sys.modules[base.__module__], "c_stat", None)
    listings: dict[str, tuple[list[tuple[str, int, int]], Any]] = {}   # readdirplus walks in progress

    class Tuned(base):
        if threadstate:
            def _wrapper(self, func: Any, *args: Any, **kwargs: Any) -> Any:
                # ctypes creates and destroys a Python thread state around every callback
                # from a libfuse thread (an mmap/munmap pair and more, per request); one
                # extra reference per thread keeps it. libfuse keeps its threads (<= 10).
                if not getattr(pinned, "done", False):
                    ctypes.pythonapi.PyGILState_Ensure()
                    pinned.done = True
                return super()._wrapper(func, *args, **kwargs)

        if readdir:
            def readdir_fuse_3(self, path: bytes, buf: Any, filler: Any, offset: int, fip: Any,
                               flags: int) -> int:
                # mfusepy's generic loop costs ~3.5 us per entry; this one about half
                st = c_stat()
                enc, errs = self.encoding, self.errors
                where = path.decode(enc, errs)
                if plus and flags & READDIR_PLUS:
                    return self._readdir_plus(where, buf, filler, offset, st)
                listings.pop(where, None)   # the kernel went on without attributes: that walk is over
                for name, mode, ino in self.operations.entries(where):
                    st.st_mode, st.st_ino = mode, ino
                    if filler(buf, name.encode(enc, errs), st, 0, 0):
                        break
                return 0

            def _readdir_plus(self, path: str, buf: Any, filler: Any, offset: int, st: Any) -> int:
                """readdirplus: real entries carry their attributes (CsfsFS.plus_attrs), so
                `ls -l`, du and rsync need no lookup per entry. libfuse 3.14 drops them when
                the filler is given offset 0 (its own buffered listing), so entries go out
                with offsets, one kernel request at a time; the listing taken at offset 0 is
                kept for the following requests of the same walk, up to the empty one that ends
                it. (libfuse counts a lookup for the entry that no longer fits a request: one
                node per request.)"""
                ops = self.operations
                if offset == 0 or path not in listings:
                    if len(listings) >= 16:    # walks the kernel left unfinished (a reader stopped)
                        listings.clear()
                    listings[path] = (ops.entries(path), ops.plus_attrs(path))
                entries, attrs_of = listings[path]
                if offset >= len(entries):    # the kernel's last request of a walk: it is over
                    listings.pop(path, None)
                    return 0
                enc, errs = self.encoding, self.errors
                for i in range(offset, len(entries)):
                    name, mode, ino = entries[i]
                    attrs = attrs_of(name) if attrs_of is not None else None
                    if attrs is None:
                        ctypes.memset(ctypes.byref(st), 0, ctypes.sizeof(st))
                        st.st_mode, st.st_ino = mode, ino
                    else:
                        fill_stat(st, attrs)
                    if filler(buf, name.encode(enc, errs), st, i + 1, 0 if attrs is None else FILL_DIR_PLUS):
                        return 0
                return 0      # kept for that last request, which asks past the end

        if getattr3:
            def getattr_fuse_3(self, path: bytes, buf: Any, fip: Any) -> int:
                # mfusepy's fgetattr zeroes the struct and copies the dict key by key
                # (getattr/setattr per key): filling the fields directly halves that part
                fill_stat(buf.contents, self.operations.getattr(path.decode(self.encoding, self.errors)))
                return 0

    return Tuned


READDIR_PLUS = 1      # libfuse3: readdir flag FUSE_READDIR_PLUS (the kernel asks for attributes)
FILL_DIR_PLUS = 2     # ... and the filler's FUSE_FILL_DIR_PLUS (this entry's stat is complete)


def fill_stat(st: Any, a: dict[str, Any]) -> None:
    """Set every field of a struct stat the mount reports, from a getattr dict (times in ns)."""
    st.st_mode, st.st_ino, st.st_nlink = a["st_mode"], a["st_ino"], a["st_nlink"]
    st.st_uid, st.st_gid, st.st_rdev = a["st_uid"], a["st_gid"], a.get("st_rdev", 0)
    st.st_size, st.st_blocks, st.st_blksize = a["st_size"], a["st_blocks"], a["st_blksize"]
    st.st_atimespec.tv_sec, st.st_atimespec.tv_nsec = divmod(a["st_atime"], 1_000_000_000)
    st.st_mtimespec.tv_sec, st.st_mtimespec.tv_nsec = divmod(a["st_mtime"], 1_000_000_000)
    st.st_ctimespec.tv_sec, st.st_ctimespec.tv_nsec = divmod(a["st_ctime"], 1_000_000_000)
