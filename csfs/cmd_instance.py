"""`csfs instance info|recover`: this csfs instance (its id and project registry in CSFS_HOME)."""
from __future__ import annotations

import argparse
from functools import partial

from . import cli
from .config import resolve_home
from .output import print_json, print_table


def _cmd_info(args: argparse.Namespace) -> int:
    info = cli.instance(args).info()
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


def register(sub: cli.Subparsers, common: argparse.ArgumentParser) -> None:
    leaf = partial(cli.leaf, common)

    inst = cli.group(sub, "instance", "this csfs instance (its id and project registry in CSFS_HOME)")
    leaf(inst, "info", "show the instance id, home, registry and project counts", _cmd_info, json=True)
    p = leaf(inst, "recover", "rebuild a damaged or lost registry from the project directories", _cmd_recover,
             "The registry is rebuilt from the cs.lock files of every directory it knew (saved in\n"
             "CSFS_HOME/registry.known.json on each change) and of the directories DIR... you name\n"
             "(a project directory, or a folder holding project directories). P-uids stay as the\n"
             "locks name them. Directories locked by other instances are skipped. The old registry\n"
             "file is kept beside the new one as registry.sqlite3.damaged-<time>.", json=True)
    p.add_argument("dirs", metavar="DIR", nargs="*", help="more directories to search for projects of this instance")
