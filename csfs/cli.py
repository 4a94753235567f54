"""What the command modules share: parser building blocks (command groups, subcommands,
exit codes) and the instance and project objects every command reports with."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from csfs.core.instance import Instance, ProjectRecord

from . import schema
from .config import resolve_home

Command = Callable[[argparse.Namespace], "int | None"]
Subparsers = Any    # argparse._SubParsersAction[argparse.ArgumentParser]

PROJECT_REF = "a project: its UID in this instance (P3) or its directory path"
ALLOW_FROM_HELP = ("also trust files resolving into DIR (repeatable); by default only files inside\n"
                   "the export folder (or the project holding it) are read, linked or copied")

EXIT_CODES = [
    (0, "done (verify: no problems found)"),
    (1, "refused (a lock, an active job, a state that does not allow it) or problems found (verify)"),
    (2, "bad input or usage: an unknown project or job, a bad path, a malformed file, a bad option"),
    (130, "interrupted (Ctrl-C)"),
]

_groups: dict[str, Subparsers] = {}


def reset() -> None:
    """Forget the command groups of a previous parser (build_parser starts afresh)."""
    _groups.clear()


def group(sub: Subparsers, name: str, help: str) -> Subparsers:
    """The sub-subparsers of a command group (`project`, `job`, `group`, ...)."""
    if name not in _groups:
        p = sub.add_parser(name, help=help, description=help)
        _groups[name] = p.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)
    return _groups[name]


def leaf(common: argparse.ArgumentParser, g: Subparsers, name: str, help: str, func: Command,
         desc: str = "", json: bool = False, project: bool = False) -> argparse.ArgumentParser:
    """A subcommand of group `g`: help, full description, --home (via `common`), optional --json
    and (with `project`) its first argument PROJECT."""
    p = g.add_parser(name, help=help, description=f"{help}.\n\n{desc}".strip() if desc else help,
                     parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter)
    if json:
        p.add_argument("--json", action="store_true", help="print JSON instead of text")
    if project:
        p.add_argument("project", metavar="PROJECT", help=PROJECT_REF)
    p.set_defaults(func=func)
    return p


def instance(args: argparse.Namespace) -> Instance:
    """The instance the command works on (--home, else $CSFS_HOME, else the default)."""
    return Instance(resolve_home(args.home))


def project_json(rec: ProjectRecord | None, path: Path, **extra: Any) -> dict:
    """The schema's project object for a registered project, or a directory not registered here."""
    if rec is None:
        return schema.project(None, path, state="not registered", **extra)
    return schema.project_of(rec, **extra)


def registered_json(inst: Instance, ref: str) -> dict:
    """The schema object of a registered project (after a command changed it)."""
    return schema.project_of(inst.resolve(ref))
