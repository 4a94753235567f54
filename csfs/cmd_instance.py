"""`csfs instance …`, `csfs project …` lifecycle commands, `csfs job list|mark-completed|mark-killed`."""
from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

from csfs.core.errors import NotFoundError
from csfs.core.instance import Instance, ProjectRecord, norm_path

from . import schema
from .config import resolve_home
from .main import PROJECT_REF, group
from .main import leaf as main_leaf
from .output import print_json, print_table


def _lifecycle():
    """core.lifecycle, imported on use so `csfs --help` and other commands start fast."""
    from csfs.core import lifecycle
    return lifecycle


def _instance(args: argparse.Namespace) -> Instance:
    return Instance(resolve_home(args.home))


def locate(inst: Instance, ref: str) -> tuple[ProjectRecord | None, Path]:
    """A registered project by UID or path, or else any project directory (read-only use)."""
    try:
        rec = inst.resolve(ref)
        return rec, rec.path
    except NotFoundError:
        if os.path.isdir(ref):
            return None, norm_path(ref)
        raise


def project_json(rec: ProjectRecord | None, path: Path, **extra) -> dict:
    """The schema's project object for a registered project, or a directory not registered here."""
    if rec is None:
        return schema.project(None, path, state="not registered", **extra)
    return schema.project_of(rec, **extra)


def _done(args: argparse.Namespace, rec: ProjectRecord, verb: str, action: str) -> int:
    if getattr(args, "json", False):
        print_json({"action": action, "project": schema.project_of(rec), **({"note": rec.note} if rec.note else {})})
    else:
        print(f"{verb} {rec.uid} ({rec.state}): {rec.path}" + (f" ({rec.note})" if rec.note else ""))
    return 0


# -- instance ------------------------------------------------------------------------------

def _cmd_info(args: argparse.Namespace) -> int:
    info = _instance(args).info()
    if args.json:
        counts = {"total" if k == "projects" else k: info.pop(k)
                  for k in ("projects", "attached", "archived", "detached")}
        print_json({"instance": info, "counts": counts})
    else:
        for k, v in info.items():
            print(f"{k + ':':<10} {v}")
    return 0


def _cmd_recover(args: argparse.Namespace) -> int:
    from csfs.core.recover import recover

    rep = recover(resolve_home(args.home), args.dirs)
    if args.json:
        print_json({"action": "recover", "old_registry": rep.kept_aside, "projects": rep.registered,
                    "skipped": rep.skipped})
        return 0
    if rep.kept_aside:
        print(f"old registry kept as {rep.kept_aside}")
    print_table([(r["uid"], r["state"], r["path"], r["how"]) for r in rep.registered],
                ["UID", "STATE", "PATH", "HOW"])
    for s in rep.skipped:
        print(f"skipped {s['path']}: {s['why']}")
    print(f"registry rebuilt: {len(rep.registered)} project(s), {len(rep.skipped)} directory(ies) skipped")
    return 0


# -- project -------------------------------------------------------------------------------

def _cmd_create(args: argparse.Namespace) -> int:
    return _done(args, _lifecycle().create(_instance(args), args.title, args.dir), "created", "create")


def _cmd_attach(args: argparse.Namespace) -> int:
    return _done(args, _lifecycle().attach(_instance(args), args.path), "attached", "attach")


def _cmd_detach(args: argparse.Namespace) -> int:
    return _done(args, _lifecycle().detach(_instance(args), args.project, args.registry_only), "detached",
                 "detach")


def _cmd_archive(args: argparse.Namespace) -> int:
    return _done(args, _lifecycle().archive(_instance(args), args.project), "archived", "archive")


def _cmd_unarchive(args: argparse.Namespace) -> int:
    return _done(args, _lifecycle().unarchive(_instance(args), args.project, args.path), "unarchived", "unarchive")


def _cmd_forget(args: argparse.Namespace) -> int:
    rec = _lifecycle().forget(_instance(args), args.project, missing=args.missing)
    if args.json:
        print_json({"action": "forget", "project": schema.project_of(rec)})
    else:
        print(f"forgot {rec.uid} ({rec.path}); nothing on disk was touched")
    return 0


def _cmd_rescue(args: argparse.Namespace) -> int:
    inst = _instance(args)
    message = _lifecycle().rescue(inst, args.path, args.other_instance_is_down)
    if args.json:
        from csfs.core import lock

        path = norm_path(args.path)
        rec, info = inst.find_path(path), lock.read(path)
        done = rec is not None and info is not None and info.is_ours(inst.id)
        print_json({"action": "rescue", "done": done, "message": message,
                    "project": schema.project_of(rec) if done and rec is not None
                    else schema.project(None, norm_path(args.path))})
    else:
        print(message)
    return 0


def _state(rec: ProjectRecord) -> tuple[str, bool]:
    """A registry row's state, and whether its directory is missing (moved or deleted)."""
    return rec.state, not rec.path.is_dir()


