"""Trick `dircache`: kernel-cached listings (FOPEN_CACHE_DIR) of immutable directories, on libfuse 3.0-3.14.

The kernel keeps a directory's listing when opendir's reply carries `cache_readdir` and
`keep_cache`, but libfuse's high-level opendir (fuse_lib_opendir) fills its own
fuse_file_info for the filesystem and never copies those two flags into the reply. So we
wrap the session's low-level opendir handler: it remembers the low-level fuse_file_info of
the request it is serving in a thread-local, and the high-level opendir, which runs in the
same thread before the reply is sent, sets the flags there (`current()`).

This reads libfuse's private layout: the session's (kcache.KernelCache.session) low-level
operations start at byte 40 (3.14: after mountpoint, exited, fd, io, mo, debug,
deny_others) or 32 (older 3.x, without io); opendir is the 21st of them. The offset
used is the one where every pointer up to opendir is NULL or lies inside libfuse itself
(and those it always sets are set); if none fits, nothing is changed (no cached listings).
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any

from .. import native

OPS_OFFSETS = (40, 32)   # offsetof(struct fuse_session, op) on 64-bit: 3.14, older 3.x
OPENDIR_INDEX = 20       # init, destroy, lookup, ..., release, fsync, opendir
REQUIRED = (0, 2, 4, 14, 20)   # init, lookup, getattr, open, opendir: set by libfuse's
                               # high-level API (others, like write, may be NULL)
_OPENDIR_T = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p)

_local = threading.local()
_keep: list[Any] = []    # the installed callback and the original, kept alive


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _in_libfuse(addr: int | None) -> bool:
    if not addr:
        return False
    dladdr = ctypes.CDLL(None).dladdr
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    info = _DlInfo()
    return bool(dladdr(addr, ctypes.byref(info))) and b"libfuse3" in (info.dli_fname or b"")


def install(session: int | None, major: int, minor: int) -> bool:
    """Wrap the low-level opendir of `session` (a struct fuse_session *), if the trick is
    on. Call from init(). Returns whether listings can now be cached."""
    if not native.wanted("dircache"):
        return native.use("dircache", False)
    return native.use("dircache", _install(session, major, minor))


def _install(session: int | None, major: int, minor: int) -> bool:
    if _keep:
        return True
    if not session or major != 3 or minor > 14:
        return False
    for offset in OPS_OFFSETS:
        slots = [ctypes.c_void_p.from_address(session + offset + 8 * i) for i in range(OPENDIR_INDEX + 1)]
        if all(_in_libfuse(s.value) for i, s in enumerate(slots) if s.value or i in REQUIRED):
            break
    else:
        return False
    original = _OPENDIR_T(slots[OPENDIR_INDEX].value or 0)   # set: OPENDIR_INDEX is REQUIRED

    def opendir(req: int, ino: int, llfi: int) -> None:
        _local.fi = llfi
        try:
            original(req, ino, llfi)
        finally:
            _local.fi = None

    callback = _OPENDIR_T(opendir)
    _keep.extend((callback, original))
    slots[OPENDIR_INDEX].value = ctypes.cast(callback, ctypes.c_void_p).value
    return True


def keep_listing(afresh: bool = False) -> bool:
    """From the high-level opendir: ask the kernel to cache this directory's listing (sets
    cache_readdir and keep_cache, bits 6 and 2 after `int flags` in the 3.0-3.14 layout);
    `afresh`: without keep_cache, so the kernel drops the listing it holds and caches the
    next one. False when no wrapped opendir is being served in this thread."""
    fi = getattr(_local, "fi", None)
    if not fi:
        return False
    bits = ctypes.c_uint.from_address(fi + 4)
    bits.value |= (1 << 6) if afresh else (1 << 2) | (1 << 6)
    return True
