"""Clear intermediate results: delete the files of result versions nothing needs.

For each output result of a job, the final version and every version that another
job's input connection names are kept; the metafiles of the other versions, and the
data files only they reference, are deleted. Only jobs in a final state are touched,
and only regular files inside the job's own directory are ever deleted.
"""
from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import documents, faults
from .errors import ActiveJobError, CsfsError, RefusedError

Progress = Callable[[int, "int | None"], None]
RECORD_KEY = "csfs_intermediate_cleared"


@dataclass
class ClearFile:
    path: str  # project-relative
    bytes: int


@dataclass
class JobClear:
    """What clearing one job removes (or removed)."""

    job: str
    versions: dict[str, list[int]] = field(default_factory=dict)  # "group.result" -> versions
    files: list[ClearFile] = field(default_factory=list)
    skipped: str | None = None  # why the job was not touched

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def as_dict(self) -> dict:
        return {**asdict(self), "bytes": self.bytes}


def kept_versions(project: Any, job: Any) -> dict[tuple[str, str], set[int]]:
    """(group, result) -> versions to keep: the final one and those other jobs' inputs name."""
    keep: dict[tuple[str, str], set[int]] = {}
    consumers = project.consumers(job.uid)
    for g in job.groups:
        for r in g.results:
            k = keep.setdefault((g.name, r.name), set())
            if r.final_version is not None:
                k.add(r.final_version)
            for _, ref in consumers:
                if ref.group_name == g.name and ref.result_name == r.name:
                    if ref.version == "F":
                        if r.final_version is not None:
                            k.add(r.final_version)
                    else:
                        k.add(int(ref.version))
    return keep


def _referenced(project: Any, metafile: str, memo: dict[str, list[str] | None]) -> list[str] | None:
    """Data files a metafile names, None if it cannot be read (several results usually share
    one metafile: read it once)."""
    from .project import referenced_files
    if metafile not in memo:
        try:
            memo[metafile] = referenced_files(project, metafile)
        except CsfsError:
            memo[metafile] = None
    return memo[metafile]


def unknown_consumers(project: Any, job: Any) -> list[str]:
    """Other jobs that cannot be read and may consume `job` (see Job.may_use): which of its
    versions they use is unknown. Unreadable jobs that never name `job` do not count."""
    return [j.uid for j in project.jobs.values() if j.uid != job.uid and j.may_use(job.uid)]


def _csg_job_files(project: Any, job: Any, memo: dict[str, list[str] | None]) -> set[str]:
    """Files that jobs read from .csg files (legacy jobs without job.json, whose inputs are
    unknown) name through their metafiles: what they use of `job` is kept."""
    out: set[str] = set()
    for j in project.jobs.values():
        if j.uid != job.uid and j.form == "csg":
            for mf in j.metafiles:
                out.add(os.path.normpath(mf))
                out.update(_referenced(project, mf, memo) or [])
    return out


