"""What is wrong with a job's files, found without reading any metafile.

The one set of checks behind `Job.problems` (`csfs job list`, `project show`) and the
first part of `csfs verify` (which also reads the metafiles: core/verify.py):
unreadable documents, symlinks whose targets are missing, and metafiles that job.json
(or a legacy job's .csg) names but that are missing.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from .walk import inside, walk_entries


@dataclass(frozen=True)
class Problem:
    job: str | None       # job uid, None for the project itself
    kind: str             # "metadata" | "broken-symlink" | "missing-metafile" | "unreadable-metafile" | "missing-data"
    path: str             # project-relative (or absolute outside the project)
    message: str
    target: str | None = None   # a broken symlink's target

    def as_dict(self) -> dict:
        return asdict(self)


class JobFiles(Protocol):
    """What the checks need of a job (core.project.Job)."""

    uid: str
    dir: Path
    error: str | None
    read_problems: list[str]

    @property
    def metafiles(self) -> list[str]: ...


def relpath(root: str | os.PathLike, path: str | os.PathLike) -> str:
    """`path` relative to `root` when inside it, else as it is."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def broken_links(root: str | os.PathLike, top: str | os.PathLike, job: str | None) -> list[Problem]:
    """Every symlink below `top` whose target is missing (links to folders are not entered)."""
    out = []
    for e in walk_entries(top):
        if e.is_symlink() and not os.path.exists(e.path):
            rel, target = relpath(root, e.path), os.readlink(e.path)
            where = f"{job}: " if job else ""
            hint = "moved raw data? see `csfs relink`" if job else "export again, or see `csfs relink`"
            out.append(Problem(job, "broken-symlink", rel,
                               f"{where}dangling symlink {rel} -> {target}: target missing ({hint})", target))
    return sorted(out, key=lambda p: p.path)


def job_problems(root: Path, job: JobFiles) -> list[Problem]:
    """A job's problems that need no metafile read, in a stable order."""
    jrel = relpath(root, job.dir)
    out = [Problem(job.uid, "metadata", jrel, m) for m in job.read_problems]
    if job.error:
        out.append(Problem(job.uid, "metadata", f"{jrel}/job.json", job.error))
    out += broken_links(root, job.dir, job.uid)
    for mf in job.metafiles:   # inside the project: core/documents.py refuses others
        path = inside(root, mf)
        if path is None or not path.is_file():
            out.append(Problem(job.uid, "missing-metafile", mf, f"{job.uid}: metafile {mf} is missing"))
    return out
