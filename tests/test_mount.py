"""The mount, read-only side, against the real tools: ls, find, du, stat, tar, rsync, cp,
cryosparc-tools. One project mount per module (tests here never change the project)."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from conftest import copy_demo
from mountutil import check_du_and_sizes, check_inodes, mounted, needs_fuse, run, write_sparse
from mountutil import tar_members as _tar_members

pytestmark = needs_fuse


@pytest.fixture(scope="module")
def env(_demo_master, tmp_path_factory):
    """(home, real project dir, mounted project folder): the demo attached, mounted alone."""
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    base = tmp_path_factory.mktemp("mount-ro")
    project = copy_demo(_demo_master, base / "demo")
    home = base / "home"
    write_sparse(project / "J5" / "sparse.bin")
    lifecycle.attach(Instance(home), project)
    # every generated export file goes through the on-disk cache made by a child process
    with mounted(home, base / "mnt", project, env={"CSFS_MOUNT_INLINE_MAX": "0"}) as (mnt, _pid):
        yield home, project, mnt


def _project(path: Path):
    from csfs.core.project import Project

    return Project.open(path)


def _completed(project: Path) -> list:
    return [j for j in _project(project).jobs.values() if j.status == "completed" and not j.error]


def _tree(root: Path, skip_top: set[str] = frozenset()) -> dict[str, tuple]:
    """relative path -> (type, size or link target, mtime_ns) of a real or mounted tree."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in skip_top]
            filenames = [f for f in filenames if f not in skip_top]
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p), st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", None, None)
            else:
                out[rel] = ("f", st.st_size, st.st_mtime_ns)
    return out


VIRTUAL = {"exports", "sizes", "control"}


def test_tree_mirrors_project(env):
    _home, project, mnt = env
    real = _tree(project, skip_top=VIRTUAL)
    seen = _tree(mnt, skip_top=VIRTUAL)
    assert seen == real
    assert any(v[0] == "l" for v in seen.values()), "the demo's import symlinks stay symlinks"
    assert VIRTUAL <= set(os.listdir(mnt))


def test_ls_find_stat(env):
    _home, project, mnt = env
    r = run(["ls", "-lR", str(mnt)])
    assert r.returncode == 0, r.stderr
    r = run(["find", str(mnt)])
    assert r.returncode == 0, r.stderr
    found = {os.path.relpath(p, mnt) for p in r.stdout.decode().split("\n") if p}
    assert "project.json" in found and "sizes/total" in found and "control/detach" in found
    job = _completed(project)[0]
    assert any(f.startswith(f"exports/jobs/{job.uid}_") for f in found)
    st_real = os.stat(project / "project.json")
    st = os.stat(mnt / "project.json")
    assert (st.st_size, st.st_mtime_ns, st.st_mode) == (st_real.st_size, st_real.st_mtime_ns, st_real.st_mode)
    assert st.st_blksize >= 256 * 1024
    r = run(["stat", "-c", "%s %Y %b %o", str(mnt / "project.json")])
    assert r.returncode == 0
    size, mtime, nblocks, blksize = map(int, r.stdout.split())
    assert (size, mtime) == (st_real.st_size, int(st_real.st_mtime))
    assert nblocks > 0 and blksize >= 256 * 1024


def test_inodes_distinct_and_readdir_matches(env):
    _home, _project_dir, mnt = env
    check_inodes(mnt)


def test_du_and_sizes(env):
    home, project, mnt = env
    check_du_and_sizes(home, project, mnt)


