"""Big generated export files (a joined `_exported.cs`) are made once, in a child process,
into the instance cache, then served from that file like real data.

The child keeps the generator's peak memory out of the long-running mount process and
the file is read by libfuse itself (read_buf), with page cache, like any source file.
Run as `python -m mountpoints.generated PROJECT KIND JUID GROUP REL OUT`.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

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


def main(argv: list[str]) -> int:
    from core import exportplan
    from core.atomic import write_bytes
    from core.project import Project

    project, kind, juid, group, rel, out = argv
    proj = Project.open(project)
    plan = (exportplan.job_export_plan(proj, juid) if kind == "jobs"
            else exportplan.group_export_plan(proj, juid, group))
    entry = plan.lookup(rel)
    if entry is None or entry.generate is None:
        print(f"{rel}: not a generated entry of {plan.name}", file=sys.stderr)
        return 2
    write_bytes(out, entry.generate())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
