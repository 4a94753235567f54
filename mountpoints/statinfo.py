"""Inode numbers and the stat dictionaries FUSE gets for mount paths.

Stat rules (DESIGN §5): exact st_size, st_blocks = ceil(size/512) for virtual files
(the real count for pass-through ones), st_blksize >= 256 KiB, stable nanosecond times from the sources,
inode numbers shared by a source file and its virtual copies (Inodes), a range of their own for
generated entries.
"""
from __future__ import annotations

import hashlib
import os
import stat as S
import threading
from typing import Any

BLKSIZE = 256 * 1024
PACKED_INO = 1 << 48        # source inodes below this are packed with their device index
PACKED_DEVS = 1 << 13       # ... for this many devices: (idx << 48) | ino < 2**61
TABLE_INO_BASE = 1 << 61    # other source inodes: numbered from a table
VIRTUAL_INO_BASE = 1 << 62  # entries of the mount's own (generated files, virtual dirs)


class Inodes:
    """Inode numbers of one mount: stable for its life, unique across source filesystems.

    A source file (a real entry, or a virtual copy of one under exports/) is numbered from
    its (st_dev, st_ino), so every copy shares one number, as hard links do. Devices are
    indexed in the order first seen (index 0, the source's own filesystem, keeps its inode
    numbers); device k's inode i becomes (k << 48) | i when k < 2**13 and i < 2**48, an
    injective packing. Anything larger (an overlay's or NFS's 64-bit inodes, very many
    devices) is numbered from a table in [2**61, 2**62). Virtual entries of their own
    (generated files, virtual directories) are numbered by a hash of their mount path in
    [2**62, 2**63), so they can never meet a source's number.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._devs: dict[int, int] = {}
        self._table: dict[tuple[int, int], int] = {}

    def real(self, dev: int, ino: int) -> int:
        """The mount's number for the source file (dev, ino)."""
        idx = self._devs.get(dev)
        if idx is None:
            with self._lock:
                idx = self._devs.setdefault(dev, len(self._devs))
        if idx < PACKED_DEVS and ino < PACKED_INO:
            return (idx << 48) | ino
        key = (dev, ino)
        n = self._table.get(key)
        if n is None:
            with self._lock:
                n = self._table.setdefault(key, TABLE_INO_BASE + len(self._table) + 1)
        return n

    @staticmethod
    def virtual(key: str) -> int:
        """The number of the virtual entry at mount path `key`: a 62-bit hash of the path
        above 2**62, so no table grows with what has been walked (two paths of a
        2.5-million-entry mount share a number with odds below one in a million)."""
        digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        return VIRTUAL_INO_BASE | (int.from_bytes(digest, "little") >> 2)


def blocks(size: int) -> int:
    return (size + 511) // 512


# a compact lstat result (a tuple costs a fifth of an os.stat_result in the caches)
(T_MODE, T_NLINK, T_UID, T_GID, T_SIZE, T_ATIME, T_MTIME, T_CTIME, T_BLOCKS, T_BLKSIZE, T_RDEV,
 T_DEV, T_INO) = range(13)


def compact(st: os.stat_result) -> tuple:
    return (st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_size, st.st_atime_ns,
            st.st_mtime_ns, st.st_ctime_ns, st.st_blocks, st.st_blksize, st.st_rdev, st.st_dev, st.st_ino)


def real_attrs(t: tuple, ino: int, shared: bool = False) -> dict[str, Any]:
    """The stat dict of a source entry from its compact() tuple (times in ns: use_ns).

    `shared`: a regular file that the mount may show again under exports/ (every regular
    file of a default mount, and each virtual copy of one) reports one link more than it
    has on disk, so du, tar, rsync -H and cp -a, which only pair up inodes with st_nlink > 1,
    see every copy as the hard link it stands for."""
    # the real st_blocks: du then matches the native tree, and a truly sparse file (0 blocks)
    # is all holes for tar -S too. Virtual files get ceil(size/512) (virtual_attrs).
    return {
        "st_mode": t[T_MODE], "st_ino": ino,
        "st_nlink": t[T_NLINK] + (1 if shared and S.S_ISREG(t[T_MODE]) else 0), "st_uid": t[T_UID],
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
