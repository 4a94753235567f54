"""Export plans: one export (a job's or an output group's) as relative path -> entry.

A plan is pure description. `core.consolidate` writes it for real (files and symlinks
under `exports/`) and the FUSE mount serves it virtually; both render the same entries,
so a physical export read with links followed equals the virtual one. Plans are made in
`core.exportplan`; `core.exportindex` keeps them on disk without their generators.

Entry kinds:
- "dir": a directory;
- "file": a data file served from `source` (the real file's path, symlinks resolved);
- "generated": bytes made by `generate()`, whose length `size` is known in advance.
"""
from __future__ import annotations

import os
import posixpath
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .errors import FormatError, RefusedError

DIR_MODE = 0o755
GENERATED_MODE = 0o644
ExportKey = tuple[str, str]    # ("jobs" | "groups", export folder name)


@dataclass(frozen=True, slots=True)
class Entry:
    """One member of an export. `path` is relative to the export root ("" is the root)."""

    path: str
    kind: str  # "dir" | "file" | "generated"
    size: int
    mtime: float
    source: str | None = None   # a data file's real path
    generate: Callable[[], bytes] | None = None
    mode: int = GENERATED_MODE  # permission bits (dirs 0o755, data files those of the source)
    sources: tuple[str, ...] = ()  # the files a generated entry is made from (the mount's permissions)


KINDS = ("dir", "file", "generated")
_DIGITS = bytes.maketrans(b"\0\1\2", b"012")      # kinds on disk: "0", "1", "2"
_UNDIGITS = bytes.maketrans(b"012", b"\0\1\2")


class Plan:
    """An export: its folder name and its entries, indexed compactly (a few columns, no
    object per entry), so the mount can keep many. Paths are kept in string order, so the
    entries below a folder are one range: lookups and listings are binary searches.
    `entries` gives them in tar order (parents first, names sorted). Generators are kept
    only for plans built here (an index read back from disk has none: see `render`)."""

    def __init__(self, name: str, entries: Iterable[Entry], missing: Sequence[str] = ()) -> None:
        ents = sorted(entries, key=lambda e: e.path)
        _refuse_unsafe(name, ents)
        self.name = name
        self.missing = list(missing)  # project-relative data files named by outputs but absent
        self._paths = [e.path for e in ents]
        self._kinds = bytes(KINDS.index(e.kind) for e in ents)
        self._sizes = array("q", (e.size for e in ents))
        self._mtimes = array("d", (e.mtime for e in ents))
        self._modes = array("H", (e.mode for e in ents))
        self._folders: list[str] = []     # data files: their real folder, by number ...
        self._folder = array("i", [-1]) * len(ents)
        self._names: dict[int, str] = {}  # ... and their name, where it is not the entry's
        self._extra: dict[int, tuple[Callable[[], bytes] | None, tuple[str, ...]]] = {}
        numbers: dict[str, int] = {}
        for i, e in enumerate(ents):
            if e.source is not None:
                folder, base = os.path.split(e.source)
                self._folder[i] = numbers.setdefault(folder, len(numbers))
                if base != e.path.rpartition("/")[2]:
                    self._names[i] = base
            if e.generate is not None or e.sources:
                self._extra[i] = (e.generate, e.sources)
        self._folders = list(numbers)

    def refusal(self) -> RefusedError | None:
        """Why this export cannot be written or served (data files its outputs name are
        missing: it would be silently incomplete), or None."""
        if not self.missing:
            return None
        return RefusedError(f"{self.name}: {len(self.missing)} data file(s) named by the outputs are missing "
                            f"(first: {self.missing[0]}); run `csfs verify` and fix them first")

    def drop_generators(self) -> None:
        """Forget the generators (they hold their sources' data): the plan pickles lightly."""
        self._extra = {i: (None, s) for i, (_, s) in self._extra.items() if s}

    def source_folders(self) -> list[str]:
        """The real folders the plan's data files are in."""
        return list(self._folders)

    def __len__(self) -> int:
        return len(self._paths)

    def _find(self, rel: str) -> int:
        i = bisect_left(self._paths, rel)
        return i if i < len(self._paths) and self._paths[i] == rel else -1

    def _entry(self, i: int) -> Entry:
        path = self._paths[i]
        source = None
        if self._folder[i] >= 0:
            source = os.path.join(self._folders[self._folder[i]], self._names.get(i) or path.rpartition("/")[2])
        gen, sources = self._extra.get(i, (None, ()))
        return Entry(path, KINDS[self._kinds[i]], self._sizes[i], self._mtimes[i], source, gen, self._modes[i],
                     sources)

    def lookup(self, rel: str) -> Entry | None:
        """The entry at `rel` (relative path, "" or "." for the root), or None."""
        i = self._find(_norm(rel))
        return None if i < 0 else self._entry(i)

    def children(self, rel: str) -> list[str]:
        """Names inside the directory `rel`, sorted ([] for files and unknown paths)."""
        return [name for name, _ in self._children(rel)]

    def child_entries(self, rel: str) -> list[tuple[str, Entry]]:
        """(name, entry) of everything inside the directory `rel`, sorted by name."""
        return [(name, self._entry(i)) for name, i in self._children(rel)]

    def _children(self, rel: str) -> list[tuple[str, int]]:
        rel = _norm(rel)
        i = self._find(rel)
        if i < 0 or self._kinds[i] != 0:
            return []
        prefix = rel + "/" if rel else ""
        out: list[tuple[str, int]] = []
        paths, n = self._paths, len(self._paths)
        i += 1
        while i < n and paths[i].startswith(prefix):
            name = paths[i][len(prefix):]
            if "/" in name:     # below a child folder: skip that folder's whole range
                i = bisect_left(paths, prefix + name.partition("/")[0] + "0", i)   # "0" follows "/"
                continue
            out.append((name, i))
            i += 1
        return out

    @cached_property
    def entries(self) -> list[Entry]:
        """Every entry, in tar order (parents first, names sorted)."""
        order = sorted(range(len(self._paths)), key=lambda i: _sort_key(self._paths[i]))
        return [self._entry(i) for i in order]

    @property
    def total_size(self) -> int:
        return sum(s for s, k in zip(self._sizes, self._kinds, strict=True) if k != 0)

    def to_doc(self) -> dict[str, Any]:
        """The plan as JSON-able columns (generators left out)."""
        return {"name": self.name, "missing": self.missing, "paths": self._paths,
                "kinds": self._kinds.translate(_DIGITS).decode("ascii"), "sizes": list(self._sizes),
                "mtimes": list(self._mtimes),
                "modes": list(self._modes), "folders": self._folders, "folder": list(self._folder),
                "names": [[i, n] for i, n in self._names.items()],
                "sources": [[i, list(s)] for i, (_, s) in self._extra.items() if s]}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Plan:
        """A plan back from `to_doc` (FormatError when it is not one)."""
        try:
            plan = cls.__new__(cls)
            plan.name, plan.missing, plan._paths = str(doc["name"]), list(doc["missing"]), list(doc["paths"])
            plan._kinds = str(doc["kinds"]).encode("ascii").translate(_UNDIGITS)
            plan._sizes, plan._mtimes = array("q", doc["sizes"]), array("d", doc["mtimes"])
            plan._modes, plan._folder = array("H", doc["modes"]), array("i", doc["folder"])
            plan._folders = [str(f) for f in doc["folders"]]
            plan._names = {int(i): str(n) for i, n in doc["names"]}
            plan._extra = {int(i): (None, tuple(str(x) for x in s)) for i, s in doc["sources"]}
            n = len(plan._paths)
            if (not all(isinstance(p, str) for p in plan._paths) or plan._paths[:1] != [""]
                    or any(len(c) != n for c in (plan._kinds, plan._sizes, plan._mtimes, plan._modes, plan._folder))
                    or max(plan._kinds, default=0) > 2 or max(plan._folder, default=-1) >= len(plan._folders)
                    or not _all_inside(plan._paths[1:])
                    or plan._paths != sorted(plan._paths) or not plain_name(plan.name)):
                raise ValueError("inconsistent columns")
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError, UnicodeError) as e:
            raise FormatError(f"not an export plan ({e})") from None
        return plan

    def __repr__(self) -> str:
        return f"Plan({self.name!r}, {len(self)} entries)"


