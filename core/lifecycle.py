"""Project lifecycle: create, attach, detach, archive, unarchive, forget, rescue, mark completed.

Each action checks all its preconditions before changing anything, then changes the
project directory (through core.store's atomic exports) and the registry in an order
chosen so that a crash at any point leaves a state that re-running the same action
completes:

- attach/create: lock first, then project.json, then the registry row. Our lock with
  no registry row is an interrupted attach, and attach finishes it.
- detach: project.json (detached: true), then the lock is removed, then the registry.
  A registered project without a lock is an interrupted detach, and detach finishes it.
- archive: project.json (archived: true), then the registry.
- unarchive: project.json (archived: false) at the new path, then the registry.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from . import documents, faults, lock, safeio
from .atomic import write_json
from .documents import file_stamp, now_iso, workspace_rows
from .errors import (
    ActiveJobError,
    AlreadyError,
    ArchivedError,
    CsfsError,
    ForeignLockError,
    FormatError,
    NotFoundError,
    RefusedError,
    UsageError,
)
from .instance import Instance, ProjectRecord, norm_path
from .project import ACTIVE_STATUSES, FINAL_STATUSES, Project
from .store import (
    Undo,
    all_or_nothing,
    check_writable,
    commit,
    export,
    job_row,
    owned_lock,
    read_doc,
    refuse_foreign,
    serialized,
)

F = TypeVar("F", bound=Callable)


def _serial(fn: F) -> F:
    """Run a lifecycle action under the instance's write lock (store.serialized)."""
    @functools.wraps(fn)
    def wrapper(instance: Instance, *args: Any, **kwargs: Any) -> Any:
        with serialized(instance):
            return fn(instance, *args, **kwargs)
    return cast(F, wrapper)


