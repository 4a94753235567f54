"""Export plans: a job or output-group export described once, as relative path -> entry.

A plan is pure description. `core.consolidate` writes it for real (files and
symlinks under `exports/`) and the FUSE mount serves it virtually; both render the
same entries, so a physical export read with links followed equals the virtual one.

Entry kinds:
- "dir": a directory;
- "file": a data file served from `source` (the real file, symlinks resolved);
- "generated": bytes made by `generate()`, whose length `size` is known in advance.

Generated contents are deterministic: timestamps come from the job, never from now.
"""
from __future__ import annotations

import datetime as _dt
import io
import os
import posixpath
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import csfile, csg
from .atomic import dumps_json
from .documents import STRIPPED_JOB_KEYS, OutputGroup, OutputResult, exported_job_doc, parse_time  # noqa: F401
from .errors import ActiveJobError, CsfsError, FormatError, NotFoundError, RefusedError

if TYPE_CHECKING:
    from .project import Job, Project

DIR_MODE = 0o755
GENERATED_MODE = 0o644


@dataclass(frozen=True, slots=True)
class Entry:
    """One member of an export. `path` is relative to the export root ("" is the root)."""

    path: str
    kind: str  # "dir" | "file" | "generated"
    size: int
    mtime: float
    source: Path | None = None
    generate: Callable[[], bytes] | None = None
    mode: int = GENERATED_MODE  # permission bits (dirs 0o755, data files those of the source)
    sources: tuple[str, ...] = ()  # the files a generated entry is made from (the mount's permissions)


class Plan:
    """An export: its folder name and its entries, in tar order (parents first, names sorted)."""

    def __init__(self, name: str, entries: Iterable[Entry], missing: Sequence[str] = ()) -> None:
        self.name = name
        self.entries: list[Entry] = sorted(entries, key=lambda e: _sort_key(e.path))
        _refuse_unsafe(name, self.entries)
        self.missing = list(missing)  # project-relative data files named by outputs but absent
        self._by_path = {e.path: e for e in self.entries}
        self._children: dict[str, list[str]] = {}
        for e in self.entries:
            if e.path:
                parent, _, base = e.path.rpartition("/")
                self._children.setdefault(parent, []).append(base)

    def lookup(self, rel: str) -> Entry | None:
        """The entry at `rel` (relative path, "" or "." for the root), or None."""
        return self._by_path.get(_norm(rel))

    def children(self, rel: str) -> list[str]:
        """Names inside the directory `rel`, sorted ([] for files and unknown paths)."""
        return list(self._children.get(_norm(rel), []))

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.entries if e.kind != "dir")

    def __repr__(self) -> str:
        return f"Plan({self.name!r}, {len(self.entries)} entries)"


def _inside(rel: str) -> bool:
    """Is `rel` a normalised relative path that stays below its root?"""
    return rel == "" or (posixpath.normpath(rel) == rel and not rel.startswith(("/", "../")) and rel != "..")


def plain_name(name: str) -> bool:
    """Can `name` (an export folder name built from job.json) be one path component?"""
    return "/" not in name and "\0" not in name and name not in ("", ".", "..")


def _refuse_unsafe(name: str, entries: Sequence[Entry]) -> None:
    """Export names come from job.json (type, group names): refuse any that would leave the
    export folder, so neither the physical nor the virtual rendering ever sees one."""
    bad = [] if plain_name(name) else [name]
    bad += [e.path for e in entries if not _inside(e.path)][:1]
    if bad:
        raise FormatError(f"{name}: {bad[0]!r} would lead outside the export folder (a job type or "
                          "group name in job.json is not a plain name); fix job.json, nothing written")


def _norm(rel: str) -> str:
    rel = rel.strip("/")
    return "" if rel in ("", ".") else posixpath.normpath(rel)


def _sort_key(path: str) -> tuple:
    return tuple(path.split("/")) if path else ()


