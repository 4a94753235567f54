"""A reference model of what a mount shows, built without the mount's code, and the one
adapter through which the tests look at the views.

The model says, for every path of a project mount (or an instance mount), what `lstat`,
`readdir`, `readlink` and `read` must give. It is built independently of mountpoints/:

- the real tree from the project directory itself (os.walk, os.lstat, os.readlink);
- `exports/` from physical exports written by core (`exportplan` plans rendered by
  `consolidate.write_plan`, the function `csfs job export` uses) into a temporary folder
  and read there with links followed: an export exists exactly when core exports it (one
  core refuses because a data file is missing is listed and answers EIO);
- `sizes/` from a walk of its own (CryoSPARC's accounting, DESIGN §6);
- `control/`, modes, link counts and inodes from DESIGN §5 and SEMANTICS.md.

`look` is the only function that knows the view API (mountpoints/nodes.py's typed nodes);
`look_kernel` sees the same paths through a real FUSE mount. `differences` compares a
model with either and lists what differs.
"""
from __future__ import annotations

import errno
import os
import stat as S
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

OWN_INO = 1 << 62            # SEMANTICS.md: the mount's own entries are numbered from 2**62 up
MIN_BLKSIZE = 256 * 1024     # DESIGN §5: st_blksize >= 256 KiB
PROJECT_ACTIONS = ("detach", "archive", "clear-intermediate", "export-job", "export-group")  # DESIGN §5
INSTANCE_ACTIONS = ("attach", "unarchive")
VIRTUAL_TOP = ("exports", "sizes", "control")
EXPORT_KINDS = ("jobs", "groups")

Bound = tuple[int, int]      # a time known to lie in [low, high] (ns): "mount start"


@dataclass
class Want:
    """What one path must show. `ino` None: an inode of the mount's own (>= 2**62, unique,
    stable); `size`/`blocks` None: not predicted; `content`: the bytes or the file holding them."""

    type: int
    perm: int
    uid: int
    gid: int
    nlink: int
    mtime: int | Bound
    ctime: int | Bound
    ino: int | None = None
    size: int | None = None
    blocks: int | None = None
    target: str | None = None
    children: frozenset[str] | None = None
    content: bytes | Path | None = None
    writable: bool = False          # its owner may write it (control files only; else EROFS)
    error: int | None = None        # looking it up fails with this errno (the rest is not compared)


def refused(code: int) -> Want:
    """A listed name whose lookup fails with errno `code`."""
    return Want(0, 0, 0, 0, 0, 0, 0, error=code)


@dataclass
class Seen:
    """What one path shows: its stat (times in ns), listing (name, type bits, inode),
    link target, a reader of its bytes (regular files), and whether its owner may write it
    (None: not the mount's to say)."""

    st: dict[str, int]
    children: list[tuple[str, int, int]] | None
    target: str | None
    read: Callable[[], bytes] | None
    writable: bool | None


Model = dict[str, Want]       # mount-relative path ("" is the top) -> what it must show
Looker = Callable[[str], Seen]


# -- the adapter: the only code that knows the view API --------------------------------------

def look(view: Any, path: str) -> Seen:
    """Resolve `path` in a ProjectView or InstanceView and ask the node what fs.py asks it:
    its stat, listing, link target and bytes (read through the handle it opens). Core's
    errors become their errno, as fs.py turns them into the errno FUSE answers."""
    from csfs.core.errors import CsfsError

    try:
        return _look(view, path)
    except CsfsError as e:
        raise OSError(e.errno, str(e)) from None


def _look(view: Any, path: str) -> Seen:
    node = view.resolve([p for p in path.split("/") if p])
    st = dict(node.attrs)
    children = list(node.children()) if node.is_dir else None
    target = node.readlink() if S.S_ISLNK(st["st_mode"]) else None
    read = partial(_read_handle, node) if S.S_ISREG(st["st_mode"]) else None
    return Seen(st, children, target, read, node.writable)


def _read_handle(node: Any) -> bytes:
    handle = node.open(False, False)
    try:
        data = b""
        while chunk := handle.read(1 << 20, len(data)):
            data += chunk
        return data
    finally:
        handle.close()


