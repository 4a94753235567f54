"""Physical exports: write an export plan under `<project>/exports/` for real.

Directories and generated files are written, data files become symlinks (relative
inside the project, absolute to raw data outside it), and every mtime is set from
the plan, so the result read with links followed equals the mount's virtual export.
The export is built in a temporary sibling folder and renamed into place.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import exportplan, faults
from .atomic import fsync_dir
from .exportplan import Entry, Plan

if TYPE_CHECKING:
    from .instance import Instance
    from .project import Project

Progress = Callable[[int, "int | None"], None]


class _Targets:
    """Symlink targets: relative when the source lies inside the project, else absolute.

    Relative paths are computed once per (source folder, link folder) pair.
    """

    def __init__(self, final_real: Path, project_real: str) -> None:
        self.final_real = os.fspath(final_real)
        self.inside = project_real + os.sep
        self._rel: dict[tuple[str, str], str] = {}

    def __call__(self, source: str | None, rel_path: str) -> str:
        if source is None:
            raise ValueError(f"export entry {rel_path!r}: a file without a source")
        src = os.fspath(source)
        if not src.startswith(self.inside):
            return src
        src_dir, base = os.path.split(src)
        key = (src_dir, os.path.dirname(rel_path))
        prefix = self._rel.get(key)
        if prefix is None:
            link_dir = os.path.join(self.final_real, key[1]) if key[1] else self.final_real
            prefix = self._rel[key] = os.path.relpath(src_dir, link_dir)
        return os.path.join(prefix, base)


def write_plan(plan: Plan, dest: Path, project_path: Path, progress: Progress | None = None,
               stats: dict | None = None) -> Path:
    """Write `plan` at `dest` and return `dest`.

    A new export is built in a temporary sibling and renamed into place. An existing
    one is brought up to date in place: unchanged links and files are left alone, the
    others replaced one by one (each atomically), and entries the plan lacks removed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    project_real = os.path.realpath(project_path)
    final_real = Path(os.path.realpath(dest.parent)) / dest.name
    counts = {"written": 0, "links": 0, "changed": 0}
    if dest.is_dir() and not dest.is_symlink():
        _apply(plan, dest, final_real, project_real, True, counts, progress)
    else:
        _remove_stale(dest)
        tmp = dest.parent / f".{dest.name}.csfs-tmp-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        try:
            _apply(plan, tmp, final_real, project_real, False, counts, progress)
            if dest.is_symlink() or dest.exists():
                dest.unlink()
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    fsync_dir(dest.parent)
    if stats is not None:
        stats.update(path=str(dest), entries=len(plan.entries), links=counts["links"],
                     changed=counts["changed"], bytes_written=counts["written"],
                     data_bytes=sum(e.size for e in plan.entries if e.kind == "file"))
    return dest


def _remove_stale(dest: Path) -> None:
    """Remove temporary folders of exports whose process died (killed mid-export)."""
    for tmp in dest.parent.glob(f".{dest.name}.csfs-tmp-*"):
        try:
            os.kill(int(tmp.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


def _replace(path: Path, make: Callable[[Path], object]) -> None:
    """Create `path` through `make(tmp)` and an atomic rename (a folder in the way is removed)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    tmp = path.with_name(f".{path.name}.csfs-tmp-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    make(tmp)
    os.replace(tmp, path)


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        if path.is_symlink() or path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def _put(e: Entry, path: Path, existing: bool, targets: _Targets, counts: dict) -> None:
    """Make one directory or generated file (or, over an existing export, one link) match `e`."""
    if e.kind == "dir":
        if not (existing and path.is_dir() and not path.is_symlink()):
            if existing:
                _remove(path)
            path.mkdir(mode=0o700)
            counts["changed"] += 1
    elif e.kind == "generated":
        assert e.generate is not None, f"generated entry {e.path!r} without its generator"
        data = e.generate()
        if not existing:
            path.write_bytes(data)
        elif not _same_bytes(path, data):
            _replace(path, lambda tmp: tmp.write_bytes(data))
        else:
            return
        counts["written"] += len(data)
        counts["changed"] += 1
    else:
        target = targets(e.source, e.path)
        counts["links"] += 1
        if not (path.is_symlink() and os.readlink(path) == target):
            _replace(path, lambda tmp: os.symlink(target, tmp))
            counts["changed"] += 1


def _apply(plan: Plan, root: Path, final_real: Path, project_real: str, existing: bool,
           counts: dict, progress: Progress | None) -> None:
    total = len(plan.entries)
    targets = _Targets(final_real, project_real)
    root_s = os.fspath(root)
    for i, e in enumerate(plan.entries):
        if e.kind == "file" and not existing:  # the common case, kept cheap: one symlink()
            os.symlink(targets(e.source, e.path), os.path.join(root_s, e.path))
            counts["links"] += 1
            counts["changed"] += 1
        else:
            _put(e, root / e.path if e.path else root, existing, targets, counts)
        faults.point("export-entry")
        if progress:
            progress(i + 1, total)
    if existing:
        wanted = {e.path for e in plan.entries}
        for top, dirs, files in os.walk(root, topdown=True):
            rel_top = os.path.relpath(top, root)
            rel_top = "" if rel_top == "." else rel_top
            for name in list(dirs) + files:
                rel = f"{rel_top}/{name}" if rel_top else name
                if rel not in wanted:
                    _remove(Path(top) / name)
                    counts["changed"] += 1
                    if name in dirs:
                        dirs.remove(name)
    # modes and mtimes last, deepest first, so writing children does not move a folder's
    # mtime (links keep their own: read with links followed, a link shows its source's)
    for e in reversed(plan.entries):
        if e.kind != "file":
            path = root / e.path if e.path else root
            os.chmod(path, e.mode)
            os.utime(path, ns=(_ns(e.mtime),) * 2)


def _ns(t: float) -> int:
    return int(round(t * 1e9))


def _export(instance: Instance, ref: str, build: Callable[[Project], Plan], kind: str,
            progress: Progress | None, stats: dict | None) -> Path:
    from . import store
    from .project import Project

    rec = instance.resolve(ref)
    store.check_writable(instance, rec.path)
    project = Project.open(rec.path)
    plan = build(project)
    refusal = plan.refusal()
    if refusal is not None:
        raise refusal
    return write_plan(plan, project.path / "exports" / kind / plan.name, project.path, progress, stats)


def export_job(instance: Instance, ref: str, juid: str, progress: Progress | None = None,
               stats: dict | None = None) -> Path:
    """Consolidate a completed job's export into `<project>/exports/jobs/J<N>_<type>/`."""
    return _export(instance, ref, lambda p: exportplan.job_export_plan(p, juid), "jobs", progress, stats)


def export_group(instance: Instance, ref: str, juid: str, group: str, progress: Progress | None = None,
                 stats: dict | None = None) -> Path:
    """Consolidate an output group's export into `<project>/exports/groups/J<N>_<group>/`."""
    return _export(instance, ref, lambda p: exportplan.group_export_plan(p, juid, group), "groups",
                   progress, stats)
