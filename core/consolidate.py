"""Physical exports: write an export plan under `<project>/exports/` for real.

Directories and generated files are written, data files become symlinks (relative
inside the project, absolute to raw data outside it), and every mtime is set from
the plan, so the result read with links followed equals the mount's virtual export.
The export is built in a temporary sibling folder and renamed into place.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

from . import exportplan
from .atomic import fsync_dir
from .errors import RefusedError
from .exportplan import Plan

Progress = Callable[[int, "int | None"], None]


def _link_target(source: Path, link_dir: Path, project_real: str) -> str:
    """Relative target when the source lies inside the project, else the absolute path."""
    src = os.fspath(source)
    if src.startswith(project_real + os.sep):
        return os.path.relpath(src, link_dir)
    return src


def write_plan(plan: Plan, dest: Path, project_path: Path, progress: Progress | None = None,
               stats: dict | None = None) -> Path:
    """Write `plan` at `dest` (replacing an older export there) and return `dest`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.csfs-tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    project_real = os.path.realpath(project_path)
    final_real = Path(os.path.realpath(dest.parent)) / dest.name
    written = links = 0
    total = len(plan.entries)
    try:
        for i, e in enumerate(plan.entries):
            path = tmp / e.path if e.path else tmp
            if e.kind == "dir":
                path.mkdir(mode=0o700)
            elif e.kind == "generated":
                data = e.generate()
                with open(path, "wb") as f:
                    f.write(data)
                written += len(data)
            else:
                link_dir = final_real / os.path.dirname(e.path)
                os.symlink(_link_target(e.source, link_dir, project_real), path)
                links += 1
            if progress:
                progress(i + 1, total)
        # modes and mtimes last, deepest first, so writing children does not move a folder's mtime
        for e in reversed(plan.entries):
            path = tmp / e.path if e.path else tmp
            if e.kind == "file":
                os.utime(path, ns=(_ns(e.mtime),) * 2, follow_symlinks=False)
            else:
                os.chmod(path, e.mode)
                os.utime(path, ns=(_ns(e.mtime),) * 2)
        old = dest.parent / f".{dest.name}.csfs-old-{os.getpid()}"
        if dest.exists() or dest.is_symlink():
            os.rename(dest, old)
        os.rename(tmp, dest)
        fsync_dir(dest.parent)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if stats is not None:
        stats.update(path=str(dest), entries=total, links=links, bytes_written=written,
                     data_bytes=sum(e.size for e in plan.entries if e.kind == "file"))
    return dest


def _ns(t: float) -> int:
    return int(round(t * 1e9))


def _refuse_missing(plan: Plan) -> None:
    if plan.missing:
        raise RefusedError(f"{plan.name}: {len(plan.missing)} data file(s) named by the outputs are missing "
                           f"(first: {plan.missing[0]}); run `csfs verify` and fix them first")


def _export(instance: Any, ref: str, build: Callable[[Any], Plan], kind: str,
            progress: Progress | None, stats: dict | None) -> Path:
    from . import store
    from .project import Project

    rec = instance.resolve(ref)
    store.check_writable(instance, rec.path)
    project = Project.open(rec.path)
    plan = build(project)
    _refuse_missing(plan)
    return write_plan(plan, project.path / "exports" / kind / plan.name, project.path, progress, stats)


def export_job(instance: Any, ref: str, juid: str, progress: Progress | None = None,
               stats: dict | None = None) -> Path:
    """Consolidate a completed job's export into `<project>/exports/jobs/J<N>_<type>/`."""
    return _export(instance, ref, lambda p: exportplan.job_export_plan(p, juid), "jobs", progress, stats)


def export_group(instance: Any, ref: str, juid: str, group: str, progress: Progress | None = None,
                 stats: dict | None = None) -> Path:
    """Consolidate an output group's export into `<project>/exports/groups/J<N>_<group>/`."""
    return _export(instance, ref, lambda p: exportplan.group_export_plan(p, juid, group), "groups",
                   progress, stats)