def slug(title: str) -> str:
    """'My Project #2' -> 'my-project-2' (lower case, non-alphanumerics collapsed to '-')."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _project_doc(path: Path) -> dict:
    """project.json as a dict ({} when absent, as in the legacy layout); FormatError if corrupt."""
    doc = read_doc(path / "project.json", default={})
    if not isinstance(doc, dict):
        raise FormatError(f"{path / 'project.json'}: not a JSON object; fix or restore it first")
    return doc


def _workspaces_doc(path: Path) -> list | dict:
    doc = read_doc(path / "workspaces.json", default=[])
    if not isinstance(doc, (list, dict)):
        raise FormatError(f"{path / 'workspaces.json'}: not a list of workspaces; fix or restore it first")
    return doc


def _open(path: Path) -> tuple[Project, dict, list | dict]:
    """Open and validate a project directory: model, project.json, workspaces.json."""
    proj = Project.open(path)
    return proj, _project_doc(path), _workspaces_doc(path)


def registry_rows(path: Path) -> tuple[str, list[tuple[str, str]], list[tuple[str, str, str, str]]]:
    """The title, workspace rows and job rows the registry keeps for a project directory."""
    proj, _, ws = _open(path)
    return (proj.title, *_rows(proj, ws))


def _rows(proj: Project, ws: list | dict) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, str]]]:
    return workspace_rows(ws), [job_row(j.uid, j.doc) for j in proj.jobs.values()]


def _refuse_active(rec_uid: str, proj: Project, action: str) -> None:
    active = [j for j in proj.jobs.values() if j.is_active]
    if active:
        names = ", ".join(f"{j.uid} ({j.status})" for j in active)
        raise ActiveJobError(f"{rec_uid}: cannot {action} while a job is active: {names}; "
                             "wait for it to finish or kill it in CryoSPARC (if its instance is gone: "
                             f"csfs job mark-killed {rec_uid} {active[0].uid})")


# -- create / attach -----------------------------------------------------------------------

@_serial
def create(instance: Instance, title: str, container: str | os.PathLike) -> ProjectRecord:
    """A new `CS-<slug>` directory in `container` with project.json, workspaces.json, our lock."""
    title = title.strip()
    if not title or not slug(title):
        raise UsageError(f"{title!r}: a project title needs at least one letter or digit")
    container = norm_path(container)
    if not container.is_dir():
        raise NotFoundError(f"{container}: no such directory to create the project in")
    path = container / f"CS-{slug(title)}"
    info = lock.read(path) if path.is_dir() else None
    done = _created(instance, path, info, title)
    if done is not None:
        return done      # a re-run of a create that completed (killed before it could say so)
    if path.exists() or path.is_symlink():
        if not _interrupted_create(instance, path, info):
            raise RefusedError(f"{path} already exists; choose another title or attach it")
        if (path / "project.json").exists():
            return attach(instance, path)  # only the registry row was missing
    with all_or_nothing(f"create {path}", "run `csfs project create` again (it completes what is left)") as undo:
        if not path.exists():
            try:
                path.mkdir()
            except FileExistsError:
                raise RefusedError(f"{path} already exists; choose another title or attach it") from None
            undo.add(f"remove {path}", path.rmdir)
        _undo_lock(undo, path, instance.id)
        if info is None:
            # the UID is reserved by registering it: a failed create leaves the registry unchanged
            info = lock.create(path, lock.new_doc(instance.id, instance.next_uid(), instance.home))
        uid, info = _own_uid(instance, path, info)
        doc = {"uid": uid, "title": title, "description": "", "created_at": now_iso(),
               "archived": False, "detached": False}
        workspaces = [{"uid": "W1", "project_uid": uid, "title": "Workspace 1", "created_at": doc["created_at"]}]
        export(path, doc, workspaces)
        return instance.register(uid, path, "attached", title, info.lock_id, workspace_rows(workspaces), [])


def _undo_lock(undo: Undo, path: Path, instance_id: str) -> None:
    """If the attach or create fails, remove our lock from `path` (it can only be the one it
    wrote, or the one of an interrupted attach it was finishing: both unregistered)."""
    def remove() -> None:
        now = lock.read(path)
        if now is not None and now.is_ours(instance_id):
            lock.remove(path, now)
    undo.add(f"remove {path / lock.LOCK_NAME}", remove)


def _created(instance: Instance, path: Path, info: lock.LockInfo | None, title: str) -> ProjectRecord | None:
    """The registry row of the project this create already made at `path` (our lock, registered
    there under the same title), with a note; None otherwise."""
    if info is None or not info.project_uid or not info.is_ours(instance.id) or _unregistered(instance, info):
        return None
    rec = instance.get(info.project_uid)
    if rec.path != path or rec.title != title:
        return None
    return dataclasses.replace(rec, note="already created")


def _interrupted_create(instance: Instance, path: Path, info: lock.LockInfo | None) -> bool:
    """Is `path` what a create killed half-way leaves: empty but for our lock (or its temp file)?"""
    if not path.is_dir() or path.is_symlink():
        return False
    if info is None:
        return not [n for n in os.listdir(path) if n != lock.tmp_name(instance.id)]
    return info.is_ours(instance.id) and _unregistered(instance, info)


def _own_uid(instance: Instance, path: Path, info: lock.LockInfo) -> tuple[str, lock.LockInfo]:
    """The UID to register under for our unregistered lock `info`: its own if still free, else a new one."""
    uid = info.project_uid
    if uid:
        try:
            instance.get(uid)
        except NotFoundError:
            return uid, info
    new = lock.new_doc(instance.id, instance.next_uid(), instance.home)  # reserved when registered
    return new["project_uid"], lock.replace(path, info, new)


def _unregistered(instance: Instance, info: lock.LockInfo) -> bool:
    """True if our lock `info` names no live registry row (an interrupted attach/create/rescue)."""
    if not info.project_uid:
        return True
    try:
        rec = instance.get(info.project_uid)
    except NotFoundError:
        return True
    return rec.lock_id != info.lock_id or rec.state == "detached"


@_serial
def attach(instance: Instance, path: str | os.PathLike) -> ProjectRecord:
    """Lock a project directory for this instance and register it (and its jobs) under a new UID.

    Refused while any cs.lock is present (naming its owner), except our own lock left
    by an interrupted attach, which is then completed. Legacy directories get a
    project.json.
    """
    path = norm_path(path)
    _open(path)  # validate before touching anything
    info = lock.read(path)
    refuse_foreign(path, info, instance)
    if info is not None:
        return _adopt_own_lock(instance, path, info)
    rec = instance.find_path(path)
    if rec is not None and rec.state != "detached":
        # registered but the lock is gone (interrupted detach, or removed by hand): relock, if it
        # is still that project (not another one put in its place)
        doc = _project_doc(path)
        if doc.get("uid") != rec.uid:
            raise RefusedError(f"{path} is registered here as {rec.uid} ({rec.state}), but it has no cs.lock and "
                               f"holds project {doc.get('uid') or '?'}: {rec.uid} may have moved. Attach it at its "
                               f"new place, or run `csfs project detach {rec.uid} --registry-only` to drop "
                               "the old record; nothing changed")
        uid = rec.uid
    else:
        uid = instance.next_uid()  # reserved when registered: a failed attach leaves the registry unchanged
    with all_or_nothing(f"attach {path}", f"run `csfs project attach {path}` again (it completes "
                                          "or undoes what is left)") as undo:
        _undo_lock(undo, path, instance.id)
        info = lock.create(path, lock.new_doc(instance.id, uid, instance.home))
        return _finish_attach(instance, path, uid, info)


def _adopt_own_lock(instance: Instance, path: Path, info: lock.LockInfo) -> ProjectRecord:
    """Attach when our own lock is already there: finish an interrupted action or say why not."""
    uid = info.project_uid
    try:
        rec = instance.get(uid) if uid else None
    except NotFoundError:
        rec = None
    doc = _project_doc(path)
    if rec is not None and rec.state != "detached":
        same = rec.lock_id == info.lock_id
        moved = rec.path != path and not _holds_lock(rec.path, rec.lock_id)
        if same and rec.state == "archived":
            raise ArchivedError(f"{path} holds {rec.uid}, archived by this instance; "
                                f"use `csfs project unarchive {rec.uid} {path}`")
        if same and rec.path == path:
            return dataclasses.replace(rec, note="already attached")
        if same and moved and doc.get("uid") == rec.uid:
            # moved while attached: the lock proves it is ours and the old place no longer has it
            return dataclasses.replace(instance.update(rec.uid, path=path), note="new place recorded")
        if not same and (rec.path == path or moved) and doc.get("uid") == rec.uid:
            # the registry row or the lock was restored from a backup (or the project moved away
            # and back): the directory holds our lock for this very project, and no other
            # directory holds the registered one, so the lock here is the project's
            state = "archived" if doc.get("archived") is True else "attached"
            new = instance.update(rec.uid, path=path, lock_id=info.lock_id, state=state)
            return dataclasses.replace(new, note=f"adopted this directory's lock; the registry had "
                                                 f"lock id {rec.lock_id}")
    if rec is not None and rec.state != "detached":
        where = (f"which is {rec.state} at {rec.path}" + (" with another lock" if rec.lock_id != info.lock_id
                                                           else ""))
        raise ForeignLockError(
            f"{path}: cs.lock names {uid} of this instance, {where}: this is a copy (it holds project "
            f"{doc.get('uid') or '?'}). Work on the original; to keep the copy as a project of its own, "
            f"remove the copy's cs.lock by hand (only if you are sure) and attach it; nothing changed")
    with all_or_nothing(f"attach {path}", f"run `csfs project attach {path}` again (it completes "
                                          "or undoes what is left)") as undo:
        _undo_lock(undo, path, instance.id)  # a failed attach leaves no lock, even the one it found
        uid, info = _own_uid(instance, path, info)
        return _finish_attach(instance, path, uid, info)


def _holds_lock(path: Path, lock_id: str | None) -> bool:
    """Whether `path` holds a cs.lock with this lock id."""
    info = lock.read(path) if lock_id and path.is_dir() else None
    return info is not None and info.lock_id == lock_id


def _finish_attach(instance: Instance, path: Path, uid: str, info: lock.LockInfo,
                   keep_archived: bool = False) -> ProjectRecord:
    """With our lock in place: give project.json our UID, export, register everything."""
    faults.point("attach-locked")
    try:
        proj, doc, ws = _open(path)
    except (FormatError, NotFoundError):
        lock.remove(path, info)  # changed behind our back; leave it as we found it
        raise
    archived = keep_archived and doc.get("archived") is True
    new_doc = {"uid": uid, "title": proj.title, "description": "", "created_at": now_iso(), **doc}
    new_doc = documents.renumber_project(new_doc, uid, str(path))
    new_doc.update(detached=False, archived=archived)
    # every document naming the project gets the new UID: jobs first, project.json last, so a
    # re-run after a crash finds what is left to renumber (a job.json that is not a JSON object
    # is left alone: verify reports it)
    job_docs = {j.uid: documents.renumber_job(j.doc, uid) for j in proj.jobs.values()
                if j.doc and documents.needs_renumber(j.doc, uid)}
    export(path, new_doc, documents.renumber_workspaces(ws, uid), job_docs)
    _remove_stray_tmp(path, instance.id)
    proj = Project.open(path)
    return instance.register(uid, path, "archived" if archived else "attached", proj.title,
                             info.lock_id, *_rows(proj, ws))


def _remove_stray_tmp(path: Path, instance_id: str) -> None:
    """A crash inside lock.create can leave our private temp file behind."""
    try:
        (path / lock.tmp_name(instance_id)).unlink()
    except FileNotFoundError:
        pass


# -- detach / archive / unarchive / forget -------------------------------------------------

@_serial
def detach(instance: Instance, ref: str | os.PathLike, registry_only: bool = False) -> ProjectRecord:
    """Flush metadata, remove our lock, mark the project detached (refused while a job is active).

    The directory must hold the lock this instance registered for the project (or, after
    an interrupted detach, no lock and a project.json saying it is this project, detached).
    If another instance rescued the project (its rescue record names our lock), nothing
    on disk is touched and only this instance's registry row is marked detached; so it is
    with `registry_only`, for a project that is gone or taken over.
    """
    rec = instance.resolve(ref)
    if rec.state == "detached":
        return dataclasses.replace(rec, note="already detached")
    if registry_only:
        return dataclasses.replace(instance.update(rec.uid, state="detached"),
                                   note="registry row only; nothing on disk was touched")
    if rec.state == "archived":
        raise ArchivedError(f"{rec.uid} is archived; unarchive it first (`csfs project unarchive "
                            f"{rec.uid} PATH`), then detach")
    if not rec.path.is_dir():
        raise NotFoundError(f"{rec.uid}: directory {rec.path} is gone; if it moved, run "
                            f"`csfs project attach NEWPATH` to record its new place; if it was deleted, "
                            f"`csfs project forget --missing {rec.uid}`")
    info = lock.read(rec.path)
    if info is not None and not info.is_ours(instance.id):
        if not _rescued_from(rec):
            raise ForeignLockError(
                f"{rec.path}: locked by {info.describe()}, not by this instance, and no rescue record there "
                f"names {rec.uid}'s lock: it may be another project. If {rec.uid} moved, attach it at its "
                f"new place; if that instance took it over, run `csfs project detach {rec.uid} "
                "--registry-only`; nothing changed")
        return dataclasses.replace(instance.update(rec.uid, state="detached"),
                                   note=f"taken over by {info.describe()}; only this registry changed")
    if info is None:
        doc = _project_doc(rec.path)
        if doc.get("uid") != rec.uid or doc.get("detached") is not True:
            raise RefusedError(
                f"{rec.uid}: {rec.path} has no cs.lock and holds project {doc.get('uid') or '?'} "
                f"(detached: {json.dumps(doc.get('detached'))}), not {rec.uid} half-detached: {rec.uid} may "
                f"have moved. Attach it at its new place, or run `csfs project detach {rec.uid} "
                "--registry-only` to drop the record; nothing changed")
        # an interrupted detach: only the registry row is left to change
        return dataclasses.replace(instance.update(rec.uid, state="detached"), note="finished an interrupted detach")
    owned_lock(instance, rec)
    check_writable(instance, rec.path)
    proj, doc, ws = _open(rec.path)
    _refuse_active(rec.uid, proj, "detach")
    with all_or_nothing(f"detach {rec.uid}", f"run `csfs project detach {rec.uid}` again (it completes "
                                             "what is left)") as undo:
        commit(instance, proj, project_doc={**doc, "detached": True}, workspaces=ws)
        faults.point("detach-flushed")

        def put_back() -> None:
            if lock.read(rec.path) is None:
                lock.restore(rec.path, info)
        undo.add(f"put {rec.path / lock.LOCK_NAME} back", put_back)
        lock.remove(rec.path, info)
        faults.point("detach-unlocked")
        wrows, jrows = _rows(proj, ws)
        return instance.update(rec.uid, state="detached", title=proj.title, workspaces=wrows, jobs=jrows)


def _rescued_from(rec: ProjectRecord) -> bool:
    """Whether the directory holds a rescue record naming the lock this instance registered."""
    for p in rec.path.glob("cs.lock.rescued-*.json"):
        try:
            old = safeio.load_json(p, safeio.LOCK_LIMIT).get("old_lock") or {}
        except (CsfsError, AttributeError):
            continue
        if isinstance(old, dict) and rec.lock_id and old.get("lock_id") == rec.lock_id:
            return True
    return False


@_serial
def archive(instance: Instance, ref: str | os.PathLike) -> ProjectRecord:
    """Make an attached project read-only (project.json archived: true; lock kept).

    The directory may then be moved; `unarchive` makes it writable at its new path.
    Archiving an archived project again succeeds and changes nothing.
    """
    rec = instance.resolve(ref)
    if rec.state == "archived":  # a re-run (e.g. after a kill that landed after the commit)
        return dataclasses.replace(rec, note="already archived")
    if rec.state == "detached":
        raise RefusedError(f"{rec.uid} is detached; attach it before archiving")
    owned_lock(instance, rec)
    proj, doc, ws = _open(rec.path)
    with all_or_nothing(f"archive {rec.uid}", f"run `csfs project archive {rec.uid}` again"):
        if doc.get("archived") is not True:  # else: an interrupted archive, finish it
            check_writable(instance, rec.path)
            _refuse_active(rec.uid, proj, "archive")
            commit(instance, proj, project_doc={**doc, "archived": True}, workspaces=ws)
            faults.point("archive-flushed")
        return instance.update(rec.uid, state="archived")


@_serial
def unarchive(instance: Instance, ref: str | os.PathLike, new_path: str | os.PathLike) -> ProjectRecord:
    """Make an archived project writable again at `new_path` (where it may have moved).

    Accepted only if `new_path` holds our lock for this very project: same project UID,
    and the lock id registered for it (or, if the registry's lock id is out of date, no
    other directory holds that one: the lock is then adopted). Unarchiving a project
    already attached at `new_path` succeeds and changes nothing.
    """
    rec = instance.resolve(ref)
    new = norm_path(new_path)
    if rec.state == "attached" and rec.path == new and _holds_lock(new, rec.lock_id):
        return dataclasses.replace(rec, note="already unarchived")
    if rec.state != "archived":
        raise RefusedError(f"{rec.uid} is {rec.state}, not archived; nothing to unarchive")
    proj, doc, ws = _open(new)
    info = lock.read(new)
    refuse_foreign(new, info, instance)
    if info is None:
        raise RefusedError(f"{new} has no cs.lock, so it is not the archived {rec.uid}; "
                           "give the directory the archive was moved to")
    adopt = (info.lock_id != rec.lock_id and info.project_uid == rec.uid and doc.get("uid") == rec.uid
             and (rec.path == new or not _holds_lock(rec.path, rec.lock_id)))
    if (info.lock_id != rec.lock_id and not adopt) or doc.get("uid") != rec.uid:
        raise RefusedError(f"{new} holds project {doc.get('uid') or '?'} with another lock, "
                           f"not the archived {rec.uid}; give the directory it was moved to")
    other = instance.find_path(new)
    if other is not None and other.uid != rec.uid and other.state != "detached":
        raise RefusedError(f"{new} is already registered as {other.uid} ({other.state})")
    with all_or_nothing(f"unarchive {rec.uid}", f"run `csfs project unarchive {rec.uid} {new}` again"):
        if doc.get("archived") is not False or doc.get("project_dir", str(new)) != str(new):
            export(new, {**documents.renumber_project(doc, rec.uid, str(new)), "archived": False,
                         "last_exported": now_iso()}, ws)
            faults.point("unarchive-flushed")
        wrows, jrows = _rows(proj, ws)
        out = instance.update(rec.uid, state="attached", path=new, title=proj.title, lock_id=info.lock_id,
                              workspaces=wrows, jobs=jrows)
    return dataclasses.replace(out, note=f"adopted this directory's lock; the registry had lock id "
                                         f"{rec.lock_id}") if adopt else out


@_serial
def forget(instance: Instance, ref: str | os.PathLike, missing: bool = False) -> ProjectRecord:
    """Drop a detached project's registry rows; nothing on disk is touched.

    With `missing`, a project in any state whose directory is gone is forgotten too
    (otherwise it could be neither detached nor forgotten); one still on disk is refused.
    """
    rec = instance.resolve(ref)
    if missing:
        if not rec.missing:
            raise RefusedError(f"{rec.uid}: directory {rec.path} is still there, so it is not missing; "
                               f"detach it first (`csfs project detach {rec.uid}`), then forget it")
    elif rec.state != "detached":
        how = (f"its directory is gone: `csfs project forget --missing {rec.uid}`" if rec.missing
               else f"run `csfs project detach {rec.uid}` first")
        raise RefusedError(f"{rec.uid} is {rec.state}; only detached projects can be forgotten ({how})")
    instance.remove(rec.uid)
    return rec


# -- rescue --------------------------------------------------------------------------------

@_serial
def rescue(instance: Instance, path: str | os.PathLike, other_instance_is_down: bool) -> str:
    """Take over a project whose lock belongs to a dead instance.

    Without `other_instance_is_down` only explains the steps and changes nothing. With
    it, the old lock is saved as `cs.lock.rescued-<time>.json` and replaced by ours,
    and the project is registered here under a new UID. Returns a message for the user.
    """
    path = norm_path(path)
    _open(path)
    info = lock.read(path)
    if info is None:
        raise AlreadyError(f"{path} has no cs.lock; nothing to rescue. Attach it: csfs project attach {path}")
    if info.is_ours(instance.id):
        if _unregistered(instance, info):
            rec = attach(instance, path)
            return f"{path} held this instance's own lock from an interrupted action; attached as {rec.uid}"
        raise AlreadyError(f"{path} is locked by this instance itself ({info.project_uid}); nothing to rescue")
    if not other_instance_is_down:
        return _rescue_steps(path, info)
    stamp = file_stamp()
    record = path / f"cs.lock.rescued-{stamp}.json"
    write_json(record, {"rescued_at": now_iso(), "rescued_by_instance": instance.id,
                        "rescued_by_home": str(instance.home), "old_lock": info.doc,
                        "old_lock_raw": info.raw.decode("utf-8", "replace")})
    faults.point("rescue-recorded")
    uid = instance.allocate_uid()
    new = lock.replace(path, info, lock.new_doc(instance.id, uid, instance.home))
    rec = _finish_attach(instance, path, uid, new, keep_archived=True)
    note = (f"; it is archived: `csfs project unarchive {rec.uid} {path}` makes it writable"
            if rec.state == "archived" else "")
    return (f"rescued {path}: now {rec.state} here as {rec.uid}{note}. "
            f"The old lock ({info.describe()}) is saved in {record.name}")


def _rescue_steps(path: Path, info: lock.LockInfo) -> str:
    return "\n".join([
        f"{path} is locked by {info.describe()}.",
        "Rescue takes the project away from that instance. Do it only if that instance is down",
        "for good (or has lost the project), never while it may still write to the directory:",
        "  1. Stop the other instance, or make sure it no longer exists.",
        f"  2. If you wish, work on a copy first: rsync -a {path}/ COPY/ and rescue COPY instead.",
        f"  3. Run: csfs project rescue {path} --other-instance-is-down",
        "The old lock is kept as cs.lock.rescued-<time>.json in the project directory.",
        "Nothing was changed.",
    ])


# -- jobs ----------------------------------------------------------------------------------

@_serial
def mark_completed(instance: Instance, ref: str | os.PathLike, juid: str) -> str:
    """Mark a killed or failed job completed (CryoSPARC's "mark as completed"). Returns its UID."""
    return _mark(instance, ref, juid, "completed", FINAL_STATUSES, "killed or failed")


@_serial
def mark_killed(instance: Instance, ref: str | os.PathLike, juid: str) -> str:
    """Mark an active job killed: for a job whose process is gone (its instance died or was
    stopped), which would otherwise block detach and archive for ever. Returns its UID."""
    return _mark(instance, ref, juid, "killed", ACTIVE_STATUSES, "queued, launched, started, running or waiting")


def _mark(instance: Instance, ref: str | os.PathLike, juid: str, status: str,
          allowed: frozenset[str], which: str) -> str:
    """Set a job's status (and `<status>_at`) after checking the lock and its current status."""
    rec = instance.resolve(ref)
    check_writable(instance, rec.path)
    proj = Project.open(rec.path)
    job = proj.job(juid)
    if job.error:
        raise FormatError(f"{rec.uid}: {job.error}")
    if job.status == status:
        raise AlreadyError(f"{rec.uid} {job.uid} is already {status}")
    if job.status not in allowed:
        raise RefusedError(f"{rec.uid} {job.uid} is {job.status or 'without status'}; only {which} "
                           f"jobs can be marked {status}")
    doc = documents.set_status(job.doc, status, now_iso())
    commit(instance, proj, job_docs={job.uid: doc})
    return job.uid
