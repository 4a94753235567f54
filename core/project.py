"""Read-only model of a CryoSPARC project directory.

Understands the v4 layout (`CS-<slug>/`, `project.json`, `cs.lock`), the legacy
layout (`P12/`, `cryosparc_P12_J24_…` file names, no `project.json` needed, no
lock) and both job.json forms: v4 (`output_result_groups`/`output_results`,
`input_slot_groups`) and v5 (`spec.outputs[name].results[]`, `spec.inputs`).

Nothing here writes. Problems are collected, never raised for one job: a job with
a malformed job.json gets `job.error` and the other jobs load as usual.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from . import documents, ids, safeio
from .documents import InputRef, OutputGroup, OutputResult, parse_time
from .errors import CsfsError, FormatError, NotFoundError
from .problems import job_problems
from .walk import inside

ACTIVE_STATUSES = frozenset({"queued", "launched", "started", "running", "waiting"})
FINAL_STATUSES = frozenset({"completed", "killed", "failed"})

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
        self.form = ""  # "v4" | "v5" | "csg" (legacy, read from its .csg files) | "" (unusable)
        self.raw: bytes | None = None  # job.json's bytes, when it could be read
        self.notes: list[str] = []      # how the job was read, when not from its job.json
        self.read_problems: list[str] = []  # .csg files that could not be read

    def __repr__(self) -> str:
        return f"Job({self.uid}, {self.type!r}, {self.status!r}{', error' if self.error else ''})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def created_timestamp(self) -> float | None:
        return parse_time(self.created_at)

    @property
    def completed_timestamp(self) -> float | None:
        return parse_time(self.completed_at)

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
        """What is wrong with the job's documents and files (core/problems.py), in words."""
        return [p.message for p in job_problems(self.project_path, self)]

    # -- loading ---------------------------------------------------------------------------

    def _load(self, legacy: bool = False) -> None:
        path = self.dir / "job.json"
        try:
            self.raw = safeio.read_bytes(path)      # regular files only, bounded
            doc = safeio.parse_json(self.raw, path)
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
            info = documents.read_job(doc, self.uid)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            self.error = f"{self.uid}: job.json is malformed ({type(e).__name__}: {_short(e)})"
            return
        self.form, self.type, self.title, self.status = info.form, info.type, info.title, info.status
        self.created_at, self.completed_at = info.created_at, info.completed_at
        self.groups, self.inputs = info.groups, info.inputs

    def _load_csgs(self) -> bool:
        """Without job.json, read the outputs from the job's .csg files (legacy jobs)."""
        from . import csg  # on use: opening a project needs neither yaml nor numpy

        paths = sorted(self.dir.glob("*.csg"))
        if not paths:
            return False
        # CryoSPARC writes a job's .csg files when its outputs are final: the job completed
        self.form, self.status = "csg", "completed"
        self.notes.append(f"{self.uid}: no job.json (a legacy job); outputs read from its .csg files")
        for path in paths:
            try:
                c = csg.load(path)
                g = c.group
                group = OutputGroup(name=str(g.get("name") or path.stem), type=str(g.get("type") or ""),
                                    title=str(g.get("title") or ""), description=str(g.get("description") or ""))
                for slot, res in c.results.items():
                    mf = csg.resolve_metafile(path, res["metafile"])
                    rel = str(mf.relative_to(self.project_path))
                    n = int(res.get("num_items") or 0)
                    group.num_items = max(group.num_items, n)
                    group.results.append(OutputResult(
                        name=slot, type=str(res.get("type") or f"{group.type}.{slot}"), group_name=group.name,
                        versions=[documents.metafile_version(mf.name) or 0], metafiles=[rel], num_items=[n],
                        passthrough="_passthrough_" in mf.name))
                if group.results and all(r.passthrough for r in group.results):
                    group.passthrough = "input"
                self.groups.append(group)
            except (CsfsError, ValueError, KeyError) as e:
                self.read_problems.append(f"{self.uid}: {path.name}: {_short(e)}")
        return True

    def may_use(self, producer: Job) -> bool:
        """Could this job's inputs name versions of `producer`'s outputs?

        False when its inputs are known (they are then in `inputs`), or for a job read from
        .csg files (what it uses is named by its metafiles). For an unreadable job.json: if
        it is a whole JSON object, True unless its bytes never name the producer; if it is
        not (missing, truncated), True unless the producer's own `children` list, which
        CryoSPARC keeps, leaves this job out."""
        if not self.error:
            return False
        if self.doc and self.raw is not None:
            return f'"{producer.uid}"'.encode() in self.raw
        children = producer.doc.get("children")
        if isinstance(children, list) and all(isinstance(c, str) for c in children):
            return self.uid in children
        return True


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
        return self.path.name if ids.is_project(self.path.name) else ""

    @property
    def title(self) -> str:
        t = self.doc.get("title") if isinstance(self.doc, dict) else None
        return t if isinstance(t, str) and t else self.path.name

    @property
    def form(self) -> str:
        """The document form of new jobs: "v5" when the project or most of its jobs are v5, else "v4"."""
        if documents.major_version(self.doc.get("last_dumped_version") or self.doc.get("created_at_version")) == 5:
            return "v5"
        forms = [j.form for j in self.jobs.values() if j.form in ("v4", "v5")]
        return "v5" if forms and forms.count("v5") * 2 > len(forms) else "v4"

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
    def open(cls, path: str | os.PathLike) -> Project:
        """Open a project directory (v4 or legacy). NotFoundError/FormatError if it is not one."""
        path = Path(path).expanduser().absolute()
        if not path.is_dir():
            raise NotFoundError(f"{path}: no such directory")
        job_dirs = _job_dirs(path)
        pj = path / "project.json"
        problems: list[str] = []
        doc: dict = {}
        legacy = bool(job_dirs) and bool(ids.is_project(path.name) or _has_legacy_names(job_dirs))
        if pj.exists():
            # a legacy project keeps its layout once attached (attach writes project.json)
            layout = "legacy" if legacy else "v4"
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
        elif legacy:
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

    cols = [name for name, *_ in csfile.info(cs_path).fields if csfile.is_path_field(name)]
    if slots is not None:
        cols = [c for c in cols if c.rsplit("/", 1)[0] in slots]
    if not cols:
        return []
    out: dict[str, None] = {}
    for c in cols:
        values, _ = csfile.load_strings(cs_path, c)
        for v in values.tolist():
            if v:
                out[v.decode("utf-8", "surrogateescape")] = None   # file names need not be UTF-8
    return list(out)


