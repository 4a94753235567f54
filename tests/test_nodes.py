"""The mount's typed nodes and open files, without FUSE: each kind answers for itself."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from csfs.mountpoints.nodes import (
    ControlFile,
    GeneratedFile,
    PlanFile,
    RealDir,
    RealFile,
    SizeFile,
    StagedFile,
    VirtualDir,
)
from csfs.mountpoints.statinfo import compact, real_attrs, virtual_attrs


def _attrs(path: Path) -> dict:
    return real_attrs(compact(os.lstat(path)), 1)


def _errno(fn, *args) -> int:
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


def _read_all(node) -> bytes:
    h = node.open(False, False)
    try:
        return h.read(1 << 20, 0)
    finally:
        h.close()


def test_real_entries(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"data")
    (tmp_path / "link").symlink_to("f")
    file, link = RealFile(_attrs(f), str(f)), RealFile(_attrs(tmp_path / "link"), str(tmp_path / "link"))
    d = RealDir(_attrs(tmp_path), str(tmp_path), lambda: [("f", stat.S_IFREG, 7)])
    assert _read_all(file) == b"data" and file.origin == str(f) and not file.is_dir
    assert link.readlink() == "f"
    assert _errno(file.readlink) == errno.EINVAL
    assert _errno(file.children) == errno.ENOTDIR
    assert d.is_dir and d.children() == [("f", stat.S_IFREG, 7)] and d.origin is None
    assert _errno(d.open, False, False) == errno.EISDIR
    assert not any(n.writable for n in (file, link, d))


def test_virtual_files(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"x" * 10)
    attrs = virtual_attrs("file", 3, 0, 5, 0, 0)
    gen, size, plan = GeneratedFile(attrs, b"abc"), SizeFile(attrs, b"12\n"), PlanFile(attrs, str(src))
    assert _read_all(gen) == b"abc" and gen.immutable and gen.regenerated and gen.origin is None
    assert gen.open(False, False).identity() == gen.open(False, False).identity()
    assert size.open(False, False).direct and not size.immutable
    assert _read_all(plan) == b"x" * 10 and plan.origin == str(src) and not plan.regenerated
    staged = []
    big = StagedFile(attrs, lambda: staged.append(1) or str(src))
    assert staged == [] and big.regenerated
    assert _read_all(big) == b"x" * 10 and staged == [1]     # staged on open, not on lookup
    vdir = VirtualDir(virtual_attrs("dir", 4096, 0, 6, 0, 0), list)
    assert vdir.children() == [] and _errno(vdir.open, False, False) == errno.EISDIR


def test_sparse_source_seeks_its_holes(tmp_path):
    src = tmp_path / "sparse"
    with open(src, "wb") as f:
        f.write(b"a")
        f.seek(8 << 20)
        f.write(b"b")
    h = PlanFile(_attrs(src), str(src)).open(False, False)
    try:
        assert h.lseek(0, os.SEEK_HOLE) < h.size and h.read(1, (8 << 20)) == b"b"
    finally:
        h.close()


def test_control_file_reads_outcome_and_acts_only_when_opened_for_writing():
    runs = []

    class Controls:
        def outcome(self, scope, action):
            return f"{scope} {action}: idle\n".encode(), 0

        def run(self, scope, action, text, project):
            runs.append(text)

    node = ControlFile(virtual_attrs("file", 0, 0, 9, 0, 0, writable=True), (Controls(), "s", "detach", None))
    assert node.writable and not node.immutable
    reader = node.open(False, False)
    assert reader.read(100, 0) == b"s detach: idle\n" and not reader.writable and reader.direct
    assert _errno(reader.write, b"1\n", 0) == errno.EROFS
    writer = node.open(True, False)
    assert writer.writable and writer.write(b"J1\n", 0) == 3 and runs == ["J1"]
    writer.close()
