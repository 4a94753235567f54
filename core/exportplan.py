"""Making export plans (core/plan.py) of jobs and output groups: the stripped job.json,
events.bson and gridfs_data/ of a job export, and for each output group the join of its
results' final versions by uid (`_exported.cs`, whose size is known before it is built),
its `.csg` and its data files at their project-relative paths.

Generated contents are deterministic: timestamps come from the job, never from now.
"""
from __future__ import annotations

import datetime as _dt
import io
import os
import posixpath
import stat
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import csfile, csg
from .atomic import dumps_json
from .documents import STRIPPED_JOB_KEYS, exported_job_doc  # noqa: F401
from .errors import CsfsError, FormatError, NotFoundError, RefusedError
from .exportrules import (  # noqa: F401
    check_exportable,
    export_names,
    export_refusal,
    group_export_name,
    has_job_export,
    job_export_name,
    job_time,
)
from .plan import DIR_MODE, GENERATED_MODE, KINDS, Entry, ExportKey, Plan, plain_name  # noqa: F401

if TYPE_CHECKING:
    from .documents import OutputGroup, OutputResult
    from .project import Job, Project

def _dir(path: str, mtime: float) -> Entry:
    return Entry(path, "dir", 0, mtime, None, None, DIR_MODE)


def _generated(path: str, data_or_size: bytes | int, mtime: float, gen: Callable[[], bytes] | None = None,
               sources: Iterable[str] = ()) -> Entry:
    srcs = tuple(os.fspath(s) for s in sources)
    if isinstance(data_or_size, bytes):
        data = data_or_size
        return Entry(path, "generated", len(data), mtime, None, lambda: data, GENERATED_MODE, srcs)
    return Entry(path, "generated", data_or_size, mtime, None, gen, GENERATED_MODE, srcs)


def _source_file(path: str, src: str, dirs: dict[str, str] | None = None) -> Entry | None:
    """A data-file entry for `src` (symlinks followed), or None when it is not a regular file.

    `dirs` caches the real path of each parent folder (many files share a folder).
    """
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
    return Entry(path, "file", st.st_size, st.st_mtime, real, None, st.st_mode & 0o777)


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
    # keep row indices small (a slice when rows are in order)
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
            uniq, inverse, firsts = _unique(np.asarray(arr[name])[idx])
            rels = [_resolve_value(v, p.metafile) if v else "" for v in uniq]
            for i in sorted(range(len(uniq)), key=lambda k: firsts[k]):
                if rels[i]:
                    data_paths.setdefault(rels[i], None)
            path_maps[name] = (inverse.reshape(-1).astype(np.int32 if len(rels) < 2**31 else np.int64), rels)
            width = max([len(_export_value(r)) for r in rels] + [0]) + 1
            descr.append((name, f"|S{width}"))
    return GroupData(parts, np.dtype(descr), rows, order, path_maps, list(data_paths))


