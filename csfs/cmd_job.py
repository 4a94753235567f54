"""`csfs job list|mark-completed|mark-killed|export|import` (and `csfs jobs`, short for `job list`)."""
from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from . import cli, reports, schema
from .output import Progress, print_json, print_table

if TYPE_CHECKING:
    from csfs.core.project import Job

LIST_HELP = "list a project's jobs: type, status, title, times, output groups and problems"
LIST_DESC = ("PROJECT may also be any project directory not registered here (v4 CS-<slug>/ or\n"
             "legacy P<N>/). Jobs whose job.json is broken, metafiles missing or symlinks dangling\n"
             "are listed too (status BROKEN for an unreadable job.json), with the problems printed\n"
             "under the table. Nothing is written.")


def _date(iso: str | None) -> str:
    return iso[:16].replace("T", " ") if iso else ""


def _job_json(job: Job) -> dict:
    """A job of `job list --json`: its documents' facts, output groups with every result
    version, input connections, and problems."""
    return schema.job(
        job.uid, type=job.type, title=job.title, status=job.status, created_at=job.created_at,
        completed_at=job.completed_at, error=job.error, problems=job.problems,
        groups=[{"name": g.name, "type": g.type, "title": g.title, "num_items": g.num_items,
                 "results": [{"name": r.name, "type": r.type, "passthrough": r.passthrough,
                              "final_version": r.final_version, "final_metafile": r.final_metafile,
                              "versions": [{"version": v, "metafile": m, "num_items": n}
                                           for v, m, n in zip(r.versions, r.metafiles,
                                                              r.num_items + [None] * len(r.versions), strict=False)]}
                             for r in g.results]}
                for g in job.groups],
        inputs=[{"job": schema.job(i.job_uid), "group": {"name": i.group_name},
                 "result": {"name": i.result_name}, "version": i.version} for i in job.inputs])


def _cmd_list(args: argparse.Namespace) -> int:
    from csfs.core.project import Project

    rec, path = cli.instance(args).locate(args.project)
    proj = Project.open(path)
    jobs = list(proj.jobs.values())
    if args.json:
        project = cli.project_json(rec, path, layout=proj.layout, problems=proj.problems)
        project.setdefault("title", proj.title)
        print_json({"project": project, "jobs": [_job_json(j) for j in jobs]})
        return 0
    print_table([(j.uid, j.type, "BROKEN" if j.error else j.status, j.title, _date(j.created_at),
                  _date(j.completed_at), ", ".join(f"{g.name}({g.num_items})" for g in j.groups)) for j in jobs],
                ["UID", "TYPE", "STATUS", "TITLE", "CREATED", "COMPLETED", "GROUPS"])
    problems = proj.all_problems()
    if problems:
        print("\nproblems:")
        for line in problems:
            print(f"  {line}")
    return 0


def _mark(args: argparse.Namespace, status: str) -> int:
    from csfs.core import lifecycle

    inst = cli.instance(args)
    juid = (lifecycle.mark_completed if status == "completed" else lifecycle.mark_killed)(
        inst, args.project, args.job)
    rec = inst.resolve(args.project)
    if args.json:
        print_json({"action": f"mark-{status}", "project": schema.project_of(rec),
                    "job": schema.job(juid, status=status)})
    else:
        print(f"{rec.uid} {juid} marked {status}")
    return 0


def _cmd_mark_completed(args: argparse.Namespace) -> int:
    return _mark(args, "completed")


def _cmd_mark_killed(args: argparse.Namespace) -> int:
    return _mark(args, "killed")


def _cmd_export(args: argparse.Namespace) -> int:
    from csfs.core import consolidate

    stats: dict = {}
    inst = cli.instance(args)
    with Progress(f"export {args.job}") as bar:
        consolidate.export_job(inst, args.project, args.job, progress=bar, stats=stats)
    return reports.export(args, inst, stats)


def _cmd_import(args: argparse.Namespace) -> int:
    from csfs.core import imports

    inst = cli.instance(args)
    with Progress("import") as bar:
        juid = imports.import_job(inst, args.project, args.dir, copy=args.copy, progress=bar,
                                  allow_from=args.allow_from)
    return reports.imported(args, inst, juid, {"path": os.path.abspath(args.dir), "copy": args.copy})


def register(sub: cli.Subparsers, common: argparse.ArgumentParser) -> None:
    job = cli.group(sub, "job", "jobs of a project: list, mark-completed, mark-killed, export, import")

    def leaf(name: str, help: str, func: cli.Command, desc: str = "") -> argparse.ArgumentParser:
        return cli.leaf(common, job, name, help, func, desc, json=True, project=True)

    leaf("list", LIST_HELP, _cmd_list, LIST_DESC)

    p = leaf("mark-completed", "mark a killed or failed job as completed", _cmd_mark_completed,
             "CryoSPARC's \"mark as completed\": the job's status becomes completed so its\n"
             "outputs can be used. Only for killed or failed jobs of a project attached here.")
    p.add_argument("job", metavar="JUID", help="the job UID, e.g. J12")

    p = leaf("mark-killed", "mark an active job whose process is gone as killed", _cmd_mark_killed,
             "For a job left queued/running/... by an instance that died or was stopped: its status\n"
             "becomes killed, so detach and archive are no longer blocked by it. Nothing is signalled:\n"
             "make sure no CryoSPARC process still works on it. Only for a project attached here.")
    p.add_argument("job", metavar="JUID", help="the job UID, e.g. J12")

    p = leaf("export", "consolidate a completed job's export under exports/jobs/J<N>_<type>/", _cmd_export,
             "Writes the stripped job.json, events.bson, gridfs_data/ and one J<N>_<group>/ folder per\n"
             "output group (its joined _exported.cs, .csg and symlinks to the data). Only metadata\n"
             "and links are written; data is never copied. Exporting twice gives identical bytes.\n"
             "Jobs that are not completed are refused (see `csfs job mark-completed`).")
    p.add_argument("job", metavar="JUID", help="the job UID, e.g. J12")

    p = leaf("import", "import an exported job folder as a new job of the project", _cmd_import,
             "EXPORTED_DIR is a folder written by `csfs job export` (or CryoSPARC's job export).\n"
             "The new job gets a new UID; its outputs keep their uids and are usable by later jobs.")
    p.add_argument("dir", metavar="EXPORTED_DIR", help="the exported job folder (J<N>_<type>/)")
    p.add_argument("--copy", action="store_true", help="copy the data files instead of symlinking them")
    p.add_argument("--allow-from", metavar="DIR", action="append", default=[], help=cli.ALLOW_FROM_HELP)

    cli.leaf(common, sub, "jobs", "list a project's jobs (short for `csfs job list`)", _cmd_list, LIST_DESC,
             json=True, project=True)