def _inside(rel: str) -> bool:
    """Is `rel` a normalised relative path that stays below its root?"""
    return rel == "" or (posixpath.normpath(rel) == rel and not rel.startswith(("/", "../")) and rel != "..")


def plain_name(name: str) -> bool:
    """Can `name` (an export folder name built from job.json) be one path component?"""
    return "/" not in name and "\0" not in name and name not in ("", ".", "..")


def _all_inside(paths: list[str]) -> bool:
    """Are all these (non-empty) paths normalised, relative and below their root? One
    search of their joined text: framed by slashes, no path may hold //, /./, /../ or NUL."""
    if not paths:
        return True
    text = "/" + "/\n/".join(paths) + "/"
    return not any(bad in text for bad in ("//", "/./", "/../", "\0"))


def _refuse_unsafe(name: str, entries: Sequence[Entry]) -> None:
    """Export names come from job.json (type, group names): refuse any that would leave the
    export folder, so neither the physical nor the virtual rendering ever sees one."""
    bad = [] if plain_name(name) else [name]
    if not _all_inside([e.path for e in entries if e.path]):
        bad += [e.path for e in entries if not _inside(e.path)][:1]
    if bad:
        raise FormatError(f"{name}: {bad[0]!r} would lead outside the export folder (a job type or "
                          "group name in job.json is not a plain name); fix job.json, nothing written")


def _norm(rel: str) -> str:
    rel = rel.strip("/")
    return "" if rel in ("", ".") else posixpath.normpath(rel)


def _sort_key(path: str) -> tuple:
    return tuple(path.split("/")) if path else ()
