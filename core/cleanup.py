"""Clear intermediate results: delete the files of result versions nothing needs.

For each output result of a job, the final version and every version that another
job's input connection names are kept; the metafiles of the other versions, and the
data files only they reference, are deleted. Only jobs in a final state are touched,
and only regular files inside the job's own directory are ever deleted.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import documents, faults
from .clearplan import JobClear, clear_plan, inside_job
from .errors import ActiveJobError, RefusedError

if TYPE_CHECKING:
    from .instance import Instance
    from .project import Job

Progress = Callable[[int, "int | None"], None]
RECORD_KEY = "csfs_intermediate_cleared"


def _check_job(job: Job) -> None:
    if job.is_active:
        raise ActiveJobError(f"{job.uid} is {job.status}; clear its intermediate results once it has finished")
    if not job.is_final:
        raise RefusedError(f"{job.uid} is {job.status or 'of unknown status'}; only completed, killed "
                           "or failed jobs are cleared")
    if job.error:
        raise RefusedError(f"{job.uid}: {job.error}")


def clear_intermediate(instance: Instance, ref: str, juid: str | None = None, dry_run: bool = False,
                       progress: Progress | None = None) -> list[JobClear]:
    """Clear one job (`juid`) or every final-state job of a project; returns what was (or would be) cleared."""
    from . import sizes, store
    from .documents import now_iso
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
        jreal = os.path.realpath(job.dir)
        with store.all_or_nothing(f"clearing {job.uid}", f"run `csfs clear-intermediate {rec.uid} {job.uid}` "
                                                         "again to finish and record it") as undo:
            undo.keep("deleting its intermediate files (job.json still lists them)")
            for f in sorted(plan.files, key=lambda f: f.path in metafiles):
                real = inside_job(Path(project.path) / f.path, jreal)
                try:
                    if real is not None and stat.S_ISREG(os.lstat(real).st_mode):
                        os.unlink(real)
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
