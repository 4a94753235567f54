"""SEMANTICS.md, row by row, for what other test files do not show already: each POSIX
operation on each tree of a mounted project (the real project, exports/, sizes/, control/),
under both bindings (mfusepy on libfuse3, fusepy on libfuse2). One mount of the tiny demo
per binding; nothing here changes the project."""
from __future__ import annotations

import errno
import mmap
import os
import stat
from pathlib import Path

import pytest

from conftest import copy_demo
from mountutil import fusepy_missing, mounted, needs_fuse, run

pytestmark = needs_fuse

TREES = ("real", "copy", "generated", "sizes", "control")


@pytest.fixture(scope="module", params=["mfusepy", pytest.param("fusepy", marks=pytest.mark.skipif(
    fusepy_missing() is not None, reason=str(fusepy_missing())))])
def env(_demo_master, tmp_path_factory, request):
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    base = tmp_path_factory.mktemp("mount-semantics")
    project = copy_demo(_demo_master, base / "demo")
    home = base / "home"
    lifecycle.attach(Instance(home), project)
    with mounted(home, base / "mnt", project, env={"CSFS_FUSE": request.param}) as (mnt, _pid):
        export = next((mnt / "exports" / "jobs").glob("J8_*"))
        paths = {
            "real": mnt / "J8" / "job.log",
            "copy": export / "events.bson",
            "generated": export / "job.json",
            "sizes": mnt / "sizes" / "total",
            "control": mnt / "control" / "export-job",
        }
        yield home, project, mnt, paths


def _source(project: Path, tree: str) -> Path | None:
    return {"real": project / "J8" / "job.log", "copy": project / "J8" / "events.bson"}.get(tree)


@pytest.mark.parametrize("tree", TREES)
def test_stat_by_tree(env, tree):
    """Inode, links, times and blocks of one file in each tree."""
    _home, project, mnt, paths = env
    st = os.stat(paths[tree])
    assert stat.S_ISREG(st.st_mode) and st.st_blksize >= 256 * 1024
    assert st.st_blocks * 512 >= st.st_size or tree in ("real", "copy")
    src = _source(project, tree)
    if src is not None:      # a project file or a copy of one: its inode, one link more, its times
        s = os.stat(src)
        assert (st.st_ino, st.st_nlink, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_blocks) == \
               (s.st_ino, s.st_nlink + 1, s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_blocks)
        return
    assert st.st_nlink == 1 and st.st_ino >= 1 << 62          # an inode of its own
    if tree == "generated":   # the job's time (completed_at), never "now"
        from csfs.core.exportplan import job_time
        from csfs.core.project import Project

        assert st.st_mtime == pytest.approx(job_time(Project.open(project).job("J8")), abs=1e-3)
        assert st.st_mtime_ns == st.st_ctime_ns == st.st_atime_ns
    else:                     # sizes/ and control/: the mount's start or the last outcome
        assert abs(st.st_mtime - os.stat(mnt / "sizes").st_mtime) < 3600 * 24


@pytest.mark.parametrize("tree", TREES)
def test_read_lseek_mmap_by_tree(env, tree):
    """read equals the source (or the plan's bytes); SEEK_DATA/SEEK_HOLE see one data extent
    (no holes in these small files); mmap works where the page cache is used (not sizes/,
    control/: direct I/O, always the current text)."""
    _home, project, _mnt, paths = env
    p = paths[tree]
    data = p.read_bytes()
    src = _source(project, tree)
    if src is not None:
        assert data == src.read_bytes()
    assert len(data) > 0
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        assert os.lseek(fd, 0, os.SEEK_HOLE) == len(data)
        with pytest.raises(OSError) as e:
            os.lseek(fd, len(data), os.SEEK_DATA)
        assert e.value.errno == errno.ENXIO
        if tree in ("sizes", "control"):
            with pytest.raises(OSError) as e:
                mmap.mmap(fd, len(data), mmap.MAP_SHARED, mmap.PROT_READ)
            assert e.value.errno == errno.ENODEV
        else:
            with mmap.mmap(fd, len(data), mmap.MAP_SHARED, mmap.PROT_READ) as m:
                assert m[:] == data
        os.fsync(fd)          # flush/fsync: accepted (nothing to write back)
    finally:
        os.close(fd)