def referenced_files(project: Project, metafile: str, slots: Sequence[str] | None = None) -> list[str]:
    """Project-relative data paths named by a metafile's `*/path` columns.

    `metafile` is project-relative (as in job.json). Values starting with `>` are
    resolved against the metafile's folder. Deduplicated, order kept. A missing or
    unreadable metafile raises NotFoundError/FormatError.
    """
    mf = inside(project.path, metafile)
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


# -- layout helpers --------------------------------------------------------------------------

def _job_dirs(path: Path) -> list[tuple[str, Path]]:
    found = []
    try:
        with os.scandir(path) as it:
            for e in it:
                num = ids.job_num(e.name)
                if num is not None and e.is_dir():   # a job folder moved to other storage may be a symlink
                    found.append((num, e.name, Path(e.path)))
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
        return documents.read_workspaces(safeio.load_json(path))
    except (CsfsError, ValueError) as e:
        problems.append(f"workspaces.json is malformed ({_short(_after_path(e))})")
        return []


def _after_path(e: BaseException) -> str:
    """A CsfsError's message without the leading `path: ` (the caller names the file)."""
    return str(e).split(": ", 1)[-1] if isinstance(e, CsfsError) else str(e)


def _short(e: BaseException | str) -> str:
    s = str(e).splitlines()[0] if str(e) else type(e).__name__
    return s[:200]
