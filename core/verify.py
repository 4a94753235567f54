"""Verify a project's files and repoint import symlinks after raw data moved.

`verify` reports what core/problems.py finds (unreadable metadata, broken symlinks,
missing metafiles), then reads each metafile: unreadable ones, and data files they
name that are missing. `relink` rewrites symlink
targets from one prefix to another, refusing (and changing nothing) when any new
target does not exist.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CsfsError, RefusedError, UsageError
from .problems import Problem, broken_links, job_problems, relpath
from .walk import walk_entries

if TYPE_CHECKING:
    from .instance import Instance
    from .project import Project

Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class RelinkHint:
    """Broken links whose targets lie under one missing folder: what `relink --from` needs."""

    prefix: str           # the topmost missing folder of the targets (absolute)
    links: int

    def as_dict(self) -> dict:
        return asdict(self)


def relink_hints(problems: list[Problem]) -> list[RelinkHint]:
    """Group broken symlinks by the topmost missing folder on the way to their targets: the
    folder that moved (or vanished), which is what `csfs relink --from` takes."""
    counts: dict[str, int] = {}
    for p in problems:
        if p.kind != "broken-symlink" or not p.target or not os.path.isabs(p.target):
            continue
        missing = os.path.normpath(p.target)
        while os.path.dirname(missing) != missing and not os.path.exists(os.path.dirname(missing)):
            missing = os.path.dirname(missing)
        prefix = missing if missing != os.path.normpath(p.target) else os.path.dirname(missing)
        counts[prefix] = counts.get(prefix, 0) + 1
    return [RelinkHint(k, n) for k, n in sorted(counts.items())]


def _symlinks(top: Path) -> Iterable[Path]:
    """Every symlink under `top` (links to folders are reported, not descended)."""
    return (Path(e.path) for e in walk_entries(top) if e.is_symlink())


def verify(project: Project, progress: Progress | None = None) -> list[Problem]:
    """Everything wrong with the project's files, job by job (empty when all is well)."""
    from . import csfile
    from .project import referenced_files

    problems: list[Problem] = [Problem(None, "metadata", "project.json", p) for p in project.problems]
    jobs = list(project.jobs.values())
    for i, job in enumerate(jobs):
        found = job_problems(Path(project.path), job)
        problems.extend(found)
        seen = {p.path for p in found}

        def add(kind: str, path: str, message: str, seen: set[str] = seen, uid: str = job.uid) -> None:
            if path not in seen:
                seen.add(path)
                problems.append(Problem(uid, kind, path, message))

        for mf in job.metafiles:
            if mf in seen:
                continue   # missing, or outside the project: reported
            mpath = Path(project.path) / mf
            try:
                csfile.info(mpath)
                data = referenced_files(project, mf)
            except CsfsError as e:
                add("unreadable-metafile", mf, f"{job.uid}: {e}")
                continue
            for rel in data:
                path = Path(rel) if os.path.isabs(rel) else Path(project.path) / rel
                if os.path.islink(path) and rel.split("/", 1)[0] in project.jobs:
                    continue   # a broken link of a job: reported once, where it lives
                if not os.path.exists(path):
                    add("missing-data", rel, f"{job.uid}: {rel} (named by {mf}) is missing")
        if progress:
            progress(i + 1, len(jobs))
    return problems + broken_links(project.path, Path(project.path) / "exports", None)


@dataclass(frozen=True)
class Relink:
    link: str         # project-relative
    old_target: str
    new_target: str

    def as_dict(self) -> dict:
        return asdict(self)


def plan_relink(project: Project, old: str, new: str) -> list[Relink]:
    """Symlinks in job dirs and exports/ whose target starts with `old`, and their targets under `new`."""
    old_p, new_p = old.rstrip("/") or "/", new.rstrip("/") or "/"
    if old_p == new_p:
        raise UsageError("--from and --to are the same prefix")
    out = []
    tops = [Path(job.dir) for job in project.jobs.values()] + [Path(project.path) / "exports"]
    for top in tops:
        for link in _symlinks(top):
            target = os.readlink(link)
            if target == old_p or target.startswith(old_p.rstrip("/") + "/"):
                out.append(Relink(relpath(project.path, link), target, new_p + target[len(old_p):]))
    return out


def relink(instance: Instance, ref: str, old: str, new: str, dry_run: bool = False,
           progress: Progress | None = None) -> list[Relink]:
    """Repoint symlinks from prefix `old` to prefix `new`; refuses if any new target is missing."""
    from . import sizes, store
    from .project import Project

    rec = instance.resolve(ref)
    if not dry_run:
        store.check_writable(instance, rec.path)
    project = Project.open(rec.path)
    # link targets csfs writes are absolute: a relative prefix means one relative to here
    old, new = (os.path.abspath(os.path.expanduser(p)) for p in (old, new))
    changes = plan_relink(project, old, new)
    if not changes and not plan_relink(project, new, old):   # (pointing at `new` already: a re-run)
        raise UsageError(f"no symlink in {rec.uid} points into {old}; `csfs verify {rec.uid}` lists the "
                         "broken links and the --from that repairs them")
    missing = [c for c in changes
               if not os.path.exists(os.path.join(project.path, os.path.dirname(c.link), c.new_target))]
    if missing:
        raise RefusedError(f"{len(missing)} of {len(changes)} new target(s) do not exist "
                           f"(first: {missing[0].new_target}); nothing changed")
    if dry_run:
        return changes
    jobs: set[str] = set()
    for i, c in enumerate(changes):
        link = Path(project.path) / c.link
        tmp = link.with_name(f".{link.name}.csfs-tmp-{os.getpid()}")
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(c.new_target, tmp)
        os.replace(tmp, link)
        if c.link.split("/", 1)[0] in project.jobs:
            jobs.add(c.link.split("/", 1)[0])
        if progress:
            progress(i + 1, len(changes))
    for juid in sorted(jobs):
        sizes.invalidate(instance.cache_dir, project.path, juid)
    return changes