# ---------------------------------------------------------------------------- names

def job_export_name(job: Job) -> str:
    """`J87_homo_refine`: the job uid and its type."""
    return f"{job.uid}_{job.type}"


def group_export_name(job: Job, group: OutputGroup | str) -> str:
    """`J87_particles`: the job uid and the output group name (`group` may be a name)."""
    return f"{job.uid}_{getattr(group, 'name', group)}"


# ---------------------------------------------------------------------------- helpers

def job_time(job: Job) -> float:
    """The job's own timestamp for generated content: completed_at, else created_at, else job.json mtime."""
    for value in (getattr(job, "completed_at", None), getattr(job, "created_at", None)):
        ts = parse_time(value)
        if ts is not None:
            return ts
    try:
        return (Path(job.dir) / "job.json").stat().st_mtime
    except OSError:
        return 0.0


def check_exportable(job: Job) -> None:
    """Refuse jobs that are not completed (the rule CryoSPARC applies), with the reason."""
    if getattr(job, "error", None):
        raise RefusedError(f"{job.uid}: cannot export a broken job ({job.error})")
    if job.status == "completed":
        return
    if job.is_active:
        raise ActiveJobError(f"{job.uid} is {job.status}: wait until it completes, then export it")
    raise RefusedError(f"{job.uid} is {job.status}, not completed: only completed jobs are exported "
                       f"(mark it completed first with `csfs job mark-completed`)")


def _dir(path: str, mtime: float) -> Entry:
    return Entry(path, "dir", 0, mtime, None, None, DIR_MODE)


def _generated(path: str, data_or_size: bytes | int, mtime: float, gen: Callable[[], bytes] | None = None,
               sources: Iterable[str | os.PathLike] = ()) -> Entry:
    srcs = tuple(os.fspath(s) for s in sources)
    if isinstance(data_or_size, bytes):
        data = data_or_size
        return Entry(path, "generated", len(data), mtime, None, lambda: data, GENERATED_MODE, srcs)
    return Entry(path, "generated", data_or_size, mtime, None, gen, GENERATED_MODE, srcs)


def _source_file(path: str, src: str | os.PathLike, dirs: dict[str, str] | None = None) -> Entry | None:
    """A data-file entry for `src` (symlinks followed), or None when it does not resolve.

    `dirs` caches the real path of each parent folder (many files share a folder).
    """
    src = os.fspath(src)
    if "\0" in src:
        return None     # a path holding a NUL names no file
    folder, base = os.path.split(src)
    if dirs is None:
        dirs = {}
    real_folder = dirs.get(folder)
    if real_folder is None:
        real_folder = dirs[folder] = os.path.realpath(folder)
    real = os.path.join(real_folder, base)
    try:
        st = os.lstat(real)
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(real)
            st = os.stat(real)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return Entry(path, "file", st.st_size, st.st_mtime, Path(real), None, st.st_mode & 0o777)


def _new_folder(path: str, seen: set[tuple[int, int]]) -> bool:
    """False for a folder (reached through a link) that was entered already: loops end there."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) not in seen


def _with_parents(entries: list[Entry], mtime: float) -> list[Entry]:
    """Add the root and the missing parent directories of `entries`, all with the job's mtime."""
    have = {e.path for e in entries}
    out = list(entries)
    if "" not in have:
        out.append(_dir("", mtime))
        have.add("")
    for e in entries:
        parent = posixpath.dirname(e.path)
        while parent and parent not in have:
            out.append(_dir(parent, mtime))
            have.add(parent)
            parent = posixpath.dirname(parent)
    return out


def _find_job(project: Project, juid: str) -> Job:
    return project.job(juid)


def _find_group(job: Job, group: OutputGroup | str) -> OutputGroup:
    if not isinstance(group, str):
        return group
    for g in job.groups:
        if g.name == group:
            return g
    names = ", ".join(g.name for g in job.groups) or "none"
    raise NotFoundError(f"{job.uid} has no output group {group!r} (groups: {names})")


