"""`csfs du`, `clear-intermediate`, `verify`, `relink`: a project's data on disk (sizes,
intermediate results, broken links)."""
from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING

from csfs.core.instance import Instance

from . import cli, schema
from .output import Progress, human_bytes, print_json, print_table

if TYPE_CHECKING:
    from csfs.core.project import Project


def _open_readonly(inst: Instance, ref: str) -> tuple[dict, Project]:
    """A registered project, or any project directory (read-only commands): its schema
    object and the opened project."""
    from csfs.core.project import Project

    rec, path = inst.locate(ref)
    return cli.project_json(rec, path), Project.open(path)


# -- sizes ---------------------------------------------------------------------------------

def _cmd_du(args: argparse.Namespace) -> int:
    from csfs.core import sizes

    inst = cli.instance(args)
    pobj, project = _open_readonly(inst, args.project)
    with Progress("du") as bar:
        report = sizes.project_sizes(project, inst.cache_dir, progress=bar)
    if args.json:
        print_json(schema.sizes(pobj, project, report))
        return 0
    if args.jobs:
        rows: list[tuple] = [(uid, project.jobs[uid].type, project.jobs[uid].status, s.bytes, human_bytes(s.bytes),
                 s.clearable, human_bytes(s.clearable)) for uid, s in report.jobs.items()]
        rows += [(name, "live_session", "", n, human_bytes(n), "", "") for name, n in report.sessions.items()]
        rows.append(("other", "", "", report.other, human_bytes(report.other), "", ""))
        print_table(rows, ["JOB", "TYPE", "STATUS", "BYTES", "SIZE", "CLEARABLE_BYTES", "CLEARABLE"],
                    right=["BYTES", "SIZE", "CLEARABLE_BYTES", "CLEARABLE"])
    print(f"{report.total}\t{human_bytes(report.total)}\t{project.path}"
          f"\t(clearable intermediate: {human_bytes(report.clearable)})")
    return 0


# -- clear, verify, relink -----------------------------------------------------------------

