"""The one JSON schema of `--json` output: builders for the objects every command shares.

Conventions (documented in README.md, checked by tests/test_cli_json.py):
  * the output is one JSON object, never a bare list, so keys can be added later;
  * `project` is an object with at least `uid` (P<n>, or null for a directory not
    registered here) and `path`; `projects` is a list of such objects;
  * `job` is an object with at least `uid` (J<n>); `jobs` is a list of such objects;
    `group` has `name`, `groups` is a list; never maps keyed by a uid;
  * sizes are integers of bytes in keys named `bytes` or ending in `_bytes`; counts are
    integers; times are ISO 8601 strings; a missing value is null;
  * a command that changes something says what with `action` (the command's verb) and,
    where it has --dry-run, `dry_run`.
Errors are never JSON: one line on stderr and the exit code (see `csfs --help`).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from csfs.core.instance import ProjectRecord
    from csfs.core.project import Project
    from csfs.core.sizes import SizeReport


def project(uid: str | None, path: str | os.PathLike, **extra: Any) -> dict:
    """A project object: {"uid", "path", ...extra}."""
    return {"uid": uid, "path": str(path), **extra}


def project_of(rec: ProjectRecord, **extra: Any) -> dict:
    """The project object of a registry record (core.instance.ProjectRecord)."""
    return project(rec.uid, rec.path, state=rec.state, title=rec.title, **extra)


def job(uid: str, **extra: Any) -> dict:
    """A job object: {"uid", ...extra}."""
    return {"uid": uid, **extra}


def job_ref(uid: str | None) -> dict | None:
    """A job object naming just its uid, or null (a problem of the project itself)."""
    return None if uid is None else job(uid)


def sizes(project_obj: dict, project: Project, report: SizeReport) -> dict:
    """`csfs du --json` (and csfs.api's Project.sizes()): a project's sizes by CryoSPARC's rule."""
    return {"project": project_obj, "bytes": report.total, "other_bytes": report.other,
            "clearable_bytes": report.clearable,
            "jobs": [job(uid, type=project.jobs[uid].type, status=project.jobs[uid].status, bytes=s.bytes,
                         clearable_bytes=s.clearable) for uid, s in report.jobs.items()],
            "sessions": [{"uid": name, "bytes": n} for name, n in report.sessions.items()]}