def look_kernel(mnt: Path, path: str) -> Seen:
    """The same through a FUSE mount: os.lstat, os.scandir (d_type, d_ino), os.readlink."""
    p = os.path.join(mnt, path) if path else str(mnt)
    st = os.lstat(p)
    stat_dict = {"st_mode": st.st_mode, "st_ino": st.st_ino, "st_nlink": st.st_nlink, "st_uid": st.st_uid,
                 "st_gid": st.st_gid, "st_size": st.st_size, "st_blocks": st.st_blocks,
                 "st_blksize": st.st_blksize, "st_mtime": st.st_mtime_ns, "st_ctime": st.st_ctime_ns}
    children = None
    if S.S_ISDIR(st.st_mode):
        with os.scandir(p) as it:
            children = [(e.name, _dtype(e), e.inode()) for e in it]
    target = os.readlink(p) if S.S_ISLNK(st.st_mode) else None
    read = partial(_read, p) if S.S_ISREG(st.st_mode) else None
    # access(W_OK) through the mount; on a symlink the kernel answers alone (from its 0777)
    writable = None if S.S_ISLNK(st.st_mode) else os.access(p, os.W_OK)
    return Seen(stat_dict, children, target, read, writable)


def _dtype(e: os.DirEntry) -> int:
    if e.is_symlink():
        return S.S_IFLNK
    if e.is_dir(follow_symlinks=False):
        return S.S_IFDIR
    if e.is_file(follow_symlinks=False):
        return S.S_IFREG
    return S.S_IFMT(os.lstat(e.path).st_mode)


