"""The readdirplus walk of the binding (native trick `readdirplus`), in process: the kernel
asks for a folder's entries in several requests (offsets), then once more past the end.
The listing is taken once per walk, the request past the end lists nothing again, and
walks the kernel abandoned are not kept for ever."""
from __future__ import annotations

import stat as S
from typing import Any

import pytest
from csfs.mountpoints import fusecompat

pytestmark = pytest.mark.skipif(not (fusecompat.AVAILABLE and fusecompat.FUSE_MAJOR == 3
                                     and hasattr(fusecompat.FUSE, "readdir_fuse_3")),
                                reason="the readdir tricks need mfusepy on libfuse3")

PLUS = 1    # the kernel asks for attributes (FUSE_READDIR_PLUS)


class Ops:
    """A folder of `n` files per path; counts what the binding asks."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.listed: list[str] = []
        self.planned: list[str] = []

    def entries(self, path: str) -> list[tuple[str, int, int]]:
        self.listed.append(path)
        return [(".", S.S_IFDIR, 1), ("..", S.S_IFDIR, 1)] + [(f"f{i}", S.S_IFREG, 10 + i) for i in range(self.n)]

    def plus_attrs(self, path: str) -> Any:
        self.planned.append(path)

        def attrs(name: str) -> dict[str, Any] | None:
            if name in (".", ".."):
                return None
            return {"st_mode": S.S_IFREG | 0o444, "st_ino": 10 + int(name[1:]), "st_nlink": 1, "st_uid": 0,
                    "st_gid": 0, "st_size": int(name[1:]), "st_blocks": 1, "st_blksize": 4096,
                    "st_atime": 0, "st_mtime": 0, "st_ctime": 0}
        return attrs


def _binding(ops: Ops) -> Any:
    from csfs.mountpoints.fs import fuse_class

    fuse = object.__new__(fuse_class())     # no mount: only the callbacks are called
    fuse.operations, fuse.encoding, fuse.errors = ops, "utf-8", "surrogateescape"
    return fuse


def _walk(fuse: Any, path: bytes, per_request: int) -> list[tuple[str, int, int]]:
    """Requests as the kernel sends them, `per_request` entries each, until one comes back empty."""
    got: list[tuple[str, int, int]] = []
    offset = 0
    while True:
        batch: list[tuple[str, int, int]] = []

        def filler(buf: Any, name: bytes, st: Any, off: int, fill: int, batch: list = batch) -> int:
            if len(batch) == per_request:
                return 1      # the request is full
            batch.append((name.decode(), st.st_size, off))
            return 0
        fuse.readdir_fuse_3(path, None, filler, offset, None, PLUS)
        if not batch:
            return got
        got += batch
        offset = batch[-1][2]


def _full(*args: Any) -> int:
    return 1


def test_a_walk_lists_its_folder_once():
    ops = Ops(100)
    fuse = _binding(ops)
    got = _walk(fuse, b"/J1", per_request=7)
    assert [n for n, _, _ in got] == [".", ".."] + [f"f{i}" for i in range(100)]
    assert [off for _, _, off in got] == list(range(1, 103))      # offsets for the next request
    assert [size for name, size, _ in got if name.startswith("f")] == list(range(100))
    # 15 requests and the empty one past the end: one listing, one attribute source
    assert ops.listed == ["/J1"] and ops.planned == ["/J1"]
    _walk(fuse, b"/J1", per_request=50)           # a second walk lists afresh, once
    assert ops.listed == ["/J1", "/J1"]


def test_abandoned_walks_are_dropped():
    ops = Ops(40)
    fuse = _binding(ops)
    for i in range(40):     # readers that stopped after their first request
        fuse.readdir_fuse_3(f"/d{i}".encode(), None, _full, 0, None, PLUS)
    assert len(ops.listed) == 40
    fuse.readdir_fuse_3(b"/d39", None, _full, 3, None, PLUS)     # kept: the walk goes on
    assert len(ops.listed) == 40
    # not 40 listings kept: the first walks were dropped and list again when resumed
    fuse.readdir_fuse_3(b"/d0", None, _full, 3, None, PLUS)
    assert len(ops.listed) == 41
    # the kernel went on without attributes (readdirplus_auto): that walk is over
    fuse.readdir_fuse_3(b"/d39", None, _full, 5, None, 0)
    fuse.readdir_fuse_3(b"/d39", None, _full, 6, None, PLUS)
    assert ops.listed.count("/d39") == 3
