"""`csfs group export|import`: output groups, exported one at a time or imported from a .csg."""
from __future__ import annotations

import argparse
import os

from . import cli, reports
from .output import Progress


def _cmd_export(args: argparse.Namespace) -> int:
    from csfs.core import consolidate

    stats: dict = {}
    inst = cli.instance(args)
    with Progress(f"export {args.job} {args.group}") as bar:
        consolidate.export_group(inst, args.project, args.job, args.group, progress=bar, stats=stats)
    return reports.export(args, inst, stats, args.group)


def _cmd_import(args: argparse.Namespace) -> int:
    from csfs.core import imports

    inst = cli.instance(args)
    with Progress("import") as bar:
        juid = imports.import_group(inst, args.project, args.csg, copy=args.copy, progress=bar,
                                    allow_from=args.allow_from)
    return reports.imported(args, inst, juid, {"path": os.path.abspath(args.csg), "copy": args.copy})


def register(sub: cli.Subparsers, common: argparse.ArgumentParser) -> None:
    grp = cli.group(sub, "group", "output groups: export one, or import a .csg as a new job")
    p = cli.leaf(common, grp, "export", "consolidate an output group's export under exports/groups/J<N>_<group>/",
                 _cmd_export,
                 "Writes J<N>_<group>_exported.cs (the final versions of all the group's results joined by\n"
                 "uid, paths rewritten '>'-relative), the matching .csg, and symlinks to every data file\n"
                 "at its project-relative path.", json=True, project=True)
    p.add_argument("job", metavar="JUID", help="the job UID, e.g. J12")
    p.add_argument("group", metavar="GROUP", help="the output group name, e.g. particles")
    p = cli.leaf(common, grp, "import", "import a result group (.csg) as a new import_result_group job",
                 _cmd_import,
                 "The new job's outputs keep the uids; its data is referenced from the new job's\n"
                 "directory (J<M>/imported/...) as symlinks, or copies with --copy.", json=True, project=True)
    p.add_argument("csg", metavar="FILE.csg", help="the .csg file (e.g. an exported J<N>_<group>_exported.csg)")
    p.add_argument("--copy", action="store_true", help="copy the data files instead of symlinking them")
    p.add_argument("--allow-from", metavar="DIR", action="append", default=[], help=cli.ALLOW_FROM_HELP)
