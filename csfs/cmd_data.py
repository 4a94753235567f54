"""Data commands: job/group export, imports, `du`, `clear-intermediate`, `verify`, `relink`."""
from __future__ import annotations

import argparse
import os
import shlex
from collections import Counter
from typing import TYPE_CHECKING

from csfs.core.instance import Instance

from . import schema
from .cmd_instance import locate, project_json
from .config import resolve_home
from .main import PROJECT_REF, group
from .main import leaf as main_leaf
from .output import Progress, human_bytes, print_json, print_table

if TYPE_CHECKING:
    from csfs.core.project import Project

from csfs.core.rawfiles import PATTERNS as RAW_PATTERNS  # no numpy: --help stays fast

RAW_KINDS = tuple(sorted(RAW_PATTERNS))   # = core.imports.RAW_KINDS (checked in a test)
# core modules are imported inside the commands: `csfs du` then starts faster


def _instance(args: argparse.Namespace) -> Instance:
    return Instance(resolve_home(args.home))


def _open_readonly(inst: Instance, ref: str) -> tuple[dict, Project]:
    """A registered project, or any project directory (read-only commands): its schema
    object and the opened project."""
    from csfs.core.project import Project

    rec, path = locate(inst, ref)
    return project_json(rec, path), Project.open(path)


def _project_of(inst: Instance, ref: str) -> dict:
    """The schema object of a registered project (after a command changed it)."""
    return schema.project_of(inst.resolve(ref))


# -- exports -------------------------------------------------------------------------------

def _report_export(args: argparse.Namespace, inst: Instance, stats: dict, group: str | None = None) -> int:
    if args.json:
        out = {"action": "export", "project": _project_of(inst, args.project), "job": schema.job(args.job),
               **({"group": {"name": group}} if group else {}), "path": stats["path"],
               "entry_count": stats["entries"], "link_count": stats["links"], "data_bytes": stats["data_bytes"],
               "written_bytes": stats["bytes_written"]}
        print_json(out)
    else:
        print(f"exported to {stats['path']}: {stats['entries']} entries, {stats['links']} data links "
              f"({human_bytes(stats['data_bytes'])} of data), {human_bytes(stats['bytes_written'])} written")
    return 0


def _cmd_job_export(args: argparse.Namespace) -> int:
    from csfs.core import consolidate

    stats: dict = {}
    inst = _instance(args)
    with Progress(f"export {args.job}") as bar:
        consolidate.export_job(inst, args.project, args.job, progress=bar, stats=stats)
    return _report_export(args, inst, stats)


def _cmd_group_export(args: argparse.Namespace) -> int:
    from csfs.core import consolidate

    stats: dict = {}
    inst = _instance(args)
    with Progress(f"export {args.job} {args.group}") as bar:
        consolidate.export_group(inst, args.project, args.job, args.group, progress=bar, stats=stats)
    return _report_export(args, inst, stats, args.group)


# -- imports -------------------------------------------------------------------------------

def _report_import(args: argparse.Namespace, inst: Instance, juid: str, source: dict) -> int:
    """The new job, its output groups and item counts, as text or JSON."""
    from csfs.core.project import Project

    rec = inst.resolve(args.project)
    job = Project.open(rec.path).job(juid)
    groups = [{"name": g.name, "type": g.type, "num_items": g.num_items} for g in job.groups]
    if args.json:
        print_json({"action": "import", "project": schema.project_of(rec),
                    "job": schema.job(juid, type=job.type, status=job.status, groups=groups), "source": source})
        return 0
    items = ", ".join(f"{g['name']} ({g['num_items']} items)" for g in groups) or "no outputs"
    files = f"{source['file_count']} {args.kind} file(s) " if "file_count" in source else ""
    print(f"imported {files}as {rec.uid} {juid} ({job.type}): {items}")
    skipped = source.get("skipped") or []
    if skipped:
        kinds = Counter(os.path.splitext(p)[1].lower() or "(no suffix)" for p in skipped)
        print(f"skipped {len(skipped)} other file(s) in the folder(s): "
              + ", ".join(f"{n} {ext}" for ext, n in sorted(kinds.items())))
    return 0


def _cmd_group_import(args: argparse.Namespace) -> int:
    from csfs.core import imports

    inst = _instance(args)
    with Progress("import") as bar:
        juid = imports.import_group(inst, args.project, args.csg, copy=args.copy, progress=bar,
                                    allow_from=args.allow_from)
    return _report_import(args, inst, juid, {"path": os.path.abspath(args.csg), "copy": args.copy})


def _cmd_job_import(args: argparse.Namespace) -> int:
    from csfs.core import imports

    inst = _instance(args)
    with Progress("import") as bar:
        juid = imports.import_job(inst, args.project, args.dir, copy=args.copy, progress=bar,
                                  allow_from=args.allow_from)
    return _report_import(args, inst, juid, {"path": os.path.abspath(args.dir), "copy": args.copy})


