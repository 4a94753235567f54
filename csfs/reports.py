"""What the export and import commands print (job, group and raw imports share them)."""
from __future__ import annotations

import argparse
import os
from collections import Counter

from csfs.core.instance import Instance

from . import cli, schema
from .output import human_bytes, print_json


def export(args: argparse.Namespace, inst: Instance, stats: dict, group: str | None = None) -> int:
    """The export folder written and what it holds, as text or JSON."""
    if args.json:
        print_json({"action": "export", "project": cli.registered_json(inst, args.project),
                    "job": schema.job(args.job), **({"group": {"name": group}} if group else {}),
                    "path": stats["path"], "entry_count": stats["entries"], "link_count": stats["links"],
                    "data_bytes": stats["data_bytes"], "written_bytes": stats["bytes_written"]})
    else:
        print(f"exported to {stats['path']}: {stats['entries']} entries, {stats['links']} data links "
              f"({human_bytes(stats['data_bytes'])} of data), {human_bytes(stats['bytes_written'])} written")
    return 0


def imported(args: argparse.Namespace, inst: Instance, juid: str, source: dict) -> int:
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
