"""Imports: a result group (.csg), an exported job folder, or raw data, each into a new job.

The new job's data is referenced from its own directory (`J<M>/imported/...`):
symlinks by default, copies on request. Imported result groups keep their `uid`s.
Every job document goes through core.store (lock and archive checks, atomic writes).

Exports arrive from other labs, so they are untrusted (see `_Trust`): every file an
import reads, links or copies (metafiles, data, events.bson, gridfs_data) must resolve,
links followed, inside the export folder, inside the CryoSPARC project directory that
holds the export (a project's own exports link into it), or inside a location the user
names (`allow_from`, the CLI's --allow-from). It must be a regular file: FIFOs, devices
and sockets are refused. Hard links cannot be traced to their other names; with `copy`
a file of the export with more links than the export itself holds is refused, since
its bytes would be copied into the project under the project's permissions (linked
imports are safe: a link shares the file's own permissions).
"""
from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import csfile, csg, documents, rawfiles, safeio, store
from .cleanup import RECORD_KEY
from .documents import now_iso
from .errors import CsfsError, FormatError, NotFoundError, UsageError
from .exportplan import join_order
from .rawfiles import RawFile
from .walk import scan

if TYPE_CHECKING:
    from .instance import Instance
    from .project import Project

Progress = Callable[[int, "int | None"], None]

RAW_KINDS: dict[str, dict[str, Any]] = {
    "movies": {"job_type": "import_movies", "group": "imported_movies", "type": "exposure",
               "slot": "movie_blob", "title": "Import Movies"},
    "micrographs": {"job_type": "import_micrographs", "group": "imported_micrographs", "type": "exposure",
                    "slot": "micrograph_blob", "title": "Import Micrographs"},
    "particles": {"job_type": "import_particles", "group": "imported_particles", "type": "particle",
                  "slot": "blob", "title": "Import Particle Stack"},
    "volume": {"job_type": "import_volumes", "group": "imported_volume_1", "type": "volume",
               "slot": "map", "title": "Import 3D Volumes"},
}


@dataclass
class _Group:
    """An output group ready to be written into the new job."""

    name: str
    type: str
    title: str
    description: str
    data: np.ndarray                 # the joined dataset, paths already project-relative
    slots: dict[str, str]            # slot -> result type


# ---------------------------------------------------------------------------- untrusted exports

@dataclass
class _Trust:
    """Where an import may read: the export folder, its enclosing project, named locations."""

    export: str                               # real path of the export folder
    roots: list[str]                          # real paths files may resolve into
    copy: bool = False
    _names: dict[tuple[int, int], int] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, folder: Path, allow_from: Sequence[str | os.PathLike] = (), copy: bool = False) -> _Trust:
        export = os.path.realpath(folder)
        roots = [export]
        for up in [folder, *folder.parents]:
            if (up / "project.json").is_file():     # the export lies in a project: its own links are fine
                roots.append(os.path.realpath(up))
                break
        for a in allow_from:
            if not os.path.isdir(a):
                raise NotFoundError(f"--allow-from {a}: no such directory")
            roots.append(os.path.realpath(a))
        return cls(export, roots, copy)

    def check_file(self, path: str | os.PathLike, what: str) -> Path:
        """The real path of `path`, a regular file inside the trusted roots (FormatError if not)."""
        real = os.path.realpath(path)
        if not any(_under(real, r) for r in self.roots):
            raise FormatError(f"{what}: {path} resolves to {real}, outside the export folder {self.export}; "
                              "refusing it (name that location with --allow-from DIR if you trust it)")
        try:
            st = os.stat(real)
        except OSError:
            raise NotFoundError(f"{what}: {path} is missing; nothing imported") from None
        if stat.S_ISDIR(st.st_mode):
            raise NotFoundError(f"{what}: {path} is a directory, not a file; nothing imported")
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(f"{what}: {path} is {safeio.kind_of(st.st_mode)}, not a regular file; refusing it")
        if self.copy and st.st_nlink > 1 and _under(real, self.export) and \
                st.st_nlink > self._names_in_export().get((st.st_dev, st.st_ino), 0):
            raise FormatError(f"{what}: {path} is hard-linked to a file outside the export folder; refusing "
                              "to copy it (import without --copy, or copy the export with `cp -rL` first)")
        return Path(real)

    def _names_in_export(self) -> dict[tuple[int, int], int]:
        if self._names is None:
            self._names = {}
            for e in scan(self.export, lambda e: e.is_dir(follow_symlinks=False)):
                if e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    key = (st.st_dev, st.st_ino)
                    self._names[key] = self._names.get(key, 0) + 1
        return self._names

    def copy_tree(self, src: Path, dst: Path, what: str) -> None:
        """Copy a folder of the export (gridfs_data): regular files only, links resolved and checked;
        links to folders (loops such as `a -> .`) are not followed."""
        self.check_tree(src, what)
        todo = [(src, dst)]
        while todo:
            s, d = todo.pop()
            d.mkdir(parents=True, exist_ok=True)
            for e in sorted(os.scandir(s), key=lambda e: e.name):
                if e.is_dir(follow_symlinks=False):
                    todo.append((Path(e.path), d / e.name))
                elif e.is_symlink() and os.path.isdir(e.path):
                    continue        # a link to a folder only repeats what is there (or loops)
                else:
                    shutil.copyfile(self.check_file(e.path, what), d / e.name)

    def check_tree(self, src: Path, what: str) -> None:
        """What `copy_tree` would refuse, checked before anything is created."""
        real = os.path.realpath(src)
        if not any(_under(real, r) for r in self.roots):
            raise FormatError(f"{what}: {src} resolves to {real}, outside the export folder {self.export}; "
                              "refusing it (name that location with --allow-from DIR if you trust it)")
        if not os.path.isdir(real):
            raise FormatError(f"{what}: {src} is not a folder")
        for e in scan(src, lambda e: e.is_dir(follow_symlinks=False)):
            if not e.is_dir(follow_symlinks=False) and not (e.is_symlink() and os.path.isdir(e.path)):
                self.check_file(e.path, what)


