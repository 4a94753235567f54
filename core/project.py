"""Read-only model of a CryoSPARC project directory.

Understands the v4 layout (`CS-<slug>/`, `project.json`, `cs.lock`), the legacy
layout (`P12/`, `cryosparc_P12_J24_…` file names, no `project.json` needed, no
lock) and both job.json forms: v4 (`output_result_groups`/`output_results`,
`input_slot_groups`) and v5 (`spec.outputs[name].results[]`, `spec.inputs`).

Nothing here writes. Problems are collected, never raised for one job: a job with
a malformed job.json gets `job.error` and the other jobs load as usual.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

from . import safeio
from .errors import CsfsError, FormatError, NotFoundError
from .walk import walk_entries, walk_files

ACTIVE_STATUSES = frozenset({"queued", "launched", "started", "running", "waiting"})
FINAL_STATUSES = frozenset({"completed", "killed", "failed"})

JOB_DIR_RE = re.compile(r"^J(\d+)$")
LEGACY_DIR_RE = re.compile(r"^P(\d+)$")
# files every job dir holds besides its outputs
BOOKKEEPING = ("job.json", "events.bson", "job.log")
# the iteration number in a metafile name: J6_004_particles.cs, cryosparc_P12_J24_001_particles.cs
VERSION_RE = re.compile(r"(?:^|_)J\d+_(\d+)_")


@dataclass
class OutputResult:
    """One result slot of an output group (`particle.blob`) with its versions."""

    name: str
    type: str
    group_name: str
    versions: list[int]
    metafiles: list[str]
    num_items: list[int]
    passthrough: bool = False

    @property
    def final_metafile(self) -> str | None:
        """The metafile CryoSPARC uses: the first for a passthrough result, else the last."""
        if not self.metafiles:
            return None
        return self.metafiles[0] if self.passthrough else self.metafiles[-1]

    @property
    def final_version(self) -> int | None:
        if not self.versions:
            return None
        return self.versions[0] if self.passthrough else self.versions[-1]

    def metafile(self, version: int | str) -> str:
        """The metafile of `version` (an int, or "F" for the final one)."""
        if version == "F":
            mf = self.final_metafile
            if mf is None:
                raise NotFoundError(f"result {self.group_name}.{self.name} has no versions")
            return mf
        try:
            return self.metafiles[self.versions.index(int(version))]
        except (ValueError, IndexError):
            raise NotFoundError(f"result {self.group_name}.{self.name} has no version {version}; "
                                f"versions: {self.versions}") from None


@dataclass
class OutputGroup:
    """An output group of a job (`particles`, `volume`, …) and its results."""

    name: str
    type: str
    title: str = ""
    description: str = ""
    num_items: int = 0
    passthrough: bool = False
    results: list[OutputResult] = field(default_factory=list)

    def result(self, name: str) -> OutputResult:
        for r in self.results:
            if r.name == name:
                return r
        raise NotFoundError(f"output group {self.name} has no result {name!r}")

    @property
    def metafiles(self) -> list[str]:
        """Every metafile of every version of every result, deduplicated, order kept."""
        return list(dict.fromkeys(m for r in self.results for m in r.metafiles))


@dataclass
class InputRef:
    """One consumed result: which job/group/result and which version (int or "F")."""

    job_uid: str
    group_name: str
    result_name: str
    version: int | str = "F"
    input_name: str = ""
    slot_name: str = ""


class Job:
    """One job directory. `error` is set (and outputs left empty) when job.json is unusable."""

    def __init__(self, project_path: Path, uid: str, dir: Path) -> None:
        self.project_path = project_path
        self.uid = uid
        self.dir = dir
        self.doc: dict = {}
        self.error: str | None = None
        self.type = ""
        self.title = ""
        self.status = ""
        self.created_at: str | None = None
        self.completed_at: str | None = None
        self.groups: list[OutputGroup] = []
        self.inputs: list[InputRef] = []
        self.form = ""  # "v4" | "v5" | "" (no usable job.json)
        self.notes: list[str] = []

    def __repr__(self) -> str:
        return f"Job({self.uid}, {self.type!r}, {self.status!r}{', error' if self.error else ''})"

    @property
    def number(self) -> int:
        return int(self.uid[1:])

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def created_timestamp(self) -> float | None:
        return timestamp(self.created_at)

    @property
    def completed_timestamp(self) -> float | None:
        return timestamp(self.completed_at)

    def group(self, name: str) -> OutputGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise NotFoundError(f"{self.uid} has no output group {name!r}; "
                            f"groups: {', '.join(g.name for g in self.groups) or 'none'}")

    @property
    def results(self) -> list[OutputResult]:
        return [r for g in self.groups for r in g.results]

    @property
    def metafiles(self) -> list[str]:
        """All metafiles of all versions of all results (project-relative), order kept."""
        return list(dict.fromkeys(m for r in self.results for m in r.metafiles))

    @cached_property
    def problems(self) -> list[str]:
        """Non-fatal problems: missing metafiles, metafiles outside the project, dangling symlinks."""
        out: list[str] = list(self.notes)
        if self.error:
            out.append(self.error)
        for mf in self.metafiles:
            p = _inside(self.project_path, mf)
            if p is None:
                out.append(f"{self.uid}: metafile {mf} points outside the project")
            elif not p.is_file():
                out.append(f"{self.uid}: metafile {mf} is missing")
        for link in _dangling_links(self.dir):
            out.append(f"{self.uid}: dangling symlink {link.relative_to(self.project_path)} -> "
                       f"{os.readlink(link)}")
        return out

    # -- loading ---------------------------------------------------------------------------

    def _load(self, legacy: bool = False) -> None:
        path = self.dir / "job.json"
        try:
            doc = safeio.load_json(path)
        except NotFoundError:
            # legacy jobs may predate job.json: their .csg files still describe the outputs
            if not (legacy and self._load_csgs()):
                self.error = f"{self.uid}: job.json is missing"
            return
        except CsfsError as e:
            self.error = f"{self.uid}: job.json is {_short(_after_path(e))}"
            return
        if not isinstance(doc, dict):
            self.error = f"{self.uid}: job.json is not a JSON object"
            return
        self.doc = doc
        try:
            self._parse(doc)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            self.groups, self.inputs = [], []
            self.error = f"{self.uid}: job.json is malformed ({type(e).__name__}: {_short(e)})"

    def _load_csgs(self) -> bool:
        """Without job.json, read the outputs from the job's .csg files (old exports)."""
        from . import csg   # on use: opening a project needs neither yaml nor numpy

        paths = sorted(self.dir.glob("*.csg"))
        if not paths:
            return False
        self.notes.append(f"{self.uid}: job.json is missing; outputs read from its .csg files")
        for path in paths:
            try:
                c = csg.load(path)
                g = c.group
                group = OutputGroup(name=str(g.get("name") or path.stem), type=str(g.get("type") or ""),
                                    title=str(g.get("title") or ""), description=str(g.get("description") or ""))
                for slot, res in c.results.items():
                    mf = csg.resolve_metafile(path, res["metafile"])
                    rel = str(mf.relative_to(self.project_path))
                    m = VERSION_RE.search(mf.name)
                    n = int(res.get("num_items") or 0)
                    group.num_items = max(group.num_items, n)
                    group.results.append(OutputResult(
                        name=slot, type=str(res.get("type") or f"{group.type}.{slot}"), group_name=group.name,
                        versions=[int(m.group(1)) if m else 0], metafiles=[rel], num_items=[n],
                        passthrough="_passthrough_" in mf.name))
                group.passthrough = all(r.passthrough for r in group.results)
                self.groups.append(group)
            except (CsfsError, ValueError, KeyError) as e:
                self.notes.append(f"{self.uid}: {path.name}: {_short(e)}")
        return True

    def _parse(self, doc: dict) -> None:
        uid = doc.get("uid", self.uid)
        if uid != self.uid:
            raise ValueError(f"its uid is {uid!r} but the folder is {self.uid}")
        spec = doc.get("spec")
        self.form = "v5" if isinstance(spec, dict) and "outputs" in spec else "v4"
        self.type = str(doc.get("type") or (spec or {}).get("type") or doc.get("job_type") or "")
        self.title = str(doc.get("title") or "")
        self.status = str(doc.get("status") or "")
        self.created_at = iso_time(doc.get("created_at"))
        self.completed_at = iso_time(doc.get("completed_at"))
        if self.form == "v5":
            self.groups = _v5_groups(spec["outputs"])
            self.inputs = _v5_inputs(spec.get("inputs") or {})
        else:
            self.groups = _v4_groups(doc.get("output_result_groups") or [],
                                     doc.get("output_results") or [])
            self.inputs = _v4_inputs(doc.get("input_slot_groups") or [])


