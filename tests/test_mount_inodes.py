"""Shared inodes and the plain mount, against the real tools: a virtual copy under exports/
is a hard link of its project file (du counts it once, find -samefile finds it, tar and
rsync -H link it), generated files have inodes of their own, and `csfs mount --plain`
shows the project exactly as it is on disk."""
from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import FLAVOURS, copy_demo
from mountutil import check_inodes, mounted, needs_fuse, run, tar_members

pytestmark = needs_fuse

VIRTUAL = ("exports", "sizes", "control")
GENERATED = (".cs", ".csg", "job.json")


@pytest.fixture(scope="module", params=FLAVOURS)
def env(demo_masters, tmp_path_factory, request):
    """(home, project dir, default mount, plain mount) of one attached tiny demo of each flavour."""
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    base = tmp_path_factory.mktemp("mount-inodes")
    project = copy_demo(demo_masters(request.param), base / "demo")
    home = base / "home"
    lifecycle.attach(Instance(home), project)
    with mounted(home, base / "mnt", project) as (mnt, _pid):
        with mounted(home, base / "plain", project, extra=["--plain"]) as (plain, _pid2):
            yield home, project, mnt, plain


def _walk(root: Path) -> dict[str, os.stat_result]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = os.lstat(p)
    return out


def _is_export(rel: str) -> bool:
    return rel.split("/")[0] == "exports"


def _sources(project: Path) -> dict[int, Path]:
    """inode -> path of every regular file in the project and the demo's raw data beside it
    (the files an export can show; the project's own filesystem keeps its inode numbers)."""
    out = {}
    for root in (project, project.parent / "raw"):
        for rel, st in _walk(root).items():
            if stat.S_ISREG(st.st_mode):
                out[st.st_ino] = root / rel
    return out


def _du(*args: str) -> int:
    r = run(["du", *args])
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[0])


def test_virtual_copies_are_hard_links_of_project_files(env):
    """Every data file of an export shares its source's inode and stat, nlink >= 2; the
    real entry reports the same; generated files and virtual dirs have inodes of their own."""
    _home, project, mnt, _plain = env
    seen = _walk(mnt)
    by_ino: dict[int, list[str]] = defaultdict(list)
    for rel, st in seen.items():
        by_ino[st.st_ino].append(rel)
    shared = 0
    sources = _sources(project)
    for rel, st in seen.items():
        if not _is_export(rel) or stat.S_ISDIR(st.st_mode):
            continue
        if rel.endswith(GENERATED) and st.st_nlink == 1:
            assert st.st_ino >= 1 << 62 and by_ino[st.st_ino] == [rel], rel   # an inode of its own
            continue
        source = str(sources[st.st_ino])
        assert (mnt / rel).read_bytes() == Path(source).read_bytes()
        src = os.stat(source)
        assert st.st_nlink == src.st_nlink + 1 >= 2, rel
        assert (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, st.st_uid, st.st_gid, st.st_blocks) == \
               (src.st_size, src.st_mtime_ns, src.st_ctime_ns, src.st_mode, src.st_uid, src.st_gid, src.st_blocks)
        copies = by_ino[st.st_ino]
        assert all(seen[c].st_size == st.st_size and seen[c].st_nlink == st.st_nlink for c in copies)
        if source.startswith(str(project) + "/"):     # a project file: the real entry is one of them
            real_rel = os.path.relpath(source, project)
            assert real_rel in copies, (rel, real_rel, copies)
            shared += 1
    assert shared > 10
    for rel, st in seen.items():   # outside exports/: a project file, one link more than on disk
        if not _is_export(rel) and rel.split("/")[0] not in VIRTUAL:
            native = os.lstat(project / rel)
            bump = 1 if stat.S_ISREG(native.st_mode) else 0
            assert (st.st_ino, st.st_nlink) == (native.st_ino, native.st_nlink + bump), rel
    check_inodes(mnt)   # readdir's d_ino agrees with lstat everywhere (use_ino)


