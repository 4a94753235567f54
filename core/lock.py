"""`cs.lock`: which instance owns a project directory.

The lock is a small JSON document naming the owning instance (id, host, pid, time)
plus the project UID it was given there and a random `lock_id`. It is created
atomically and exclusively: the full content is written to a private temp file and
fsynced, then hard-linked to `cs.lock` (link fails if the lock exists, like
O_CREAT|O_EXCL, and a reader never sees a half-written lock). On filesystems
without hard links it falls back to O_CREAT|O_EXCL on `cs.lock` itself.

A lock that is not ours, or cannot be read as ours, is foreign: no write, ever.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import faults, safeio
from .atomic import dumps_json, fsync_dir, write_bytes
from .documents import now_iso
from .errors import CsfsError, ForeignLockError, NotFoundError

LOCK_NAME = "cs.lock"


@dataclass
class LockInfo:
    """The parsed contents of a cs.lock. `readable` is False for garbage."""

    path: Path
    raw: bytes
    doc: dict[str, Any] = field(default_factory=dict)
    readable: bool = True

    @property
    def instance_id(self) -> str | None:
        v = self.doc.get("instance_id")
        return v if isinstance(v, str) else None

    @property
    def lock_id(self) -> str | None:
        v = self.doc.get("lock_id")
        return v if isinstance(v, str) else None

    @property
    def project_uid(self) -> str | None:
        v = self.doc.get("project_uid")
        return v if isinstance(v, str) else None

    def is_ours(self, instance_id: str) -> bool:
        return self.readable and self.instance_id == instance_id

    def describe(self) -> str:
        """Who owns the lock, in words: 'instance 1b2c… on host h (pid 12, since …)'."""
        if self.doc and not self.instance_id:  # JSON, but not a csfs lock (e.g. CryoSPARC's own)
            text = json.dumps(self.doc, default=str)
            return f"a lock not written by csfs: {text[:200]}{'…' if len(text) > 200 else ''}"
        if not self.readable or not self.instance_id:
            return f"an unreadable lock ({self.path}, {len(self.raw)} bytes)"
        d = self.doc
        parts = [f"instance {self.instance_id}"]
        if d.get("host"):
            parts.append(f"on host {d['host']}")
        extra = []
        if d.get("project_uid"):
            extra.append(f"as {d['project_uid']}")
        if d.get("pid"):
            extra.append(f"pid {d['pid']}")
        if d.get("time"):
            extra.append(f"since {d['time']}")
        if d.get("home"):
            extra.append(f"home {d['home']}")
        s = " ".join(parts)
        return f"{s} ({', '.join(extra)})" if extra else s


def lock_path(project_dir: str | os.PathLike) -> Path:
    return Path(project_dir) / LOCK_NAME


def read(project_dir: str | os.PathLike) -> LockInfo | None:
    """The project's lock, or None when there is none. Never raises for bad content."""
    p = lock_path(project_dir)
    try:   # regular files only, bounded: a FIFO or /dev/zero as cs.lock must not hang us
        raw = safeio.read_bytes(p, safeio.LOCK_LIMIT)
    except NotFoundError:
        return None
    except CsfsError:
        return LockInfo(p, b"", {}, readable=False)
    try:
        doc = safeio.parse_json(raw, p)
    except CsfsError:
        return LockInfo(p, raw, {}, readable=False)
    if not isinstance(doc, dict) or not isinstance(doc.get("instance_id"), str):
        return LockInfo(p, raw, doc if isinstance(doc, dict) else {}, readable=False)
    return LockInfo(p, raw, doc)


def new_doc(instance_id: str, project_uid: str, home: str | os.PathLike | None = None) -> dict[str, Any]:
    """The JSON a new lock holds."""
    return {
        "instance_id": instance_id,
        "lock_id": uuid.uuid4().hex,
        "project_uid": project_uid,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "time": now_iso(),
        "home": str(home) if home is not None else None,
        "tool": "csfs",
    }


def tmp_name(instance_id: str) -> str:
    """The private temp file an instance writes its lock to before linking it as cs.lock."""
    return f".{LOCK_NAME}.{instance_id}.tmp"


def create(project_dir: str | os.PathLike, doc: dict[str, Any]) -> LockInfo:
    """Create cs.lock exclusively with `doc`; ForeignLockError naming the owner if one exists."""
    data = dumps_json(doc)
    _put(Path(project_dir), data, doc["instance_id"])
    return LockInfo(lock_path(project_dir), data, doc)


def restore(project_dir: str | os.PathLike, info: LockInfo) -> None:
    """Put back a lock of ours that an action removed and then had to undo (same bytes)."""
    _put(Path(project_dir), info.raw, info.instance_id or "restore")


def _put(project_dir: Path, data: bytes, instance_id: str) -> None:
    """Create cs.lock holding `data`, exclusively (temp file, fsync, hard link)."""
    target = lock_path(project_dir)
    tmp = project_dir / tmp_name(instance_id)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    faults.point("lock-before-link")
    try:
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise _foreign(project_dir) from None
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            _create_excl(target, data, project_dir)
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
    fsync_dir(project_dir)
    faults.point("lock-created")


def _create_excl(target: Path, data: bytes, project_dir: Path) -> None:
    """Fallback for filesystems without hard links: O_CREAT|O_EXCL, write, fsync."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise _foreign(project_dir) from None
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        target.unlink(missing_ok=True)  # never leave a half-written lock (it would look foreign)
        raise
    os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _foreign(project_dir: Path) -> ForeignLockError:
    info = read(project_dir)
    who = info.describe() if info else "another process (the lock vanished while we looked)"
    return ForeignLockError(f"{project_dir}: cs.lock is held by {who}; nothing changed")


def replace(project_dir: str | os.PathLike, expected: LockInfo, doc: dict[str, Any]) -> LockInfo:
    """Replace the lock `expected` by a new one (rescue only). Refuses if it changed meanwhile."""
    project_dir = Path(project_dir)
    current = read(project_dir)
    if current is None or current.raw != expected.raw:
        raise ForeignLockError(f"{project_dir}: cs.lock changed while rescuing; nothing changed, look again")
    data = dumps_json(doc)
    write_bytes(lock_path(project_dir), data)
    return LockInfo(lock_path(project_dir), data, doc)


def remove(project_dir: str | os.PathLike, expected: LockInfo) -> None:
    """Remove our lock; refuses if the file is no longer the one we hold."""
    project_dir = Path(project_dir)
    current = read(project_dir)
    if current is None:
        return
    if current.raw != expected.raw:
        raise ForeignLockError(f"{project_dir}: cs.lock is now held by {current.describe()}; not removed")
    lock_path(project_dir).unlink()
    fsync_dir(project_dir)