def _read(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# -- the model ------------------------------------------------------------------------------

Exports = dict[str, dict[str, Path | None]]   # kind -> export name -> physical folder (None: refused, incomplete)


def physical_exports(project: Path, dest: Path) -> Exports:
    """Write every export core makes of `project` under `dest/<jobs|groups>/<name>` (core's
    plans rendered by consolidate.write_plan, as `csfs job export`/`group export` do, but
    outside the project); a job or group core refuses has none, and one it refuses because
    data files are missing is None (SEMANTICS: listed, but its paths answer EIO)."""
    from csfs.core import consolidate, exportplan
    from csfs.core.errors import CsfsError
    from csfs.core.project import Project

    proj = Project.open(project)
    out: Exports = {k: {} for k in EXPORT_KINDS}
    for uid, job in proj.jobs.items():
        builds = [("jobs", partial(exportplan.job_export_plan, proj, uid))]
        builds += [("groups", partial(exportplan.group_export_plan, proj, uid, g.name)) for g in job.groups]
        for kind, build in builds:
            try:
                plan = build()
            except CsfsError:
                continue        # refused: not completed, no job.json (legacy), broken
            if plan.missing:    # the export commands refuse a plan with missing data files
                out[kind][plan.name] = None
                continue
            out[kind][plan.name] = consolidate.write_plan(plan, dest / kind / plan.name, proj.path)
    return out


def project_model(project: Path, exports: Exports, started: Bound,
                  mount_uid: int | None = None) -> Model:
    """Every path of a default project mount of `project` (exports as physical_exports gave
    them; `started`: when the mount (view) started)."""
    project = Path(project)
    uid = os.getuid() if mount_uid is None else mount_uid
    top = os.lstat(project)
    real = _real_tree(project)
    model = {p: w for p, w in real.items() if p.split("/")[0] not in VIRTUAL_TOP}
    model[""].children = frozenset(set(real[""].children or ()) | set(VIRTUAL_TOP))
    model.update(_exports_model(project, exports, started, top, real))
    model.update(_sizes_model(project, started, top))
    model.update(_control_model("control", PROJECT_ACTIONS, started, top, uid))
    return model


def instance_model(folders: dict[str, Model], started: Bound, uid: int | None = None) -> Model:
    """An instance mount: its own top and control/, and each project's model below its
    folder name (the folder keeps the directory's attributes but gets an inode of its own)."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid()
    model: Model = {"": Want(S.S_IFDIR, 0o555, uid, gid, 2, started, started,
                             children=frozenset(folders) | {"control"})}
    model["control"] = Want(S.S_IFDIR, 0o555, uid, gid, 2, started, started,
                            children=frozenset(INSTANCE_ACTIONS))
    for a in INSTANCE_ACTIONS:
        model[f"control/{a}"] = Want(S.S_IFREG, 0o600, uid, gid, 1, started, started, writable=True)
    for name, sub in folders.items():
        for path, want in sub.items():
            key = f"{name}/{path}" if path else name
            model[key] = want if path else replace(want, ino=None)
    return model


def plain_model(project: Path) -> Model:
    """A `--plain` project mount: the project exactly as it is on disk (real link counts)."""
    return _real_tree(Path(project), shared=False)


def plain_instance_model(folders: dict[str, Model], started: Bound) -> Model:
    """A `--plain` instance mount: the project folders only."""
    model = {p: w for p, w in instance_model(folders, started).items() if p.split("/")[0] != "control"}
    model[""].children = frozenset(folders)
    return model


def _real_tree(project: Path, shared: bool = True) -> Model:
    """The project as it is on disk; with `shared`, each regular file one link more
    (SEMANTICS: the mount may show it again under exports/, as a hard link)."""
    out: Model = {}
    for dirpath, dirnames, filenames in os.walk(project):
        rel_dir = os.path.relpath(dirpath, project)
        rel_dir = "" if rel_dir == "." else rel_dir
        out[rel_dir] = _want_real(Path(dirpath), shared, frozenset(dirnames + filenames))
        for n in filenames:   # os.walk lists links to folders among dirnames: they are entries too
            out[f"{rel_dir}/{n}" if rel_dir else n] = _want_real(Path(dirpath) / n, shared)
        for n in list(dirnames):
            p = Path(dirpath) / n
            if p.is_symlink():
                out[f"{rel_dir}/{n}" if rel_dir else n] = _want_real(p, shared)
    return out


def _want_real(path: Path, shared: bool, children: frozenset[str] | None = None) -> Want:
    st = os.lstat(path)
    extra = 1 if shared and S.S_ISREG(st.st_mode) else 0
    return Want(S.S_IFMT(st.st_mode), S.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_nlink + extra,
                st.st_mtime_ns, st.st_ctime_ns, ino=st.st_ino, size=st.st_size, blocks=st.st_blocks,
                target=os.readlink(path) if S.S_ISLNK(st.st_mode) else None, children=children,
                content=path if S.S_ISREG(st.st_mode) else None)


def _virtual_dir(perm: int, st: os.stat_result, started: Bound, children: Iterable[str]) -> Want:
    """A folder of the mount's own: no more open than `st` (its source folder), its owner's."""
    return Want(S.S_IFDIR, perm & S.S_IMODE(st.st_mode), st.st_uid, st.st_gid, 2, started, started,
                children=frozenset(children))


def _exports_model(project: Path, exports: Exports, started: Bound,
                   top: os.stat_result, real: Model) -> Model:
    """exports/: each physical export read with links followed. Data files are the source's
    stat (a hard link: its inode, link count + 1); generated files and folders have inodes of
    their own and the physical export's times, no more open than their sources. A real
    exports/ folder of the project is merged in: its entries stay, the virtual exports cover
    real ones of the same name."""
    def merged(path: str, names: Iterable[str]) -> Want:
        have = real.get(path)
        if have is not None and have.type == S.S_IFDIR:
            return replace(have, children=frozenset(have.children or ()) | frozenset(names))
        return _virtual_dir(0o555, top, started, names)

    covered = {f"exports/{kind}/{name}" for kind in EXPORT_KINDS for name in exports[kind]}
    kinds = {f"exports/{kind}" for kind in EXPORT_KINDS}
    out: Model = {p: w for p, w in real.items() if p.startswith("exports/") and p not in kinds
                  and not any(p == c or p.startswith(c + "/") for c in covered)}
    out["exports"] = merged("exports", EXPORT_KINDS)
    file_perm = _common_file_perm(project)
    for kind in EXPORT_KINDS:
        out[f"exports/{kind}"] = merged(f"exports/{kind}", exports[kind])
        for name, folder in exports[kind].items():
            if folder is None:
                out[f"exports/{kind}/{name}"] = refused(errno.EIO)
                continue
            job_dir = os.stat(project / name.split("_", 1)[0])
            for dirpath, dirnames, filenames in os.walk(folder):
                rel = os.path.relpath(dirpath, folder)
                key = f"exports/{kind}/{name}" + ("" if rel == "." else f"/{rel}")
                st = os.lstat(dirpath)
                out[key] = Want(S.S_IFDIR, S.S_IMODE(st.st_mode) & S.S_IMODE(job_dir.st_mode), job_dir.st_uid,
                                job_dir.st_gid, 2, st.st_mtime_ns, st.st_mtime_ns,
                                children=frozenset(dirnames + filenames))
                for n in filenames:
                    out[f"{key}/{n}"] = _want_export_file(Path(dirpath) / n, file_perm, job_dir)
    return out


def _want_export_file(path: Path, file_perm: int, job_dir: os.stat_result) -> Want:
    lst = os.lstat(path)
    if S.S_ISLNK(lst.st_mode):      # a data file: the source itself, as a hard link shows it
        st = os.stat(path)
        return Want(S.S_IFREG, S.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_nlink + 1, st.st_mtime_ns,
                    st.st_ctime_ns, ino=st.st_ino, size=st.st_size, blocks=st.st_blocks, content=path)
    size = lst.st_size               # generated: the job's time, ceil(size/512) blocks
    return Want(S.S_IFREG, S.S_IMODE(lst.st_mode) & file_perm, job_dir.st_uid, job_dir.st_gid, 1,
                lst.st_mtime_ns, lst.st_mtime_ns, size=size, blocks=(size + 511) // 512, content=path)


def _common_file_perm(project: Path) -> int:
    """The permission bits every regular file of the project shares: a generated file is no
    more readable than its sources. The model needs them uniform (the demo's are)."""
    perms = {S.S_IMODE(os.lstat(Path(d) / n).st_mode) for d, _, fs in os.walk(project) for n in fs
             if S.S_ISREG(os.lstat(Path(d) / n).st_mode)}
    assert len(perms) == 1, f"the model assumes one mode for all project files, found {sorted(map(oct, perms))}"
    return perms.pop()


def _sizes_model(project: Path, started: Bound, top: os.stat_result) -> Model:
    """sizes/<J>, sizes/<S> and sizes/total: CryoSPARC's byte counts as text, readable by who
    may list the folders counted."""
    jobs, sessions, other = project_bytes(project)
    counts = {**jobs, **sessions, "total": sum(jobs.values()) + sum(sessions.values()) + other}
    out: Model = {"sizes": _virtual_dir(0o555, top, started, frozenset(counts))}
    for name, n in counts.items():
        text = f"{n}\n".encode()
        folders = [project] + [project / f for f in ((*jobs, *sessions) if name == "total" else (name,))]
        out[f"sizes/{name}"] = Want(S.S_IFREG, _listable(0o444, folders), top.st_uid, top.st_gid, 1, started,
                                    started, size=len(text), blocks=(len(text) + 511) // 512, content=text)
    return out


def _listable(perm: int, folders: list[Path]) -> int:
    """`perm` less each class that cannot list (read and enter) every folder."""
    for f in folders:
        mode = os.stat(f).st_mode
        for shift in (6, 3, 0):
            if (mode >> shift) & 5 != 5:
                perm &= ~(7 << shift)
    return perm


def _control_model(base: str, actions: tuple[str, ...], started: Bound, top: os.stat_result, uid: int) -> Model:
    out: Model = {base: _virtual_dir(0o555, top, started, frozenset(actions))}
    for a in actions:
        out[f"{base}/{a}"] = Want(S.S_IFREG, 0o600, uid, os.getgid(), 1, started, started, writable=True)
    return out


def project_bytes(project: Path) -> tuple[dict[str, int], dict[str, int], int]:
    """(job -> bytes, Live session -> bytes, other bytes) by CryoSPARC's rule: a job folder
    (J<N>/) or session folder (S<N>/ with exposures.bson) walked following links, each
    (device, inode) of a file counted once, folders not counted; outside them, every
    non-folder entry (links not followed), each inode once."""
    jobs: dict[str, int] = {}
    sessions: dict[str, int] = {}
    other = 0
    seen_other: set[tuple[int, int]] = set()
    for e in sorted(os.scandir(project), key=lambda e: e.name):
        number = e.name[1:]
        if e.name[:1] == "J" and number.isdigit() and e.is_dir():
            jobs[e.name] = _followed_bytes(Path(e.path))
        elif e.name[:1] == "S" and number.isdigit() and e.is_dir() and (Path(e.path) / "exposures.bson").is_file():
            sessions[e.name] = _followed_bytes(Path(e.path))
        else:
            for p in [Path(e.path)] + ([Path(d) / n for d, ds, fs in os.walk(e.path) for n in ds + fs]
                                       if e.is_dir(follow_symlinks=False) else []):
                st = os.lstat(p)
                if not S.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) not in seen_other:
                    seen_other.add((st.st_dev, st.st_ino))
                    other += st.st_size
    return jobs, sessions, other


def _followed_bytes(folder: Path) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for d, dirnames, filenames in os.walk(folder, followlinks=True):
        st = os.stat(d)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []          # a folder reached twice (a link loop): walked once
            continue
        seen.add((st.st_dev, st.st_ino))
        for n in filenames:
            try:
                fst = os.stat(Path(d) / n)
            except OSError:
                continue              # a dangling link counts nothing
            if S.S_ISREG(fst.st_mode) and (fst.st_dev, fst.st_ino) not in seen:
                seen.add((fst.st_dev, fst.st_ino))
                total += fst.st_size
    return total


# -- the comparison ---------------------------------------------------------------------------

def differences(model: Model, seen: Looker, read: bool = True) -> tuple[list[str], dict[str, int]]:
    """Walk what `seen` shows from the top and compare every path with `model`. Returns the
    differences (one line each) and the inodes of the mount's own entries by path (to check
    they are stable). `read`: also compare every regular file's bytes."""
    diffs: list[str] = []
    own: dict[str, int] = {}
    sources: dict[int, str] = {}
    listed: dict[str, tuple[int, int]] = {}
    todo = [""]
    visited: set[str] = set()
    while todo:
        path = todo.pop()
        visited.add(path)
        want = model.get(path)
        try:
            s = seen(path)
        except OSError as e:
            if want is None or want.error != e.errno:
                diffs.append(f"{path!r}: lookup fails with errno {e.errno} ({e}), model: "
                             + ("not there" if want is None else f"errno {want.error}"))
            continue
        if want is None:
            diffs.append(f"{path!r}: shown, but not in the model")
            continue
        if want.error is not None:
            diffs.append(f"{path!r}: shown, but the model says errno {want.error}")
            continue
        diffs += [f"{path!r}: {d}" for d in _compare(want, s, read)]
        if path in listed and listed[path] != (S.S_IFMT(s.st["st_mode"]), s.st["st_ino"]):
            diffs.append(f"{path!r}: readdir says type/inode {listed[path]}, lstat "
                         f"{(S.S_IFMT(s.st['st_mode']), s.st['st_ino'])}")
        if want.ino is None:
            own[path] = s.st["st_ino"]
        else:
            sources.setdefault(want.ino, path)
        for name, mode, ino in s.children or ():
            child = f"{path}/{name}" if path else name
            listed[child] = (mode, ino)
            todo.append(child)
    diffs += [f"{p!r}: in the model, not shown" for p in sorted(set(model) - visited)]
    clash: dict[int, str] = {}
    for path, ino in own.items():
        if ino in clash:
            diffs.append(f"{path!r}: inode {ino} also used by {clash[ino]!r}")
        if ino in sources:
            diffs.append(f"{path!r}: own inode {ino} is the source inode of {sources[ino]!r}")
        clash[ino] = path
    return diffs, own


def _compare(want: Want, s: Seen, read: bool) -> Iterator[str]:
    st = s.st
    checks: list[tuple[str, Any, Any]] = [
        ("type", S.S_IFMT(st["st_mode"]), want.type), ("perm", oct(S.S_IMODE(st["st_mode"])), oct(want.perm)),
        ("uid", st["st_uid"], want.uid), ("gid", st["st_gid"], want.gid), ("nlink", st["st_nlink"], want.nlink),
    ]
    if want.ino is not None:
        checks.append(("ino", st["st_ino"], want.ino))
    if want.size is not None:
        checks.append(("size", st["st_size"], want.size))
    if want.blocks is not None:
        checks.append(("blocks", st["st_blocks"], want.blocks))
    checks.append(("target", s.target, want.target))
    if s.writable is not None:
        checks.append(("writable", s.writable, want.writable))
    if want.children is not None:
        names = [c[0] for c in s.children or ()]
        checks.append(("children", sorted(names), sorted(want.children)))
        if len(set(names)) != len(names):
            yield f"names listed twice: {sorted(n for n in set(names) if names.count(n) > 1)}"
    elif s.children is not None:
        yield "a listing where the model has no folder"
    for what, got, expected in checks:
        if got != expected:
            yield f"{what} {got!r}, model {expected!r}"
    for what, key, expected in (("mtime", "st_mtime", want.mtime), ("ctime", "st_ctime", want.ctime)):
        got = st[key]
        if isinstance(expected, tuple) and not expected[0] <= got <= expected[1]:
            yield f"{what} {got} outside the mount's start {expected}"
        elif isinstance(expected, int) and got != expected:
            yield f"{what} {got}, model {expected}"
    if want.ino is None and st["st_ino"] < OWN_INO:
        yield f"own inode {st['st_ino']} below 2**62"
    if st["st_blksize"] < MIN_BLKSIZE:
        yield f"st_blksize {st['st_blksize']} < 256 KiB"
    if S.S_ISREG(want.type) and read:
        if s.read is None:
            yield "a regular file that cannot be read"
            return
        data = s.read()
        if len(data) != st["st_size"]:
            yield f"read {len(data)} bytes, st_size says {st['st_size']}"
        if want.content is not None:
            expected_bytes = want.content if isinstance(want.content, bytes) else _read(want.content)
            if data != expected_bytes:
                yield f"bytes differ from the model's ({len(data)} vs {len(expected_bytes)} bytes)"
