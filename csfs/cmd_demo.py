"""`csfs demo` (write a synthetic project) and `csfs jobs` (list a project directory's jobs)."""
from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from csfs import schema
from csfs.output import Progress, human_bytes, print_json, print_table

if TYPE_CHECKING:
    from csfs.core.project import Job

SCALES = ("tiny", "small", "large")   # core.demo.SCALES, named here so --help needs no numpy
FLAVOURS = ("legacy", "v4", "v5")     # core.demo_docs.FLAVOURS


def register(sub, common) -> None:
    p = sub.add_parser(
        "demo", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="write a synthetic CryoSPARC project to try csfs on",
        description="Write DIR/CS-csfs-demo/ (a synthetic but structurally faithful CryoSPARC\n"
                    "project, labelled synthetic, detached and without cs.lock) and DIR/raw/\n"
                    "(the movies its import job links to).\n\n"
                    "Flavours (the CryoSPARC version whose real document shapes it writes):\n"
                    "  v4      (default) job.json with output_result_groups/output_results, mixing\n"
                    "          the variants real v4.x projects hold (type and/or job_type, $date as\n"
                    "          ms or ISO, num_items as a list or an int, a job without\n"
                    "          output_result_groups, …_final_… metafiles) and a Live session S1/;\n"
                    "  v5      job.json with spec (type, params, inputs, outputs), ISO dates,\n"
                    "          dumped_at/last_dumped_version;\n"
                    "  legacy  (<= v3.3) DIR/P12/ without project.json, cryosparc_P12_J<N>_… file\n"
                    "          names, J1-J5 without job.json (their outputs are in their .csg files).\n\n"
                    "Jobs: J1 import_movies, J2 patch motion, J3 patch CTF, J4 blob picker,\n"
                    "J5 extract (MRC particle stacks), J6 2D classes (intermediate iterations),\n"
                    "J7 ab-initio, J8 homogeneous refinement (per-iteration volumes), J9 running,\n"
                    "J10 failed. The same --seed always writes the same project.\n\n"
                    "Scales: tiny (4 micrographs, ~40 particles, a few MB; under a second),\n"
                    "small (40 micrographs, ~2,000 particles), large (benchmarks: 5,000\n"
                    "micrographs, 200,000 particles, 100,000+ files, ~55 GB apparent but\n"
                    "~1.2 GB on disk as data sections are sparse; about half a minute).\n\n"
                    "Then: csfs jobs DIR/CS-csfs-demo; csfs project attach DIR/CS-csfs-demo;\n"
                    "csfs mount DIR/CS-csfs-demo MOUNTPOINT (legacy: DIR/P12 in place of\n"
                    "DIR/CS-csfs-demo).")
    p.add_argument("dir", metavar="DIR", help="folder to write into (created; must not hold a demo already)")
    p.add_argument("--scale", choices=SCALES, default="tiny", help="project size (default: tiny)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument("--flavour", choices=FLAVOURS, default="v4",
                   help="CryoSPARC version whose documents to write (default: v4)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "jobs", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="list the jobs of a project directory (no instance needed)",
        description="Read a CryoSPARC project directory (v4 CS-<slug>/ or legacy P<N>/) and list\n"
                    "its jobs: uid, type, title, status, created/completed times and output groups\n"
                    "with their item counts. Jobs whose job.json is broken, metafiles missing or\n"
                    "symlinks dangling are listed too, with the problem printed under the table.\n"
                    "Nothing is written.")
    p.add_argument("project_dir", metavar="PROJECT_DIR", help="the project directory")
    p.add_argument("--json", action="store_true",
                   help="print JSON: {project: {uid, path, ...}, "
                        "jobs: [{uid, type, ..., groups, inputs, error, problems}]}")
    p.set_defaults(func=_cmd_jobs)


def _cmd_demo(args: argparse.Namespace) -> int:
    from csfs.core import demo

    t0 = time.monotonic()
    with Progress(f"writing {args.scale} demo") as progress:
        path = demo.make_demo(args.dir, scale=args.scale, seed=args.seed, progress=progress,
                              flavour=args.flavour)
    info = demo.summarize(path) | {"scale": args.scale, "seed": args.seed, "flavour": args.flavour,
                                   "raw": str(path.parent / "raw"),
                                   "seconds": round(time.monotonic() - t0, 2)}
    if args.json:
        out = {k: v for k, v in info.items() if k not in ("path", "title", "jobs", "files")}
        print_json({"project": schema.project(None, info["path"], title=info["title"]),
                    "job_count": info["jobs"], "file_count": info["files"], **out})
        return 0
    print(path)
    print(f"{info['jobs']} jobs, {info['micrographs']} micrographs, {info['particles']} particles, "
          f"{info['files']} files, {human_bytes(info['bytes'])} (apparent size) in {info['seconds']} s")
    print(f"raw movies: {info['raw']}")
    print(f"next: csfs jobs {path}")
    print(f"      csfs project attach {path}")
    print(f"      csfs mount {path} MOUNTPOINT")
    return 0


def _date(iso: str | None) -> str:
    return iso[:16].replace("T", " ") if iso else ""


def _job_json(job: Job) -> dict:
    return {
        "uid": job.uid, "type": job.type, "title": job.title, "status": job.status,
        "created_at": job.created_at, "completed_at": job.completed_at, "error": job.error,
        "problems": job.problems,
        "groups": [{"name": g.name, "type": g.type, "title": g.title, "num_items": g.num_items,
                    "results": [{"name": r.name, "type": r.type, "passthrough": r.passthrough,
                             "final_version": r.final_version, "final_metafile": r.final_metafile,
                             "versions": [{"version": v, "metafile": m, "num_items": n}
                                          for v, m, n in zip(r.versions, r.metafiles,
                                                             r.num_items + [None] * len(r.versions), strict=False)]}
                            for r in g.results]}
                   for g in job.groups],
        "inputs": [{"job": schema.job(i.job_uid), "group": {"name": i.group_name},
                    "result": {"name": i.result_name}, "version": i.version} for i in job.inputs],
    }


def _cmd_jobs(args: argparse.Namespace) -> int:
    from csfs.core.project import Project

    proj = Project.open(args.project_dir)
    if args.json:
        print_json({"project": schema.project(proj.uid, proj.path, title=proj.title, layout=proj.layout,
                                              problems=proj.problems),
                    "jobs": [_job_json(j) for j in proj.jobs.values()]})
        return 0
    rows = [[j.uid, j.type, j.title, j.status if not j.error else "BROKEN", _date(j.created_at),
             _date(j.completed_at), ", ".join(f"{g.name}({g.num_items})" for g in j.groups)]
            for j in proj.jobs.values()]
    print(f"{proj.path}  {proj.uid or '-'}  {proj.title!r}  ({proj.layout} layout, {len(rows)} jobs)")
    print_table(rows, ["UID", "TYPE", "TITLE", "STATUS", "CREATED", "COMPLETED", "GROUPS"])
    problems = proj.all_problems()
    if problems:
        print("\nproblems:")
        for line in problems:
            print(f"  {line}")
    return 0
