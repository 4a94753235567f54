"""Fault injection for the fault suite: run a csfs command in a forked child and, at its
N-th file-system operation, SIGKILL it (at once, or after a random few milliseconds from
another thread, so the kill may land anywhere, even inside a system call) or make the
operation fail with ENOSPC or EIO (once, or from then on: a disk that stays full).

Operations counted: os.open for writing, os.write, file-object writes, os.fsync,
os.replace/rename/link/symlink/mkdir/unlink/rmdir, os.sendfile, and each registry
COMMIT. The child never returns into the caller: it ends with os._exit.
"""
from __future__ import annotations

import builtins
import errno as _errno
import io
import json
import os
import signal
import sqlite3
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# operations that need free space (a full disk fails them; unlink/rmdir still work)
SPACE_OPS = {"open", "write", "link", "symlink", "mkdir", "sendfile", "commit"}
# (ENOSPC hits the first of these at or after the chosen operation; EIO hits that operation)


@dataclass
class Plan:
    """What to inject: nothing (count only), a kill, or an error."""

    at: int = 0                  # 1-based operation index; 0 = never
    kill: bool = False
    delay: float = 0.0           # kill: seconds after operation `at` starts (0 = just before it)
    error: int = 0               # errno to raise (ENOSPC, EIO)
    sticky: bool = False         # error: every later space-needing operation fails too


@dataclass
class Outcome:
    code: int                    # exit code; -9 when killed
    ops: int                     # operations the child reached (count runs only)
    stdout: str
    stderr: str
    log: list                    # [(index, op, path)] of the first operations (count runs only)


class _State:
    plan = Plan()
    n = 0
    fired = False
    log: list = []


def _tick(op: str, path: Any = None) -> None:
    s = _State
    s.n += 1
    if len(s.log) < 5000:
        s.log.append((s.n, op, str(path) if path is not None else ""))
    p = s.plan
    if not p.at or s.n < p.at:
        return
    if p.kill and s.n == p.at:
        if p.delay <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
        threading.Timer(p.delay, os.kill, (os.getpid(), signal.SIGKILL)).start()
        return
    space = p.error in (_errno.ENOSPC, _errno.EDQUOT)
    if space and op not in SPACE_OPS:  # a full disk fails only what needs space (not unlink, rmdir)
        return
    if p.error and (not s.fired or p.sticky):
        s.fired = True
        if op == "commit":
            raise sqlite3.OperationalError("database or disk is full" if p.error == _errno.ENOSPC
                                           else "disk I/O error")
        raise OSError(p.error, os.strerror(p.error), None if path is None else str(path))


def _wrap(name: str, op: str | None = None, arg: int | None = 0, when=None) -> None:
    real = getattr(os, name)

    def fn(*a, **kw):
        if when is None or when(*a, **kw):
            _tick(op or name, a[arg] if arg is not None and len(a) > arg else None)
        return real(*a, **kw)
    setattr(os, name, fn)


class _Writer:
    """A file object whose writes count as operations."""

    def __init__(self, f: Any, name: Any) -> None:
        self._f, self._name = f, name

    def write(self, data):
        _tick("write", self._name)
        return self._f.write(data)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, k):
        return getattr(self._f, k)

    def __enter__(self):
        self._f.__enter__()
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __iter__(self):
        return iter(self._f)


def _wrap_open() -> None:
    real = io.open

    def fn(file, mode="r", *a, **kw):
        if any(c in mode for c in "wax+"):
            _tick("open", file)
            return _Writer(real(file, mode, *a, **kw), file)
        return real(file, mode, *a, **kw)
    io.open = builtins.open = fn
    import pathlib
    pathlib.io.open = fn  # type: ignore[attr-defined]


class _Con:
    """A registry connection whose COMMIT counts as an operation."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con, self._writing = con, False

    def execute(self, sql, *a):
        word = sql.strip().upper()
        if word.startswith("BEGIN"):
            self._writing = word != "BEGIN"
        elif word == "COMMIT" and self._writing:
            _tick("commit", "registry")
        return self._con.execute(sql, *a)

    def __getattr__(self, k):
        return getattr(self._con, k)


def install(plan: Plan) -> None:
    """Patch os, open and sqlite3 in this (child) process."""
    _State.plan, _State.n, _State.log, _State.fired = plan, 0, [], False
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT
    _wrap("open", when=lambda path, flags, *a, **kw: bool(flags & writing))
    _wrap("write", arg=None)
    _wrap("fsync", arg=None)
    for name in ("replace", "rename", "link", "mkdir", "unlink", "rmdir", "remove"):
        _wrap(name)
    _wrap("symlink", arg=1)
    _wrap("sendfile", arg=None)
    _wrap_open()
    real_connect = sqlite3.connect
    sqlite3.connect = lambda *a, **kw: _Con(real_connect(*a, **kw))  # type: ignore[assignment]


def run(argv: list[str], home: Path, plan: Plan, workdir: Path, timeout: float = 120) -> Outcome:
    """Run `csfs --home HOME ARGV` in a forked child under `plan`; its outcome."""
    out, err, res = workdir / "child.out", workdir / "child.err", workdir / "child.json"
    for f in (out, err, res):
        f.unlink(missing_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        code = 99
        try:
            sys.stdout = open(out, "w")
            sys.stderr = open(err, "w")
            from csfs.main import main

            install(plan)
            code = main(["--home", str(home), *map(str, argv)])
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
                with io.FileIO(str(res), "w") as f:
                    f.write(json.dumps({"ops": _State.n, "log": _State.log}).encode())
            finally:
                os._exit(code if isinstance(code, int) else 98)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"csfs {' '.join(map(str, argv))} hung for {timeout} s under {plan}")
        time.sleep(0.002)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    try:  # a delayed kill may land while the child writes this file, after the command ended
        info = json.loads(res.read_text())
    except (OSError, ValueError):
        info = {"ops": 0, "log": []}
    return Outcome(code, info["ops"], out.read_text() if out.exists() else "",
                   err.read_text() if err.exists() else "", info["log"])
