"""A project at a glance, as `csfs project show` reports it: its registry row, who holds
its lock, its project.json, job counts, active jobs and problems. Nothing is written."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import lock
from .instance import Instance, ProjectRecord, norm_path
from .project import Job, Project


@dataclass
class ProjectFacts:
    record: ProjectRecord | None    # None: a directory not registered in this instance
    path: Path
    lock: str                       # "none", "this instance (P3)", or the foreign owner
    project: Project | None = None  # None when the directory is missing
    problems: list[str] = field(default_factory=list)

    @property
    def job_status(self) -> dict[str, int]:
        """How many jobs are in each status ("?" for an unknown one), by status name."""
        jobs = self.project.jobs.values() if self.project else []
        return dict(sorted(Counter(j.status or "?" for j in jobs).items()))

    @property
    def active_jobs(self) -> list[Job]:
        return [j for j in self.project.jobs.values() if j.is_active] if self.project else []


def lock_owner(instance: Instance, path: Path) -> str:
    """Who holds the cs.lock in `path`, in words."""
    info = lock.read(path) if path.is_dir() else None
    if info is None:
        return "none"
    return f"this instance ({info.project_uid})" if info.is_ours(instance.id) else info.describe()


def held_here(instance: Instance, path: str | os.PathLike) -> ProjectRecord | None:
    """The registry record of the project in `path` if its cs.lock is this instance's, else None."""
    path = norm_path(path)
    rec = instance.find_path(path)
    info = lock.read(path) if rec is not None and path.is_dir() else None
    return rec if info is not None and info.is_ours(instance.id) else None


def project_facts(instance: Instance, ref: str) -> ProjectFacts:
    """The facts about a registered project (UID or path) or any project directory."""
    rec, path = instance.locate(ref)
    facts = ProjectFacts(rec, path, lock_owner(instance, path))
    if rec is not None and rec.missing:   # (an unregistered directory exists: locate checked)
        facts.problems = [f"directory {path} is missing (moved? attach or unarchive it at its new path; "
                          f"deleted? `csfs project forget --missing {rec.uid}`)"]
        return facts
    facts.project = Project.open(path)
    facts.problems = facts.project.problems + [j.error for j in facts.project.jobs.values() if j.error]
    return facts