# ---------------------------------------------------------------------------- group dataset

@dataclass
class _Part:
    """One result's contribution to the joined dataset: its fields from its final metafile."""

    result: OutputResult
    metafile: str  # project-relative
    fields: list[str] = field(default_factory=list)


def _group_parts(project: Project, group: OutputGroup) -> list[_Part]:
    parts: list[_Part] = []
    seen: set[str] = set()
    for r in group.results:
        metafile = r.final_metafile
        if r.name in seen or metafile is None:
            continue
        seen.add(r.name)
        parts.append(_Part(r, metafile))
    return parts


def _path_of(project: Project, rel: str) -> Path:
    return Path(project.path) / rel


def _resolve_value(value: bytes, metafile: str) -> str:
    """A `*/path` value as a project-relative path (">" is relative to the metafile's folder)."""
    s = value.decode("utf-8", "surrogateescape")
    if s.startswith(">"):
        return posixpath.normpath(posixpath.join(posixpath.dirname(metafile), s[1:]))
    return posixpath.normpath(s)


@dataclass
class GroupData:
    """What the joined dataset of an output group will be, known without building it."""

    parts: list[_Part]
    dtype: np.dtype
    rows: int
    order: list[np.ndarray | slice]  # per part: row indices into its metafile, in output order
    path_maps: dict[str, tuple[np.ndarray, list[str]]]  # field -> (inverse index, project-relative uniques)
    data_paths: list[str]  # project-relative data files, first-seen order


def group_data(project: Project, group: OutputGroup) -> GroupData:
    """Plan the join of a group's final result versions by uid (no dataset is built)."""
    parts = _group_parts(project, group)
    if not parts:
        raise NotFoundError(f"output group {group.name!r} has no result metafiles to export")
    arrays: dict[str, np.ndarray] = {}
    for p in parts:
        if p.metafile not in arrays:
            arrays[p.metafile] = _load(project, p.metafile)
            if "uid" not in (arrays[p.metafile].dtype.names or ()):
                raise FormatError(f"{p.metafile}: has no uid field, so its rows cannot be joined; "
                                  "it is not a CryoSPARC dataset")
        p.fields = [n for n in arrays[p.metafile].dtype.names or () if n.startswith(p.result.name + "/")]
    joined, rows = join_order([arrays[p.metafile]["uid"] for p in parts])
    # plans live long in the mount: keep row indices small (a slice when rows are in order)
    order: list[np.ndarray | slice] = [
        slice(None) if len(idx) == len(arrays[p.metafile]) and np.array_equal(idx, np.arange(len(idx)))
        else idx.astype(np.int32 if rows < 2**31 else np.int64) for p, idx in zip(parts, joined, strict=True)]
    descr: list[tuple] = [("uid", "<u8")]
    path_maps: dict[str, tuple[np.ndarray, list[str]]] = {}
    data_paths: dict[str, None] = {}
    for p, idx in zip(parts, order, strict=True):
        arr = arrays[p.metafile]
        path_fields = set(csfile.path_fields(arr.dtype))
        for name in p.fields:
            sub = arr.dtype[name]
            if name not in path_fields:
                descr.append((name, sub.base.str, sub.shape) if sub.shape else (name, sub.str))
                continue
            uniq, inverse = np.unique(np.asarray(arr[name])[idx], return_inverse=True)
            rels = [_resolve_value(v, p.metafile) if v else "" for v in uniq]
            firsts: np.ndarray | list[int] = np.unique(inverse, return_index=True)[1] if len(inverse) else []
            for i in sorted(range(len(uniq)), key=lambda k: firsts[k]):
                if rels[i]:
                    data_paths.setdefault(rels[i], None)
            path_maps[name] = (inverse.reshape(-1).astype(np.int32 if len(rels) < 2**31 else np.int64), rels)
            width = max([len(_export_value(r)) for r in rels] + [0]) + 1
            descr.append((name, f"|S{width}"))
    return GroupData(parts, np.dtype(descr), rows, order, path_maps, list(data_paths))