class Project:
    """A project directory opened read-only. Use `Project.open(path)`."""

    def __init__(self, path: Path, layout: str, doc: dict) -> None:
        self.path = path
        self.layout = layout
        self.doc = doc
        self.problems: list[str] = []
        self.workspaces: list[dict] = []
        self.jobs: dict[str, Job] = {}

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r}, {self.uid}, {self.layout}, {len(self.jobs)} jobs)"

    @property
    def uid(self) -> str:
        uid = self.doc.get("uid") if isinstance(self.doc, dict) else None
        if isinstance(uid, str) and uid:
            return uid
        m = LEGACY_DIR_RE.match(self.path.name)
        return self.path.name if m else ""

    @property
    def title(self) -> str:
        t = self.doc.get("title") if isinstance(self.doc, dict) else None
        return t if isinstance(t, str) and t else self.path.name

    @property
    def lock_path(self) -> Path:
        return self.path / "cs.lock"

    def job(self, uid: str) -> Job:
        uid = uid.strip().upper()
        if uid not in self.jobs:
            raise NotFoundError(f"{self.path.name} has no job {uid}; jobs: "
                                f"{', '.join(self.jobs) or 'none'}")
        return self.jobs[uid]

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Project":
        """Open a project directory (v4 or legacy). NotFoundError/FormatError if it is not one."""
        path = Path(path).expanduser().absolute()
        if not path.is_dir():
            raise NotFoundError(f"{path}: no such directory")
        job_dirs = _job_dirs(path)
        pj = path / "project.json"
        problems: list[str] = []
        doc: dict = {}
        if pj.exists():
            layout = "v4"
            try:
                doc = safeio.load_json(pj)
                if not isinstance(doc, dict):
                    raise ValueError("not a JSON object")
            except (CsfsError, ValueError) as e:
                why = _short(_after_path(e))
                doc = {}
                if not job_dirs:
                    raise FormatError(f"{pj}: not a valid project.json ({why})") from None
                problems.append(f"project.json is malformed ({why})")
        elif job_dirs and (LEGACY_DIR_RE.match(path.name) or _has_legacy_names(job_dirs)):
            layout = "legacy"
        else:
            raise NotFoundError(f"{path}: not a CryoSPARC project directory "
                                "(no project.json and no P<N>/J<N> legacy layout)")
        proj = cls(path, layout, doc)
        proj.problems = problems
        proj.workspaces = _read_workspaces(path / "workspaces.json", layout, problems)
        for uid, d in job_dirs:
            job = Job(path, uid, d)
            job._load(legacy=layout == "legacy")
            proj.jobs[uid] = job
        return proj

    def all_problems(self) -> list[str]:
        """Project problems followed by every job's problems."""
        return self.problems + [p for j in self.jobs.values() for p in j.problems]

    def consumers(self, job_uid: str) -> list[tuple[str, InputRef]]:
        """(consuming job uid, input ref) for every input connection naming `job_uid`."""
        return [(j.uid, ref) for j in self.jobs.values() for ref in j.inputs if ref.job_uid == job_uid]