def _under(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


# ---------------------------------------------------------------------------- data placement

def _place(sources: dict[str, Path], jdir: Path, copy: bool, progress: Progress | None,
           trust: _Trust | None = None) -> None:
    """Create jdir/<rel> for each rel -> source: a symlink (relative when the source lies in
    the project itself, so the project can move; else absolute), or a copy. With `trust`
    (an untrusted export), each source is checked again right before it is used."""
    project_real = os.path.realpath(jdir.parent) + os.sep
    for i, (rel, src) in enumerate(sources.items()):
        dst = jdir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        real = str(trust.check_file(src, "data file")) if trust else os.path.realpath(src)
        if copy:
            shutil.copy2(real, dst)
        elif real.startswith(project_real):
            os.symlink(os.path.relpath(real, os.path.realpath(dst.parent)), dst)
        else:
            os.symlink(real, dst)
        if progress:
            progress(i + 1, len(sources))


def _safe_rel(value: str, what: str) -> str:
    rel = posixpath.normpath(value)
    if rel == ".." or rel.startswith(("/", "../")):
        raise FormatError(f"{what}: data path {value!r} points outside the export; refusing it")
    return rel


def _rewrite_paths(arr: np.ndarray, base: Path, juid: str, what: str,
                   sources: dict[str, Path]) -> np.ndarray:
    """Copy of `arr` whose `*/path` values name `J<M>/imported/<rel>`; fills `sources` rel -> file."""
    descr = []
    new_cols: dict[str, np.ndarray | None] = {}
    for name in arr.dtype.names or ():
        sub = arr.dtype[name]
        if name not in csfile.path_fields(arr.dtype):
            descr.append((name, sub.base.str, sub.shape) if sub.shape else (name, sub.str))
            continue
        uniq, inverse = np.unique(np.asarray(arr[name]), return_inverse=True)
        mapped = []
        for v in uniq:
            s = v.decode("utf-8", "surrogateescape")
            if not s:
                mapped.append(b"")
                continue
            rel = _safe_rel(s[1:] if s.startswith(">") else s, what)
            sources.setdefault(f"imported/{rel}", base / rel if s.startswith(">") else _find_base(base, rel) / rel)
            mapped.append(f"{juid}/imported/{rel}".encode("utf-8", "surrogateescape"))
        width = max([len(m) for m in mapped] + [0]) + 1
        descr.append((name, f"|S{width}"))
        new_cols[name] = np.array(mapped, dtype=f"|S{width}")[inverse.reshape(-1)] if mapped else None
    out = np.zeros(len(arr), dtype=np.dtype(descr))
    for name in arr.dtype.names or ():
        if name in new_cols:
            if new_cols[name] is not None:
                out[name] = new_cols[name]
        else:
            out[name] = np.asarray(arr[name])
    return out


def _find_base(folder: Path, rel: str) -> Path:
    """Where a path without '>' is relative to: the .csg's folder, or (for a job's own .csg
    inside a project) the nearest ancestor holding it, i.e. the project directory."""
    for base in (folder, *list(folder.parents)[:2]):
        if os.path.lexists(base / rel):
            return base
    return folder


_GROUP_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _read_csg_group(csg_path: Path, trust: _Trust) -> tuple[csg.Csg, np.ndarray, dict[str, str]]:
    """A .csg's group joined by uid across its metafiles: (csg, dataset, slot -> result type)."""
    c = csg.load(trust.check_file(csg_path, "result group") if os.path.islink(csg_path) else csg_path)
    if not _GROUP_NAME_RE.fullmatch(c.group["name"]):
        raise FormatError(f"{csg_path}: group name {c.group['name']!r} is not a plain name "
                          "(letters, digits, _ . -); it would name the new job's files")
    arrays = {m: csfile.load(trust.check_file(csg.resolve_metafile(csg_path, m), f"{csg_path}: metafile {m}"))
              for m in c.metafiles()}
    for m, arr in arrays.items():
        if "uid" not in (arr.dtype.names or ()):
            raise FormatError(f"{csg_path}: metafile {m} has no uid field")
    slots = list(c.results)
    for s in slots:
        if not any(n.startswith(f"{s}/") for n in arrays[c.results[s]["metafile"]].dtype.names or ()):
            raise FormatError(f"{csg_path}: metafile {c.results[s]['metafile']} has no {s}/ fields "
                              f"for result {s!r}")
    order, rows = join_order([arrays[c.results[s]["metafile"]]["uid"] for s in slots])
    descr: list[tuple] = [("uid", "<u8")]
    picks: list[tuple[str, np.ndarray, np.ndarray]] = []
    for s, idx in zip(slots, order, strict=True):
        src = arrays[c.results[s]["metafile"]]
        for name in src.dtype.names or ():
            if name.startswith(s + "/"):
                sub = src.dtype[name]
                descr.append((name, sub.base.str, sub.shape) if sub.shape else (name, sub.str))
                picks.append((name, src, idx))
    out = np.zeros(rows, dtype=np.dtype(descr))
    first = arrays[c.results[slots[0]]["metafile"]]
    out["uid"] = np.asarray(first["uid"])[order[0]]
    for name, src, idx in picks:
        out[name] = np.asarray(src[name])[idx]
    gtype = str(c.group.get("type") or "")
    types = {s: str(c.results[s].get("type") or f"{gtype}.{s}") for s in slots}
    return c, out, types


# ---------------------------------------------------------------------------- job documents

def _write_outputs(project_path: Path, juid: str, jdir: Path, groups: list[_Group]) -> list[documents.NewGroup]:
    """Write each group's .cs and .csg into the job dir; return the groups for the job document."""
    out = []
    for g in groups:
        cs_rel = f"{juid}/{juid}_{g.name}.cs"
        csfile.save(project_path / cs_rel, g.data)
        rows = len(g.data)
        csg.save(jdir / f"{juid}_{g.name}.csg", csg.Csg(
            created=now_iso(), group={"name": g.name, "title": g.title, "type": g.type,
                                            "description": g.description},
            results={s: {"metafile": f">{juid}_{g.name}.cs", "num_items": rows, "type": t}
                     for s, t in g.slots.items()},
            version="csfs"))
        out.append(documents.NewGroup(g.name, g.type, g.title, g.description, rows, dict(g.slots), cs_rel))
    return out


def _new_job(instance: Instance, project: Project, type: str, title: str, extra: dict | None,
             fill: Callable[[str, Path], tuple[list[_Group], dict]]) -> str:
    """Create a job (in the project's document form), let `fill(juid, jdir)` place data and
    return its groups, then complete it."""
    juid, jdir = store.new_job(instance, project, type, title, extra, form=project.form)
    doc = _read_doc(jdir)
    try:
        with store.all_or_nothing(f"importing into {juid}", f"{juid} is marked failed; run the import again") \
                as undo:
            undo.keep(f"creating {juid}")
            (jdir / "events.bson").touch()
            (jdir / "job.log").touch()
            groups, more = fill(juid, jdir)
            new_groups = _write_outputs(Path(project.path), juid, jdir, groups)
            done = documents.with_outputs(documents.set_status({**doc, **more}, "completed", now_iso()), new_groups)
            store.commit(instance, project, job_docs={juid: done})
    except BaseException as e:
        doc = documents.set_status(doc, "failed", now_iso())
        doc["errors_run"] = [{"message": str(e), "warning": False}]
        try:
            store.commit(instance, project, job_docs={juid: doc})
        except CsfsError:
            pass
        raise
    return juid


def _read_doc(jdir: Path) -> dict:
    from .atomic import read_json
    return read_json(jdir / "job.json")


def _open(instance: Instance, ref: str) -> Project:
    from .project import Project
    rec = instance.resolve(ref)
    store.check_writable(instance, rec.path)
    return Project.open(rec.path)


def _check_sources(sources: dict[str, Path], trust: _Trust) -> None:
    missing = [str(p) for p in sources.values() if not os.path.exists(p)]
    if missing:
        raise NotFoundError(f"{len(missing)} data file(s) to import are missing "
                            f"(first: {missing[0]}); nothing imported")
    for p in sources.values():
        trust.check_file(p, "data file")


# ---------------------------------------------------------------------------- public

def import_group(instance: Instance, ref: str, csg_path: str | os.PathLike, copy: bool = False,
                 progress: Progress | None = None, allow_from: Sequence[str | os.PathLike] = ()) -> str:
    """Import a result group (.csg) as a new `import_result_group` job; returns its uid.

    Only files inside the .csg's folder (or its enclosing project, or `allow_from`) are used."""
    csg_path = Path(csg_path).absolute()
    project = _open(instance, ref)
    trust = _Trust.of(csg_path.parent, allow_from, copy)
    c, data, slots = _read_csg_group(csg_path, trust)
    probe: dict[str, Path] = {}
    _rewrite_paths(data, csg_path.parent, "J0", str(csg_path), probe)
    _check_sources(probe, trust)
    gname = str(c.group["name"])

    def fill(juid: str, jdir: Path) -> tuple[list[_Group], dict]:
        sources: dict[str, Path] = {}
        arr = _rewrite_paths(data, csg_path.parent, juid, str(csg_path), sources)
        _place(sources, jdir, copy, progress, trust)
        g = _Group(gname, str(c.group.get("type") or ""), str(c.group.get("title") or gname),
                   str(c.group.get("description") or ""), arr, slots)
        return [g], {"imported_from": str(csg_path)}

    return _new_job(instance, project, "import_result_group", f"Import {gname}",
                    documents.params_doc(project.form, {"blob_path": str(csg_path)}), fill)


def import_job(instance: Instance, ref: str, exported_dir: str | os.PathLike, copy: bool = False,
               progress: Progress | None = None, allow_from: Sequence[str | os.PathLike] = ()) -> str:
    """Import an exported job folder (`J87_homo_refine/`) as a new job; returns its uid.

    Only files inside that folder (or its enclosing project, or `allow_from`) are used."""
    from .atomic import read_json

    src = Path(exported_dir).absolute()
    if not src.is_dir():
        raise NotFoundError(f"{src}: no such folder")
    trust = _Trust.of(src, allow_from, copy)
    doc = read_json(trust.check_file(src / "job.json", "job document"))
    try:
        documents.imported_job_extra(doc, "v4")  # refuses what is not a job document
    except FormatError as e:
        raise FormatError(f"{src}/job.json: {e}") from None
    jtype = documents.job_type(doc)
    if not _GROUP_NAME_RE.fullmatch(jtype):
        raise FormatError(f"{src}/job.json: job type {jtype!r} is not a plain name")
    csgs = sorted(src.glob("*/*_exported.csg"))
    for p in csgs:
        trust.check_file(p, "result group")
    events, gridfs = src / "events.bson", src / "gridfs_data"
    if os.path.lexists(events):
        trust.check_file(events, "events")
    if os.path.lexists(gridfs):
        trust.check_tree(gridfs, "gridfs_data")
    project = _open(instance, ref)
    loaded = [(p, *_read_csg_group(p, trust)) for p in csgs]
    names = [str(c.group["name"]) for _, c, _, _ in loaded]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise FormatError(f"{src}: output group {twice[0]!r} is exported twice (a copied group folder?); "
                          "remove the extra folder")
    probe: dict[str, Path] = {}
    for p, _, data, _ in loaded:
        _rewrite_paths(data, p.parent, "J0", str(p), probe)
    _check_sources(probe, trust)
    keep = {k: v for k, v in documents.imported_job_extra(doc, project.form).items() if k != RECORD_KEY}
    keep["imported_from"] = {"project_uid": doc.get("project_uid"), "job_uid": doc.get("uid"), "path": str(src)}

    def fill(juid: str, jdir: Path) -> tuple[list[_Group], dict]:
        if os.path.lexists(events):
            shutil.copyfile(trust.check_file(events, "events"), jdir / "events.bson")
        if os.path.lexists(gridfs):
            trust.copy_tree(gridfs, jdir / "gridfs_data", "gridfs_data")
        groups = []
        sources: dict[str, Path] = {}
        for p, c, data, slots in loaded:
            arr = _rewrite_paths(data, p.parent, juid, str(p), sources)
            name = str(c.group["name"])
            groups.append(_Group(name, str(c.group.get("type") or ""), str(c.group.get("title") or name),
                                 str(c.group.get("description") or ""), arr, slots))
        _place(sources, jdir, copy, progress, trust)
        return groups, {}

    return _new_job(instance, project, jtype, str(doc.get("title") or jtype), keep, fill)


def raw_dataset(kind: str, juid: str, raws: list[RawFile], rng: np.random.Generator) -> np.ndarray:
    """The dataset an import job of `kind` outputs for `raws` (linked as J<M>/imported/<name>)."""
    slot = RAW_KINDS[kind]["slot"]
    infos = [(r.shape, r.psize) for r in raws]
    paths = [f"{juid}/imported/{r.path.name}".encode() for r in raws]
    width = max(len(p) for p in paths) + 1
    if kind == "particles":
        counts = [max(shape[0], 1) for shape, _ in infos]
        n = sum(counts)
        arr = np.zeros(n, dtype=[("uid", "<u8"), (f"{slot}/path", f"|S{width}"), (f"{slot}/idx", "<u4"),
                                 (f"{slot}/shape", "<u4", (2,)), (f"{slot}/psize_A", "<f4"),
                                 (f"{slot}/sign", "<f4")])
        arr[f"{slot}/path"] = np.repeat(np.array(paths), counts)
        arr[f"{slot}/idx"] = np.concatenate([np.arange(c) for c in counts])
        arr[f"{slot}/shape"] = np.repeat(np.array([s[1:] for s, _ in infos]), counts, axis=0)
        arr[f"{slot}/psize_A"] = np.repeat([p for _, p in infos], counts)
        arr[f"{slot}/sign"] = -1.0
    else:
        dims = 2 if kind == "micrographs" else 3
        arr = np.zeros(len(raws), dtype=[("uid", "<u8"), (f"{slot}/path", f"|S{width}"),
                                          (f"{slot}/shape", "<u4", (dims,)), (f"{slot}/psize_A", "<f4")])
        arr[f"{slot}/path"] = paths
        arr[f"{slot}/shape"] = [s[-dims:] for s, _ in infos]
        arr[f"{slot}/psize_A"] = [p for _, p in infos]
    arr["uid"] = rng.integers(1, 2**63, len(arr), dtype=np.uint64)
    return arr


def import_raw(instance: Instance, ref: str, kind: str, paths: Sequence[str | os.PathLike],
               progress: Progress | None = None, report: dict | None = None) -> str:
    """An import job holding symlinks to raw data (movies, micrographs, particle stacks, volumes).

    `paths` are files, folders (their files of the kind: see core.rawfiles.PATTERNS) or glob
    patterns; every file's header is checked first. `report`, if given, receives
    `file_count`, `skipped` (paths a folder held that are not of the kind) and `patterns`.
    """
    if kind not in RAW_KINDS:
        raise UsageError(f"--kind must be one of {', '.join(RAW_KINDS)}, not {kind!r}")
    spec = RAW_KINDS[kind]
    selection = rawfiles.select(kind, paths)
    raws = selection.files
    files = [r.path for r in raws]
    project = _open(instance, ref)
    if report is not None:
        report.update(file_count=len(raws), skipped=[str(p) for p in selection.skipped],
                      patterns=selection.patterns)

    def fill(juid: str, jdir: Path) -> tuple[list[_Group], dict]:
        _place({f"imported/{f.name}": f for f in files}, jdir, False, progress)
        data = raw_dataset(kind, juid, raws, np.random.default_rng())
        g = _Group(spec["group"], spec["type"], spec["title"].replace("Import ", "Imported "), "", data,
                   {spec["slot"]: f"{spec['type']}.{spec['slot']}"})
        return [g], {}

    return _new_job(instance, project, spec["job_type"], spec["title"],
                    documents.params_doc(project.form, {"blob_paths": [str(f) for f in files]}), fill)
