"""Trick `readahead`: raise the mount's read-ahead (root only, through sysfs).

libfuse3 then sends max_read-sized reads, and a small file needs fewer read-ahead
rounds. Reads /proc/self/mountinfo only: the FUSE process never touches its own mount.
"""
from __future__ import annotations

import threading
import time

from .. import native
from ..mountinfo import find_mount


def tune(mountpoint: str, kb: int) -> None:
    """Set the mount's read_ahead_kb to `kb` in the background, if the trick is on."""
    if native.use("readahead"):
        threading.Thread(target=_set, args=(mountpoint, kb), daemon=True).start()


def _set(mountpoint: str, kb: int, wait: float = 10.0) -> None:
    deadline = time.monotonic() + wait
    settled = None
    while time.monotonic() < deadline:
        m = find_mount(mountpoint)
        if m is not None:
            # the kernel lowers read-ahead when it processes the init reply, which may come
            # after we first see the mount: keep setting it for a short while
            settled = settled or time.monotonic() + 2.0
            path = f"/sys/class/bdi/{m.devno}/read_ahead_kb"
            try:
                with open(path) as f:
                    if f.read().strip() != str(kb):
                        with open(path, "w") as w:
                            w.write(str(kb))
            except OSError:
                return   # not root, or no such bdi: the default still works
            if time.monotonic() > settled:
                return
        time.sleep(0.05)
