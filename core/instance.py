"""The instance: an id (UUID) and a SQLite registry of attached projects, in CSFS_HOME.

The registry only says which directories this instance knows, under which numeric
UIDs (P1, P2, ...; never reused, even after `forget`) and in which state. The
project directory stays the source of truth for everything else.
"""
from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import faults, ids
from .atomic import dumps_json, write_bytes
from .errors import CsfsError, FormatError, NotFoundError, UsageError

STATES = ("attached", "archived", "detached")
REGISTRY_TIMEOUT = 10.0  # seconds to wait for a registry another process holds (CSFS_REGISTRY_TIMEOUT)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
    num INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('attached', 'archived', 'detached')),
    title TEXT NOT NULL DEFAULT '',
    lock_id TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE TABLE IF NOT EXISTS workspaces (
    num INTEGER NOT NULL, uid TEXT NOT NULL, title TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (num, uid)
);
CREATE TABLE IF NOT EXISTS jobs (
    num INTEGER NOT NULL, uid TEXT NOT NULL, type TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '', status TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (num, uid)
);
"""


class RegistryError(CsfsError):
    """The registry cannot be used: locked by another process, disk full, I/O error or damaged."""


class RegistryDamagedError(RegistryError):
    """The registry file is not a (complete) database: `csfs instance recover` rebuilds it."""


@dataclass(frozen=True)
class ProjectRecord:
    """One registry row: a project this instance knows. `note` tells what an action found
    (e.g. "already archived"); it is not stored."""

    uid: str
    path: Path
    state: str
    title: str
    lock_id: str | None = None
    note: str = field(default="", compare=False)

    @property
    def num(self) -> int:
        return int(self.uid[1:])

    @property
    def missing(self) -> bool:
        """Its directory is gone (moved or deleted): `project list` flags it, `forget --missing` takes it."""
        return not self.path.is_dir()

    def as_dict(self) -> dict:
        return {"uid": self.uid, "path": str(self.path), "state": self.state, "title": self.title}


def norm_path(path: str | os.PathLike) -> Path:
    """The form paths are stored and compared in: absolute, symlinks resolved."""
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


class Instance:
    """A csfs instance living in `home` (created with its id and registry on first use)."""

    ID_FILE = "instance_id"
    DB_FILE = "registry.sqlite3"
    KNOWN_FILE = "registry.known.json"  # the registry's projects (uid, path, state, lock id), for recover

    def __init__(self, home: str | os.PathLike, *, check: bool = True) -> None:
        """Open (or create) the instance in `home`. A damaged registry raises
        RegistryDamagedError unless `check` is False (for `recover`)."""
        self.home = Path(home).expanduser().absolute()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise UsageError(f"{self.home}: instance home is not a directory") from None
        self.id = self._load_or_create_id()
        self.registry_path = self.home / self.DB_FILE
        self.known_path = self.home / self.KNOWN_FILE
        if not check:
            return
        with self._db(write=False) as con:
            ready = con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'jobs'").fetchone()[0]
        if not ready and self.known_path.exists():
            # a registry that had been created is empty now: truncated or replaced, not new
            raise self.damaged("it is missing or empty: truncated or deleted?")
        if not ready:
            self.create_schema()
        elif not self.known_path.exists():
            with self._db():  # a home from before registry.known.json: write it now
                pass

    def create_schema(self) -> None:
        with self._db() as con:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    con.execute(stmt)

    def damaged(self, why: str) -> RegistryDamagedError:
        """The error for a damaged registry, saying how to rebuild it."""
        n = len(known_projects(self.known_path))
        source = (f"from the {n} project director{'y' if n == 1 else 'ies'} it knew (listed in {self.known_path})"
                  if n else "from the project directories you name")
        return RegistryDamagedError(
            f"{self.registry_path}: the registry is damaged ({why}); no project was changed. Run "
            f"`csfs instance recover` to rebuild it {source} (add DIR... to search more directories); "
            "the damaged file is kept beside it")

    # -- identity -------------------------------------------------------------
    def _load_or_create_id(self) -> str:
        path = self.home / self.ID_FILE
        if not path.exists():
            tmp = self.home / f".{self.ID_FILE}.{os.getpid()}.{uuid.uuid4().hex}"
            tmp.write_text(str(uuid.uuid4()) + "\n")
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # exclusive: a concurrent first use keeps one id
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        text = path.read_text().strip()
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise FormatError(f"{path}: not an instance id (a UUID); this home is damaged") from None

    @property
    def cache_dir(self) -> Path:
        """A folder other modules may use for caches (created on demand)."""
        d = self.home / "cache"
        d.mkdir(exist_ok=True)
        return d

    # -- database -------------------------------------------------------------
    @contextmanager
    def _db(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A connection in one transaction: committed on success, rolled back on error.

        Write transactions take the write lock at once (BEGIN IMMEDIATE), so a
        read-then-write never fails halfway on a busy database.
        """
        timeout = float(os.environ.get("CSFS_REGISTRY_TIMEOUT") or REGISTRY_TIMEOUT)
        try:
            con = sqlite3.connect(self.home / self.DB_FILE, timeout=timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise self._registry_error(e, timeout) from None
        try:
            con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield con
                if write:
                    faults.point("registry-before-commit")
                    self._write_known(con)
            except BaseException:
                if con.in_transaction:  # SQLite may have rolled back already (disk full)
                    con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.Error as e:
            raise self._registry_error(e, timeout) from None
        except OSError as e:  # registry.known.json could not be written: the transaction was rolled back
            raise RegistryError(f"{self.known_path}: cannot write ({e.strerror or e}); the registry was not "
                                f"changed. {_fix_disk(e, self.home)}") from None
        finally:
            con.close()

    def _registry_error(self, e: sqlite3.Error, timeout: float) -> RegistryError:
        """What went wrong with the registry, in words, and what to do."""
        name = getattr(e, "sqlite_errorname", "") or ""
        db = self.registry_path
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(e):
            return RegistryError(
                f"{db}: the registry is locked by another process (waited {timeout:g} s); nothing changed. "
                f"Another csfs may still be running, or a program holds the file open (see `fuser {db}`); "
                "wait for it or end it, then run the command again (CSFS_REGISTRY_TIMEOUT sets the wait)")
        if name.startswith("SQLITE_FULL") or "disk is full" in str(e):
            return RegistryError(f"{db}: no space left on the disk holding the registry; nothing changed. "
                                 f"Free space there ({self.home}), then run the command again")
        if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in str(e) \
                or "malformed" in str(e):
            return self.damaged(str(e))
        if name.startswith("SQLITE_READONLY"):
            return RegistryError(f"{db}: the registry is read-only here ({e}); nothing changed. "
                                 f"Check the permissions of {self.home} and the file")
        return RegistryError(f"{db}: the registry could not be used ({e}); nothing changed. "
                             f"Check the disk holding {self.home}")

    def _write_known(self, con: sqlite3.Connection) -> None:
        """Rewrite registry.known.json from the transaction's rows (before it commits), if changed.

        It holds what `recover` needs when the registry itself is lost: every project's
        uid, path, state and lock id, and the next free UID number.
        """
        if not con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'projects'").fetchone()[0]:
            return
        rows = con.execute(f"SELECT {self._COLS} FROM projects ORDER BY num").fetchall()
        data = dumps_json({"instance_id": self.id, "next_num": self._next_num(con),
                           "projects": [{"uid": f"P{r[0]}", "path": r[1], "state": r[2], "title": r[3],
                                         "lock_id": r[4]} for r in rows]})
        try:
            if self.known_path.read_bytes() == data:
                return
        except OSError:
            pass
        write_bytes(self.known_path, data)

    @staticmethod
    def _record(row: Sequence) -> ProjectRecord:
        return ProjectRecord(f"P{row[0]}", Path(row[1]), row[2], row[3], row[4])

    _COLS = "num, path, state, title, lock_id"

    # -- queries --------------------------------------------------------------
    def projects(self) -> list[ProjectRecord]:
        with self._db(write=False) as con:
            rows = con.execute(f"SELECT {self._COLS} FROM projects ORDER BY num").fetchall()
        return [self._record(r) for r in rows]

    def get(self, uid: str) -> ProjectRecord:
        num = ids.project_num(uid)
        with self._db(write=False) as con:
            row = None if num is None else con.execute(
                f"SELECT {self._COLS} FROM projects WHERE num = ?", (num,)).fetchone()
        if row is None:
            raise NotFoundError(f"no project {uid} in this instance ({self.home}); see `csfs project list`")
        return self._record(row)

    def find_path(self, path: str | os.PathLike) -> ProjectRecord | None:
        """The record for a directory: attached/archived first, else the newest detached one."""
        p = str(norm_path(path))
        with self._db(write=False) as con:
            rows = con.execute(
                f"SELECT {self._COLS} FROM projects WHERE path = ? "
                "ORDER BY state = 'detached', num DESC", (p,)).fetchall()
        return self._record(rows[0]) if rows else None

    def resolve(self, ref: str | os.PathLike) -> ProjectRecord:
        """A project named as 'P3' or by its directory path; NotFoundError otherwise."""
        ref_s = os.fspath(ref)
        if ids.project_num(ref_s) is not None:
            try:
                return self.get(ref_s)
            except NotFoundError:
                if not os.path.isdir(ref_s):  # a legacy directory may be named like a UID
                    raise
        if not ref_s.strip():
            raise UsageError("empty project reference; give P<n> or a project directory")
        rec = self.find_path(ref_s)
        if rec is None:
            if not os.path.isdir(ref_s):
                raise NotFoundError(f"{ref_s}: no such directory, nor a project UID of this instance; "
                                    "see `csfs project list`")
            raise NotFoundError(f"{ref_s}: directory not known to this instance; "
                                "see `csfs project list` (or attach it)")
        return rec

    def locate(self, ref: str | os.PathLike) -> tuple[ProjectRecord | None, Path]:
        """A registered project (by UID or path) and its directory, or else (None, the
        directory) for any existing directory not registered here (for read-only use)."""
        try:
            rec = self.resolve(ref)
        except NotFoundError:
            if not os.path.isdir(ref):
                raise
            return None, norm_path(ref)
        return rec, rec.path

    def jobs(self, uid: str) -> list[tuple[str, str, str, str]]:
        """Registered (uid, type, title, status) rows of a project, in job order."""
        num = self.get(uid).num
        with self._db(write=False) as con:
            rows = con.execute("SELECT uid, type, title, status FROM jobs WHERE num = ?", (num,)).fetchall()
        return sorted(rows, key=lambda r: ids.sort_key(r[0]))

    def workspaces(self, uid: str) -> list[tuple[str, str]]:
        num = self.get(uid).num
        with self._db(write=False) as con:
            rows = con.execute("SELECT uid, title FROM workspaces WHERE num = ?", (num,)).fetchall()
        return sorted(rows, key=lambda r: ids.sort_key(r[0]))

    def next_uid(self) -> str:
        """The UID the next allocation will return (informational)."""
        with self._db(write=False) as con:
            return f"P{self._next_num(con)}"

    # -- changes --------------------------------------------------------------
    @staticmethod
    def _next_num(con: sqlite3.Connection) -> int:
        row = con.execute("SELECT value FROM meta WHERE key = 'next_num'").fetchone()
        top = con.execute("SELECT COALESCE(MAX(num), 0) FROM projects").fetchone()[0]
        return max(int(row[0]) if row else 1, top + 1)

    def allocate_uid(self) -> str:
        """Reserve a new project UID; never handed out again, even if unused."""
        with self._db() as con:
            num = self._next_num(con)
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_num', ?)", (str(num + 1),))
        return f"P{num}"

    def register(self, uid: str, path: str | os.PathLike, state: str, title: str, lock_id: str | None,
                 workspaces: Sequence[tuple[str, str]] = (),
                 jobs: Sequence[tuple[str, str, str, str]] = ()) -> ProjectRecord:
        """Insert or replace a project's row with its workspaces and jobs, in one transaction."""
        num = ids.project_num(uid)
        assert num is not None and state in STATES
        with self._db() as con:
            con.execute("INSERT OR REPLACE INTO projects (num, path, state, title, lock_id) "
                        "VALUES (?, ?, ?, ?, ?)", (num, str(norm_path(path)), state, title, lock_id))
            faults.point("registry-mid-register")
            self._set_children(con, num, workspaces, jobs)
            nxt = self._next_num(con)
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_num', ?)", (str(nxt),))
        return self.get(uid)

    @staticmethod
    def _set_children(con: sqlite3.Connection, num: int, workspaces: Sequence[tuple[str, str]],
                      jobs: Sequence[tuple[str, str, str, str]]) -> None:
        con.execute("DELETE FROM workspaces WHERE num = ?", (num,))
        con.execute("DELETE FROM jobs WHERE num = ?", (num,))
        con.executemany("INSERT OR REPLACE INTO workspaces (num, uid, title) VALUES (?, ?, ?)",
                        [(num, w, t) for w, t in workspaces])
        con.executemany("INSERT OR REPLACE INTO jobs (num, uid, type, title, status) VALUES (?, ?, ?, ?, ?)",
                        [(num, *j) for j in jobs])

    def update(self, uid: str, *, state: str | None = None, path: str | os.PathLike | None = None,
               title: str | None = None, lock_id: str | None = None,
               workspaces: Sequence[tuple[str, str]] | None = None,
               jobs: Sequence[tuple[str, str, str, str]] | None = None) -> ProjectRecord:
        """Change some fields of a row (and optionally replace its workspaces/jobs)."""
        rec = self.get(uid)
        assert state is None or state in STATES
        with self._db() as con:
            con.execute(
                "UPDATE projects SET state = ?, path = ?, title = ?, lock_id = ?, "
                "updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE num = ?",
                (state or rec.state, str(norm_path(path)) if path is not None else str(rec.path),
                 rec.title if title is None else title, rec.lock_id if lock_id is None else lock_id, rec.num))
            if workspaces is not None or jobs is not None:
                old_ws = con.execute("SELECT uid, title FROM workspaces WHERE num = ?", (rec.num,)).fetchall()
                old_jobs = con.execute("SELECT uid, type, title, status FROM jobs WHERE num = ?",
                                       (rec.num,)).fetchall()
                self._set_children(con, rec.num, old_ws if workspaces is None else workspaces,
                                   old_jobs if jobs is None else jobs)
        return self.get(uid)

    def upsert_jobs(self, uid: str, jobs: Sequence[tuple[str, str, str, str]]) -> None:
        """Add or refresh some job rows of a project, keeping the others."""
        num = self.get(uid).num
        with self._db() as con:
            con.executemany("INSERT OR REPLACE INTO jobs (num, uid, type, title, status) VALUES (?, ?, ?, ?, ?)",
                            [(num, *j) for j in jobs])

    def remove(self, uid: str) -> None:
        """Delete a project's rows (its UID stays used)."""
        num = self.get(uid).num
        with self._db() as con:
            nxt = self._next_num(con)
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_num', ?)", (str(nxt),))
            for table in ("jobs", "workspaces", "projects"):
                con.execute(f"DELETE FROM {table} WHERE num = ?", (num,))

    def info(self) -> dict:
        """Facts for `csfs instance info`."""
        recs = self.projects()
        counts = {s: sum(r.state == s for r in recs) for s in STATES}
        return {"id": self.id, "home": str(self.home), "registry": str(self.registry_path),
                "projects": len(recs), **counts, "next_uid": self.next_uid()}


def known_projects(path: str | os.PathLike) -> list[dict]:
    """The rows saved in a registry.known.json ([] when missing or unreadable)."""
    import json

    try:
        doc = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return []
    rows = doc.get("projects") if isinstance(doc, dict) else None
    return [r for r in rows or [] if isinstance(r, dict) and isinstance(r.get("path"), str)
            and ids.project_num(str(r.get("uid", ""))) is not None]


def _fix_disk(e: OSError, where: Path) -> str:
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"Free space on the disk holding {where}, then run the command again"
    return f"Check the disk holding {where}, then run the command again"
