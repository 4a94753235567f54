"""Big generated export files (a joined `_exported.cs`) are made once, in a child process,
into the instance cache, then served from that file like real data.

The child keeps the generator's peak memory out of the long-running mount process and
the file is read by libfuse itself (read_buf), with page cache, like any source file.
Export plans themselves are built in a child too (load_plan), for the same reason.
Run as `python -m mountpoints.generated PROJECT KIND JUID GROUP REL OUT` (make one file)
or `python -m mountpoints.generated plan PROJECT KIND JUID GROUP` (a plan as JSON).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from core.errors import CsfsError

# generated files up to this size are kept in memory instead (tunable for tests)
BIG = int(os.environ.get("CSFS_MOUNT_INLINE_MAX", 8 * 1024 * 1024))
TIMEOUT = 1800.0
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def materialize(cache_dir: Path, project: Path, kind: str, juid: str, group: str | None,
                rel: str, size: int, mtime: float) -> Path:
    """The cached file holding this generated entry's bytes (made now if missing)."""
    key = hashlib.sha1(json.dumps([str(project), kind, juid, group, rel, size, mtime]).encode()).hexdigest()
    out = Path(cache_dir) / "mount-generated" / f"{key}.bin"
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if out.is_file() and out.stat().st_size == size:
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "mountpoints.generated", str(project), kind, juid, group or "", rel, str(out)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
        if r.returncode != 0 or not out.is_file():
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise CsfsError(f"generating {rel} failed: {last}")
        if out.stat().st_size != size:
            raise CsfsError(f"generated {rel} has {out.stat().st_size} bytes, the plan said {size}")
        return out


class LightPlan:
    """An export plan as the mount keeps it: entries without generators, small generated
    bytes inline. Made by a child process (load_plan) so building it (which reads the
    result .cs files) never raises the mount process's memory."""

    def __init__(self, name: str, entries: list[list]) -> None:
        self.name = name
        self._by_path: dict[str, tuple] = {}
        self._children: dict[str, list[str]] = {}
        for path, kind, size, mtime, source, mode, inline in entries:
            data = base64.b64decode(inline) if inline is not None else None
            self._by_path[path] = (kind, size, mtime, source, mode, data)
            if path:
                parent, _, base = path.rpartition("/")
                self._children.setdefault(parent, []).append(base)

    def lookup(self, rel: str) -> tuple | None:
        """(kind, size, mtime, source, mode, inline bytes or None) of `rel` ("" = the root)."""
        return self._by_path.get(rel.strip("/"))

    def children(self, rel: str) -> list[str]:
        return self._children.get(rel.strip("/"), [])


def load_plan(project: Path, kind: str, juid: str, group: str | None) -> LightPlan:
    """Build a job ("jobs") or group ("groups") export plan in a child process."""
    argv = [sys.executable, "-m", "mountpoints.generated", "plan", str(project), kind, juid, group or ""]
    r = subprocess.run(argv, capture_output=True, timeout=TIMEOUT)
    if r.returncode != 0:
        last = (r.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise _error(r.returncode, last)
    doc = json.loads(r.stdout)
    return LightPlan(doc["name"], doc["entries"])


def _error(code: int, message: str) -> CsfsError:
    """The child's error, as the core error class it reported (exit code 2: usage, else refused)."""
    from core import errors

    cls_name, _, msg = message.partition(": ")
    cls = getattr(errors, cls_name, None)
    if isinstance(cls, type) and issubclass(cls, CsfsError):
        return cls(msg)
    return CsfsError(message)


def _build(project: str, kind: str, juid: str, group: str) -> Any:
    from core import exportplan
    from core.project import Project

    proj = Project.open(project)
    return (exportplan.job_export_plan(proj, juid) if kind == "jobs"
            else exportplan.group_export_plan(proj, juid, group))


def _plan_main(project: str, kind: str, juid: str, group: str) -> int:
    try:
        plan = _build(project, kind, juid, group)
    except CsfsError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 2
    entries = []
    for e in plan.entries:
        inline = None
        if e.kind == "generated" and e.size <= BIG:
            inline = base64.b64encode(e.generate()).decode()
        entries.append([e.path, e.kind, e.size, e.mtime, str(e.source) if e.source else None, e.mode, inline])
    json.dump({"name": plan.name, "entries": entries}, sys.stdout)
    return 0


def main(argv: list[str]) -> int:
    from core.atomic import write_bytes

    if argv and argv[0] == "plan":
        return _plan_main(*argv[1:])
    project, kind, juid, group, rel, out = argv
    plan = _build(project, kind, juid, group)
    entry = plan.lookup(rel)
    if entry is None or entry.generate is None:
        print(f"{rel}: not a generated entry of {plan.name}", file=sys.stderr)
        return 2
    write_bytes(out, entry.generate())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