def _cmd_list(args: argparse.Namespace) -> int:
    recs = _instance(args).projects()
    if args.state:
        recs = [r for r in recs if r.state == args.state]
    rows = [(r, *_state(r)) for r in recs]
    if args.missing:
        rows = [row for row in rows if row[2]]
    if args.json:
        print_json({"projects": [schema.project_of(r, missing=m) for r, _, m in rows]})
    else:
        print_table([(r.uid, s + (", missing" if m else ""), r.title, r.path) for r, s, m in rows],
                    ["UID", "STATE", "TITLE", "PATH"])
        if any(m and s != "detached" for _, s, m in rows):
            print("missing: the directory is gone. Moved? `csfs project attach NEWPATH` (or unarchive an "
                  "archived one there). Deleted? `csfs project forget --missing P<n>`.")
    return 0


def project_facts(inst: Instance, ref: str) -> dict:
    """What `project show` reports: the project (registry row and project.json), its lock
    owner, job counts, problems."""
    from csfs.core import lock
    from csfs.core.project import Project, iso_time

    rec, path = locate(inst, ref)
    info = lock.read(path) if path.is_dir() else None
    if info is None:
        owner = "none"
    elif info.is_ours(inst.id):
        owner = f"this instance ({info.project_uid})"
    else:
        owner = info.describe()
    facts: dict = {"project": project_json(rec, path, missing=not path.is_dir()), "lock": owner}
    if not path.is_dir():
        fix = f"`csfs project forget --missing {rec.uid}`" if rec else "nothing to do"
        facts["problems"] = [f"directory {path} is missing (moved? attach or unarchive it at its new path; "
                             f"deleted? {fix})"]
        return facts
    proj = Project.open(path)
    counts = Counter(j.status or "?" for j in proj.jobs.values())
    facts["project"].update({
        "title": proj.title, "layout": proj.layout, "project_json_uid": proj.doc.get("uid"),
        "archived": proj.doc.get("archived"), "detached": proj.doc.get("detached"),
        "created_at": iso_time(proj.doc.get("created_at")), "workspace_count": len(proj.workspaces)})
    facts.update({
        "job_count": len(proj.jobs), "job_status": dict(sorted(counts.items())),
        "active_jobs": [schema.job(j.uid, status=j.status) for j in proj.jobs.values() if j.is_active],
        "problems": proj.problems + [j.error for j in proj.jobs.values() if j.error],
    })
    return facts


def _cmd_show(args: argparse.Namespace) -> int:
    facts = project_facts(_instance(args), args.project)
    if args.json:
        print_json(facts)
        return 0
    flat = {**facts.pop("project"), **facts}
    flat["active_jobs"] = [j["uid"] for j in flat.get("active_jobs", [])]
    for k, v in flat.items():
        if k == "problems":
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{s} {n}" for s, n in v.items()) or "-"
        elif isinstance(v, list):
            v = ", ".join(v) or "-"
        print(f"{k + ':':<17} {'-' if v is None else v}")
    for p in flat.get("problems", []):
        print(f"problem:          {p}")
    return 0


# -- job -----------------------------------------------------------------------------------

def _cmd_job_list(args: argparse.Namespace) -> int:
    from csfs.core.project import Project

    rec, path = locate(_instance(args), args.project)
    proj = Project.open(path)
    jobs = list(proj.jobs.values())
    if args.json:
        print_json({"project": project_json(rec, path),
                    "jobs": [schema.job(j.uid, type=j.type, status=j.status, title=j.title,
                                        created_at=j.created_at, completed_at=j.completed_at,
                                        groups=[{"name": g.name, "type": g.type, "num_items": g.num_items}
                                                for g in j.groups], error=j.error) for j in jobs]})
    else:
        print_table([(j.uid, j.type, j.status, j.title, j.created_at or "", j.error or "") for j in jobs],
                    ["UID", "TYPE", "STATUS", "TITLE", "CREATED", "PROBLEM"])
    return 0


def _mark(args: argparse.Namespace, status: str) -> int:
    inst = _instance(args)
    lc = _lifecycle()
    juid = (lc.mark_completed if status == "completed" else lc.mark_killed)(inst, args.project, args.job)
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


