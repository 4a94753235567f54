"""The clear plan: which files clearing a job's intermediate results would delete.

Pure computation over an opened project (nothing changes on disk). For each output
result of a job, the final version and every version that another job's input names
are kept; the other versions' metafiles, and the data files only they name, are the
plan. Used by core/cleanup.py (which deletes) and core/sizes.py (clearable bytes).
"""
from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import references
from .errors import CsfsError
from .project import Job, Project, load_paths


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
    kept: list[str] = field(default_factory=list)  # files of cleared versions kept, and why

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def as_dict(self) -> dict:
        return {**asdict(self), "bytes": self.bytes}


def kept_versions(project: Project, job: Job) -> dict[tuple[str, str], set[int]]:
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


def unknown_consumers(project: Project, job: Job) -> list[str]:
    """Other jobs that cannot be read and may consume `job` (see Job.may_use): which of its
    versions they use is unknown. Unreadable jobs that never name `job` do not count."""
    return [j.uid for j in project.jobs.values() if j.uid != job.uid and j.may_use(job)]


def clear_plan(project: Project, job: Job) -> JobClear:
    """What clearing `job` would delete (computed only; nothing changes).

    A file is deleted only when it is a regular file inside the job's (real) folder,
    named by a version being cleared, and named by nothing else in the project
    (see core/references.py: compared by device and inode); a file still named
    elsewhere, or with other hard links, is kept and listed in `kept`.
    """
    out = JobClear(job.uid)
    unknown = unknown_consumers(project, job)
    if unknown:
        out.skipped = (f"the job.json of {', '.join(unknown)} cannot be read, so which versions of "
                       f"{job.uid} they use is unknown; fix it (csfs verify) before clearing")
        return out
    keep = kept_versions(project, job)
    drop: list[tuple[str, int, str]] = []
    kept_metafiles: set[str] = set()
    for g in job.groups:
        for r in g.results:
            for v, mf in zip(r.versions, r.metafiles, strict=True):
                if r.passthrough:
                    # passthrough data comes from the job's inputs: it cannot name the files
                    # this job wrote for its own iterations, so it is never cleared
                    continue
                if v in keep[(g.name, r.name)]:
                    kept_metafiles.add(os.path.normpath(mf))
                else:
                    drop.append((f"{g.name}.{r.name}", v, os.path.normpath(mf)))
    if not drop:
        return out  # nothing to clear: no metafile needs reading
    root = Path(project.path)
    index = references.for_project(project)
    dropped = {mf for _, _, mf in drop} - kept_metafiles
    ambiguous = sorted(k for k in index.unreadable if k not in dropped)
    if ambiguous:
        return JobClear(job.uid, skipped=f"{ambiguous[0]} cannot be read ({index.unreadable[ambiguous[0]]}), "
                                         "so the files it names are unknown; fix or remove it (csfs verify) "
                                         "before clearing")
    ignore = {f"{job.uid}:{mf}" for mf in dropped}
    for mf in dropped:   # a dropped metafile still named elsewhere keeps what it names too
        got = references.identity(root / mf)
        if got and not index.referrers(got[0], got[1], ignore):
            ignore.add(f"cs:{got[1]}")
    candidates: dict[Path, None] = {}
    for key, v, mf in drop:
        out.versions.setdefault(key, []).append(v)
        if mf in kept_metafiles:
            continue
        candidates[root / mf] = None
        try:
            values = load_paths(root / mf)
        except CsfsError:
            values = []     # an unreadable dropped metafile: only the metafile itself may go
        for value in values:
            candidates.update(dict.fromkeys(references.data_paths(root, root / mf, value)))
    jreal = os.path.realpath(job.dir)
    jrel = os.path.relpath(job.dir, root)
    seen: set[tuple[int, int]] = set()
    for path in candidates:
        real = inside_job(path, jreal)
        if real is None:
            continue        # nothing outside the job's own folder is ever deleted
        try:
            st = os.lstat(real)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        rel = os.path.join(jrel, os.path.relpath(real, jreal))
        users = index.referrers((st.st_dev, st.st_ino), real, ignore)
        if users:
            more = f" and {len(users) - 1} more" if len(users) > 1 else ""
            out.kept.append(f"{rel}: still used by {index.describe(users[0])}{more}")
        elif st.st_nlink > 1:
            out.kept.append(f"{rel}: has {st.st_nlink - 1} other hard link(s), which may be in use")
        else:
            out.files.append(ClearFile(rel, st.st_size))
    return out


def inside_job(path: Path, jreal: str) -> str | None:
    """The real path of `path` (its last component not followed) if it lies in the job folder."""
    try:
        parent = os.path.realpath(path.parent)
    except (OSError, ValueError):
        return None
    if parent != jreal and not parent.startswith(jreal + os.sep):
        return None
    return os.path.join(parent, path.name)
