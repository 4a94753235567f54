"""Sizes by CryoSPARC's accounting, cached in the instance.

A job's size is CryoSPARC's documented rule: walk its directory following symlinks,
count each (device, inode) of every *file* once and sum `st_size`; directories
themselves are not counted (so `du -sLb`, which adds each folder's size, is not
used). A CryoSPARC Live session folder (`S<N>/` holding `exposures.bson`) is sized
the same way, as its own row. A project's size is the sum over its jobs and sessions
plus the files outside them (there symlinks are not followed: `exports/` holds links
to job data already counted).

Per-job results are cached in the instance's cache dir, keyed by the job directory and
checked against the mtimes of job.json and the job directory, and (for the clearable
bytes) against the versions other jobs' inputs name; active jobs are always
rescanned, and csfs invalidates a job explicitly after it changes its files.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import atomic, ids
from .walk import scan

if TYPE_CHECKING:
    from .project import Job, Project

Progress = Callable[[int, "int | None"], None]
CACHE_VERSION = 3
SCAN_THREADS = 3


@dataclass
class JobSize:
    bytes: int
    clearable: int


@dataclass
class SizeReport:
    jobs: dict[str, JobSize] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)  # Live sessions (S<N>/) -> bytes
    other: int = 0
    total: int = 0
    scanned: list[str] = field(default_factory=list)  # jobs walked now (the rest came from the cache)

    @property
    def clearable(self) -> int:
        """Intermediate bytes clear-intermediate would free, over all jobs."""
        return sum(j.clearable for j in self.jobs.values())

    def as_dict(self) -> dict:
        return {"jobs": {k: asdict(v) for k, v in self.jobs.items()}, "sessions": dict(self.sessions),
                "other": self.other, "total": self.total, "clearable": self.clearable}


def tree_size(top: str | os.PathLike, follow: bool = True) -> tuple[int, int]:
    """(bytes, files) of the files under `top` (or of `top` itself, a file): st_size summed once
    per (dev, inode); directories are walked, never counted; links followed when `follow`."""
    try:
        st = os.stat(top) if follow else os.lstat(top)
    except OSError:
        return 0, 0
    if not stat.S_ISDIR(st.st_mode):
        return (st.st_size, 1) if stat.S_ISREG(st.st_mode) or not follow else (0, 0)
    seen: set[tuple[int, int]] = {(st.st_dev, st.st_ino)}
    total = files = 0
    enter: set[str] = set()          # folders seen for the first time: walk into them
    for e in scan(top, lambda e: e.path in enter):
        try:
            st = e.stat(follow_symlinks=follow)
        except OSError:
            continue  # dangling link or vanished file: nothing to count
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        if stat.S_ISDIR(st.st_mode):
            enter.add(e.path)
        elif stat.S_ISREG(st.st_mode) or not follow:
            total += st.st_size
            files += 1
    return total, files


def session_dirs(project_path: str | os.PathLike) -> dict[str, Path]:
    """CryoSPARC Live sessions of a project: `S<N>/` folders holding exposures.bson, by number."""
    found = []
    try:
        with os.scandir(Path(project_path)) as it:
            for e in it:
                num = ids.number(e.name, "S")
                if num is not None and e.is_dir(follow_symlinks=False) and \
                        os.path.isfile(os.path.join(e.path, "exposures.bson")):
                    found.append((num, e.name, Path(e.path)))
    except OSError:
        return {}
    return {name: p for _, name, p in sorted(found)}


def _signature(job_dir: Path) -> list[int] | None:
    try:
        a = os.stat(job_dir)
        b = os.stat(job_dir / "job.json")
    except OSError:
        return None
    return [a.st_mtime_ns, b.st_mtime_ns, b.st_size, b.st_ino]


def _clear_deps(project: Project) -> dict[str, str]:
    """Per job, a digest of what its clearable bytes depend on outside its own directory:
    the versions other jobs' inputs name, which other jobs' inputs are unknown, and (as
    any job may link to or name its files: core/references.py) the state of every job."""
    from .clearplan import unknown_consumers

    refs: dict[str, set[tuple[str, str, str]]] = {}
    broken = [j for j in project.jobs.values() if j.error]
    csg_jobs = [j.uid for j in project.jobs.values() if j.form == "csg"]
    for j in project.jobs.values():
        for r in j.inputs:
            refs.setdefault(str(r.job_uid), set()).add((str(r.group_name), str(r.result_name), str(r.version)))
    everyone = [_signature(Path(j.dir)) for j in project.jobs.values()]
    try:
        everyone.append([os.stat(project.path).st_mtime_ns])
    except OSError:
        pass
    return {j.uid: hashlib.sha1(json.dumps([sorted(refs.get(j.uid, ())),
                                            unknown_consumers(project, j) if broken else [], csg_jobs, everyone])
                                .encode()).hexdigest()[:16] for j in project.jobs.values()}


def _cache_file(cache_dir: Path, project_path: Path) -> Path:
    key = hashlib.sha1(str(Path(project_path).absolute()).encode()).hexdigest()[:16]
    return Path(cache_dir) / "sizes" / f"{key}.json"


def _read_cache(path: Path) -> dict:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("version") != CACHE_VERSION:
        return {}
    return doc.get("jobs") or {}


def _write_cache(path: Path, jobs: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path, {"version": CACHE_VERSION, "jobs": jobs})
    except OSError:
        pass  # a cache that cannot be written only costs time


def invalidate(cache_dir: str | os.PathLike, project_path: str | os.PathLike, juid: str | None = None) -> None:
    """Forget cached sizes of one job (or of the whole project when juid is None)."""
    path = _cache_file(Path(cache_dir), Path(project_path))
    if juid is None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        return
    jobs = _read_cache(path)
    key = str(Path(project_path).absolute() / juid)
    if jobs.pop(key, None) is not None:
        _write_cache(path, jobs)


def job_size(project: Project, job: Job, total: int | None = None) -> JobSize:
    """One job now: its size (walked, unless `total` is given) and its clearable intermediate bytes."""
    from .clearplan import clear_plan

    if total is None:
        total = tree_size(job.dir)[0]
    clearable = 0
    if job.is_final and not job.error:
        clearable = clear_plan(project, job).bytes
    return JobSize(total, clearable)


def other_size(project: Project, skip: Iterable[str] = ()) -> int:
    """Bytes of the files outside the job directories and the names in `skip` (symlinks not
    followed), each inode once."""
    skipped = {Path(j.dir).name for j in project.jobs.values()} | set(skip)
    total = 0
    seen: set[tuple[int, int]] = set()
    with os.scandir(project.path) as it:
        for e in it:
            if e.name in skipped:
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                total += tree_size(e.path, follow=False)[0]
            elif (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def project_sizes(project: Project, cache_dir: str | os.PathLike | None = None,
                  progress: Progress | None = None) -> SizeReport:
    """Sizes of every job and of the project; unchanged jobs come from the cache in `cache_dir`."""
    cache_path = _cache_file(Path(cache_dir), Path(project.path)) if cache_dir else None
    cached = _read_cache(cache_path) if cache_path else {}
    report = SizeReport()
    jobs = list(project.jobs.values())
    fresh: dict[str, dict] = {}
    todo: list[tuple[Job, str, list[int] | None, int | None]] = []
    deps = _clear_deps(project)
    for job in jobs:
        key = str(Path(job.dir).absolute())
        sig = _signature(Path(job.dir))
        hit = cached.get(key)
        if hit and sig is not None and hit.get("sig") == sig and not job.is_active:
            if hit.get("deps") == deps[job.uid]:
                report.jobs[job.uid] = JobSize(hit["bytes"], hit["clearable"])
                fresh[key] = hit
            else:  # only what other jobs consume changed: the size stands, clearable is redone
                todo.append((job, key, sig, hit["bytes"]))
        else:
            todo.append((job, key, sig, None))
    done = len(jobs) - len(todo)
    if progress:
        progress(done, len(jobs))
    # walks wait on stat() and numpy reads release the GIL: a few threads overlap them
    with ThreadPoolExecutor(max_workers=min(SCAN_THREADS, max(1, len(todo)))) as pool:
        sizes = pool.map(lambda t: job_size(project, t[0], t[3]), todo)
        for (job, key, sig, known), size in zip(todo, sizes, strict=True):
            report.jobs[job.uid] = size
            if known is None:
                report.scanned.append(job.uid)
            if sig is not None and not job.is_active:
                fresh[key] = {"sig": sig, "deps": deps[job.uid], **asdict(size)}
            done += 1
            if progress:
                progress(done, len(jobs))
    report.jobs = {j.uid: report.jobs[j.uid] for j in jobs}
    sessions = session_dirs(project.path)
    report.sessions = {name: tree_size(p)[0] for name, p in sessions.items()}
    report.other = other_size(project, set(sessions))
    report.total = sum(j.bytes for j in report.jobs.values()) + sum(report.sessions.values()) + report.other
    if cache_path and (todo or set(fresh) != set(cached)):
        _write_cache(cache_path, fresh)
    return report

