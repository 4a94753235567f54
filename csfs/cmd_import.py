"""`csfs import raw`: raw data (movies, micrographs, particles, volumes) as a new import job."""
from __future__ import annotations

import argparse

from csfs.core.rawfiles import PATTERNS as RAW_PATTERNS  # no numpy: --help stays fast

from . import cli, reports
from .output import Progress

RAW_KINDS = tuple(sorted(RAW_PATTERNS))   # = core.imports.RAW_KINDS (checked in a test)


def _cmd_raw(args: argparse.Namespace) -> int:
    from csfs.core import imports

    inst = cli.instance(args)
    report: dict = {}
    with Progress("import") as bar:
        juid = imports.import_raw(inst, args.project, args.kind, args.paths, progress=bar, report=report)
    return reports.imported(args, inst, juid, {"kind": args.kind, "paths": args.paths, **report,
                                               "skipped_count": len(report["skipped"])})


def register(sub: cli.Subparsers, common: argparse.ArgumentParser) -> None:
    imp = cli.group(sub, "import", "import raw data into a project as a new import job")
    p = cli.leaf(common, imp, "raw", "create an import job holding symlinks to raw data", _cmd_raw,
                 "Like CryoSPARC's import jobs: J<M>/imported/<name> links to each file.\n"
                 "PATH is a file, a glob pattern (quote it: '/raw/session1/*.tif') or a folder, which\n"
                 "means its files of the kind (default patterns below); EPU sidecars (.jpg, .xml) and\n"
                 "other files there are skipped and counted. Every file's header is read and checked\n"
                 "(MRC, TIFF, EER): a file that is not what its name says is refused by name, and\n"
                 "nothing is imported. Shapes (frames) and MRC pixel sizes go into the dataset.\n\n"
                 "default patterns:\n" + "\n".join(f"  {k:<12} {' '.join(v)}" for k, v in RAW_PATTERNS.items()),
                 json=True, project=True)
    p.add_argument("--kind", required=True, choices=RAW_KINDS, help="what the files are")
    p.add_argument("paths", metavar="PATH", nargs="+", help="files, folders or quoted glob patterns to import")