def _cmd_clear(args: argparse.Namespace) -> int:
    from csfs.core import cleanup

    with Progress("clear") as bar:
        plans = cleanup.clear_intermediate(cli.instance(args), args.project, args.job, dry_run=args.dry_run,
                                           progress=bar)
    if args.json:
        jobs = [schema.job(p.job, skip_reason=p.skipped, bytes=p.bytes,
                           versions=[{"result": k, "versions": v} for k, v in p.versions.items()],
                           files=[{"path": f.path, "bytes": f.bytes} for f in p.files]) for p in plans]
        print_json({"action": "clear-intermediate", "dry_run": args.dry_run,
                    "project": cli.registered_json(cli.instance(args), args.project), "jobs": jobs,
                    "bytes": sum(p.bytes for p in plans)})
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    quiet = [p.job for p in plans if not p.skipped and not p.versions]
    for p in plans:
        if not p.skipped and not p.versions and len(plans) > 1:
            continue
        if p.skipped:
            print(f"{p.job}: skipped ({p.skipped})")
            continue
        if args.dry_run:
            for f in p.files:
                print(f"{f.bytes}\t{f.path}")
        for note in p.kept:
            print(f"{p.job}: kept {note}")
        versions = "; ".join(f"{k} v{','.join(map(str, v))}" for k, v in p.versions.items()) or "nothing to clear"
        print(f"{p.job}: {verb} {len(p.files)} file(s), {human_bytes(p.bytes)} ({versions})")
    if quiet and len(plans) > 1:
        print(f"nothing to clear in {', '.join(quiet)}")
    print(f"total: {verb} {human_bytes(sum(p.bytes for p in plans))}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from csfs.core import verify

    inst = cli.instance(args)
    pobj, project = _open_readonly(inst, args.project)
    with Progress("verify") as bar:
        problems = verify.verify(project, progress=bar)
    ref = pobj["uid"] or shlex.quote(str(project.path))
    hints = [{"from": h.prefix, "link_count": h.links,
              "command": f"csfs relink {ref} --from {shlex.quote(h.prefix)} --to NEWDIR --dry-run"}
             for h in verify.relink_hints(problems)]
    if args.json:
        print_json({"project": pobj, "ok": not problems,
                    "problems": [{**p.as_dict(), "job": schema.job_ref(p.job)} for p in problems],
                    "relink": hints})
    elif problems:
        print_table([(p.job or "-", p.kind, p.message) for p in problems], ["JOB", "PROBLEM", "DETAIL"])
        print(f"{len(problems)} problem(s) in {project.path}")
        for h in hints:
            print(f"{h['link_count']} broken link(s) point into {h['from']}, which is gone. If it moved, "
                  f"repair them with (NEWDIR: where it is now; drop --dry-run to do it):\n  {h['command']}")
    else:
        print(f"ok: {project.path} ({len(project.jobs)} jobs, no problems)")
    return 1 if problems else 0


def _cmd_relink(args: argparse.Namespace) -> int:
    from csfs.core import verify

    inst = cli.instance(args)
    with Progress("relink") as bar:
        changes = verify.relink(inst, args.project, args.old, args.new, dry_run=args.dry_run, progress=bar)
    if args.json:
        print_json({"action": "relink", "dry_run": args.dry_run, "project": cli.registered_json(inst, args.project),
                    "links": [c.as_dict() for c in changes]})
        return 0
    for c in changes:
        print(f"{c.link}: {c.old_target} -> {c.new_target}")
    print(f"{'would relink' if args.dry_run else 'relinked'} {len(changes)} symlink(s)")
    return 0


def register(sub: cli.Subparsers, common: argparse.ArgumentParser) -> None:
    def leaf(name: str, help: str, func: cli.Command, desc: str = "") -> argparse.ArgumentParser:
        return cli.leaf(common, sub, name, help, func, desc, json=True, project=True)

    p = leaf("du", "sizes by CryoSPARC's accounting, per job and for the project", _cmd_du,
             "A job's size (CryoSPARC's rule): the files in its directory, symlinks followed, each\n"
             "inode once, st_size summed; folders themselves are not counted (`du -sLb` adds them).\n"
             "CryoSPARC Live sessions (S<N>/) get rows of their own; the project adds the files\n"
             "outside job and session directories.\n"
             "Also shows the bytes clear-intermediate would free. Results are cached in the instance\n"
             "and rescanned only for jobs that changed, so a second run is near-instant.")
    p.add_argument("--jobs", action="store_true", help="one line per job and per Live session")

    p = leaf("clear-intermediate", "delete intermediate result versions nothing uses", _cmd_clear,
             "For each output result keep the final version and every version another job's input\n"
             "names; delete the metafiles and data files of the other versions. Only completed,\n"
             "killed or failed jobs are touched; nothing outside the job's own directory is deleted.\n"
             "job.json records what was cleared.")
    p.add_argument("job", metavar="JUID", nargs="?", help="only this job (default: every finished job)")
    p.add_argument("--dry-run", action="store_true", help="list the files and bytes, delete nothing")

    p = leaf("verify", "check a project's files; exit 1 when anything is wrong", _cmd_verify,
             "Reports broken symlinks, metafiles and data files that outputs name but are missing,\n"
             "and metadata that cannot be read. Moved raw data? See `csfs relink`.")

    p = leaf("relink", "repoint symlinks after raw data moved", _cmd_relink,
             "Every symlink in the job directories whose target starts with OLD_PREFIX is pointed at\n"
             "NEW_PREFIX + the rest. Relative prefixes are taken from the current folder. Refused\n"
             "(nothing changed) when any new target does not exist, or no link points into\n"
             "OLD_PREFIX. `csfs verify` prints the OLD_PREFIX that repairs the broken links.")
    p.add_argument("--from", dest="old", metavar="OLD_PREFIX", required=True, help="the old target prefix")
    p.add_argument("--to", dest="new", metavar="NEW_PREFIX", required=True, help="the new target prefix")
    p.add_argument("--dry-run", action="store_true", help="list the changes, make none")
