"""`csfs project …`: project lifecycle (create, attach, detach, archive, unarchive, forget,
rescue) and the registry's view of projects (list, show)."""
from __future__ import annotations

import argparse
from functools import partial
from types import ModuleType
from typing import TYPE_CHECKING

from csfs.core.instance import ProjectRecord, norm_path

from . import cli, schema
from .output import print_json, print_table

if TYPE_CHECKING:
    from csfs.core.facts import ProjectFacts


def _lifecycle() -> ModuleType:
    """core.lifecycle, imported on use so `csfs --help` and other commands start fast."""
    from csfs.core import lifecycle

    return lifecycle


def _done(args: argparse.Namespace, rec: ProjectRecord, verb: str, action: str) -> int:
    if getattr(args, "json", False):
        print_json({"action": action, "project": schema.project_of(rec), **({"note": rec.note} if rec.note else {})})
    else:
        print(f"{verb} {rec.uid} ({rec.state}): {rec.path}" + (f" ({rec.note})" if rec.note else ""))
    return 0


def _cmd_create(args: argparse.Namespace) -> int:
    return _done(args, _lifecycle().create(cli.instance(args), args.title, args.dir), "created", "create")


def _cmd_attach(args: argparse.Namespace) -> int:
    return _done(args, _lifecycle().attach(cli.instance(args), args.path), "attached", "attach")


def _cmd_detach(args: argparse.Namespace) -> int:
    return _done(args, _lifecycle().detach(cli.instance(args), args.project, args.registry_only), "detached",
                 "detach")


def _cmd_archive(args: argparse.Namespace) -> int:
    return _done(args, _lifecycle().archive(cli.instance(args), args.project), "archived", "archive")


def _cmd_unarchive(args: argparse.Namespace) -> int:
    return _done(args, _lifecycle().unarchive(cli.instance(args), args.project, args.path), "unarchived", "unarchive")


def _cmd_forget(args: argparse.Namespace) -> int:
    rec = _lifecycle().forget(cli.instance(args), args.project, missing=args.missing)
    if args.json:
        print_json({"action": "forget", "project": schema.project_of(rec)})
    else:
        print(f"forgot {rec.uid} ({rec.path}); nothing on disk was touched")
    return 0


def _cmd_rescue(args: argparse.Namespace) -> int:
    inst = cli.instance(args)
    message = _lifecycle().rescue(inst, args.path, args.other_instance_is_down)
    if args.json:
        from csfs.core.facts import held_here

        rec = held_here(inst, args.path)
        print_json({"action": "rescue", "done": rec is not None, "message": message,
                    "project": schema.project_of(rec) if rec else schema.project(None, norm_path(args.path))})
    else:
        print(message)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [(r, r.missing) for r in cli.instance(args).projects() if not args.state or r.state == args.state]
    if args.missing:
        rows = [(r, m) for r, m in rows if m]
    if args.json:
        print_json({"projects": [schema.project_of(r, missing=m) for r, m in rows]})
    else:
        print_table([(r.uid, r.state + (", missing" if m else ""), r.title, r.path) for r, m in rows],
                    ["UID", "STATE", "TITLE", "PATH"])
        if any(m and r.state != "detached" for r, m in rows):
            print("missing: the directory is gone. Moved? `csfs project attach NEWPATH` (or unarchive an "
                  "archived one there). Deleted? `csfs project forget --missing P<n>`.")
    return 0


def _show_json(facts: ProjectFacts) -> dict:
    """`project show --json`: the project object (registry row and project.json), lock owner,
    job counts, problems."""
    from csfs.core.documents import iso_time

    out: dict = {"project": cli.project_json(facts.record, facts.path, missing=facts.project is None),
                 "lock": facts.lock}
    proj = facts.project
    if proj is None:
        return {**out, "problems": facts.problems}
    out["project"].update({
        "title": proj.title, "layout": proj.layout, "project_json_uid": proj.doc.get("uid"),
        "archived": proj.doc.get("archived"), "detached": proj.doc.get("detached"),
        "created_at": iso_time(proj.doc.get("created_at")), "workspace_count": len(proj.workspaces)})
    return {**out, "job_count": len(proj.jobs), "job_status": facts.job_status,
            "active_jobs": [schema.job(j.uid, status=j.status) for j in facts.active_jobs],
            "problems": facts.problems}


def _cmd_show(args: argparse.Namespace) -> int:
    from csfs.core.facts import project_facts

    facts = _show_json(project_facts(cli.instance(args), args.project))
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


def register(sub: cli.Subparsers, common: argparse.ArgumentParser) -> None:
    leaf = partial(cli.leaf, common)

    prj = cli.group(sub, "project", "project lifecycle: create, attach, detach, archive, unarchive, forget, "
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
                          "Detaching a detached project succeeds and changes nothing.", json=True, project=True)
    p.add_argument("--registry-only", action="store_true",
                   help="only mark the project detached in this registry, touching nothing on disk (for a "
                        "project that is gone or was taken over by another instance)")

    p = leaf(prj, "archive", "make an attached project read-only (lock kept); it may then be moved",
             _cmd_archive, "Refused while a job is active. After moving the directory, run\n"
                           "`csfs project unarchive PROJECT NEWPATH`.", json=True, project=True)

    p = leaf(prj, "unarchive", "make an archived project writable again at PATH (where it may have moved)",
             _cmd_unarchive, "Accepted only if PATH holds this instance's lock for the same project.", json=True)
    p.add_argument("project", metavar="PROJECT", help="the archived project's UID (P3) or its old path")
    p.add_argument("path", metavar="PATH", help="the directory the project is in now")

    p = leaf(prj, "forget", "drop a detached project from the registry (nothing on disk is touched)",
             _cmd_forget, "With --missing: also an attached or archived project whose directory is gone\n"
                          "(deleted, or its disk lost): `project list` shows it as missing. If it only\n"
                          "moved, attach it (or unarchive an archived one) at its new path instead.",
             json=True, project=True)
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
             _cmd_show, "PROJECT may also be any project directory not registered here.", json=True, project=True)