# -- files referenced by metafiles ---------------------------------------------------------

def load_paths(cs_path: Path, slots: Sequence[str] | None = None) -> list[str]:
    """Raw values of the `*/path` columns of a .cs file (optionally only `slots`), unique, order kept."""
    from . import csfile

    cols = [name for name, *_ in csfile.info(cs_path).fields if name.endswith("/path")]
    if slots is not None:
        cols = [c for c in cols if c.rsplit("/", 1)[0] in slots]
    if not cols:
        return []
    out: dict[str, None] = {}
    for c in cols:
        values, _ = csfile.load_strings(cs_path, c)
        for v in values.tolist():
            if v:
                out[v.decode()] = None
    return list(out)


def referenced_files(project: Project, metafile: str, slots: Sequence[str] | None = None) -> list[str]:
    """Project-relative data paths named by a metafile's `*/path` columns.

    `metafile` is project-relative (as in job.json). Values starting with `>` are
    resolved against the metafile's folder. Deduplicated, order kept. A missing or
    unreadable metafile raises NotFoundError/FormatError.
    """
    mf = _inside(project.path, metafile)
    if mf is None:
        raise FormatError(f"metafile {metafile} points outside the project")
    if not mf.is_file():
        raise NotFoundError(f"metafile {metafile} is missing")
    try:
        raw = load_paths(mf, slots)
    except CsfsError:
        raise
    except (OSError, ValueError) as e:
        raise FormatError(f"{metafile}: cannot read ({_short(e)})") from None
    base = Path(metafile).parent
    out: dict[str, None] = {}
    for s in raw:
        rel = os.path.normpath(base / s[1:]) if s.startswith(">") else os.path.normpath(s)
        out[rel] = None
    return list(out)