def clear_plan(project: Any, job: Any) -> JobClear:
    """What clearing `job` would delete (computed only; nothing changes)."""
    out = JobClear(job.uid)
    unknown = unknown_consumers(project, job)
    if unknown:
        out.skipped = (f"the job.json of {', '.join(unknown)} cannot be read, so which versions of "
                       f"{job.uid} they use is unknown; fix it (csfs verify) before clearing")
        return out
    keep = kept_versions(project, job)
    drop: list[tuple[str, int, str]] = []
    kept_metafiles: list[str] = []
    for g in job.groups:
        for r in g.results:
            for v, mf in zip(r.versions, r.metafiles):
                if r.passthrough:
                    # passthrough data comes from the job's inputs: it cannot name the files
                    # this job wrote for its own iterations, so it need not be read here
                    continue
                if v in keep[(g.name, r.name)]:
                    kept_metafiles.append(os.path.normpath(mf))
                else:
                    drop.append((f"{g.name}.{r.name}", v, mf))
    if not drop:
        return out  # nothing to clear: no metafile needs reading
    root = Path(project.path)
    jrel = os.path.relpath(job.dir, root)
    memo: dict[str, list[str] | None] = {}
    candidates: dict[str, None] = {}
    for key, v, mf in drop:
        out.versions.setdefault(key, []).append(v)
        for rel in [os.path.normpath(mf)] + (_referenced(project, mf, memo) or []):
            if rel.startswith(jrel + "/"):
                candidates.setdefault(rel, None)
    protected = set(kept_metafiles) | _csg_job_files(project, job, memo)
    candidates = {rel: None for rel in candidates if rel not in protected}
    if candidates:
        for mf in dict.fromkeys(kept_metafiles):
            refs = _referenced(project, mf, memo)
            if refs is None:
                return JobClear(job.uid, skipped=f"{mf}, of a version that is kept, cannot be read, so the "
                                                 "files it needs are unknown; fix it (csfs verify) first")
            for rel in refs:
                candidates.pop(rel, None)
    jreal = os.path.realpath(job.dir)
    seen: set[tuple[int, int]] = set()
    for rel in candidates:
        path = root / rel
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
            continue
        real_parent = os.path.realpath(path.parent)
        if real_parent != jreal and not real_parent.startswith(jreal + os.sep):
            continue
        seen.add((st.st_dev, st.st_ino))
        out.files.append(ClearFile(rel, st.st_size))
    return out


def _check_job(job: Any) -> None:
    if job.is_active:
        raise ActiveJobError(f"{job.uid} is {job.status}; clear its intermediate results once it has finished")
    if not job.is_final:
        raise RefusedError(f"{job.uid} is {job.status or 'of unknown status'}; only completed, killed "
                           "or failed jobs are cleared")
    if job.error:
        raise RefusedError(f"{job.uid}: {job.error}")


def clear_intermediate(instance: Any, ref: str, juid: str | None = None, dry_run: bool = False,
                       progress: Progress | None = None) -> list[JobClear]:
    """Clear one job (`juid`) or every final-state job of a project; returns what was (or would be) cleared."""
    from . import sizes, store
    from .lock import now_iso
    from .project import Project

    rec = instance.resolve(ref)
    if not dry_run:
        store.check_writable(instance, rec.path)
    project = Project.open(rec.path)
    if juid is not None:
        job = project.job(juid)
        _check_job(job)
        jobs = [job]
    else:
        jobs = list(project.jobs.values())
    plans: list[JobClear] = []
    for job in jobs:
        try:
            _check_job(job)
        except RefusedError as e:
            plans.append(JobClear(job.uid, skipped=str(e)))
            continue
        plan = clear_plan(project, job)
        if plan.skipped and juid is not None:
            raise RefusedError(f"{job.uid}: {plan.skipped}")
        plans.append(plan)
    if dry_run:
        return plans
    total = sum(len(p.files) for p in plans)
    done = 0
    for plan in plans:
        if plan.skipped or not plan.versions:
            continue
        job = project.job(plan.job)
        # data files first, metafiles last, then the record: a crash at any point leaves the
        # dropped versions listed with whatever remains, and running the clear again finishes it
        metafiles = set(job.metafiles)
        store.check_writable(instance, project.path)
        with store.all_or_nothing(f"clearing {job.uid}", f"run `csfs clear-intermediate {rec.uid} {job.uid}` "
                                                         "again to finish and record it") as undo:
            undo.keep(f"deleting its intermediate files (job.json still lists them)")
            for f in sorted(plan.files, key=lambda f: f.path in metafiles):
                try:
                    os.unlink(Path(project.path) / f.path)
                except FileNotFoundError:
                    pass
                faults.point("clear-unlink")
                done += 1
                if progress:
                    progress(done, total)
            doc = documents.drop_versions(job.doc, plan.versions)
            doc[RECORD_KEY] = list(doc.get(RECORD_KEY) or []) + [{
                "cleared_at": now_iso(), "versions": plan.versions,
                "files": [f.path for f in plan.files], "bytes": plan.bytes}]
            store.commit(instance, project, job_docs={job.uid: doc})
        sizes.invalidate(instance.cache_dir, project.path, job.uid)
    return plans
