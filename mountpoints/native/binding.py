"""Tricks `threadstate` and `readdir`: overrides of the FUSE binding's own methods."""
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
    c_stat: Any = getattr(sys.modules[base.__module__], "c_stat", None)

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
                for name, mode, ino in self.operations.entries(path.decode(enc, errs)):
                    st.st_mode, st.st_ino = mode, ino
                    if filler(buf, name.encode(enc, errs), st, 0, 0):
                        break
                return 0

    return Tuned
