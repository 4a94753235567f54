"""Changes made behind the mount's back (CryoSPARC, the csfs CLI, a user's mv): inotify.

One thread per mount watches every directory of each shown project (and the instance home,
whose registry says which projects are shown) and hands batches of changed paths to a
callback, which drops the in-process caches and the kernel's for those paths. Events are
gathered for BATCH seconds, so a job writing continuously costs one batch per period, not
one per write. Beyond MAX_WATCHES directories (or when inotify is unavailable) the rest of
a tree is left to the cache times (SEMANTICS.md, "Changes while mounted").
"""
from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
import threading
import time
from collections.abc import Callable

log = logging.getLogger("csfs.mount")

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF, IN_Q_OVERFLOW, IN_IGNORED = 0x400, 0x800, 0x4000, 0x8000
IN_ONLYDIR, IN_DONT_FOLLOW, IN_ISDIR = 0x01000000, 0x02000000, 0x40000000
MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
        | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW)
STRUCTURAL = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
OVERFLOW = "\0overflow"     # the path passed for a lost queue: forget everything
BATCH = 0.1                 # seconds of events gathered into one callback
MAX_WATCHES = 50_000        # directories watched per mount
_EVENT = struct.Struct("iIII")


class Watcher:
    """inotify on directory trees; `on_change(list of (path, mask))` runs in the watcher thread."""

    def __init__(self, on_change: Callable[[list[tuple[str, int]]], None]) -> None:
        self.on_change = on_change
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._dirs: dict[int, str] = {}
        self._lock = threading.Lock()
        self._full = False
        self._stop = False
        self._pending: list[tuple[str, bool]] = []
        self._thread = threading.Thread(target=self._run, name="csfs-watch", daemon=True)
        self._thread.start()

    def watch_tree(self, root: str, recursive: bool = True) -> None:
        """Watch `root` and (`recursive`) every directory below it, symlinks not followed."""
        with self._lock:
            self._pending.append((root, recursive))
        os.write(self._wake_w, b"w")

    def stop(self) -> None:
        self._stop = True
        try:
            os.write(self._wake_w, b"s")
        except OSError:
            pass
        self._thread.join(2.0)
        for fd in (self._fd, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- the thread --------------------------------------------------------------
    def _add(self, root: str, recursive: bool = True) -> None:
        stack = [root]
        while stack:
            d = stack.pop()
            if len(self._dirs) >= MAX_WATCHES:
                if not self._full:
                    log.warning("watching %d directories already: changes below %s show after the cache "
                                "times only", MAX_WATCHES, d)
                    self._full = True
                return
            wd = self._libc.inotify_add_watch(self._fd, os.fsencode(d), MASK)
            if wd < 0:
                err = ctypes.get_errno()
                if err == errno.ENOSPC and not self._full:
                    log.warning("inotify watch limit reached (fs.inotify.max_user_watches): changes below "
                                "%s show after the cache times only", d)
                    self._full = True
                continue
            self._dirs[wd] = d
            if not recursive:
                return
            try:
                with os.scandir(d) as it:
                    stack += [e.path for e in it if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        batch: list[tuple[str, int]] = []
        due = 0.0
        while not self._stop:
            wait = None if not batch else max(0.0, due - time.monotonic()) * 1000
            ready = poller.poll(wait)
            if self._stop:
                return
            for fd, _ in ready:
                if fd == self._wake_r:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                    with self._lock:
                        roots, self._pending = self._pending, []
                    for r, recursive in roots:
                        self._add(r, recursive)
                else:
                    if not batch:
                        due = time.monotonic() + BATCH
                    batch += self._read()
            if batch and time.monotonic() >= due:   # at most BATCH after the first event
                try:
                    self.on_change(batch)
                except Exception:
                    log.exception("dropping caches after a change failed")
                batch = []

    def _read(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        try:
            buf = os.read(self._fd, 256 * 1024)
        except BlockingIOError:
            return out
        pos = 0
        while pos + _EVENT.size <= len(buf):
            wd, mask, _cookie, length = _EVENT.unpack_from(buf, pos)
            name = buf[pos + _EVENT.size:pos + _EVENT.size + length].rstrip(b"\0")
            pos += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                out.append((OVERFLOW, mask))
                continue
            d = self._dirs.get(wd)
            if d is None:
                continue
            if mask & IN_IGNORED:
                self._dirs.pop(wd, None)
                continue
            path = os.path.join(d, os.fsdecode(name)) if name else d
            out.append((path, mask))
            if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                self._add(path)      # a new folder (a new job): watch it too
        return out
