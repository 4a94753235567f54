"""`csfs demo`: write a synthetic CryoSPARC project to try csfs on."""
from __future__ import annotations

import argparse
import time

from . import cli, schema
from .output import Progress, human_bytes, print_json

SCALES = ("tiny", "small", "large")   # core.demo.SCALES, named here so --help needs no numpy
FLAVOURS = ("legacy", "v4", "v5")     # core.demo_docs.FLAVOURS


def register(sub: cli.Subparsers, common: argparse.ArgumentParser) -> None:
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
