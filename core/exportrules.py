"""What is exported and under which names: the exportability rule (completed jobs only,
as CryoSPARC), export folder names, and the job's own time for generated content."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .documents import parse_time
from .errors import ActiveJobError, CsfsError, RefusedError
from .plan import plain_name


def job_export_name(job: Any) -> str:
    """`J87_homo_refine`: the job uid and its type."""
    return f"{job.uid}_{job.type}"


def group_export_name(job: Any, group: Any) -> str:
    """`J87_particles`: the job uid and the output group name (`group` may be a name)."""
    return f"{job.uid}_{getattr(group, 'name', group)}"


def job_time(job: Any) -> float:
    """The job's own timestamp for generated content: completed_at, else created_at, else the
    mtime of job.json, else of the job folder."""
    for value in (getattr(job, "completed_at", None), getattr(job, "created_at", None)):
        ts = parse_time(value)
        if ts is not None:
            return ts
    for path in (Path(job.dir) / "job.json", Path(job.dir)):   # a legacy job without job.json: its folder's
        try:
            return path.stat().st_mtime
        except OSError:
            continue
    return 0.0


def export_refusal(job: Any) -> CsfsError | None:
    """Why `job` cannot be exported, or None: only completed jobs are (CryoSPARC's rule)."""
    if getattr(job, "error", None):
        return RefusedError(f"{job.uid}: cannot export a broken job ({job.error})")
    if job.status == "completed":
        return None
    if job.is_active:
        return ActiveJobError(f"{job.uid} is {job.status}: wait until it completes, then export it")
    return RefusedError(f"{job.uid} is {job.status}, not completed: only completed jobs are exported "
                        f"(mark it completed first with `csfs job mark-completed`)")


def check_exportable(job: Any) -> None:
    """Refuse jobs that are not completed, with the reason (`export_refusal`)."""
    refusal = export_refusal(job)
    if refusal is not None:
        raise refusal


def export_names(job: Any) -> list[tuple[str, str, str | None]]:
    """(kind, export folder name, group name or None) of each export an exportable job has:
    its job export ("jobs", unless it has no job.json) and one per output group ("groups").
    Names that are not one plain path component (a '/' in job.json) are left out."""
    if export_refusal(job) is not None:
        return []
    names: list[tuple[str, str, str | None]] = [("jobs", job_export_name(job), None)] if has_job_export(job) else []
    names += [("groups", group_export_name(job, g.name), g.name) for g in job.groups]
    return [n for n in names if plain_name(n[1])]




def has_job_export(job: Any) -> bool:
    """A job export holds the job's job.json: a legacy job known from its .csg files has
    none (its output groups still export)."""
    return bool(getattr(job, "doc", None))
