"""Trick `zerocopy`: read_buf hands libfuse an fd-backed buffer, so the data read happens in C.

With a `read_buf` callback libfuse reads the source file itself (pread, or splice when
the kernel allows), without the Python GIL and without copying through a bytes object.
Layouts follow fuse_common.h of libfuse 3.x before 3.17 and libfuse 2.9 (same fields).
"""
from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

from .. import native

SPLICE_WRITE = 1 << 7   # FUSE_CAP_SPLICE_WRITE
SPLICE_MOVE = 1 << 8    # FUSE_CAP_SPLICE_MOVE
FUSE_BUF_IS_FD = 1 << 1
FUSE_BUF_FD_SEEK = 1 << 2


class FuseBuf(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("flags", ctypes.c_int), ("mem", ctypes.c_void_p),
                ("fd", ctypes.c_int), ("pos", ctypes.c_int64)]


class FuseBufvec(ctypes.Structure):
    _fields_ = [("count", ctypes.c_size_t), ("idx", ctypes.c_size_t), ("off", ctypes.c_size_t),
                ("buf", FuseBuf * 1)]


_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.calloc.restype = ctypes.c_void_p
_libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
_SIZE = ctypes.sizeof(FuseBufvec)
ZERO_SPAN = 64 * 1024 * 1024   # larger than any read request (the kernel caps them at a few MiB)
_zero_fd = -1


def usable(fuse_major: int, fuse_minor: int) -> bool:
    """Whether the trick is on: wanted, and the struct layout above is right for this
    libfuse (2.9 and 3.0–3.16)."""
    return native.use("zerocopy", fuse_major == 2 or (fuse_major == 3 and fuse_minor < 17))


def want_splice(conn_info: Any) -> None:
    """From init: let libfuse splice file pages to the kernel instead of copying them twice."""
    want = SPLICE_WRITE | SPLICE_MOVE
    conn_info.want |= want & conn_info.capable


def hole_length(fd: int, pos: int, size: int) -> int:
    """How many of the `size` bytes at `pos` are a hole (0 when data starts right there)."""
    try:
        data = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError as e:
        if e.errno == errno.ENXIO:   # no data after pos: a hole up to the end of the file
            return size
        return 0                     # SEEK_DATA unsupported: treat everything as data
    return min(size, data - pos)


def hand_over(bufpp: Any, size: int, fd: int = -1, pos: int = 0, data: bytes | None = None,
              zeros: bool = False) -> None:
    """Store a malloc'd one-buffer fuse_bufvec in *bufpp (libfuse frees it).

    An fd buffer (data None) makes libfuse pread `size` bytes at `pos` itself; `zeros`
    hands over `size` zero bytes (a hole: nothing is read at all); otherwise `data` is
    copied into a malloc'd memory buffer."""
    if zeros:
        if size <= ZERO_SPAN:
            # an fd buffer on an empty memfd: its holes are spliced to the kernel as the
            # shared zero page, with no allocation or memset here
            _store(bufpp, size, FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK, None, zero_fd(), 0)
            return
        mem = _libc.calloc(1, size)
        if not mem:
            raise MemoryError("calloc failed")
        _store(bufpp, size, 0, mem, -1, 0)
        return
    if data is None:
        _store(bufpp, size, FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK, None, fd, pos)
        return
    mem = _libc.malloc(max(1, len(data)))
    if not mem:
        raise MemoryError("malloc failed")
    ctypes.memmove(mem, data, len(data))
    _store(bufpp, len(data), 0, mem, -1, 0)


def zero_fd() -> int:
    """A shared, never written memfd of ZERO_SPAN bytes: reads of it are all zeros."""
    global _zero_fd
    if _zero_fd < 0:
        fd = os.memfd_create("csfs-zeros", os.MFD_CLOEXEC)
        os.ftruncate(fd, ZERO_SPAN)
        _zero_fd = fd
    return _zero_fd


def _store(bufpp: Any, size: int, flags: int, mem: int | None, fd: int, pos: int) -> None:
    addr = _libc.malloc(_SIZE)
    if not addr:
        raise MemoryError("malloc failed")
    vec = FuseBufvec.from_address(addr)
    vec.count, vec.idx, vec.off = 1, 0, 0
    b = vec.buf[0]
    b.size, b.flags, b.mem, b.fd, b.pos = size, flags, mem, fd, pos
    ctypes.cast(bufpp, ctypes.POINTER(ctypes.c_void_p))[0] = addr