def job_referenced_files(project: Project, job: Job) -> list[str]:
    """Data files named by any version of any result of `job` (missing metafiles skipped)."""
    out: dict[str, None] = {}
    for mf in job.metafiles:
        try:
            out.update(dict.fromkeys(referenced_files(project, mf)))
        except CsfsError:
            continue
    return list(out)


def unreferenced_files(project: Project, job: Job) -> list[str]:
    """Files in the job dir (project-relative, sorted) that no metafile of the job names.

    job.json, events.bson, job.log, gridfs_data/, the .csg files and the job's own
    metafiles are bookkeeping, not counted as unreferenced.
    """
    known = set(job_referenced_files(project, job)) | set(job.metafiles)
    rel_dir = job.dir.relative_to(project.path)
    known |= {str(rel_dir / n) for n in BOOKKEEPING}
    out = []
    for rel in walk_files(job.dir, project.path):
        if rel in known or rel.endswith(".csg") or rel.startswith(f"{rel_dir}/gridfs_data/"):
            continue
        out.append(rel)
    return sorted(out)


# -- time helpers ----------------------------------------------------------------------------

def iso_time(v: Any) -> str | None:
    """Normalise a job.json time (ISO string, {"$date": …}, epoch ms) to an ISO string."""
    if isinstance(v, dict):
        v = v.get("$date", v.get("$numberLong"))
        if isinstance(v, dict):
            v = v.get("$numberLong")
            v = int(v) if v is not None else None
    if v is None or v == "":
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        try:
            return _dt.datetime.fromtimestamp(v / 1000, _dt.timezone.utc).isoformat().replace("+00:00", "Z")
        except (OverflowError, ValueError, OSError):
            return None   # a time no calendar holds (1e300): unknown, not a traceback
    return str(v)


def timestamp(iso: str | None) -> float | None:
    """POSIX seconds of an ISO time from `iso_time` (naive times are UTC); None if unparsable."""
    if not iso:
        return None
    try:
        d = _dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return d.timestamp()


# -- parsing helpers -------------------------------------------------------------------------

def _name(v: Any, what: str) -> str:
    """A group or result name: a non-empty string (it becomes file names and field prefixes)."""
    if not isinstance(v, str) or not v:
        raise ValueError(f"{what} name {v!r} is not a non-empty string")
    return v


def _v4_groups(group_docs: list, result_docs: list) -> list[OutputGroup]:
    groups: dict[str, OutputGroup] = {}
    for g in group_docs:
        groups[_name(g["name"], "output group")] = OutputGroup(
            name=g["name"], type=str(g.get("type", "")), title=str(g.get("title") or ""),
            description=str(g.get("description") or ""), num_items=int(g.get("num_items") or 0),
            passthrough=bool(g.get("passthrough", False)))
    for r in result_docs:
        gname = r["group_name"]
        if gname not in groups:
            raise ValueError(f"result {r.get('name')} names unknown group {gname!r}")
        groups[gname].results.append(_result(r["name"], str(r.get("type", "")), gname, r))
    return list(groups.values())


def _v5_groups(outputs: dict) -> list[OutputGroup]:
    groups = []
    for name, o in outputs.items():
        _name(name, "output group")
        gtype = str(o.get("type", ""))
        g = OutputGroup(name=name, type=gtype, title=str(o.get("title") or ""),
                        description=str(o.get("description") or ""),
                        num_items=int(o.get("num_items") or 0),
                        passthrough=bool(o.get("passthrough")))
        for r in o.get("results") or []:
            g.results.append(_result(r["name"], f"{gtype}.{r.get('dtype', r['name'])}", name, r))
        groups.append(g)
    return groups