def join_order(uid_columns: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Inner join by uid: per column, the row indices giving the joined rows (first column's order)."""
    cols = [np.asarray(u) for u in uid_columns]
    keep = np.ones(len(cols[0]), dtype=bool)
    for u in cols[1:]:
        if u is not cols[0]:
            keep &= np.isin(cols[0], u)
    out_uids = cols[0][keep]
    order = []
    for u in cols:
        if u is cols[0] or (len(u) == len(cols[0]) and np.array_equal(u, cols[0])):
            order.append(np.nonzero(keep)[0])
        else:
            sorter = np.argsort(u, kind="stable")
            order.append(sorter[np.searchsorted(u, out_uids, sorter=sorter)])
    return order, int(len(out_uids))


def _load(project: Project, metafile: str) -> np.ndarray:
    path = _path_of(project, metafile)
    if not path.exists():
        raise NotFoundError(f"metafile {metafile} is missing (run `csfs verify`)")
    return csfile.load(path)


def _export_value(rel: str) -> bytes:
    """A project-relative path as written in an export: '>' + path (absolute paths unchanged)."""
    if not rel:
        return b""
    return (rel if rel.startswith("/") else ">" + rel).encode("utf-8", "surrogateescape")


def build_group_dataset(project: Project, data: GroupData) -> np.ndarray:
    """The joined dataset itself: uid, then each result's fields, paths rewritten with '>'."""
    out = np.zeros(data.rows, dtype=data.dtype)
    loaded: dict[str, np.ndarray] = {}
    for p, idx in zip(data.parts, data.order, strict=True):
        if p.metafile not in loaded:
            loaded[p.metafile] = _load(project, p.metafile)
        src = loaded[p.metafile]
        if p is data.parts[0]:
            out["uid"] = np.asarray(src["uid"])[idx]
        for name in p.fields:
            if name in data.path_maps:
                inverse, rels = data.path_maps[name]
                table = np.array([_export_value(r) for r in rels], dtype=data.dtype[name])
                out[name] = table[inverse] if len(rels) else b""
            else:
                out[name] = np.asarray(src[name])[idx]
    return out


def npy_header(dtype: np.dtype, rows: int) -> bytes:
    """The .npy header numpy writes for a 1-D C-order array (version 1.0, or 2.0 when too long)."""
    d = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows,)}
    buf = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buf, d)
    except ValueError:
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, d)
    return buf.getvalue()


def _dataset_bytes(project: Project, data: GroupData, size: int) -> bytes:
    arr = build_group_dataset(project, data)
    out = npy_header(data.dtype, data.rows) + arr.tobytes()
    if len(out) != size:  # pragma: no cover - a bug, never a user error
        raise AssertionError(f"exported .cs is {len(out)} bytes, planned {size}")
    return out


def _csg_bytes(job: Job, group: OutputGroup, cs_name: str, data: GroupData) -> bytes:
    created = _dt.datetime.fromtimestamp(job_time(job), tz=_dt.UTC)
    results = {p.result.name: {"metafile": f">{cs_name}", "num_items": data.rows, "type": p.result.type}
               for p in data.parts}
    doc = csg.Csg(created=created,
                  group={"name": group.name, "title": group.title or group.name, "type": group.type,
                         "description": group.description or ""},
                  results=results,
                  version=str((getattr(job, "doc", None) or {}).get("version") or "csfs"))
    return csg.dumps(doc)


# ---------------------------------------------------------------------------- plans

