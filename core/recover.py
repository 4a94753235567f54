"""`csfs instance recover`: rebuild the registry from the project directories themselves.

The registry only mirrors what the directories say (the lock names this instance, the
project UID and the lock id), so it can be rebuilt from them: from every directory it
knew (saved in registry.known.json on each registry change) and from directories the
user names. P-uids stay as the locks and the saved rows say. The old registry file is
kept beside the new one, never deleted.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from . import ids, lock
from .documents import file_stamp
from .errors import CsfsError, UsageError
from .instance import Instance, RegistryError, known_projects, norm_path


@dataclass
class Recovery:
    """What `recover` did: rows registered and directories it left alone, with reasons."""

    kept_aside: str | None = None
    registered: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"old_registry": self.kept_aside, "registered": self.registered, "skipped": self.skipped}


def _candidates(dirs: list[str]) -> list[Path]:
    """The named directories that are projects, or else the projects directly inside them."""
    out: list[Path] = []
    for d in dirs:
        p = norm_path(d)
        if not p.is_dir():
            raise UsageError(f"{d}: no such directory")
        if _looks_like_project(p):
            out.append(p)
            continue
        try:
            out.extend(sorted(c for c in (Path(e.path) for e in os.scandir(p) if e.is_dir())
                              if _looks_like_project(c)))
        except OSError as e:
            raise UsageError(f"{d}: cannot list ({e.strerror})") from None
    return out


def _looks_like_project(p: Path) -> bool:
    return any((p / n).exists() or (p / n).is_symlink() for n in (lock.LOCK_NAME, "project.json"))


def _old_rows(inst: Instance) -> list[dict]:
    """The rows the current registry still yields (a registry that opens but is out of step)."""
    try:
        return [dict(r.as_dict(), lock_id=r.lock_id) for r in inst.projects()]
    except (RegistryError, sqlite3.Error):
        return []


def recover(home: str | os.PathLike, dirs: list[str] | None = None) -> Recovery:
    """Rebuild the registry of the instance in `home` (see the module docstring)."""
    from .store import serialized

    inst = Instance(home, check=False)
    named = _candidates(list(dirs or []))
    with serialized(inst):
        known = {r["uid"]: r for r in known_projects(inst.known_path)}
        for r in _old_rows(inst):
            known.setdefault(r["uid"], r)
        next_num = _saved_next_num(inst)
        report = Recovery(kept_aside=_set_aside(inst))
        inst.create_schema()
        taken: dict[str, Path] = {}
        # first the directories the registry knew, at their known paths, then the named ones
        for row in sorted(known.values(), key=lambda r: ids.project_num(r["uid"]) or 0):
            _recover_known(inst, row, taken, report)
        for path in named:
            if path in taken.values():
                continue
            _recover_named(inst, path, taken, report)
        top = max([ids.project_num(u) or 0 for u in taken] + [next_num - 1, 0])
        with inst._db() as con:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_num', ?)", (str(top + 1),))
    return report


def _saved_next_num(inst: Instance) -> int:
    import json

    try:
        return int(json.loads(inst.known_path.read_bytes()).get("next_num", 1))
    except (OSError, ValueError, TypeError, AttributeError):
        return 1


def _set_aside(inst: Instance) -> str | None:
    """Move the old registry file (and its journal) aside; its name, or None if there was none."""
    db = inst.registry_path
    if not db.exists():
        return None
    stamp = file_stamp()
    aside = db.with_name(f"{db.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = db.with_name(f"{db.name}.damaged-{stamp}-{n}")
    os.replace(db, aside)
    for suffix in ("-journal", "-wal", "-shm"):
        side = db.with_name(db.name + suffix)
        if side.exists():
            shutil.move(str(side), str(aside) + suffix)
    return str(aside)


def _register(inst: Instance, uid: str, path: Path, state: str, title: str, lock_id: str | None,
              taken: dict[str, Path], report: Recovery, how: str) -> None:
    from .lifecycle import registry_rows

    ws: list[tuple[str, str]] = []
    jobs: list[tuple[str, str, str, str]] = []
    if state != "detached" and path.is_dir():
        try:
            title, ws, jobs = registry_rows(path)
        except CsfsError as e:
            how += f"; its jobs could not be listed ({e})"
    inst.register(uid, path, state, title, lock_id, ws, jobs)
    taken[uid] = path
    report.registered.append({"uid": uid, "path": str(path), "state": state, "how": how})


def _lock_state(path: Path) -> str:
    from .store import read_doc

    try:
        doc = read_doc(path / "project.json", default={})
    except CsfsError:
        doc = {}
    return "archived" if isinstance(doc, dict) and doc.get("archived") is True else "attached"


def _recover_known(inst: Instance, row: dict, taken: dict[str, Path], report: Recovery) -> None:
    uid, path, title = row["uid"], Path(row["path"]), str(row.get("title") or "")
    info = lock.read(path) if path.is_dir() else None
    if info is not None and info.is_ours(inst.id) and info.project_uid == uid:
        _register(inst, uid, path, _lock_state(path), title, info.lock_id, taken, report,
                  "our lock is in the directory")
    elif not path.is_dir() and row.get("state") in ("attached", "archived"):
        # moved or unmounted: keep the row as it was, so unarchive/attach can find it later
        _register(inst, uid, path, row["state"], title, row.get("lock_id"), taken, report,
                  "directory missing; kept as the registry had it")
    else:
        why = ("no lock" if info is None else
               f"locked by {info.describe()}" if not info.is_ours(inst.id) else
               f"our lock names {info.project_uid}")
        _register(inst, uid, path, "detached", title, row.get("lock_id"), taken, report,
                  f"{why}: detached")
        if info is not None and info.is_ours(inst.id) and info.project_uid != uid:
            _recover_named(inst, path, taken, report)


def _recover_named(inst: Instance, path: Path, taken: dict[str, Path], report: Recovery) -> None:
    info = lock.read(path)
    if info is None or not info.is_ours(inst.id):
        who = "no cs.lock" if info is None else f"locked by {info.describe()}"
        report.skipped.append({"path": str(path), "why": f"{who}: not attached to this instance"})
        return
    uid = info.project_uid if ids.project_num(info.project_uid or "") is not None else None
    live = {u for u, p in taken.items() if p != path}
    if uid is None:
        report.skipped.append({"path": str(path), "why": "its lock names no project UID: run "
                                                         "`csfs project attach` on it"})
        return
    if uid in live:
        rec = inst.get(uid)
        if rec.state != "detached":  # else the lock here supersedes a detached row
            report.skipped.append({"path": str(path), "why": f"its lock names {uid}, which is {rec.state} at "
                                                             f"{rec.path}: a copy? attach it to give it its own UID"})
            return
    _register(inst, uid, path, _lock_state(path), path.name, info.lock_id, taken, report,
              "our lock is in the directory")