def _cmd_import_raw(args: argparse.Namespace) -> int:
    from csfs.core import imports

    inst = _instance(args)
    report: dict = {}
    with Progress("import") as bar:
        juid = imports.import_raw(inst, args.project, args.kind, args.paths, progress=bar, report=report)
    return _report_import(args, inst, juid, {"kind": args.kind, "paths": args.paths, **report,
                                             "skipped_count": len(report["skipped"])})


# -- sizes ---------------------------------------------------------------------------------

def _cmd_du(args: argparse.Namespace) -> int:
    from csfs.core import sizes

    inst = _instance(args)
    pobj, project = _open_readonly(inst, args.project)
    with Progress("du") as bar:
        report = sizes.project_sizes(project, inst.cache_dir, progress=bar)
    if args.json:
        print_json(schema.sizes(pobj, project, report))
        return 0
    clearable = sum(j.clearable for j in report.jobs.values())
    if args.jobs:
        rows: list[tuple] = [(uid, project.jobs[uid].type, project.jobs[uid].status, s.bytes, human_bytes(s.bytes),
                 s.clearable, human_bytes(s.clearable)) for uid, s in report.jobs.items()]
        rows += [(name, "live_session", "", n, human_bytes(n), "", "") for name, n in report.sessions.items()]
        rows.append(("other", "", "", report.other, human_bytes(report.other), "", ""))
        print_table(rows, ["JOB", "TYPE", "STATUS", "BYTES", "SIZE", "CLEARABLE_BYTES", "CLEARABLE"],
                    right=["BYTES", "SIZE", "CLEARABLE_BYTES", "CLEARABLE"])
    print(f"{report.total}\t{human_bytes(report.total)}\t{project.path}"
          f"\t(clearable intermediate: {human_bytes(clearable)})")
    return 0


# -- clear, verify, relink -----------------------------------------------------------------

