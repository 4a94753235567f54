"""Every reference to a file in a project, keyed by the file it resolves to (device, inode).

clear-intermediate may delete a file only when nothing else in the project names it.
"Names" covers every way CryoSPARC, csfs and users point at data:

* each version's metafile in each job's document (the metafile itself), and every
  `*/path` value inside it: project-relative, `>`-relative to the metafile's folder,
  absolute (also an absolute path from the project's old location, matched from its
  `J<N>/` component on), or `P<N>/J<N>/...` (legacy);
* every symlink anywhere in the project (import links, exports, symlinked versions
  such as `J8_003_volume.cs -> J8_002_volume.cs`, job folders moved to other storage):
  its target, or everything under a target folder;
* every `.csg` anywhere in the project: its metafiles and their `*/path` values.

Paths are resolved (symlinks followed) and compared by (st_dev, st_ino), so a file named
relatively in one place and absolutely, or through a link, in another is one file. A
reference that cannot be read (a corrupt metafile or `.csg`) is *ambiguous*: it is
listed in `unreadable`, and clearing refuses to guess.
"""
from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ids
from .errors import CsfsError, NotFoundError
from .walk import scan

if TYPE_CHECKING:
    from .project import Project

Ident = tuple[int, int]


@dataclass
class ReferenceIndex:
    """identity -> who names it: `J8:J8/J8_003_volume.cs` (a version listed in J8's job.json),
    `cs:/real/path/of/a.cs` (a metafile's path column), `link:J12/imported/x.mrc`, `csg:J8/J8_volume.csg`."""

    root: Path
    refs: dict[Ident, set[str]] = field(default_factory=dict)
    dirs: dict[str, set[str]] = field(default_factory=dict)      # real folder -> referrers (links to folders)
    unreadable: dict[str, str] = field(default_factory=dict)     # file -> why it cannot be read
    read: set[str] = field(default_factory=set)                  # metafiles already read

    def describe(self, who: str) -> str:
        """A referrer for people: `J12/imported/x.mrc (link)`, `J9/J9_volume.cs (metafile)`."""
        kind, _, what = who.partition(":")
        if kind == "cs":
            return f"{_rel(self.root, what)} (metafile)"
        if kind in ("link", "csg"):
            return f"{what} ({kind})"
        return f"{what} (listed in {kind}/job.json)"

    def add(self, ident: Ident, who: str) -> None:
        self.refs.setdefault(ident, set()).add(who)

    def referrers(self, ident: Ident, real: str, ignore: set[str]) -> list[str]:
        """Who names the file `ident` (real path `real`), apart from the referrers in `ignore`."""
        out = set(self.refs.get(ident, ())) - ignore
        for d, who in self.dirs.items():
            if real == d or real.startswith(d.rstrip(os.sep) + os.sep):
                out |= who - ignore
        return sorted(out)


def identity(path: str | os.PathLike) -> tuple[Ident, str] | None:
    """(dev, ino) and real path of the regular file or folder `path` names, links followed."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return None
    return (st.st_dev, st.st_ino), os.path.realpath(path)


def data_paths(root: Path, metafile: Path, value: str) -> list[Path]:
    """Every place a `*/path` value of `metafile` may mean (all are kept: never guess narrow)."""
    if value.startswith(">"):
        return [metafile.parent / value[1:]]
    p = Path(value)
    if p.is_absolute():
        out = [p]
        parts = p.parts
        # the project moved since the metafile was written: match from a J<N>/ component on
        out += [root.joinpath(*parts[i:]) for i in range(1, len(parts) - 1) if ids.is_job(parts[i])]
        return out
    out = [root / p]
    if p.parts and p.parts[0] == root.name:          # legacy P12/J24/...: relative to the parent
        out.append(root.parent / p)
    return out


def _add_metafile(index: ReferenceIndex, root: Path, mf: Path, who: str, values_of: Any) -> None:
    """The metafile `mf` (named by `who`) and every data file its path columns name
    (those are named by `cs:<the metafile's real path>`)."""
    if not os.path.exists(mf):
        return   # missing, or a dangling link: it names nothing that exists
    found = identity(mf)
    if found is None:
        index.unreadable[_rel(root, mf)] = "it is not a regular file"
        return
    ident, real = found
    index.add(ident, who)
    if f"cs:{real}" in index.read:
        return
    index.read.add(f"cs:{real}")
    try:
        values = values_of(real)
    except NotFoundError:
        return
    except CsfsError as e:
        index.unreadable[_rel(root, mf)] = _why(e)
        return
    for value in values:
        for p in data_paths(root, mf, value):
            got = identity(p)
            if got:
                index.add(got[0], f"cs:{real}")


def _why(e: BaseException) -> str:
    """An error's message without the file name it starts with (the caller names the file)."""
    text = str(e)
    head, sep, rest = text.partition(": ")
    return rest if sep and os.sep in head else text


def _rel(root: Path, p: str | os.PathLike) -> str:
    s = os.fspath(p)
    r = os.fspath(root)
    return s[len(r) + 1:] if s.startswith(r + os.sep) else s


_BUILD_LOCK = threading.Lock()


def for_project(project: Project) -> ReferenceIndex:
    """The index of an opened project, built once (sizes asks for it from several threads)."""
    with _BUILD_LOCK:
        index = project.__dict__.get("_csfs_references")
        if index is None:
            index = project.__dict__["_csfs_references"] = build(project)
        return index


def build(project: Project) -> ReferenceIndex:
    """The index of a project: every job's metafiles and their paths, every symlink, every .csg."""
    from . import csg
    from .project import load_paths

    root = Path(project.path)
    index = ReferenceIndex(root)
    memo: dict[str, list[str]] = {}

    def values_of(real: str) -> list[str]:
        if real not in memo:
            memo[real] = load_paths(Path(real))
        return memo[real]

    for job in project.jobs.values():
        for r in (r for g in job.groups for r in g.results):
            for mf in r.metafiles:
                _add_metafile(index, root, _resolve_metafile(root, str(mf)), f"{job.uid}:{os.path.normpath(mf)}",
                              values_of)
    # every link and every .csg, in the project and in job folders living elsewhere (links)
    tops = [root] + [Path(j.dir) for j in project.jobs.values() if os.path.islink(j.dir)]
    for top in tops:
        for e in scan(top, lambda e: e.is_dir(follow_symlinks=False)):
            if e.is_symlink():
                who = "link:" + _rel(root, e.path)
                got = identity(e.path)
                if got is None:
                    continue
                ident, real = got
                index.add(ident, who)
                if os.path.isdir(real):
                    index.dirs.setdefault(real, set()).add(who)
                    if top is root and e.path in {os.fspath(j.dir) for j in project.jobs.values()}:
                        # a job folder moved to other storage is the job itself, not a reference
                        index.dirs[real].discard(who)
                        if not index.dirs[real]:
                            del index.dirs[real]
            elif e.name.endswith(".csg") and e.is_file(follow_symlinks=False):
                _add_csg(index, root, Path(e.path), values_of, csg)
    return index


def _add_csg(index: ReferenceIndex, root: Path, path: Path, values_of: Any, csg: Any) -> None:
    who = "csg:" + _rel(root, path)
    try:
        c = csg.load(path, allow_outside=True)
    except CsfsError as e:
        index.unreadable[_rel(root, path)] = _why(e)
        return
    for m in c.metafiles():
        _add_metafile(index, root, csg.resolve_metafile(path, m, allow_outside=True), who, values_of)


def _resolve_metafile(root: Path, mf: str) -> Path:
    return Path(mf) if os.path.isabs(mf) else root / mf
