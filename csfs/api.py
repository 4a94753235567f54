"""The csfs Python API, for scripts and notebooks (also importable as `csfs.<name>`).

    import csfs
    inst = csfs.open_instance()              # $CSFS_HOME, else ~/.local/share/csfs
    proj = inst.project("P1")                # or csfs.open_project("/data/CS-apoferritin")
    particles = proj.dataset("J5", "particles")

Every call does what the matching command does, through the same code, and raises the
same errors (`csfs.CsfsError` and its subclasses: `UsageError` for bad input,
`NotFoundError`, `FormatError`, `RefusedError`, `ForeignLockError`, `ActiveJobError`,
`ArchivedError`); `str(error)` is the CLI's one-line message. Sizes and other reports
are the dictionaries `--json` prints (README, "JSON output").
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csfs.core.errors import (
    ActiveJobError,
    ArchivedError,
    CsfsError,
    ForeignLockError,
    FormatError,
    NotFoundError,
    RefusedError,
    UsageError,
)

if TYPE_CHECKING:
    import numpy as np

    from csfs.core.instance import ProjectRecord
    from csfs.core.project import Job
    from csfs.core.project import Project as CoreProject

__all__ = ["open_instance", "open_project", "write_demo", "Instance", "Project", "JobInfo", "GroupInfo",
           "CsfsError", "UsageError", "NotFoundError", "FormatError", "RefusedError", "ForeignLockError",
           "ActiveJobError", "ArchivedError"]

@dataclass(frozen=True)
class GroupInfo:
    """An output group of a job: `name` (particles), `type` (particle), item count."""

    job: str
    name: str
    type: str
    title: str
    num_items: int


@dataclass(frozen=True)
class JobInfo:
    """A job as its job.json describes it; `error` says why it could not be read."""

    uid: str
    type: str
    status: str
    title: str
    created_at: str | None
    completed_at: str | None
    groups: tuple[GroupInfo, ...]
    error: str | None

    @property
    def is_active(self) -> bool:
        """Queued, launched, started, running or waiting: blocks detach and archive."""
        from csfs.core.project import ACTIVE_STATUSES

        return self.status in ACTIVE_STATUSES


def _job_info(job: Job) -> JobInfo:
    groups = tuple(GroupInfo(job.uid, g.name, g.type, g.title, g.num_items) for g in job.groups)
    return JobInfo(job.uid, job.type, job.status, job.title, job.created_at, job.completed_at, groups, job.error)


def open_instance(home: str | os.PathLike | None = None) -> Instance:
    """The csfs instance in `home` (default: $CSFS_HOME, else ~/.local/share/csfs), created on first use."""
    return Instance(home)


def open_project(ref: str | os.PathLike, home: str | os.PathLike | None = None) -> Project:
    """A project by its UID in the instance (P3) or by its directory (registered or not:
    an unregistered directory can be read, not changed)."""
    return open_instance(home).project(ref)


def write_demo(folder: str | os.PathLike, scale: str = "tiny", flavour: str = "v4", seed: int = 0) -> Path:
    """Write the synthetic demo project (as `csfs demo`) into `folder`; returns its directory."""
    from csfs.core import demo

    return demo.make_demo(folder, scale=scale, seed=seed, flavour=flavour)


class Instance:
    """A csfs instance: its id and its registry of projects (P1, P2, ...)."""

    def __init__(self, home: str | os.PathLike | None = None) -> None:
        from csfs.config import resolve_home
        from csfs.core.instance import Instance as CoreInstance

        self._core = CoreInstance(resolve_home(os.fspath(home) if home is not None else None))

    def __repr__(self) -> str:
        return f"csfs.Instance({str(self.home)!r})"

    @property
    def id(self) -> str:
        return self._core.id

    @property
    def home(self) -> Path:
        return self._core.home

    def projects(self) -> list[dict]:
        """The registry, as `csfs project list --json` gives it: {uid, path, state, title, missing}."""
        from csfs import schema

        return [schema.project_of(r, missing=r.missing) for r in self._core.projects()]

    def project(self, ref: str | os.PathLike) -> Project:
        """A registered project by UID or path, or any project directory (read-only use)."""
        rec, path = self._core.locate(ref)
        return Project(self, rec.uid if rec else None, path)

    def create(self, title: str, folder: str | os.PathLike = ".") -> Project:
        """A new empty project `folder/CS-<slug of title>`, locked and attached."""
        return self._from_record(_lifecycle().create(self._core, title, folder))

    def attach(self, path: str | os.PathLike) -> Project:
        """Lock a project directory for this instance and register it (as `csfs project attach`)."""
        return self._from_record(_lifecycle().attach(self._core, path))

    def forget(self, ref: str | os.PathLike, missing: bool = False) -> None:
        """Drop a detached project from the registry; `missing`: one whose directory is gone."""
        _lifecycle().forget(self._core, ref, missing=missing)

    def rescue(self, path: str | os.PathLike, other_instance_is_down: bool = False) -> str:
        """Take over a project locked by a dead instance (see `csfs project rescue --help`)."""
        return _lifecycle().rescue(self._core, path, other_instance_is_down)

    def _from_record(self, rec: ProjectRecord) -> Project:
        return Project(self, rec.uid, rec.path)


def _lifecycle() -> Any:
    from csfs.core import lifecycle

    return lifecycle


class Project:
    """A project directory, registered in an instance (`uid` set) or not (read-only)."""

    def __init__(self, instance: Instance, uid: str | None, path: Path) -> None:
        self.instance = instance
        self.uid = uid
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"csfs.Project({self.uid or '-'}, {str(self.path)!r})"

    # -- reading ------------------------------------------------------------------------------
    def _open(self) -> CoreProject:
        from csfs.core.project import Project as CoreProject

        return CoreProject.open(self.path)

    @property
    def _ref(self) -> str:
        """What the core's actions take; an unregistered directory gets their NotFoundError."""
        return self.uid or str(self.path)

    @property
    def title(self) -> str:
        return self._open().title

    @property
    def state(self) -> str | None:
        """attached, archived or detached in this instance; None when not registered here."""
        return self.instance._core.get(self.uid).state if self.uid else None

    def jobs(self) -> list[JobInfo]:
        """Every job, in job order."""
        return [_job_info(j) for j in self._open().jobs.values()]

    def job(self, juid: str) -> JobInfo:
        """One job (NotFoundError if the project has no such job)."""
        return _job_info(self._open().job(juid))

    def groups(self, juid: str | None = None) -> list[GroupInfo]:
        """The output groups of one job, or of every job."""
        return [g for j in ([self.job(juid)] if juid else self.jobs()) for g in j.groups]

    def dataset(self, juid: str, group: str) -> np.ndarray:
        """Output `group` of job `juid` as one numpy structured array: the final version of
        each of its results joined by `uid` (as in a group export), with `*/path` values
        relative to the project directory."""
        from csfs.core import datasets

        return datasets.group_dataset(self._open(), juid, group)

    def sizes(self) -> dict:
        """Sizes by CryoSPARC's rule, cached like `csfs du`: the dict `csfs du --json` prints."""
        from csfs import schema
        from csfs.core import sizes

        project = self._open()
        report = sizes.project_sizes(project, self.instance._core.cache_dir)
        return schema.sizes(schema.project(self.uid, self.path), project, report)

    def verify(self) -> list[dict]:
        """Problems with the project's files (empty when all is well), as `csfs verify --json`."""
        from csfs.core import verify

        return [p.as_dict() for p in verify.verify(self._open())]

    # -- exports and imports ------------------------------------------------------------------
    def export_job(self, juid: str) -> Path:
        """Consolidate a completed job's export; returns exports/jobs/J<N>_<type>/."""
        from csfs.core import consolidate

        return consolidate.export_job(self.instance._core, self._ref, juid)

    def export_group(self, juid: str, group: str) -> Path:
        """Consolidate an output group's export; returns exports/groups/J<N>_<group>/."""
        from csfs.core import consolidate

        return consolidate.export_group(self.instance._core, self._ref, juid, group)

    def import_group(self, csg: str | os.PathLike, copy: bool = False) -> JobInfo:
        """Import a result group (.csg) as a new job; its outputs keep their uids."""
        from csfs.core import imports

        return self.job(imports.import_group(self.instance._core, self._ref, csg, copy=copy))

    def import_job(self, exported_dir: str | os.PathLike, copy: bool = False) -> JobInfo:
        """Import an exported job folder (J<N>_<type>/) as a new job."""
        from csfs.core import imports

        return self.job(imports.import_job(self.instance._core, self._ref, exported_dir, copy=copy))

    def import_raw(self, kind: str, paths: Sequence[str | os.PathLike]) -> JobInfo:
        """An import job of symlinks to raw data: `kind` movies, micrographs, particles or
        volume; `paths` files, folders or glob patterns (headers are checked)."""
        from csfs.core import imports

        return self.job(imports.import_raw(self.instance._core, self._ref, kind, paths))

    # -- changes ------------------------------------------------------------------------------
    def clear_intermediate(self, juid: str | None = None, dry_run: bool = False) -> int:
        """Delete intermediate result versions nothing uses (one job, or every finished job);
        returns the bytes deleted (or that would be, with `dry_run`)."""
        from csfs.core import cleanup

        plans = cleanup.clear_intermediate(self.instance._core, self._ref, juid, dry_run=dry_run)
        return sum(p.bytes for p in plans)

    def relink(self, old: str | os.PathLike, new: str | os.PathLike, dry_run: bool = False) -> int:
        """Repoint symlinks whose target starts with `old` to `new`; returns how many."""
        from csfs.core import verify

        return len(verify.relink(self.instance._core, self._ref, os.fspath(old), os.fspath(new), dry_run=dry_run))

    def detach(self) -> None:
        """Flush metadata and remove our lock (refused while a job is active: ActiveJobError)."""
        _lifecycle().detach(self.instance._core, self._ref)

    def archive(self) -> None:
        """Make the project read-only (lock kept); it may then be moved."""
        _lifecycle().archive(self.instance._core, self._ref)

    def unarchive(self, new_path: str | os.PathLike | None = None) -> None:
        """Make an archived project writable again, at `new_path` if it moved."""
        rec = _lifecycle().unarchive(self.instance._core, self._ref, new_path or self.path)
        self.path = rec.path

    def mark_completed(self, juid: str) -> None:
        """Mark a killed or failed job completed (CryoSPARC's "mark as completed")."""
        _lifecycle().mark_completed(self.instance._core, self._ref, juid)

    def mark_killed(self, juid: str) -> None:
        """Mark an active job whose process is gone killed (it then no longer blocks detach)."""
        _lifecycle().mark_killed(self.instance._core, self._ref, juid)
