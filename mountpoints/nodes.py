"""What a mount path resolves to, and the stat dictionaries FUSE gets for it.

Stat rules (DESIGN §5): exact st_size, st_blocks = ceil(size/512) for virtual files
(the real count for pass-through ones), st_blksize >= 256 KiB, stable nanosecond times from the sources,
distinct inode numbers (real inodes for real files, a reserved range for virtual ones).
"""
from __future__ import annotations

import os
import stat as S
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

BLKSIZE = 256 * 1024
VIRTUAL_INO_BASE = 1 << 62


@dataclass
class Node:
    """One resolved path.

    kind: "real" (pass-through of `real`, any file type), "dir" (virtual directory;
    `children()` yields (name, st_mode, st_ino)), "file" (virtual regular file whose
    bytes come from `source` or `data()`), "control" (a writable control file).
    """

    kind: str
    attrs: dict[str, Any]
    real: str | None = None
    source: str | None = None
    data: Callable[[], bytes] | None = None
    source_fn: Callable[[], str] | None = None   # a source file made on first open (big generated)
    children: Callable[[], list[tuple[str, int, int]]] | None = None
    immutable: bool = False          # page cache may be kept across opens
    control: Any = None              # mountpoints.control.ControlFile for kind "control"
    extra: dict[str, Any] = field(default_factory=dict)


class Inodes:
    """Stable inode numbers: real (st_dev, st_ino) mapped per device; virtual paths numbered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._devs: dict[int, int] = {}
        self._virtual: dict[str, int] = {}

    def real(self, dev: int, ino: int) -> int:
        """The inode number shown for a real (dev, ino): itself on the first device seen."""
        idx = self._devs.get(dev)
        if idx is None:
            with self._lock:
                idx = self._devs.setdefault(dev, len(self._devs))
        return ino if idx == 0 else (ino ^ (idx << 48))

    def virtual(self, key: str) -> int:
        ino = self._virtual.get(key)
        if ino is None:
            with self._lock:
                ino = self._virtual.setdefault(key, VIRTUAL_INO_BASE + len(self._virtual) + 1)
        return ino


def blocks(size: int) -> int:
    return (size + 511) // 512


# a compact lstat result (a tuple costs a fifth of an os.stat_result in the caches)
(T_MODE, T_NLINK, T_UID, T_GID, T_SIZE, T_ATIME, T_MTIME, T_CTIME, T_BLOCKS, T_BLKSIZE, T_RDEV,
 T_DEV, T_INO) = range(13)


def compact(st: os.stat_result) -> tuple:
    return (st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_size, st.st_atime_ns,
            st.st_mtime_ns, st.st_ctime_ns, st.st_blocks, st.st_blksize, st.st_rdev, st.st_dev, st.st_ino)


def real_attrs(t: tuple, ino: int) -> dict[str, Any]:
    """The stat dict of a pass-through entry from its compact() tuple (times in ns: use_ns)."""
    # the real st_blocks: du then matches the native tree, and a truly sparse file (0 blocks)
    # is all holes for tar -S too. Virtual files get ceil(size/512) (virtual_attrs).
    return {
        "st_mode": t[T_MODE], "st_ino": ino, "st_nlink": t[T_NLINK], "st_uid": t[T_UID],
        "st_gid": t[T_GID], "st_size": t[T_SIZE], "st_atime": t[T_ATIME], "st_mtime": t[T_MTIME],
        "st_ctime": t[T_CTIME], "st_blocks": t[T_BLOCKS], "st_blksize": max(BLKSIZE, t[T_BLKSIZE]),
        "st_rdev": t[T_RDEV],
    }


def virtual_attrs(kind: str, size: int, mtime_ns: int, ino: int, uid: int, gid: int,
                  writable: bool = False, perm: int | None = None) -> dict[str, Any]:
    """The stat dict of a virtual directory ("dir") or regular file ("file").

    `perm` (an export entry's permission bits) is shown as is; writing is still refused."""
    if kind == "dir":
        mode, nlink = S.S_IFDIR | (0o555 if perm is None else perm), 2
    else:
        mode, nlink = S.S_IFREG | (perm if perm is not None else 0o644 if writable else 0o444), 1
    return {
        "st_mode": mode, "st_ino": ino, "st_nlink": nlink, "st_uid": uid, "st_gid": gid,
        "st_size": size, "st_atime": mtime_ns, "st_mtime": mtime_ns, "st_ctime": mtime_ns,
        "st_blocks": blocks(size), "st_blksize": BLKSIZE,
    }


def ns(seconds: float) -> int:
    return int(round(seconds * 1_000_000_000))
