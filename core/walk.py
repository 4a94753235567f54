"""Walking a directory tree with os.scandir (one loop for the project model, sizes and
verify), and the lexical rule for a relative path staying inside its root."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path


def scan(top: str | os.PathLike, descend: Callable[[os.DirEntry], bool]) -> Iterator[os.DirEntry]:
    """Every entry below `top`, depth first; after an entry is yielded, it is entered if
    `descend(entry)` says so. Folders that cannot be read are skipped."""
    stack = [os.fspath(top)]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                yield e
                if descend(e):
                    stack.append(e.path)


def _is_dir(e: os.DirEntry) -> bool:
    return e.is_dir(follow_symlinks=False)


def walk_entries(top: str | os.PathLike) -> Iterator[os.DirEntry]:
    """Every non-directory entry below `top`, symlinks not followed."""
    return (e for e in scan(top, _is_dir) if not _is_dir(e))


def inside(root: Path, rel: str) -> Path | None:
    """root/rel if rel is relative and stays inside root (lexically), else None."""
    if not rel or os.path.isabs(rel):
        return None
    norm = os.path.normpath(rel)
    if norm == ".." or norm.startswith("../"):
        return None
    return root / norm