# -- registration --------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    def leaf(g: argparse._SubParsersAction, name: str, help: str, func, desc: str = "",
             json: bool = False) -> argparse.ArgumentParser:
        return main_leaf(g, common, name, help, func, desc, json)

    inst = group(sub, "instance", "this csfs instance (its id and project registry in CSFS_HOME)")
    leaf(inst, "info", "show the instance id, home, registry and project counts", _cmd_info, json=True)
    p = leaf(inst, "recover", "rebuild a damaged or lost registry from the project directories", _cmd_recover,
             "The registry is rebuilt from the cs.lock files of every directory it knew (saved in\n"
             "CSFS_HOME/registry.known.json on each change) and of the directories DIR... you name\n"
             "(a project directory, or a folder holding project directories). P-uids stay as the\n"
             "locks name them. Directories locked by other instances are skipped. The old registry\n"
             "file is kept beside the new one as registry.sqlite3.damaged-<time>.", json=True)
    p.add_argument("dirs", metavar="DIR", nargs="*", help="more directories to search for projects of this instance")

    prj = group(sub, "project", "project lifecycle: create, attach, detach, archive, unarchive, forget, "
                                "rescue, list, show")
    p = leaf(prj, "create", "create a new empty project CS-<slug of TITLE>, locked and attached", _cmd_create,
             "Create CS-<slug>/ with project.json, workspaces.json and this instance's cs.lock, and\n"
             "register it under a new UID (printed).", json=True)
    p.add_argument("title", metavar="TITLE", help="project title (the directory is CS-<slug of it>)")
    p.add_argument("--dir", metavar="CONTAINER", default=".",
                   help="existing folder to create the project directory in (default: current folder)")

    p = leaf(prj, "attach", "lock a project directory for this instance and register it", _cmd_attach,
             "Write this instance's cs.lock into PATH and register the project, its workspaces and\n"
             "jobs under a new UID. Refused while any cs.lock is present (the message names its\n"
             "owner). Legacy (<= v3.3, P12/) directories attach too and get a project.json.", json=True)
    p.add_argument("path", metavar="PATH", help="the project directory")

    p = leaf(prj, "detach", "flush metadata, remove our lock; the directory can then be attached anywhere",
             _cmd_detach, "Refused while a job is queued/launched/started/running/waiting (named), and when\n"
                          "the directory does not hold the lock this instance registered for the project.\n"
                          "Detaching a detached project succeeds and changes nothing.", json=True)
    p.add_argument("project", metavar="PROJECT", help=PROJECT_REF)
    p.add_argument("--registry-only", action="store_true",
                   help="only mark the project detached in this registry, touching nothing on disk (for a "
                        "project that is gone or was taken over by another instance)")

    p = leaf(prj, "archive", "make an attached project read-only (lock kept); it may then be moved",
             _cmd_archive, "Refused while a job is active. After moving the directory, run\n"
                           "`csfs project unarchive PROJECT NEWPATH`.", json=True)
    p.add_argument("project", metavar="PROJECT", help=PROJECT_REF)

    p = leaf(prj, "unarchive", "make an archived project writable again at PATH (where it may have moved)",
             _cmd_unarchive, "Accepted only if PATH holds this instance's lock for the same project.", json=True)
    p.add_argument("project", metavar="PROJECT", help="the archived project's UID (P3) or its old path")
    p.add_argument("path", metavar="PATH", help="the directory the project is in now")

    p = leaf(prj, "forget", "drop a detached project from the registry (nothing on disk is touched)",
             _cmd_forget, "With --missing: also an attached or archived project whose directory is gone\n"
                          "(deleted, or its disk lost): `project list` shows it as missing. If it only\n"
                          "moved, attach it (or unarchive an archived one) at its new path instead.",
             json=True)
    p.add_argument("project", metavar="PROJECT", help=PROJECT_REF)
    p.add_argument("--missing", action="store_true",
                   help="forget a project whose directory no longer exists, whatever its state")

    p = leaf(prj, "rescue", "take over a project locked by an instance that is down for good", _cmd_rescue,
             "Without --other-instance-is-down: explain the steps and change nothing.\n"
             "With it: save the old lock as cs.lock.rescued-<time>.json, replace it by ours and\n"
             "register the project here under a new UID.", json=True)
    p.add_argument("path", metavar="PATH", help="the project directory")
    p.add_argument("--other-instance-is-down", action="store_true",
                   help="state that the instance owning the lock is stopped and will not write again")

    p = leaf(prj, "list", "list the projects this instance knows", _cmd_list, json=True)
    p.add_argument("--state", choices=["attached", "archived", "detached"], help="only projects in this state")
    p.add_argument("--missing", action="store_true", help="only projects whose directory is gone")

    p = leaf(prj, "show", "show a project: state, lock owner, project.json, job counts, problems",
             _cmd_show, "PROJECT may also be any project directory not registered here.", json=True)
    p.add_argument("project", metavar="PROJECT", help=PROJECT_REF)

    job = group(sub, "job", "jobs of a project: list, mark-completed, mark-killed, export, import")
    p = leaf(job, "list", "list a project's jobs with type, status and title", _cmd_job_list,
             "PROJECT may also be any project directory not registered here.", json=True)
    p.add_argument("project", metavar="PROJECT", help=PROJECT_REF)

    p = leaf(job, "mark-completed", "mark a killed or failed job as completed", _cmd_mark_completed,
             "CryoSPARC's \"mark as completed\": the job's status becomes completed so its\n"
             "outputs can be used. Only for killed or failed jobs of a project attached here.",
             json=True)
    p.add_argument("project", metavar="PROJECT", help=PROJECT_REF)
    p.add_argument("job", metavar="JUID", help="the job UID, e.g. J12")

    p = leaf(job, "mark-killed", "mark an active job whose process is gone as killed", _cmd_mark_killed,
             "For a job left queued/running/... by an instance that died or was stopped: its status\n"
             "becomes killed, so detach and archive are no longer blocked by it. Nothing is signalled:\n"
             "make sure no CryoSPARC process still works on it. Only for a project attached here.",
             json=True)
    p.add_argument("project", metavar="PROJECT", help=PROJECT_REF)
    p.add_argument("job", metavar="JUID", help="the job UID, e.g. J12")
