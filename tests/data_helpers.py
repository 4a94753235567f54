"""Helpers for the export/import/sizes/cleanup/verify tests."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from csfs.core import lifecycle
from csfs.core.instance import Instance
from csfs.core.project import Project


def attach(project_dir: Path, home: Path) -> tuple[Instance, str, Project]:
    """Attach a project directory to the instance at `home`: (instance, P-uid, opened project)."""
    inst = Instance(home)
    rec = lifecycle.attach(inst, project_dir)
    return inst, rec.uid, Project.open(rec.path)


def read_tree(top: Path) -> dict[str, tuple[str, bytes | None]]:
    """rel path -> (kind, content) of a tree read with links followed (as `tar -ch` sees it)."""
    out: dict[str, tuple[str, bytes | None]] = {}
    for root, _dirs, files in os.walk(top, followlinks=True):
        rel_root = os.path.relpath(root, top)
        out[rel_root] = ("dir", None)
        for f in files:
            out[os.path.normpath(os.path.join(rel_root, f))] = ("file", Path(root, f).read_bytes())
    return out


def snapshot(top: Path, skip: str | None = None) -> dict[str, str]:
    """rel path -> sha1 (files) / link target (symlinks), not following links; `skip` a subfolder."""
    out: dict[str, str] = {}
    for root, dirs, files in os.walk(top):
        if skip and os.path.relpath(root, top).split(os.sep)[0] == skip:
            continue
        for f in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            p = Path(root, f)
            rel = str(p.relative_to(top))
            out[rel] = "-> " + os.readlink(p) if p.is_symlink() else hashlib.sha1(p.read_bytes()).hexdigest()
    return out
