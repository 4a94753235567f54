"""One project folder of a mount: the real directory (read-only, symlinks kept) plus the
virtual `exports/jobs/…`, `exports/groups/…`, `sizes/…` and `control/…`."""
from __future__ import annotations

import os
import stat as S
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csfs.core import exportindex, exportrules
from csfs.core.errors import CsfsError, NotFoundError
from csfs.core.plan import DIR_MODE, Plan

from . import generated
from .context import PROJECT_TTL, Context
from .control import PROJECT_ACTIONS, Controls
from .nodes import (
    ControlFile,
    GeneratedFile,
    Node,
    PlanFile,
    RealDir,
    RealFile,
    SizeFile,
    StagedFile,
    VirtualDir,
)
from .perms import AS_IS, LIST
from .statinfo import T_DEV, T_INO, T_MODE, compact, ns, real_attrs, virtual_attrs

if TYPE_CHECKING:
    from csfs.core.project import Project
    from csfs.core.sizes import SizeReport

VIRTUAL_TOP = ("exports", "sizes", "control")
EXPORT_KINDS = ("jobs", "groups")


def _enoent() -> OSError:
    return FileNotFoundError(2, "No such file or directory")


class ProjectView:
    def __init__(self, ctx: Context, controls: Controls, path: Path, key: str) -> None:
        self.ctx = ctx
        self.controls = controls
        self.path = Path(path)
        self.real_root = str(self.path)   # the project folder on disk, as a string
        self.key = key          # mount-relative prefix, unique per project folder
        ctx.watch(self.path)

    # -- core objects (cached) ---------------------------------------------------
    def project(self) -> Project:
        from csfs.core.project import Project

        return self.ctx.obj(("project", str(self.path)), lambda: Project.open(self.path))

    def final_jobs(self) -> frozenset[str]:
        def compute() -> frozenset[str]:
            try:
                return frozenset(u for u, j in self.project().jobs.items() if j.is_final)
            except (CsfsError, OSError):
                return frozenset()
        return self.ctx.obj(("final", str(self.path)), compute)

    def export_index(self) -> dict[str, dict[str, tuple[str, str | None]]]:
        """{"jobs": {name: (juid, None)}, "groups": {name: (juid, group)}} for completed jobs."""
        def compute() -> dict[str, dict[str, tuple[str, str | None]]]:
            idx: dict[str, dict[str, tuple[str, str | None]]] = {"jobs": {}, "groups": {}}
            try:
                jobs = self.project().jobs
            except (CsfsError, OSError):
                return idx
            for uid, job in jobs.items():
                for kind, name, group in exportrules.export_names(job):
                    idx[kind][name] = (uid, group)
            return idx
        return self.ctx.obj(("exports", str(self.path)), compute)

    def plan(self, kind: str, name: str) -> generated.Loaded:
        """An export's plan from the light index (in memory, else the disk cache, else built
        by a worker), kept for minutes; every PROJECT_TTL seconds its inputs are stat'ed and
        a plan made from older ones is read again (changes inotify does not see: another host
        writing to a network filesystem)."""
        key = ("plan", str(self.path), kind, name)
        loaded = self.ctx.obj(key, lambda: self._load_plan(kind, name), plans=True)
        now = time.monotonic()
        if now - loaded.checked > PROJECT_TTL:
            loaded.checked = now
            if not exportindex.unchanged(loaded.inputs):
                self.ctx.drop(key)
                loaded = self.ctx.obj(key, lambda: self._load_plan(kind, name), plans=True)
        return loaded

    def _load_plan(self, kind: str, name: str) -> generated.Loaded:
        juid = self.export_index()[kind][name][0]
        cache_dir = self._cache_dir()
        got = generated.load_index(cache_dir, self.path, juid, (kind, name))
        if (kind, name) not in got:
            raise NotFoundError(f"{name}: this export changed while it was being indexed; try again")
        for (k, n), loaded in got.items():     # the job's other exports, indexed along with it
            if (k, n) != (kind, name):
                self.ctx.put(("plan", str(self.path), k, n), loaded)
        if len(got) > 1 and cache_dir is not None:   # a worker was needed: index the other jobs too
            generated.prefetch(cache_dir, self.path, [(j, (k, n)) for k, names in self.export_index().items()
                                                      for n, (j, _) in names.items()])
        return got[(kind, name)]

    def _cache_dir(self) -> Path | None:
        try:
            return Path(self.ctx.instance().cache_dir)
        except (CsfsError, OSError):
            return None

    def sizes(self) -> SizeReport:
        from csfs.core.sizes import project_sizes

        return self.ctx.obj(("sizes", str(self.path)),
                            lambda: project_sizes(self.project(), cache_dir=self._cache_dir()))

    # -- resolution ----------------------------------------------------------------
    def resolve(self, parts: list[str]) -> Node:
        if self.ctx.plain:
            return self._real(parts)
        if parts and parts[0] in VIRTUAL_TOP:
            return getattr(self, "_" + parts[0])(parts[1:])
        if not parts:
            return self._real(parts, extra=VIRTUAL_TOP, merge=frozenset({"exports"}))
        return self._real(parts)

    def _vkey(self, parts: list[str]) -> str:
        return self.key + "/" + "/".join(parts)

    def _vdir(self, parts: list[str], children: Callable[[], list[tuple[str, int, int]]],
              mtime_ns: int | None = None, perm: int | None = None, immutable: bool = False,
              child_maker: Callable[[], Callable[[str], Node]] | None = None) -> Node:
        ino = self.ctx.inodes.virtual(self._vkey(parts))
        attrs = virtual_attrs("dir", 4096, mtime_ns or self.ctx.started_ns, ino, self.ctx.uid, self.ctx.gid,
                              perm=perm)
        return VirtualDir(attrs, children, immutable, child_maker)

    def _vattrs(self, parts: list[str], data: bytes, mtime_ns: int, writable: bool = False) -> dict[str, Any]:
        """The stat dict of a virtual file of `data`."""
        ino = self.ctx.inodes.virtual(self._vkey(parts))
        return virtual_attrs("file", len(data), mtime_ns, ino, self.ctx.uid, self.ctx.gid, writable)

    def _child_entry(self, parts: list[str], name: str, is_dir: bool) -> tuple[str, int, int]:
        return (name, S.S_IFDIR if is_dir else S.S_IFREG, self.ctx.inodes.virtual(self._vkey(parts + [name])))

    def _real(self, parts: list[str], extra: tuple[str, ...] = (), merge: frozenset[str] = frozenset(),
              missing_ok: bool = False) -> Node:
        """A pass-through node for the real path; `extra` names virtual subdirectories merged in."""
        real = "/".join([self.real_root, *parts]) if parts else self.real_root
        long = bool(parts) and parts[0] in self.final_jobs()
        return self._real_node(parts, real, long, extra, merge, missing_ok)

    def _real_node(self, parts: list[str], real: str, long: bool, extra: tuple[str, ...] = (),
                   merge: frozenset[str] = frozenset(), missing_ok: bool = False) -> Node:
        """_real once the path on disk (`real`) and its cache class (`long`) are known."""
        def stat() -> tuple | None:
            try:
                return compact(os.lstat(real))
            except FileNotFoundError:
                return None
        st = self.ctx.cached(("lstat", real), stat, long)
        if st is None:
            if missing_ok:
                return self._vdir(parts, lambda: self._merged(parts, None, extra, merge))
            if not parts:   # the project directory itself moved away: an empty folder
                return self._vdir(parts, list)
            raise _enoent()
        dev = st[T_DEV]
        attrs = real_attrs(st, self.ctx.inodes.real(dev, st[T_INO]), shared=not self.ctx.plain)
        if not parts:   # the project folder: no more open than the folders above it
            attrs = self.ctx.perms.on_real_path(attrs, real)
        if S.S_ISDIR(st[T_MODE]):
            children = partial(self._merged, parts, real, extra, merge, long, dev)
            if not parts or extra:    # the project folder, or virtual entries merged in
                return RealDir(attrs, real, children, long)
            return RealDir(attrs, real, children, long,
                           lambda: lambda name: self._real_node([*parts, name], f"{real}/{name}", long))
        return RealFile(attrs, real, long)

    def _merged(self, parts: list[str], real: str | None, extra: tuple[str, ...],
                merge: frozenset[str], long: bool = False, dev: int = 0) -> list[tuple[str, int, int]]:
        """The real entries, then the virtual `extra` directories (which shadow real ones).

        Real first: a walk (tar, rsync -H, cp -a) meets a project file before its copies
        under exports/, so the file is archived and its copies become the hard links.
        A name in `merge` that also exists for real is a merged directory: it keeps the
        real inode (getattr resolves it through _real too)."""
        listing = self.ctx.cached(("list", real), lambda: _scan(real), long) if real else []
        hidden = set(extra)
        real_ino = self.ctx.inodes.real
        out = [(name, mode, real_ino(dev, ino)) for name, mode, ino in listing if name not in hidden]
        merged = {name: ino for name, _, ino in listing if name in merge}
        for n in extra:
            if n in merged:
                out.append((n, S.S_IFDIR, real_ino(dev, merged[n])))
            else:
                out.append(self._child_entry(parts, n, True))
        return out

    # -- virtual trees -------------------------------------------------------------
    def _exports(self, rest: list[str]) -> Node:
        top = ["exports"]
        if not rest:
            return self._real(top, extra=EXPORT_KINDS, merge=frozenset(EXPORT_KINDS), missing_ok=True)
        kind = rest[0]
        if kind not in EXPORT_KINDS:
            return self._real(top + rest)
        index = self.export_index()[kind]
        if len(rest) == 1:
            return self._real(top + [kind], extra=tuple(sorted(index)), missing_ok=True)
        name = rest[1]
        if name not in index:
            return self._real(top + rest)
        if len(rest) == 2:      # the export folder itself: known from the job, no plan needed
            job = self.project().jobs[index[name][0]]
            return self._plan_dir(top + rest, "", exportrules.job_time(job),
                                  DIR_MODE)
        return self._plan_node(top + rest[:2], rest[2:])

    def _plan(self, kind: str, name: str, loaded: generated.Loaded | None = None) -> Plan:
        """The plan of an export that can be served whole, else its error; an incomplete one
        (data files missing) is EIO with what `csfs export` says, so a tar of it fails
        instead of leaving files out. `loaded`: self.plan(kind, name), if at hand."""
        plan = (loaded or self.plan(kind, name)).plan
        if isinstance(plan, CsfsError):
            raise plan
        refusal = plan.refusal()
        if refusal is not None:
            raise CsfsError(str(refusal))
        return plan

    def _plan_dir(self, parts: list[str], rel: str, mtime: float, mode: int) -> Node:
        """A folder of an export (`parts`: exports/<kind>/<name>/`rel`): its children's
        inodes are their sources' for data files."""
        base, inner = parts[:3], parts[3:]

        def children() -> list[tuple[str, int, int]]:
            out = []
            for name, sub in self._plan(base[1], base[2]).child_entries(rel):
                st = self._source_stat(sub.source) if sub.source is not None else None
                if st is not None:
                    out.append((name, S.S_IFREG, self.ctx.inodes.real(st[T_DEV], st[T_INO])))
                else:
                    out.append(self._child_entry(parts, name, sub.kind == "dir"))
            return out

        def child_maker() -> Callable[[str], Node]:
            loaded = self.plan(base[1], base[2])
            served = self._plan(base[1], base[2], loaded)
            return lambda name: self._plan_entry(base, [*inner, name], loaded, served)
        node = self._vdir(parts, children, ns(mtime), mode, immutable=True, child_maker=child_maker)
        self.ctx.perms.apply(node.attrs, mode, [(self._job_dir(parts[:3]), AS_IS)])
        return node

    def _plan_node(self, base: list[str], inner: list[str]) -> Node:
        """The node at `inner` in the export at `base` (exports/<kind>/<name>)."""
        loaded = self.plan(base[-2], base[-1])
        return self._plan_entry(base, inner, loaded, self._plan(base[-2], base[-1], loaded))

    def _plan_entry(self, base: list[str], inner: list[str], loaded: generated.Loaded, plan: Plan) -> Node:
        kind, name = base[-2], base[-1]
        rel = "/".join(inner)
        entry = plan.lookup(rel)
        if entry is None:
            raise _enoent()
        parts = base + inner
        if entry.kind == "dir":
            return self._plan_dir(parts, rel, entry.mtime, entry.mode)
        source = entry.source
        st = self._source_stat(source) if source is not None else None
        if st is not None:
            # a copy of a source file: its very stat (inode, link count, blocks, times, owner
            # and mode), as a hard link has; du counts the data once, tar -S finds the holes
            attrs = real_attrs(st, self.ctx.inodes.real(st[T_DEV], st[T_INO]), shared=True)
        else:
            ino = self.ctx.inodes.virtual(self._vkey(parts))
            attrs = virtual_attrs("file", entry.size, ns(entry.mtime), ino, self.ctx.uid, self.ctx.gid,
                                  perm=entry.mode)
        if source is not None:
            attrs = self.ctx.perms.on_real_path(attrs, source)   # less what closed folders withhold
            return PlanFile(attrs, source)
        self.ctx.perms.apply(attrs, entry.mode, [(src, AS_IS) for src in entry.sources])
        juid, group = self.export_index()[kind][name]
        size = entry.size
        if size <= generated.BIG:
            return GeneratedFile(attrs, lambda: self._render(loaded, juid, group, rel, size))
        return StagedFile(attrs, lambda: str(generated.materialize(
            self.ctx.instance().cache_dir, self.path, juid, group, rel, size, loaded.version)))

    def _render(self, loaded: generated.Loaded, juid: str, group: str | None, rel: str, size: int) -> bytes:
        try:
            return generated.render(self.path, juid, group, rel, size)
        except CsfsError:
            loaded.checked = 0.0     # its sources changed: the next look at the export reads them again
            raise

    def _source_stat(self, source: str) -> tuple | None:
        """The compact stat of an export's data file (its real path, symlinks resolved)."""
        return self.ctx.cached(("stat", source), lambda: _stat(source), True)

    def _job_dir(self, base: list[str]) -> str:
        """The job folder of the export at `base` (exports/<kind>/<name>)."""
        juid = self.export_index()[base[1]][base[2]][0]
        return str(self.project().jobs[juid].dir)

    def _sizes(self, rest: list[str]) -> Node:
        report = self.sizes()
        texts = {uid: f"{js.bytes}\n" for uid, js in report.jobs.items()}
        texts.update({name: f"{n}\n" for name, n in report.sessions.items()})
        texts["total"] = f"{report.total}\n"
        if not rest:
            node = self._vdir(["sizes"], lambda: [self._child_entry(["sizes"], n, False) for n in texts])
            self.ctx.perms.apply(node.attrs, 0o555, [(str(self.path), AS_IS)])
            return node
        if len(rest) != 1 or rest[0] not in texts:
            raise _enoent()
        data = texts[rest[0]].encode()
        node = SizeFile(self._vattrs(["sizes", rest[0]], data, self.ctx.started_ns), data)
        # who may list a job folder may know its size; the total, who may list them all
        folders = [n for n in texts if n != "total"] if rest[0] == "total" else rest
        self.ctx.perms.apply(node.attrs, 0o444, [(str(self.path), LIST)] +
                             [(str(self.path / n), LIST) for n in folders])
        return node

    def _control(self, rest: list[str]) -> Node:
        if not rest:
            node = self._vdir(["control"], lambda: [self._child_entry(["control"], n, False)
                                                    for n in PROJECT_ACTIONS])
            self.ctx.perms.apply(node.attrs, 0o555, [(str(self.path), AS_IS)])
            return node
        if len(rest) != 1 or rest[0] not in PROJECT_ACTIONS:
            raise _enoent()
        scope = str(self.path)
        data, mtime = self.controls.outcome(scope, rest[0])
        attrs = self._vattrs(["control", rest[0]], data, mtime, writable=True)
        self.ctx.perms.control(attrs)
        return ControlFile(attrs, (self.controls, scope, rest[0], self.path))


def _stat(path: str) -> tuple | None:
    try:
        return compact(os.stat(path))
    except OSError:
        return None


def _scan(real: str) -> list[tuple[str, int, int]]:
    """(name, file-type bits, inode) of a real directory's entries, without stat calls."""
    out = []
    with os.scandir(real) as it:
        for e in it:
            try:
                if e.is_symlink():
                    mode = S.S_IFLNK
                elif e.is_dir(follow_symlinks=False):
                    mode = S.S_IFDIR
                elif e.is_file(follow_symlinks=False):
                    mode = S.S_IFREG
                else:
                    mode = S.S_IFMT(os.lstat(e.path).st_mode)
                out.append((e.name, mode, e.inode()))
            except FileNotFoundError:
                continue
    return out
