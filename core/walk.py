"""Walking a directory tree with os.scandir: one loop for the project model, sizes and verify."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator


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


def walk_files(top: str | os.PathLike, root: str | os.PathLike) -> Iterator[str]:
    """Every non-directory entry below `top` (symlinks not followed), relative to `root`."""
    root_s = str(root).rstrip("/") + "/"
    for e in walk_entries(top):
        yield e.path[len(root_s):] if e.path.startswith(root_s) else e.path
