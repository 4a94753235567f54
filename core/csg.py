"""CryoSPARC `.csg` result-group files (YAML) and their metafile references.

A `.csg` names, per slot, the `.cs` metafile holding that slot's columns. A metafile
written `>name.cs` is relative to the `.csg`'s folder; one without `>` is taken as
relative to that folder too. Either way it must stay inside the folder's tree (no
`..` escape, no absolute path) unless the caller passes `allow_outside=True`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from . import atomic, safeio
from .errors import FormatError


@dataclass
class Csg:
    created: datetime | str | None
    group: dict[str, Any]                  # name, title, type, description
    results: dict[str, dict[str, Any]]     # slot -> {metafile, num_items, type}
    version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)   # unknown top-level keys, kept

    def metafiles(self) -> list[str]:
        """The distinct metafile references, in slot order (several slots may share one)."""
        return list(dict.fromkeys(r["metafile"] for r in self.results.values()))


def load(path: str | os.PathLike, allow_outside: bool = False) -> Csg:
    """Read and check a `.csg`; a metafile escaping the `.csg`'s folder raises FormatError."""
    csg = _from_doc(path, safeio.load_yaml(path))
    for meta in csg.metafiles():
        resolve_metafile(path, meta, allow_outside)
    return csg


def _from_doc(path: str | os.PathLike, doc: Any) -> Csg:
    if not isinstance(doc, dict):
        raise FormatError(f"{path}: not a .csg file (expected a YAML mapping)")
    group, results = doc.get("group"), doc.get("results")
    if not isinstance(group, dict) or not isinstance(group.get("name"), str):
        raise FormatError(f"{path}: .csg has no 'group' mapping with a 'name'")
    if not isinstance(results, dict) or not results:
        raise FormatError(f"{path}: .csg has no 'results' mapping")
    for slot, res in results.items():
        if not (isinstance(res, dict) and isinstance(res.get("metafile"), str) and res["metafile"]
                and isinstance(res.get("num_items", 0), int)):
            raise FormatError(f"{path}: result {slot!r} needs a 'metafile' and an integer 'num_items'")
    extra = {k: v for k, v in doc.items() if k not in ("created", "group", "results", "version")}
    return Csg(created=doc.get("created"), group=group, results=results,
               version=str(doc.get("version", "")), extra=extra)


def dumps(csg: Csg) -> bytes:
    """The YAML CryoSPARC writes (keys sorted, block style)."""
    doc = {"created": csg.created, "group": csg.group, "results": csg.results,
           "version": csg.version, **csg.extra}
    return yaml.safe_dump(doc, default_flow_style=False, sort_keys=True).encode()


def save(path: str | os.PathLike, csg: Csg) -> None:
    """Atomically write a `.csg`."""
    atomic.write_bytes(path, dumps(csg))


def resolve_metafile(csg_path: str | os.PathLike, metafile: str, allow_outside: bool = False) -> Path:
    """The path a metafile reference names (`>x.cs` = relative to the `.csg`'s folder).

    Checked on the path (an absolute path or a `..` that leaves the folder) and, when it
    exists, on where it resolves with links followed (a symlink out of the folder): either
    is refused with FormatError unless `allow_outside`.
    """
    folder = Path(os.path.abspath(csg_path)).parent
    rel = metafile[1:] if metafile.startswith(">") else metafile
    if "\0" in rel:
        raise FormatError(f"{csg_path}: metafile {metafile!r} holds a NUL byte")
    target = Path(os.path.normpath(folder / rel))
    if allow_outside:
        return target
    real_folder = os.path.realpath(folder)
    real = os.path.realpath(target)
    if (os.path.isabs(rel) or not target.is_relative_to(folder) or target == folder
            or not real.startswith(real_folder.rstrip(os.sep) + os.sep)):
        raise FormatError(f"{csg_path}: metafile {metafile!r} points outside the .csg's folder; "
                          "refusing it (pass allow_outside to trust this file)")
    return target
