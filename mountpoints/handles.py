"""Open files of the mount: each serves one version of its bytes until it is closed.

A FileHandle reads a source file through an fd kept open (pread, or libfuse reads the
fd itself: read_buf), a BytesHandle serves bytes made at open, a ControlHandle serves a
control file's current outcome and takes the commands written to it.
"""
from __future__ import annotations

import contextlib
import errno
import os
import zlib
from typing import Any

from .control import Pending, Target
from .native import zerocopy

PREFETCH = 16 * 1024 * 1024


class Handle:
    """What every open file answers; the bytes come from read()."""

    __slots__ = ("keep", "read_once", "size", "version")
    direct = False      # never cached by the kernel: a read always shows the current text
    writable = False    # takes writes (a control file opened for writing)

    def __init__(self, size: int) -> None:
        self.size = size
        self.version: tuple | None = None   # counted in CsfsFS._versions while open
        self.keep = False                   # the kernel keeps this file's pages (keep_cache)
        self.read_once = False              # a read reached us (CsfsFS._note_read)

    def identity(self) -> tuple:
        """Which version of the bytes this handle serves (compared across opens)."""
        raise NotImplementedError

    def read(self, size: int, offset: int) -> bytes:
        raise NotImplementedError

    def read_buf(self, bufpp: Any, size: int, offset: int) -> None:
        """read() for libfuse's read_buf: the bytes copied into a malloc'd buffer."""
        zerocopy.hand_over(bufpp, size, data=self.read(size, offset))

    def lseek(self, offset: int, whence: int) -> int:
        """SEEK_DATA/SEEK_HOLE of bytes without holes."""
        size = len(self.read(1 << 30, 0))
        if offset >= size and whence in (os.SEEK_DATA, os.SEEK_HOLE):
            raise OSError(errno.ENXIO, os.strerror(errno.ENXIO))
        return offset if whence == os.SEEK_DATA else size

    def write(self, data: bytes, offset: int) -> int:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    def flush(self) -> None:
        """close(): nothing to do but for control files."""

    def close(self) -> None:
        """release(): free what the handle holds."""


class FileHandle(Handle):
    """A source file (a real file, an export's copy of one, a staged generated file)."""

    __slots__ = ("_id", "ahead", "fd", "sparse")

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(self.fd)
        super().__init__(st.st_size)
        self.ahead = 0      # prefetch requested up to here
        self.sparse = st.st_blocks * 512 < st.st_size   # holes are served as zeros, unread
        self._id = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        # larger read-ahead below us; none for sparse sources, whose read-ahead would
        # only fill the source's page cache with zeroed holes we never read
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_RANDOM if self.sparse else os.POSIX_FADV_SEQUENTIAL)

    def identity(self) -> tuple:
        return self._id

    def prefetch(self, offset: int, size: int) -> None:
        """Keep the disk busy ahead of the reader: the kernel sends our reads out of order
        (several threads), which defeats the source file's own read-ahead. When the kernel
        keeps its own copy (keep), also release the source's pages well behind the reader,
        so big reads are not cached twice."""
        end = offset + size
        if end + PREFETCH // 2 > self.ahead:
            start = max(end, self.ahead)
            self.ahead = start + PREFETCH
            os.posix_fadvise(self.fd, start, PREFETCH, os.POSIX_FADV_WILLNEED)
            if self.keep and offset > 2 * PREFETCH:
                os.posix_fadvise(self.fd, offset - 2 * PREFETCH, PREFETCH, os.POSIX_FADV_DONTNEED)

    def read(self, size: int, offset: int) -> bytes:
        self.prefetch(offset, size)
        return os.pread(self.fd, size, offset)

    def read_buf(self, bufpp: Any, size: int, offset: int) -> None:
        """libfuse reads our fd itself (no GIL, no copy); holes are zeros, not read."""
        if self.sparse:
            want = min(size, max(0, self.size - offset))
            if zerocopy.hole_length(self.fd, offset, size) >= want:
                zerocopy.hand_over(bufpp, want, zeros=True)
                return
        else:
            self.prefetch(offset, size)
        zerocopy.hand_over(bufpp, size, fd=self.fd, pos=offset)

    def lseek(self, offset: int, whence: int) -> int:
        """The source's own SEEK_DATA/SEEK_HOLE: tar -S and cp find its holes."""
        return os.lseek(self.fd, offset, whence)

    def close(self) -> None:
        os.close(self.fd)


class BytesHandle(Handle):
    """Bytes made when the file was opened (a small generated file, a size)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        super().__init__(len(data))
        self.data = data

    def identity(self) -> tuple:
        return (len(self.data), zlib.crc32(self.data))

    def read(self, size: int, offset: int) -> bytes:
        return self.data[offset:offset + size]


class DirectBytesHandle(BytesHandle):
    """Bytes that may change at any time (a size): never cached by the kernel."""

    __slots__ = ()
    direct = True


class ControlHandle(Handle):
    """A control file: reads show its current outcome; writes act (control.Pending)."""

    __slots__ = ("pending", "target")
    direct = True

    def __init__(self, target: Target, write: bool, append: bool) -> None:
        super().__init__(0)
        self.target = target
        self.pending = Pending(target, append) if write else None

    @property
    def writable(self) -> bool:   # type: ignore[override]  # a property where Handle has a class attribute
        return self.pending is not None

    def read(self, size: int, offset: int) -> bytes:
        controls, scope, action, _ = self.target
        data = controls.outcome(scope, action)[0]
        return data[offset:offset + size]

    def write(self, data: bytes, offset: int) -> int:
        if self.pending is None:
            return super().write(data, offset)
        return self.pending.write(data, offset)

    def flush(self) -> None:
        if self.pending is not None:
            self.pending.flush()

    def close(self) -> None:
        if self.pending is not None:
            # no flush came (a binding without it): the outcome file tells the result
            with contextlib.suppress(OSError):
                self.pending.flush()
