"""The one write path for project metadata (continuous export).

Every change to a project goes through `commit`: it first checks that the project's
cs.lock is ours and the project is not archived, then rewrites the affected job.json
files, workspaces.json and project.json, each atomically (temp file, fsync, rename,
fsync dir). project.json is written last, so it marks a finished commit.
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from . import documents, faults, ids, lock
from .atomic import fsync_dir, pid_alive, read_json, remove_stale_tmp, write_bytes, write_json
from .documents import now_iso, workspace_rows
from .errors import (
    ArchivedError,
    CsfsError,
    FaultError,
    ForeignLockError,
    FormatError,
    NotFoundError,
    RefusedError,
    UsageError,
)
from .instance import Instance, ProjectRecord, RegistryError, norm_path


class ProjectLike(Protocol):
    """What commit needs of a project: its directory and its project.json document."""

    path: Path
    doc: dict


def check_writable(instance: Instance, project_path: str | os.PathLike) -> ProjectRecord:
    """The record of a project we may write to; refuses (naming the owner) otherwise.

    Writable means: cs.lock is ours and matches our registry row, and the project is
    attached here, not archived (neither in the registry nor in project.json).
    """
    path = norm_path(project_path)
    info = lock.read(path)
    refuse_foreign(path, info, instance)
    rec = instance.find_path(path)
    if rec is None or rec.state == "detached":
        raise RefusedError(f"{path}: not attached to this instance; run `csfs project attach {path}` first")
    if rec.state == "archived":
        raise ArchivedError(f"{rec.uid} is archived (read-only); run `csfs project unarchive {rec.uid} PATH` first")
    owned_lock(instance, rec, path)
    doc = read_doc(path / "project.json", default={})
    if isinstance(doc, dict) and doc.get("archived") is True:
        raise ArchivedError(f"{rec.uid}: project.json says archived (read-only); "
                            f"run `csfs project unarchive {rec.uid} {path}`")
    return rec


def refuse_foreign(path: Path, info: lock.LockInfo | None, instance: Instance) -> None:
    """ForeignLockError naming the owner if `info` is a lock that is not ours."""
    if info is not None and not info.is_ours(instance.id):
        raise ForeignLockError(
            f"{path}: locked by {info.describe()}; this instance may not write to it "
            "(if that instance is gone for good, see `csfs project rescue --help`)")


def owned_lock(instance: Instance, rec: ProjectRecord, path: Path | None = None) -> lock.LockInfo:
    """The lock at `path` (default: the record's), which must be the one we wrote for `rec`."""
    path = rec.path if path is None else path
    info = lock.read(path)
    refuse_foreign(path, info, instance)
    if info is None:
        raise RefusedError(f"{rec.uid}: cs.lock is missing from {path}; "
                           f"run `csfs project attach {path}` to lock it again")
    if rec.lock_id and info.lock_id != rec.lock_id:
        raise ForeignLockError(f"{path}: cs.lock ({info.describe()}) is not the lock this instance "
                               f"registered for {rec.uid} (lock id {info.lock_id}, registered {rec.lock_id}). "
                               f"If this directory is {rec.uid} itself (its lock or the registry was restored "
                               f"from a backup), run `csfs project attach {path}` to adopt its lock; if it is a "
                               "copy, work on the original; nothing changed")
    return info


def read_doc(path: Path, default: Any) -> Any:
    """A JSON file's document, `default` if the file is missing; FormatError if malformed."""
    try:
        return read_json(path)
    except NotFoundError:
        return default


def job_row(uid: str, doc: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """The registry row of a job document."""
    def s(k: str) -> str:
        v = doc.get(k)
        return "" if v is None else str(v)
    return (uid, documents.job_type(doc), s("title"), s("status"))


_thread_lock = threading.RLock()
_depth = threading.local()


@contextmanager
def serialized(instance: Instance) -> Iterator[None]:
    """Hold this instance's write lock: one writer at a time across threads and processes.

    Re-entrant within a thread (lifecycle actions call commit). Different instances
    never share it; between them, cs.lock decides.
    """
    with _thread_lock:
        depth = getattr(_depth, "n", 0)
        fd = None
        if depth == 0:
            fd = os.open(instance.home / ".write.lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
        _depth.n = depth + 1
        try:
            yield
        finally:
            _depth.n = depth
            if fd is not None:
                os.close(fd)


class Undo:
    """The undo steps of one action, run newest first if the action fails."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], Any]]] = []
        self.kept: list[str] = []
        self._saved: set[Path] = set()

    def keep(self, what: str) -> None:
        """Record a change that is not undone (files deleted, a job created): a failure then
        says so instead of "nothing changed"."""
        self.kept.append(what)

    def add(self, what: str, fn: Callable[[], Any]) -> None:
        self.steps.append((what, fn))

    def save_file(self, path: Path) -> None:
        """Remember a file's bytes (or absence) before the action first changes it."""
        if path in self._saved:
            return
        self._saved.add(path)
        try:
            old = path.read_bytes()
        except FileNotFoundError:
            self.add(f"remove {path}", lambda: path.unlink(missing_ok=True))
        else:
            self.add(f"restore {path}", lambda: write_bytes(path, old))

    def run(self) -> list[str]:
        """Undo everything (best effort); the steps that failed, in words."""
        failed = []
        for what, fn in reversed(self.steps):
            try:
                fn()
            except (OSError, CsfsError) as e:
                failed.append(f"{what}: {getattr(e, 'strerror', None) or e}")
        return failed


_undo = threading.local()


@contextmanager
def all_or_nothing(what: str, redo: str) -> Iterator[Undo]:
    """Run an action so that, if it fails, what it changed on disk is undone.

    Document writes (`export`) and the steps callers `add` are undone newest first. An
    OSError (disk full, I/O error) becomes a FaultError saying that nothing changed, or,
    if undoing failed too, what is left and that `redo` (re-running the action) completes
    it. A kill cannot be undone: lifecycle actions are ordered so a re-run completes
    them. Nested calls join the outermost action.
    """
    outer = getattr(_undo, "log", None)
    if outer is not None:
        yield outer
        return
    undo = _undo.log = Undo()
    try:
        yield undo
    except Exception as e:
        _undo.log = None
        failed = undo.run()
        reason = (f"{e.filename + ': ' if getattr(e, 'filename', None) else ''}{e.strerror or e}"
                  if isinstance(e, OSError) else str(e).split("; nothing changed")[0])  # not true any more
        code = e.errno if isinstance(e, OSError) else getattr(e, "errno", None)
        if failed:
            raise FaultError(f"{what} failed ({reason}) and could not be undone ({'; '.join(failed)}); "
                             f"{redo}", code) from None
        if undo.kept and isinstance(e, (OSError, FaultError, RegistryError)):
            raise FaultError(f"{what} failed ({reason}) after {', '.join(undo.kept)}; {redo}", code) from None
        if isinstance(e, OSError):
            fix = "free space there" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "check that disk"
            raise FaultError(f"{what} failed ({reason}); nothing changed. {fix[0].upper() + fix[1:]}, "
                             "then run it again", code) from None
        raise
    finally:
        _undo.log = None


def _write(path: Path, doc: Any) -> None:
    remove_stale_tmp(path)
    undo = getattr(_undo, "log", None)
    if undo is not None:
        undo.save_file(path)
    write_json(path, doc)


def export(project_dir: Path, project_doc: dict | None, workspaces: Any = None,
           job_docs: Mapping[str, dict] | None = None) -> None:
    """Write the given documents atomically (job.json files, workspaces.json, project.json last).

    No checks: callers are `commit` and lifecycle actions that have done theirs.
    Temp files left by killed writers of these files are removed on the way.
    """
    for juid, doc in (job_docs or {}).items():
        _write(project_dir / juid / "job.json", doc)
        faults.point("commit-job")
    if workspaces is not None:
        _write(project_dir / "workspaces.json", workspaces)
        faults.point("commit-workspaces")
    if project_doc is not None:
        _write(project_dir / "project.json", project_doc)
        faults.point("commit-project")


def commit(instance: Instance, project: ProjectLike | str | os.PathLike,
           job_docs: Mapping[str, dict] | None = None, project_doc: dict | None = None,
           workspaces: Any = None) -> None:
    """Check we may write, then export project.json, workspaces.json and the given job.json files.

    `project` is a core.project.Project (or its directory). `project_doc` defaults to
    the project's current project.json, `workspaces` to the current workspaces.json;
    both are rewritten on every commit. `job_docs` maps job UID -> full job document.
    """
    path = norm_path(project if isinstance(project, (str, os.PathLike)) else project.path)
    with serialized(instance), all_or_nothing(f"writing the metadata of {path}",
                                              "run the command again once the disk is fixed"):
        _commit(instance, path, job_docs, project_doc, workspaces)


def _commit(instance: Instance, path: Path, job_docs: Mapping[str, dict] | None, project_doc: dict | None,
            workspaces: Any) -> None:
    rec = check_writable(instance, path)
    job_docs = dict(job_docs or {})
    for juid, doc in job_docs.items():
        if not ids.is_job(juid):
            raise UsageError(f"{juid!r}: not a job UID (J<n>)")
        if not (path / juid).is_dir():
            raise NotFoundError(f"{rec.uid}: no job directory {juid} in {path}")
        if not isinstance(doc, dict):
            raise UsageError(f"{juid}: job document must be a JSON object")
    if project_doc is None:
        project_doc = read_doc(path / "project.json", default={})
        if not isinstance(project_doc, dict):
            raise FormatError(f"{path / 'project.json'}: not a JSON object; fix or restore it first")
    if workspaces is None:
        workspaces = read_doc(path / "workspaces.json", default=[])
    project_doc = {**project_doc, "last_exported": now_iso()}
    export(path, project_doc, workspaces, job_docs)
    if job_docs:
        instance.upsert_jobs(rec.uid, [job_row(j, d) for j, d in job_docs.items()])


_NEW_JOB_PREFIX = ".csfs-new-job-"


def _remove_stale_new_jobs(project_dir: Path) -> None:
    """Remove job directories that killed `new_job` calls left half-built under their temp names."""
    for n in os.listdir(project_dir):
        pid = n[len(_NEW_JOB_PREFIX):].split("-")[0]
        if n.startswith(_NEW_JOB_PREFIX) and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(project_dir / n, ignore_errors=True)


def job_numbers(project_dir: Path) -> list[int]:
    """Numbers of the J<n> directories present in a project."""
    out = []
    with os.scandir(project_dir) as it:
        for e in it:
            num = ids.job_num(e.name)
            if num is not None and e.is_dir():
                out.append(num)
    return out


def new_job(instance: Instance, project: ProjectLike | str | os.PathLike, type: str, title: str,
            doc_extra: Mapping[str, Any] | None = None, form: str = "v4") -> tuple[str, Path]:
    """Create the next job (J<max+1>/ with gridfs_data/ and job.json) and commit it.

    The job document has the shape CryoSPARC of `form` ("v4" or "v5") writes
    (documents.new_job_doc); it starts in status `building` unless `doc_extra` says
    otherwise, and `doc_extra` keys override the defaults. The directory is built under a hidden temporary name
    and renamed into place, so a job directory never exists without its job.json.
    Returns (job uid, job directory).
    """
    path = norm_path(project if isinstance(project, (str, os.PathLike)) else project.path)
    with serialized(instance), all_or_nothing(f"creating a job in {path}", "run the command again"):
        return _new_job(instance, path, type, title, doc_extra, form)


def _new_job(instance: Instance, path: Path, type: str, title: str,
             doc_extra: Mapping[str, Any] | None, form: str) -> tuple[str, Path]:
    rec = check_writable(instance, path)
    pdoc = read_doc(path / "project.json", default={})
    ws = workspace_rows(read_doc(path / "workspaces.json", default=[]))
    known = [n for n in (ids.job_num(j[0]) for j in instance.jobs(rec.uid)) if n is not None]
    num = max(job_numbers(path) + known + [0]) + 1
    _remove_stale_new_jobs(path)
    tmp = path / f"{_NEW_JOB_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    (tmp / "gridfs_data").mkdir(parents=True)
    puid = pdoc.get("uid", rec.uid) if isinstance(pdoc, dict) else rec.uid
    created = now_iso()
    while True:
        uid = f"J{num}"
        doc = documents.new_job_doc(form, uid, puid, type, title, created, [ws[0][0]] if ws else [], doc_extra)
        write_json(tmp / "job.json", doc)
        faults.point("new-job-tmp")
        try:
            if (path / uid).exists():  # rename() would replace an empty directory
                raise FileExistsError(uid)
            os.rename(tmp, path / uid)
            _undo.log.keep(f"creating {uid} (left in status {doc.get('status', 'building')!r})")
            break
        except OSError as e:
            if not isinstance(e, FileExistsError) and e.errno != errno.ENOTEMPTY:
                raise
            num += 1
    fsync_dir(path)
    faults.point("new-job-dir")
    commit(instance, path, job_docs={uid: doc})
    return uid, path / uid