def _unique(col: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.unique of a column with its inverse and each value's first row, sorting only one
    row per run of equal values (a path column repeats each file for many rows in a row)."""
    if len(col) == 0:
        return col[:0], np.zeros(0, np.intp), np.zeros(0, np.intp)
    starts = np.flatnonzero(np.concatenate(([True], col[1:] != col[:-1])))
    uniq, run_inverse = np.unique(col[starts], return_inverse=True)
    run_inverse = run_inverse.reshape(-1)
    inverse = np.repeat(run_inverse, np.diff(np.append(starts, len(col))))
    firsts = np.full(len(uniq), len(col), np.intp)
    np.minimum.at(firsts, run_inverse, starts)
    return uniq, inverse, firsts


def join_order(uid_columns: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Inner join by uid: per column, the row indices giving the joined rows (first column's order)."""
    cols = [np.asarray(u) for u in uid_columns]
    keep = np.ones(len(cols[0]), dtype=bool)
    for u in cols[1:]:
        if u is not cols[0] and not np.array_equal(u, cols[0]):
            keep &= np.isin(cols[0], u)
    out_uids = cols[0][keep]
    order = []
    for u in cols:
        if u is cols[0] or (len(u) == len(cols[0]) and np.array_equal(u, cols[0])):
            order.append(np.nonzero(keep)[0])
        else:
            sorter = np.argsort(u, kind="stable")
            order.append(sorter[np.searchsorted(u, out_uids, sorter=sorter)])
    return order, len(out_uids)


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

def _group_generated(project: Any, job: Any, group: Any, data: GroupData) -> list[Entry]:
    """The joined `_exported.cs` and the `.csg` of a group export."""
    name = group_export_name(job, group)
    cs_name = f"{name}_exported.cs"
    mtime = job_time(job)
    size = len(npy_header(data.dtype, data.rows)) + data.rows * data.dtype.itemsize
    metafiles = [str(_path_of(project, p.metafile)) for p in data.parts]
    return [
        _generated(cs_name, size, mtime, partial(_dataset_bytes, project, data, size), metafiles),
        _generated(f"{name}_exported.csg", _csg_bytes(job, group, cs_name, data), mtime,
                   sources=[os.path.join(job.dir, "job.json"), *metafiles]),
    ]


STAT_THREADS = 8     # data files are stat'ed by this many threads (the calls wait on the disk, not the GIL)


def _group_files(project: Project, data: GroupData) -> tuple[list[Entry], list[str]]:
    """The data files of a group export at their project-relative paths, and those missing."""
    dirs: dict[str, str] = {}
    root = os.fspath(project.path)

    def entry(rel: str) -> Entry | None:
        return None if rel.startswith(("/", "../")) or rel == ".." else _source_file(rel, os.path.join(root, rel), dirs)
    rels = data.data_paths
    if len(rels) < 4 * STAT_THREADS:
        found = [entry(rel) for rel in rels]
    else:
        step = -(-len(rels) // STAT_THREADS)
        with ThreadPoolExecutor(STAT_THREADS) as pool:
            found = [e for part in pool.map(lambda part: [entry(rel) for rel in part],
                                            [rels[i:i + step] for i in range(0, len(rels), step)]) for e in part]
    entries = [e for e in found if e is not None]
    missing = [rel for rel, e in zip(rels, found, strict=True) if e is None]
    return entries, missing


GroupEntries = tuple[list[Entry], list[str]]


def _group_entries(project: Any, job: Any, group: Any) -> GroupEntries:
    """Entries of a group export (paths relative to it), and its missing data files."""
    data = group_data(project, group)
    files, missing = _group_files(project, data)
    return _group_generated(project, job, group, data) + files, missing


def _exported_groups(project: Any, job: Any) -> dict[str, GroupEntries | CsfsError]:
    """Each output group with metafiles: its entries, or why it cannot be exported."""
    out: dict[str, GroupEntries | CsfsError] = {}
    for g in job.groups:
        if any(r.metafiles for r in g.results):
            try:
                out[g.name] = _group_entries(project, job, g)
            except CsfsError as e:
                out[g.name] = e
    return out


def group_export_plan(project: Any, juid: str, group: Any) -> Plan:
    """The export of one output group: joined `_exported.cs`, `.csg`, data at project-relative paths."""
    job = _find_job(project, juid)
    check_exportable(job)
    g = _find_group(job, group)
    entries, missing = _group_entries(project, job, g)
    return Plan(group_export_name(job, g), _with_parents(entries, job_time(job)), missing)


def _check_job_export(job: Any) -> None:
    check_exportable(job)
    if not has_job_export(job):
        groups = ", ".join(g.name for g in job.groups) or "none"
        raise RefusedError(f"{job.uid} has no job.json (a legacy job known from its .csg files), so it has "
                           f"no job export; export its output groups instead (groups: {groups})")


def _job_own_entries(job: Any, mtime: float) -> list[Entry]:
    """The stripped job.json, events.bson and the gridfs_data/ tree of a job export."""
    jdir = os.fspath(job.dir)
    entries: list[Entry] = [_generated("job.json", dumps_json(exported_job_doc(job.doc)), mtime,
                                       sources=[os.path.join(jdir, "job.json")])]
    ev = _source_file("events.bson", os.path.join(jdir, "events.bson"))
    if ev is not None:
        entries.append(ev)
    entries.append(_dir("gridfs_data", mtime))
    gdir = os.path.join(jdir, "gridfs_data")
    if os.path.isdir(gdir):
        seen: set[tuple[int, int]] = set()      # folders entered: a link loop (`a -> .`) is entered once
        for root, dirs, files in os.walk(gdir, followlinks=True):
            try:
                st = os.stat(root)
            except OSError:
                dirs[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirs[:] = sorted(d for d in dirs if _new_folder(os.path.join(root, d), seen))
            rel_root = posixpath.normpath(posixpath.join("gridfs_data", os.path.relpath(root, gdir)))
            entries += [_dir(f"{rel_root}/{d}", mtime) for d in dirs]
            for f in sorted(files):
                e = _source_file(f"{rel_root}/{f}", os.path.join(root, f))
                if e is not None:
                    entries.append(e)
    return entries


def _job_plan(job: Any, groups: dict[str, GroupEntries | CsfsError]) -> Plan:
    """A job export from its own entries and its groups' (each in a folder `J87_<group>/`)."""
    mtime = job_time(job)
    entries = _job_own_entries(job, mtime)
    missing: list[str] = []
    for g in job.groups:
        got = groups.get(g.name)
        if isinstance(got, CsfsError):  # a broken group leaves the rest of the job exportable (virtually)
            missing.append(f"{g.name}: {got}")
        elif got is not None:
            prefix = group_export_name(job, g) + "/"
            entries.append(_dir(prefix[:-1], mtime))
            entries += [Entry(prefix + e.path, e.kind, e.size, e.mtime, e.source, e.generate, e.mode, e.sources)
                        for e in got[0]]
            missing += got[1]
    return Plan(job_export_name(job), _with_parents(entries, mtime), missing)


def job_export_plan(project: Any, juid: str) -> Plan:
    """The export of a job: stripped job.json, events.bson, gridfs_data/, one folder per output group."""
    job = _find_job(project, juid)
    _check_job_export(job)
    return _job_plan(job, _exported_groups(project, job))


def export_plans(project: Any, juid: str) -> dict[ExportKey, Plan | CsfsError]:
    """Every export of a job (`export_names`), each group's data planned once for all: its
    plan, or why it cannot be built."""
    job = _find_job(project, juid)
    check_exportable(job)
    groups = _exported_groups(project, job)
    mtime = job_time(job)
    out: dict[ExportKey, Plan | CsfsError] = {}
    for kind, name, group in export_names(job):
        try:
            if kind == "jobs":
                out[kind, name] = _job_plan(job, groups)
                continue
            got = groups.get(group or "") or NotFoundError(f"output group {group!r} has no result metafiles "
                                                          "to export")
            if isinstance(got, CsfsError):
                raise got
            out[kind, name] = Plan(name, _with_parents(got[0], mtime), got[1])
        except CsfsError as e:
            out[kind, name] = e
    return out


def render(project: Any, juid: str, group: str | None, rel: str) -> bytes:
    """The bytes of one generated entry at `rel` of a job export (`group` None) or a group
    export, made without planning the rest (no data file is looked at)."""
    job = _find_job(project, juid)
    if group is None:
        _check_job_export(job)
        if rel == "job.json":
            return dumps_json(exported_job_doc(job.doc))
        folder, _, rel = rel.partition("/")
        group = next((g.name for g in job.groups if group_export_name(job, g) == folder), None)
    else:
        check_exportable(job)
    g = _find_group(job, group or "")
    for e in _group_generated(project, job, g, group_data(project, g)):
        if e.path == rel and e.generate is not None:
            return e.generate()
    raise NotFoundError(f"{rel}: not a generated file of the export of {juid}")