def test_find_samefile_finds_the_copies(env):
    """find -samefile of a project data file lists it and its copies in job and group exports."""
    _home, project, mnt, _plain = env
    seen = _walk(mnt)
    real = {st.st_ino: rel for rel, st in seen.items() if not _is_export(rel) and stat.S_ISREG(st.st_mode)}
    copies: dict[str, list[str]] = defaultdict(list)
    for rel, st in seen.items():
        if _is_export(rel) and st.st_ino in real:
            copies[real[st.st_ino]].append(rel)
    data = next(r for r, c in sorted(copies.items()) if any(x.startswith("exports/groups/") for x in c)
                and any(x.startswith("exports/jobs/") for x in c))
    r = run(["find", str(mnt), "-samefile", str(mnt / data)])
    assert r.returncode == 0, r.stderr
    found = sorted(os.path.relpath(p, mnt) for p in r.stdout.decode().split("\n") if p)
    assert found == sorted([data] + copies[data])


def test_du_counts_each_file_once(env):
    """du -sb of the mount = the project + what its import links point at (shown once, in the
    import job's export) + the generated .cs/.csg/job.json + virtual folders; du -s (blocks)
    likewise; and --count-links (-l) shows what du counted before shared inodes."""
    _home, project, mnt, _plain = env
    seen = _walk(mnt)
    generated = sum(st.st_size for rel, st in seen.items()
                    if _is_export(rel) and stat.S_ISREG(st.st_mode) and st.st_nlink == 1)
    outside = {}   # data files outside the project that exports show (raw movies of imports)
    sources = _sources(project)
    for rel, st in seen.items():
        if _is_export(rel) and stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            if not str(sources[st.st_ino]).startswith(str(project) + "/"):
                outside[st.st_ino] = st.st_size
    mount_b, project_b, project_bl = _du("-sb", str(mnt)), _du("-sb", str(project)), _du("-sbL", str(project))
    assert mount_b <= project_b + sum(outside.values()) + generated + 2**20
    assert mount_b <= project_bl + generated + 2**20
    assert mount_b >= project_b + generated
    every_copy = _du("-sbl", str(mnt))
    assert every_copy > mount_b + project_b // 2, "--count-links counts every copy again"
    # disk usage in blocks: the project's, plus the (few) blocks of generated files
    assert _du("-s", "-B1", str(mnt)) <= _du("-s", "-B1", "-L", str(project)) + 2 * generated + 2**20


def test_tar_of_whole_mount_links_the_copies(env, tmp_path):
    """tar of the whole mount archives each project file once and its copies as hard links;
    extracted, the copies are hard links with the same bytes."""
    _home, project, mnt, _plain = env
    out = tmp_path / "all.tar"
    r = run(["tar", "-cf", str(out), "-C", str(mnt), "."], timeout=300)
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    with tarfile.open(out) as tf:
        members = {m.name.removeprefix("./"): m for m in tf}
    links = [m for n, m in members.items() if m.islnk()]
    assert links and all(n.startswith("exports/") for n, m in members.items() if m.islnk())
    for m in links:   # a project file's copies point at the project file itself
        target = m.linkname.removeprefix("./")
        assert members[target].isreg()
    assert out.stat().st_size < _du("-sbL", str(project)) * 1.2 + 2**20
    dst = tmp_path / "x"
    dst.mkdir()
    assert run(["tar", "-xf", str(out), "-C", str(dst)]).returncode == 0
    m = links[0]
    a, b = dst / m.name, dst / m.linkname
    assert os.stat(a).st_ino == os.stat(b).st_ino and a.read_bytes() == (mnt / m.name).read_bytes()


