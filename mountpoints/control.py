"""Control files: a write runs a core action (the same function as the CLI command);
a read tells the last outcome in one line.

Project scope: detach, archive, clear-intermediate, export-job, export-group.
Instance scope (root of an instance mount): attach, unarchive.
Failures reach the writer as the core error's errno; the outcome says why.

A command is acted on only when complete (`Pending`): a line ending in a newline, at the
write() that completes it (so `echo J10 > export-job` gets its errno from write()), or
the text left without a newline at flush() (close() returns the errno). A fragment such
as the `J1` of `J1` + `0` is never acted on. Writes must come in order (offset = bytes
written so far; any offset with O_APPEND); binary bytes, a line over MAX_LINE or more than
MAX_INPUT bytes on one open file are refused with EINVAL and the file stays refused
until it is closed.
"""
from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from csfs.core import ids
from csfs.core.errors import CsfsError, UsageError

from .context import Context
from .statinfo import ns

log = logging.getLogger("csfs.mount")

PROJECT_ACTIONS = ("detach", "archive", "clear-intermediate", "export-job", "export-group")
INSTANCE_ACTIONS = ("attach", "unarchive")
MAX_LINE = 4096           # one command (a path for attach/unarchive fits easily)
MAX_INPUT = 64 * 1024     # bytes accepted by one open control file
_BINARY = bytes(c for c in range(32) if c not in b"\t\n\r") + b"\x7f"
_YES = {"1", "y", "yes", "true", "now"}


def _words(text: str, action: str, n: int, usage: str) -> list[str]:
    words = text.split()
    if len(words) != n:
        raise UsageError(f"{action}: expected {usage}, got {text.strip()!r}")
    return words


def _job(word: str, action: str) -> str:
    if not ids.is_job(word):
        raise UsageError(f"{action}: {word!r} is not a job uid (write e.g. J12)")
    return word