def _group_entries(project: Project, job: Job, group: OutputGroup, prefix: str) -> tuple[list[Entry], list[str]]:
    """Entries of a group export below `prefix` ("" or "J87_particles/"), and missing data files."""
    name = group_export_name(job, group)
    cs_name = f"{name}_exported.cs"
    mtime = job_time(job)
    data = group_data(project, group)
    size = len(npy_header(data.dtype, data.rows)) + data.rows * data.dtype.itemsize
    metafiles = [_path_of(project, p.metafile) for p in data.parts]
    entries = [
        _generated(prefix + cs_name, size, mtime, partial(_dataset_bytes, project, data, size), metafiles),
        _generated(prefix + f"{name}_exported.csg", _csg_bytes(job, group, cs_name, data), mtime,
                   sources=[Path(job.dir) / "job.json", *metafiles]),
    ]
    missing: list[str] = []
    dirs: dict[str, str] = {}
    root = os.fspath(project.path)
    for rel in data.data_paths:
        if rel == ".." or rel.startswith(("/", "../")):
            missing.append(rel)
            continue
        e = _source_file(prefix + rel, os.path.join(root, rel), dirs)
        if e is None:
            missing.append(rel)
        else:
            entries.append(e)
    return entries, missing


def group_export_plan(project: Project, juid: str, group: OutputGroup | str) -> Plan:
    """The export of one output group: joined `_exported.cs`, `.csg`, data at project-relative paths."""
    job = _find_job(project, juid)
    check_exportable(job)
    g = _find_group(job, group)
    entries, missing = _group_entries(project, job, g, "")
    mtime = job_time(job)
    return Plan(group_export_name(job, g), _with_parents(entries, mtime), missing)


def has_job_export(job: Job) -> bool:
    """A job export holds the job's job.json: a legacy job known from its .csg files has
    none (its output groups still export)."""
    return bool(getattr(job, "doc", None))


def job_export_plan(project: Project, juid: str) -> Plan:
    """The export of a job: stripped job.json, events.bson, gridfs_data/, one folder per output group."""
    job = _find_job(project, juid)
    check_exportable(job)
    if not has_job_export(job):
        groups = ", ".join(g.name for g in job.groups) or "none"
        raise RefusedError(f"{job.uid} has no job.json (a legacy job known from its .csg files), so it has "
                           f"no job export; export its output groups instead (groups: {groups})")
    mtime = job_time(job)
    jdir = Path(job.dir)
    entries: list[Entry] = [_generated("job.json", dumps_json(exported_job_doc(job.doc)), mtime,
                                       sources=[jdir / "job.json"])]
    ev = _source_file("events.bson", jdir / "events.bson")
    if ev is not None:
        entries.append(ev)
    entries.append(_dir("gridfs_data", mtime))
    gdir = jdir / "gridfs_data"
    if gdir.is_dir():
        seen: set[tuple[int, int]] = set()      # folders entered: a link loop (`a -> .`) is entered once
        for root, dirs, files in os.walk(gdir, followlinks=True):
            try:
                st = os.stat(root)
            except OSError:
                dirs[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirs[:] = sorted(d for d in dirs if _new_folder(os.path.join(root, d), seen))
            rel_root = posixpath.join("gridfs_data", os.path.relpath(root, gdir).replace(os.sep, "/"))
            rel_root = posixpath.normpath(rel_root)
            for d in dirs:
                entries.append(_dir(f"{rel_root}/{d}", mtime))
            for f in sorted(files):
                e = _source_file(f"{rel_root}/{f}", Path(root) / f)
                if e is not None:
                    entries.append(e)
    missing: list[str] = []
    for g in job.groups:
        if not any(r.metafiles for r in g.results):
            continue
        prefix = group_export_name(job, g) + "/"
        try:
            group_entries, group_missing = _group_entries(project, job, g, prefix)
        except CsfsError as e:  # a broken group leaves the rest of the job exportable (virtually)
            missing.append(f"{g.name}: {e}")
            continue
        entries.append(_dir(prefix[:-1], mtime))
        entries += group_entries
        missing += group_missing

    return Plan(job_export_name(job), _with_parents(entries, mtime), missing)