def _result(name: str, type: str, group_name: str, r: dict) -> OutputResult:
    _name(name, f"output result of {group_name}")
    versions = [int(v) for v in r.get("versions") or []]
    metafiles = [str(m) for m in r.get("metafiles") or []]
    num_items = [int(n) for n in r.get("num_items") or []]
    if len(metafiles) != len(versions):
        raise ValueError(f"result {group_name}.{name} has {len(versions)} versions "
                         f"but {len(metafiles)} metafiles")
    return OutputResult(name=name, type=type, group_name=group_name, versions=versions,
                        metafiles=metafiles, num_items=num_items,
                        passthrough=bool(r.get("passthrough", False)))


def _version(v: Any) -> int | str:
    return "F" if v in (None, "F") else int(v)


def _v4_inputs(slot_groups: list) -> list[InputRef]:
    refs = []
    for ig in slot_groups:
        for conn in ig.get("connections") or []:
            for s in conn.get("slots") or []:
                refs.append(InputRef(job_uid=s.get("job_uid", conn.get("job_uid")),
                                     group_name=s.get("group_name", conn.get("group_name")),
                                     result_name=s["result_name"], version=_version(s.get("version")),
                                     input_name=str(ig.get("name", "")),
                                     slot_name=str(s.get("slot_name") or "")))
    return refs


def _v5_inputs(inputs: dict) -> list[InputRef]:
    refs = []
    for iname, inp in inputs.items():
        for conn in inp.get("connections") or []:
            for r in conn.get("results") or []:
                refs.append(InputRef(job_uid=r.get("job_uid", conn.get("job_uid")),
                                     group_name=r.get("output", conn.get("output")),
                                     result_name=r["result"], version=_version(r.get("version")),
                                     input_name=iname, slot_name=str(r.get("name") or "")))
    return refs


def _job_dirs(path: Path) -> list[tuple[str, Path]]:
    found = []
    try:
        with os.scandir(path) as it:
            for e in it:
                m = JOB_DIR_RE.match(e.name)
                if m and e.is_dir():   # a job folder moved to other storage may be a symlink
                    found.append((int(m.group(1)), e.name, Path(e.path)))
    except OSError as e:
        raise NotFoundError(f"{path}: cannot list ({e.strerror})") from None
    return [(uid, p) for _, uid, p in sorted(found)]


def _has_legacy_names(job_dirs: list[tuple[str, Path]]) -> bool:
    for _, d in job_dirs[:5]:
        try:
            if any(n.startswith("cryosparc_P") for n in os.listdir(d)):
                return True
        except OSError:
            continue
    return False


def _read_workspaces(path: Path, layout: str, problems: list[str]) -> list[dict]:
    if not path.exists():
        if layout == "v4":
            problems.append("workspaces.json is missing")
        return []
    try:
        doc = safeio.load_json(path)
    except CsfsError as e:
        problems.append(f"workspaces.json is malformed ({_short(_after_path(e))})")
        return []
    if isinstance(doc, dict):
        doc = [dict(v, uid=v.get("uid", k)) if isinstance(v, dict) else {"uid": k} for k, v in doc.items()]
    if not isinstance(doc, list) or not all(isinstance(w, dict) for w in doc):
        problems.append("workspaces.json is not a list of workspaces")
        return []
    return doc


def _inside(root: Path, rel: str) -> Path | None:
    """root/rel if rel is relative and stays inside root (lexically), else None."""
    if not rel or os.path.isabs(rel):
        return None
    norm = os.path.normpath(rel)
    if norm == ".." or norm.startswith("../"):
        return None
    return root / norm


def _dangling_links(top: Path) -> list[Path]:
    return sorted(Path(e.path) for e in walk_entries(top)
                  if e.is_symlink() and not os.path.exists(e.path))


def _after_path(e: BaseException) -> str:
    """A CsfsError's message without the leading `path: ` (the caller names the file)."""
    return str(e).split(": ", 1)[-1] if isinstance(e, CsfsError) else str(e)


def _short(e: BaseException | str) -> str:
    s = str(e).splitlines()[0] if str(e) else type(e).__name__
    return s[:200]
