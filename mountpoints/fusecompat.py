"""The FUSE binding: mfusepy on libfuse3 when available, else fusepy on libfuse2; same Operations.

`CSFS_FUSE=mfusepy` or `CSFS_FUSE=fusepy` forces one binding (no fallback); unset or
`auto` tries mfusepy, then fusepy. Importing never fails: `AVAILABLE` says whether a
binding and its libfuse were found and `PROBLEM` says why not, so the CLI prints one line.

What the chosen binding can do is detected here, once; the rest of mountpoints reads
these flags instead of checking the binding itself:
  READ_BUF    the binding wires `read_buf` and the native trick `zerocopy` is on:
              libfuse reads data from our fd itself; otherwise plain `read()`
  LSEEK       `lseek` reaches us (libfuse >= 3.8): SEEK_DATA/SEEK_HOLE answered from the
              source; otherwise the kernel treats every file as data (tar -S still works,
              by scanning for zeros)
  INVALIDATE  libfuse has fuse_invalidate_path (libfuse3): kernel caches of generated files
              can be dropped after a control action; otherwise only real data keeps its cache
  NOFLUSH     fuse_file_info has `noflush` (libfuse >= 3.11): files other than control files
              are opened without flush() at close; otherwise every close calls flush()
"""
from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

from .native import zerocopy

ENV = "CSFS_FUSE"
CHOICES = ("mfusepy", "fusepy")
LIBFUSE3 = "libfuse3.so.3"   # the soname every libfuse 3.x keeps

AVAILABLE = False
PROBLEM = ""
LIBRARY = ""           # "mfusepy" or "fusepy"
FUSE_MAJOR = 0
FUSE_MINOR = 0
LIBFUSE: Any = None    # the binding's ctypes handle on libfuse
READ_BUF = LSEEK = INVALIDATE = NOFLUSH = False


def _import_mfusepy() -> Any:
    """mfusepy, on libfuse3: left alone, mfusepy takes libfuse2 whenever it is installed.
    It is handed libfuse3's soname when the dynamic loader finds it, the name otherwise
    (find_library runs `ldconfig -p`, ~10 ms of every mount's start)."""
    pinned = "FUSE_LIBRARY_PATH" in os.environ or "FUSE_LIBRARY_NAME" in os.environ
    key = ""
    if not pinned:
        try:
            ctypes.CDLL(LIBFUSE3)
            key, os.environ["FUSE_LIBRARY_PATH"] = "FUSE_LIBRARY_PATH", LIBFUSE3
        except OSError:
            key, os.environ["FUSE_LIBRARY_NAME"] = "FUSE_LIBRARY_NAME", "fuse3"
    try:
        import mfusepy

        return mfusepy
    finally:
        if key:
            os.environ.pop(key, None)


def _import_fusepy() -> Any:
    import fuse  # fusepy, on libfuse2

    if not hasattr(fuse, "fuse_operations"):   # some other module called `fuse`
        raise ImportError("the `fuse` module found is not fusepy")
    return fuse


def _version(lib: Any) -> tuple[int, int]:
    v = int(lib.fuse_version())   # 29 for 2.9, 314 for 3.14
    return divmod(v, 10) if v < 100 else divmod(v, 100)


def _load() -> Any:
    """Import the binding CSFS_FUSE asks for (or the first that works); fill in the flags."""
    global AVAILABLE, PROBLEM, LIBRARY, FUSE_MAJOR, FUSE_MINOR, LIBFUSE, READ_BUF, LSEEK, INVALIDATE, NOFLUSH
    wanted = os.environ.get(ENV, "").strip().lower() or "auto"
    if wanted not in CHOICES + ("auto",):
        PROBLEM = f"{ENV}={wanted!r} is not one of {', '.join(CHOICES)}, auto"
        return None
    problems = []
    for name in CHOICES if wanted == "auto" else (wanted,):
        try:   # a binding raises OSError (or AttributeError: wrong version) without its libfuse
            mod = _import_mfusepy() if name == "mfusepy" else _import_fusepy()
        except (ImportError, OSError, AttributeError) as e:
            problems.append(f"{name}: {e}")
            continue
        LIBRARY, LIBFUSE, AVAILABLE = name, mod._libfuse, True
        FUSE_MAJOR, FUSE_MINOR = _version(LIBFUSE)
        ops = {f[0] for f in mod.fuse_operations._fields_}
        READ_BUF = "read_buf" in ops and zerocopy.usable(FUSE_MAJOR, FUSE_MINOR)
        LSEEK = "lseek" in ops
        INVALIDATE = hasattr(LIBFUSE, "fuse_invalidate_path")
        NOFLUSH = any(f[0] == "noflush" for f in getattr(mod.fuse_file_info, "_fields_", ()))
        return mod
    PROBLEM = "; ".join(problems)
    return None


_fuse = _load()

if _fuse is not None:
    FUSE = _fuse.FUSE
    Operations = _fuse.Operations
    FuseOSError = _fuse.FuseOSError
    fuse_get_context = _fuse.fuse_get_context
else:  # pragma: no cover - depends on the machine
    class FuseOSError(OSError):  # type: ignore[no-redef]  # stand-ins when no binding loads
        def __init__(self, code: int) -> None:
            super().__init__(code, errno.errorcode.get(code, str(code)))

    class Operations:  # type: ignore[no-redef]  # (the names the binding would give)
        pass

    FUSE = None

    def fuse_get_context() -> tuple[int, int, int]:
        return (0, 0, 0)


def install_hint() -> str:
    """What to install for the binding CSFS_FUSE asks for (mfusepy's by default)."""
    if os.environ.get(ENV, "").strip().lower() == "fusepy":
        return "install the Debian/Ubuntu package libfuse2 and `pip install fusepy`"
    return "install the Debian/Ubuntu package fuse3 (apt-get install fuse3) and `pip install mfusepy`"


def describe() -> str:
    """'mfusepy on libfuse 3.14' (or why no binding is available)."""
    if not AVAILABLE:
        return f"no FUSE binding ({PROBLEM})"
    return f"{LIBRARY} on libfuse {FUSE_MAJOR}.{FUSE_MINOR}"