class Controls:
    """The control files of one mount and their last outcomes."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._outcomes: dict[tuple[str, str], tuple[str, int]] = {}
        self._lock = threading.Lock()
        self.after_action: Callable[[Path | None], None] | None = None   # drops kernel caches

    # -- outcomes -----------------------------------------------------------
    def outcome(self, scope: str, action: str) -> tuple[bytes, int]:
        """(text, mtime_ns) of the last outcome of `action` in `scope`."""
        with self._lock:
            text, when = self._outcomes.get((scope, action), (_idle(action), self.ctx.started_ns))
        return text.encode(), when

    def _record(self, scope: str, action: str, text: str) -> None:
        with self._lock:
            self._outcomes[(scope, action)] = (text, ns(time.time()))

    # -- actions --------------------------------------------------------------
    def run(self, scope: str, action: str, text: str, project: Path | None) -> None:
        """Run one written command; raise OSError(errno) after recording a failure."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        shown = " ".join(text.split()) or "(empty)"
        try:
            with self.ctx.action_lock:
                try:
                    result = self._dispatch(action, text, project)
                finally:
                    self.ctx.invalidate()
                    if self.after_action is not None:
                        self.after_action(project)
        except CsfsError as e:
            msg = str(e).replace("\n", " ")
            self._record(scope, action, f"{stamp} {action} {shown}: failed "
                                        f"({errno.errorcode.get(e.errno, e.errno)}): {msg}\n")
            raise OSError(e.errno, msg) from None
        except Exception as e:  # a bug in core: keep the mount alive, say what happened
            log.exception("control %s %r failed", action, text)
            self._record(scope, action, f"{stamp} {action} {shown}: failed (EIO): {e}\n")
            raise OSError(errno.EIO, str(e)) from None
        self._record(scope, action, f"{stamp} {action} {shown}: ok: {result}\n")

    def refuse(self, scope: str, action: str, why: str) -> None:
        """Record and raise EINVAL for input that is no command at all."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._record(scope, action, f"{stamp} {action}: failed (EINVAL): {why}\n")
        raise OSError(errno.EINVAL, why)

    def _dispatch(self, action: str, text: str, project: Path | None) -> str:
        ctx = self.ctx
        if action in INSTANCE_ACTIONS:
            from csfs.core import lifecycle

            if action == "attach":
                (path,) = _words(text, action, 1, "a project directory path")
                rec = lifecycle.attach(ctx.instance(), self._path(path, action))
                return f"attached {_describe(rec)}"
            ref, path = _words(text, action, 2, "'P<n> <new path>'")
            if not ids.is_project(ref):
                raise UsageError(f"unarchive: {ref!r} is not a project uid (write e.g. 'P3 /new/path')")
            rec = lifecycle.unarchive(ctx.instance(), ref, self._path(path, action))
            return f"unarchived {_describe(rec)}"

        assert project is not None
        ref = str(project)
        inst = ctx.instance()
        if action in ("detach", "archive"):
            word = text.strip().lower()
            if word not in _YES and word != action:
                raise UsageError(f"{action}: write 1 (or 'yes') to {action} this project, got {text.strip()!r}")
            from csfs.core import lifecycle

            fn, done = ((lifecycle.detach, "detached") if action == "detach"
                        else (lifecycle.archive, "archived"))
            return f"{done} {_describe(fn(inst, ref))}"
        if action == "clear-intermediate":
            from csfs.core.cleanup import clear_intermediate

            (word,) = _words(text, action, 1, "'all' or a job uid")
            juid = None if word.lower() == "all" else _job(word, action)
            return f"cleared {_describe(clear_intermediate(inst, ref, juid))}"
        from csfs.core import consolidate

        if action == "export-job":
            (word,) = _words(text, action, 1, "a job uid")
            return f"exported to {consolidate.export_job(inst, ref, _job(word, action))}"
        if action == "export-group":
            juid, group = _words(text, action, 2, "'J<n> <group name>'")
            return f"exported to {consolidate.export_group(inst, ref, _job(juid, action), group)}"
        raise UsageError(f"unknown control action {action!r}")

    def _path(self, path: str, action: str) -> Path:
        if not path.startswith("/"):
            raise UsageError(f"{action}: give an absolute path, got {path!r}")
        if self.ctx.inside_mount(path):
            raise UsageError(f"{action}: {path} is inside this mount; give the real directory")
        return Path(path)


Target = tuple[Controls, str, str, "Path | None"]   # (controls, scope, action, project directory)


class Pending:
    """What has been written to one open control file and not yet acted on.

    write() returns the bytes it took: when a later line of one write fails after earlier
    ones were acted on, a short count (the writer retries the rest and gets the errno); a
    write whose first command fails takes nothing, and a retry of it acts again."""

    __slots__ = ("target", "append", "buf", "pos", "redo", "received", "acted", "broken")

    def __init__(self, target: Target, append: bool) -> None:
        self.target = target
        self.append = append      # opened with O_APPEND: the kernel picks the offsets
        self.buf = b""            # a command not yet complete
        self.pos = 0              # the offset the next write must have
        self.redo: bytes | None = None   # the fragment a failed write started from
        self.received = 0
        self.acted = False
        self.broken = ""          # why this open file refuses every further write

    def write(self, data: bytes, offset: int) -> int:
        """Take `data`; act on every line it completes. Raises OSError(errno)."""
        if self.broken:
            raise OSError(errno.EINVAL, self.broken)
        if self.redo is not None and (self.append or offset == self.pos):
            self.buf, self.redo = self.redo, None      # the writer retries a failed write
        elif not self.append and offset != self.pos:
            self._refuse(f"write at offset {offset}, expected {self.pos}: write the command from the start")
        self.received += len(data)
        if self.received > MAX_INPUT:
            self._refuse(f"more than {MAX_INPUT} bytes written: a control file takes short commands")
        if any(c in _BINARY for c in data):
            self._refuse("binary input: write a command as text, e.g. `echo J12 > export-job`")
        start = len(self.buf)
        self.buf += data
        done = 0
        while (nl := self.buf.find(b"\n", done)) >= 0:
            line = self.buf[done:nl]
            if line.strip():
                try:
                    self._act(line)
                except OSError:
                    if done > start:   # earlier lines of this write were acted on
                        self.buf, self.pos = b"", offset + done - start
                        return done - start
                    self.buf, self.redo = b"", self.buf[:start]
                    raise
            done = nl + 1
        self.buf = self.buf[done:]
        self.pos = offset + len(data)
        if len(self.buf) > MAX_LINE:
            self._refuse(f"a line of more than {MAX_LINE} bytes: a control file takes short commands")
        return len(data)

    def flush(self) -> None:
        """close(): act on text left without a newline (or refuse input that held no command)."""
        line, self.buf = self.buf, b""
        if self.broken:
            return
        if line.strip():
            self._act(line)
        elif self.received and not self.acted:
            self._act(b"")   # only blank lines: the action says what it expected

    def _act(self, line: bytes) -> None:
        controls, scope, action, project = self.target
        self.acted = True
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._refuse("not UTF-8 text: write a command as text, e.g. `echo J12 > export-job`")
        controls.run(scope, action, text, project)

    def _refuse(self, why: str) -> None:
        self.broken, self.buf = why, b""
        controls, scope, action, _ = self.target
        controls.refuse(scope, action, why)


def _idle(action: str) -> str:
    return f"(no {action} yet; write to this file to act)\n"


def _describe(result: Any) -> str:
    """A short one-line description of what a core action returned."""
    if result is None:
        return "done"
    if isinstance(result, list):   # clear_intermediate: one JobClear per job
        done = [r for r in result if not getattr(r, "skipped", None)]
        files = sum(len(getattr(r, "files", [])) for r in done)
        nbytes = sum(getattr(r, "bytes", 0) for r in done)
        return f"{files} files, {nbytes} bytes from {len(done)} job(s) ({len(result) - len(done)} skipped)"
    uid, path = getattr(result, "uid", None), getattr(result, "path", None)
    if uid is not None and path is not None:
        return f"{uid} ({path})"
    for attr in ("summary", "message"):
        v = getattr(result, attr, None)
        if isinstance(v, str):
            return v
        if callable(v):
            return str(v())
    return " ".join(str(result).split())[:300]