def _cmd_clear(args: argparse.Namespace) -> int:
    from csfs.core import cleanup

    with Progress("clear") as bar:
        plans = cleanup.clear_intermediate(_instance(args), args.project, args.job, dry_run=args.dry_run,
                                           progress=bar)
    if args.json:
        jobs = [schema.job(p.job, skip_reason=p.skipped, bytes=p.bytes,
                           versions=[{"result": k, "versions": v} for k, v in p.versions.items()],
                           files=[{"path": f.path, "bytes": f.bytes} for f in p.files]) for p in plans]
        print_json({"action": "clear-intermediate", "dry_run": args.dry_run,
                    "project": _project_of(_instance(args), args.project), "jobs": jobs,
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

    inst = _instance(args)
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

    inst = _instance(args)
    with Progress("relink") as bar:
        changes = verify.relink(inst, args.project, args.old, args.new, dry_run=args.dry_run, progress=bar)
    if args.json:
        print_json({"action": "relink", "dry_run": args.dry_run, "project": _project_of(inst, args.project),
                    "links": [c.as_dict() for c in changes]})
        return 0
    for c in changes:
        print(f"{c.link}: {c.old_target} -> {c.new_target}")
    print(f"{'would relink' if args.dry_run else 'relinked'} {len(changes)} symlink(s)")
    return 0


# -- parser --------------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    def leaf(g: argparse._SubParsersAction, name: str, help: str, func, desc: str = "",
             project: bool = True) -> argparse.ArgumentParser:
        p = main_leaf(g, common, name, help, func, desc, json=True)
        if project:
            p.add_argument("project", metavar="PROJECT", help=PROJECT_REF)
        return p

    job = group(sub, "job", "jobs of a project: list, mark-completed, mark-killed, export, import")
    p = leaf(job, "export", "consolidate a completed job's export under exports/jobs/J<N>_<type>/",
             _cmd_job_export,
             "Writes the stripped job.json, events.bson, gridfs_data/ and one J<N>_<group>/ folder per\n"
             "output group (its joined _exported.cs, .csg and symlinks to the data). Only metadata\n"
             "and links are written; data is never copied. Exporting twice gives identical bytes.\n"
             "Jobs that are not completed are refused (see `csfs job mark-completed`).")
    p.add_argument("job", metavar="JUID", help="the job UID, e.g. J12")
    p = leaf(job, "import", "import an exported job folder as a new job of the project", _cmd_job_import,
             "EXPORTED_DIR is a folder written by `csfs job export` (or CryoSPARC's job export).\n"
             "The new job gets a new UID; its outputs keep their uids and are usable by later jobs.")
    p.add_argument("dir", metavar="EXPORTED_DIR", help="the exported job folder (J<N>_<type>/)")
    p.add_argument("--copy", action="store_true", help="copy the data files instead of symlinking them")
    p.add_argument("--allow-from", metavar="DIR", action="append", default=[],
                   help="also trust files resolving into DIR (repeatable); by default only files inside\n"
                        "the export folder (or the project holding it) are read, linked or copied")

    grp = group(sub, "group", "output groups: export one, or import a .csg as a new job")
    p = leaf(grp, "export", "consolidate an output group's export under exports/groups/J<N>_<group>/",
             _cmd_group_export,
             "Writes J<N>_<group>_exported.cs (the final versions of all the group's results joined by\n"
             "uid, paths rewritten '>'-relative), the matching .csg, and symlinks to every data file\n"
             "at its project-relative path.")
    p.add_argument("job", metavar="JUID", help="the job UID, e.g. J12")
    p.add_argument("group", metavar="GROUP", help="the output group name, e.g. particles")
    p = leaf(grp, "import", "import a result group (.csg) as a new import_result_group job", _cmd_group_import,
             "The new job's outputs keep the uids; its data is referenced from the new job's\n"
             "directory (J<M>/imported/...) as symlinks, or copies with --copy.")
    p.add_argument("csg", metavar="FILE.csg", help="the .csg file (e.g. an exported J<N>_<group>_exported.csg)")
    p.add_argument("--copy", action="store_true", help="copy the data files instead of symlinking them")
    p.add_argument("--allow-from", metavar="DIR", action="append", default=[],
                   help="also trust files resolving into DIR (repeatable); by default only files inside\n"
                        "the export folder (or the project holding it) are read, linked or copied")

    imp = group(sub, "import", "import raw data into a project as a new import job")
    p = leaf(imp, "raw", "create an import job holding symlinks to raw data", _cmd_import_raw,
             "Like CryoSPARC's import jobs: J<M>/imported/<name> links to each file.\n"
             "PATH is a file, a glob pattern (quote it: '/raw/session1/*.tif') or a folder, which\n"
             "means its files of the kind (default patterns below); EPU sidecars (.jpg, .xml) and\n"
             "other files there are skipped and counted. Every file's header is read and checked\n"
             "(MRC, TIFF, EER): a file that is not what its name says is refused by name, and\n"
             "nothing is imported. Shapes (frames) and MRC pixel sizes go into the dataset.\n\n"
             "default patterns:\n" + "\n".join(f"  {k:<12} {' '.join(v)}" for k, v in RAW_PATTERNS.items()))
    p.add_argument("--kind", required=True, choices=RAW_KINDS, help="what the files are")
    p.add_argument("paths", metavar="PATH", nargs="+", help="files, folders or quoted glob patterns to import")

    p = leaf(sub, "du", "sizes by CryoSPARC's accounting, per job and for the project", _cmd_du,
             "A job's size (CryoSPARC's rule): the files in its directory, symlinks followed, each\n"
             "inode once, st_size summed; folders themselves are not counted (`du -sLb` adds them).\n"
             "CryoSPARC Live sessions (S<N>/) get rows of their own; the project adds the files\n"
             "outside job and session directories.\n"
             "Also shows the bytes clear-intermediate would free. Results are cached in the instance\n"
             "and rescanned only for jobs that changed, so a second run is near-instant.")
    p.add_argument("--jobs", action="store_true", help="one line per job and per Live session")

    p = leaf(sub, "clear-intermediate", "delete intermediate result versions nothing uses", _cmd_clear,
             "For each output result keep the final version and every version another job's input\n"
             "names; delete the metafiles and data files of the other versions. Only completed,\n"
             "killed or failed jobs are touched; nothing outside the job's own directory is deleted.\n"
             "job.json records what was cleared.")
    p.add_argument("job", metavar="JUID", nargs="?", help="only this job (default: every finished job)")
    p.add_argument("--dry-run", action="store_true", help="list the files and bytes, delete nothing")

    p = leaf(sub, "verify", "check a project's files; exit 1 when anything is wrong", _cmd_verify,
             "Reports broken symlinks, metafiles and data files that outputs name but are missing,\n"
             "and metadata that cannot be read. Moved raw data? See `csfs relink`.")

    p = leaf(sub, "relink", "repoint symlinks after raw data moved", _cmd_relink,
             "Every symlink in the job directories whose target starts with OLD_PREFIX is pointed at\n"
             "NEW_PREFIX + the rest. Relative prefixes are taken from the current folder. Refused\n"
             "(nothing changed) when any new target does not exist, or no link points into\n"
             "OLD_PREFIX. `csfs verify` prints the OLD_PREFIX that repairs the broken links.")
    p.add_argument("--from", dest="old", metavar="OLD_PREFIX", required=True, help="the old target prefix")
    p.add_argument("--to", dest="new", metavar="NEW_PREFIX", required=True, help="the new target prefix")
    p.add_argument("--dry-run", action="store_true", help="list the changes, make none")