@pytest.mark.parametrize("flags", ["-cf", "-cSf"])
def test_tar_whole_mount(env, flags, tmp_path):
    _home, project, mnt = env
    out = tmp_path / "all.tar"
    r = run(["tar", flags, str(out), "-C", str(mnt), "."], timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert b"changed as we read" not in r.stderr and r.stderr == b""
    # the real part of the archive is the project itself
    native = run(["tar", flags, "-", "-C", str(project), "--exclude=./exports", "."], timeout=300).stdout
    via = {k: v for k, v in _tar_members(out.read_bytes()).items()
           if k.split("/")[1:2] and k.split("/")[1] not in VIRTUAL}
    assert via == {k: v for k, v in _tar_members(native).items() if k != "."}


@pytest.mark.parametrize("sparse", ["", "S"])
def test_virtual_export_equals_physical(env, demo, tmp_path, sparse):
    """tar of exports/jobs/<J> (and of a group export) equals tar -ch of the consolidation
    (with -S too: the same members come out sparse)."""
    _home, _project_dir, mnt = env
    from csfs.core import consolidate, lifecycle
    from csfs.core.instance import Instance

    inst = Instance(tmp_path / "home-phys")
    lifecycle.attach(inst, demo)
    job = _completed(demo)[-1]
    group_job = next(j for j in _completed(demo) if j.groups)
    exports = [(consolidate.export_job(inst, str(demo), job.uid), "jobs"),
               (consolidate.export_group(inst, str(demo), group_job.uid, group_job.groups[0].name), "groups")]
    for physical, kind in exports:
        name = Path(physical).name
        virtual_dir = mnt / "exports" / kind / name
        assert virtual_dir.is_dir(), f"{name} missing from the mount's exports/{kind}"
        r_v = run(["tar", f"-c{sparse}f", "-", "-C", str(virtual_dir.parent), name])
        r_p = run(["tar", f"-ch{sparse}f", "-", "-C", str(Path(physical).parent), name])
        assert r_v.returncode == 0 and r_v.stderr == b"", r_v.stderr
        assert r_p.returncode == 0, r_p.stderr
        v, p = _tar_members(r_v.stdout), _tar_members(r_p.stdout)
        assert sorted(v) == sorted(p), "same members (the physical order is readdir order)"
        assert v == p


def test_rsync_twice_transfers_nothing(env, tmp_path):
    _home, project, mnt = env
    dst = tmp_path / "copy"
    r = run(["rsync", "-a", "--exclude=/exports", "--exclude=/sizes", "--exclude=/control",
             f"{mnt}/", f"{dst}/"], timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert _tree(dst) == _tree(project, skip_top=VIRTUAL)
    r = run(["rsync", "-a", "--stats", f"{mnt}/", f"{dst}/"], timeout=300)  # now with the virtual dirs
    r = run(["rsync", "-a", "--stats", f"{mnt}/", f"{dst}/"], timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert b"Number of regular files transferred: 0" in r.stdout, r.stdout.decode()


def test_cp_r_of_export_and_cryosparc_tools_load(env, tmp_path):
    _home, project, mnt = env
    from cryosparc.dataset import Dataset

    groups = sorted(os.listdir(mnt / "exports" / "groups"))
    assert groups
    loaded = 0
    for name in groups:
        src = mnt / "exports" / "groups" / name
        dst = tmp_path / name
        r = run(["cp", "-r", str(src), str(dst)])
        assert r.returncode == 0, r.stderr
        assert run(["diff", "-r", str(src), str(dst)]).returncode == 0
        for cs in src.glob("*_exported.cs"):
            ds = Dataset.load(str(cs))   # straight from the mount
            assert len(ds) > 0 and "uid" in ds.fields()
            assert len(Dataset.load(str(dst / cs.name))) == len(ds)
            loaded += 1
    assert loaded > 0


def test_writes_are_erofs(env):
    _home, project, mnt = env
    job = _completed(project)[0]
    victims = [
        lambda: open(mnt / "project.json", "a"),
        lambda: open(mnt / "newfile", "w"),
        lambda: os.mkdir(mnt / "newdir"),
        lambda: os.unlink(mnt / "project.json"),
        lambda: os.rename(mnt / "project.json", mnt / "p2.json"),
        lambda: os.chmod(mnt / "project.json", 0o600),
        lambda: os.utime(mnt / "project.json"),
        lambda: os.truncate(mnt / "project.json", 0),
        lambda: os.symlink("x", mnt / "lnk"),
        lambda: open(mnt / "sizes" / "total", "w"),
        lambda: os.mkdir(mnt / "exports" / "jobs" / "x"),
        lambda: open(next((mnt / "exports" / "jobs").iterdir()) / "job.json", "w"),
        lambda: open(mnt / job.uid / "job.json", "r+b"),
    ]
    for act in victims:
        with pytest.raises(OSError) as e:
            act()
        assert e.value.errno == errno.EROFS, e.value
    assert (mnt / "project.json").read_bytes() == (project / "project.json").read_bytes()


def test_xattrs_not_supported(env):
    _home, _project_dir, mnt = env
    with pytest.raises(OSError) as e:
        os.getxattr(mnt / "project.json", "user.x")
    assert e.value.errno in (errno.EOPNOTSUPP, errno.ENODATA, errno.ENOSYS)


def test_sparse_file_holes_and_tar_S(env, tmp_path):
    """SEEK_DATA/SEEK_HOLE through the mount match the real file; tar -S keeps it sparse."""
    _home, project, mnt = env
    real, via = project / "J5" / "sparse.bin", mnt / "J5" / "sparse.bin"
    assert via.read_bytes() == real.read_bytes()
    fr, fv = os.open(real, os.O_RDONLY), os.open(via, os.O_RDONLY)
    try:
        for off in (0, 4096, 5000, 2 * 1024 * 1024, 4 * 1024 * 1024 + 4096):
            for whence in (os.SEEK_DATA, os.SEEK_HOLE):
                assert os.lseek(fv, off, whence) == os.lseek(fr, off, whence), (off, whence)
    finally:
        os.close(fr), os.close(fv)
    native = run(["tar", "-cSf", "-", "-C", str(project / "J5"), "sparse.bin"]).stdout
    r = run(["tar", "-cSf", "-", "-C", str(mnt / "J5"), "sparse.bin"])
    assert r.returncode == 0 and r.stderr == b""
    assert _tar_members(r.stdout) == _tar_members(native)
    assert len(r.stdout) < 1024 * 1024, "the hole was not archived as data"