@pytest.mark.parametrize("tree", TREES)
def test_xattrs_by_tree(env, tree):
    """Extended attributes: not supported anywhere (the kernel stops asking: EOPNOTSUPP)."""
    _home, _project, _mnt, paths = env
    for call in (lambda: os.getxattr(paths[tree], "user.x"), lambda: os.listxattr(paths[tree]),
                 lambda: os.setxattr(paths[tree], "user.x", b"1")):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno in (errno.EOPNOTSUPP, errno.ENOSYS), e.value


@pytest.mark.parametrize("tree", TREES)
def test_changes_refused_by_tree(env, tree):
    """Everything but writing a control file is EROFS; the control file's own writes are in
    test_mount_control.py. access(W_OK) tells the same in advance."""
    _home, _project, _mnt, paths = env
    p = paths[tree]
    acts = [lambda: os.unlink(p), lambda: os.rename(p, p.with_name("x")), lambda: os.chmod(p, 0o600),
            lambda: os.utime(p), lambda: os.link(p, p.with_name("x")), lambda: os.mkdir(p.with_name("x")),
            lambda: os.symlink("t", p.with_name("x")), lambda: os.chown(p, 0, 0)]
    if tree != "control":
        acts += [lambda: open(p, "ab"), lambda: os.truncate(p, 0), lambda: open(p, "r+b")]
        assert not os.access(p, os.W_OK)
    else:
        assert os.access(p, os.W_OK)
    for act in acts:
        with pytest.raises(OSError) as e:
            act()
        assert e.value.errno in (errno.EROFS, errno.EPERM), (tree, e.value)
    assert os.access(p, os.R_OK)


def test_lookup_errors(env):
    """ENOENT for names that do not exist in any tree, ENOTDIR below a file."""
    _home, _project, mnt, paths = env
    for missing in (mnt / "nope", mnt / "J8" / "nope", mnt / "exports" / "jobs" / "J99_x",
                    paths["generated"].parent / "nope", mnt / "sizes" / "J99", mnt / "control" / "nope"):
        with pytest.raises(FileNotFoundError):
            os.stat(missing)
    for tree in TREES:
        with pytest.raises(NotADirectoryError):
            os.stat(paths[tree] / "x")


def test_readdir_types_and_readlink(env):
    """readdir gives each entry's type (no stat needed); symlinks of the project stay
    symlinks with their target; readlink of anything else is EINVAL."""
    _home, project, mnt, paths = env
    for d in (mnt, mnt / "J1", mnt / "J1" / "imported", paths["generated"].parent, mnt / "sizes"):
        with os.scandir(d) as it:
            for e in it:
                st = os.lstat(e.path)
                assert stat.S_IFMT(st.st_mode) == (stat.S_IFLNK if e.is_symlink() else stat.S_IFDIR
                                                   if e.is_dir(follow_symlinks=False) else stat.S_IFREG), e.path
    link = next(p for p in (mnt / "J1" / "imported").iterdir())
    assert os.readlink(link) == os.readlink(project / "J1" / "imported" / link.name)
    with pytest.raises(OSError) as e:
        os.readlink(paths["generated"])
    assert e.value.errno == errno.EINVAL


def test_statfs_is_the_source_filesystem(env):
    _home, project, mnt, _paths = env
    a, b = os.statvfs(mnt), os.statvfs(project)
    assert (a.f_bsize, a.f_blocks, a.f_files) == (b.f_bsize, b.f_blocks, b.f_files)
    r = run(["df", "-P", str(mnt)])
    assert r.returncode == 0 and b"csfs:" in r.stdout
