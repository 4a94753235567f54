"""Typed errors. Each carries the CLI exit code and the errno a mount reports."""
from __future__ import annotations

import errno as _errno


class CsfsError(Exception):
    """Base class: a clear one-line message for the user, never a traceback."""

    exit_code = 1
    errno = _errno.EIO


class UsageError(CsfsError):
    """Bad input from the user: an unknown UID, a bad path, garbage in a control file."""

    exit_code = 2
    errno = _errno.EINVAL


class NotFoundError(UsageError):
    """A named project, job, group or file does not exist."""

    errno = _errno.ENOENT


class FormatError(UsageError):
    """A malformed file: a bad .cs, .csg, job.json or project.json."""


class RefusedError(CsfsError):
    """The action is not allowed in the current state."""

    exit_code = 1
    errno = _errno.EPERM


class ForeignLockError(RefusedError):
    """The project's cs.lock belongs to another instance (or cannot be read as ours)."""

    errno = _errno.EPERM


class ActiveJobError(RefusedError):
    """A job is queued/running/...; detach, archive and clear are refused."""

    errno = _errno.EBUSY


class ArchivedError(RefusedError):
    """The project is archived and therefore read-only."""

    errno = _errno.EROFS


class AlreadyError(RefusedError):
    """The project or job is already in the state asked for (exit 1, like any refusal)."""

    errno = _errno.EINVAL


class FaultError(CsfsError):
    """The file system failed under an action (disk full, I/O error); says what was undone."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        if errno is not None:
            self.errno = errno