def test_rsync_aH_keeps_copies_linked(env, tmp_path):
    _home, project, mnt, _plain = env
    dst = tmp_path / "copy"
    r = run(["rsync", "-aH", f"{mnt}/", f"{dst}/"], timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    seen = _walk(mnt)
    sources = _sources(project)
    linked = 0
    for rel, st in seen.items():
        if _is_export(rel) and stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            src = str(sources[st.st_ino])
            if src.startswith(str(project) + "/"):
                real_rel = os.path.relpath(src, project)
                assert os.stat(dst / rel).st_ino == os.stat(dst / real_rel).st_ino, rel
                linked += 1
    assert linked > 10
    assert _du("-sb", str(dst)) <= _du("-sb", str(mnt)) + 2**20


def test_tar_of_one_export_is_complete(env, tmp_path):
    """Alone, an export still archives every file's bytes (no link to outside the archive),
    and equals tar -ch of the physical export (GNU tar links two symlinks to one file too)."""
    home, project, mnt, _plain = env
    from csfs.core import consolidate
    from csfs.core.instance import Instance

    for kind in ("jobs", "groups"):
        for name in sorted(os.listdir(mnt / "exports" / kind)):
            r = run(["tar", "-cf", "-", "-C", str(mnt / "exports" / kind), name])
            assert r.returncode == 0 and r.stderr == b"", r.stderr
            members = tar_members(r.stdout)
            for n, (typ, link, _mode, _body) in members.items():
                if typ == tarfile.LNKTYPE:
                    assert link in members and members[link][0] == tarfile.REGTYPE, (n, link)
    physical = Path(consolidate.export_job(Instance(home), str(project), "J8"))
    try:
        v = run(["tar", "-cf", "-", "-C", str(mnt / "exports" / "jobs"), physical.name]).stdout
        p = run(["tar", "-chf", "-", "-C", str(physical.parent), physical.name]).stdout
        assert tar_members(v) == tar_members(p)
    finally:
        import shutil

        shutil.rmtree(project / "exports")


def test_plain_mount_is_the_project(env, tmp_path):
    """--plain: no exports/, sizes/, control/; rsync -a of it equals rsync -a of the project
    (diff -r --no-dereference), tar of it equals tar of the project, link counts are real."""
    _home, project, mnt, plain = env
    assert sorted(os.listdir(plain)) == sorted(os.listdir(project))
    assert not set(VIRTUAL) & set(os.listdir(plain))
    a, b = tmp_path / "from-mount", tmp_path / "from-project"
    for src, dst in ((plain, a), (project, b)):
        r = run(["rsync", "-a", f"{src}/", f"{dst}/"], timeout=300)
        assert r.returncode == 0, r.stderr.decode()
    r = run(["diff", "-r", "--no-dereference", str(a), str(b)])
    assert r.returncode == 0, r.stdout.decode()[:2000]
    ta, tb = _walk(a), _walk(b)
    assert {k: (v.st_mode, v.st_size, v.st_mtime_ns) for k, v in ta.items()} == \
           {k: (v.st_mode, v.st_size, v.st_mtime_ns) for k, v in tb.items()}
    seen, native = _walk(plain), _walk(project)
    assert {k: (v.st_ino, v.st_nlink, v.st_size, v.st_mtime_ns, v.st_mode) for k, v in seen.items()} == \
           {k: (v.st_ino, v.st_nlink, v.st_size, v.st_mtime_ns, v.st_mode) for k, v in native.items()}
    via = run(["tar", "--sort=name", "-cf", "-", "-C", str(plain), "."]).stdout
    assert via == run(["tar", "--sort=name", "-cf", "-", "-C", str(project), "."]).stdout
    # nothing is writable: a read-only file system (reads keep the kernel's cached attributes)
    assert os.statvfs(plain).f_flag & os.ST_RDONLY
    assert not os.statvfs(mnt).f_flag & os.ST_RDONLY      # the default mount has control/
    with pytest.raises(OSError) as e:
        open(plain / "project.json", "a").close()
    assert e.value.errno == errno.EROFS


def test_plain_instance_mount(env, tmp_path):
    home, project, _mnt, _plain = env
    with mounted(home, tmp_path / "pi", extra=["--plain"]) as (mnt, _pid):
        assert os.listdir(mnt) == [project.name]
        assert sorted(os.listdir(mnt / project.name)) == sorted(os.listdir(project))
        r = run(["diff", "-r", "--no-dereference", str(mnt / project.name), str(project)])
        assert r.returncode == 0, r.stdout.decode()[:2000]
