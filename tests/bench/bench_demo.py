"""Benchmark: `csfs demo` generation at each scale, and reading the large project's model.

Run:  python3 tests/bench/bench_demo.py [--dir /tmp] [--scales tiny,small,large] [--flavours v4,legacy,v5]
 or:  python3 -m pytest tests/bench/bench_demo.py -s

Writes its table into tests/bench/RESULTS.md (section "bench_demo").
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from bench_results import write_section  # noqa: E402
from csfs.core.demo import make_demo, summarize  # noqa: E402
from csfs.core.project import Project, referenced_files  # noqa: E402


def _disk(path: Path) -> int:
    """Bytes really allocated (du -s, links not followed)."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def _gen(scale: str, base: Path, repeat: int, flavour: str) -> tuple[float, dict, int, int]:
    best, info = float("inf"), {}
    for i in range(repeat):
        d = base / f"{scale}-{flavour}-{i}"
        t = time.perf_counter()
        root = make_demo(d, scale=scale, seed=0, flavour=flavour)
        best = min(best, time.perf_counter() - t)
        info = summarize(root)
        disk, raw_files = _disk(root), sum(1 for _ in (d / "raw").iterdir())
        if i < repeat - 1:
            shutil.rmtree(d)
    return best, info, disk, raw_files


def _model(root: Path) -> tuple[float, float, int]:
    t = time.perf_counter()
    proj = Project.open(root)
    t_open = time.perf_counter() - t
    t = time.perf_counter()
    n = sum(len(referenced_files(proj, mf)) for j in proj.jobs.values() for mf in j.metafiles)
    return t_open, time.perf_counter() - t, n


def run(base: Path, scales: list[str], flavours: list[str]) -> str:
    rows, model = [], ""
    for scale in scales:
        for flavour in flavours:
            secs, info, disk, raw = _gen(scale, base, 3 if scale == "tiny" else 1, flavour)
            rows.append(f"| {scale} | {flavour} | {info['micrographs']:,} | {info['particles']:,} | "
                        f"{info['files']:,} | {raw:,} | {info['bytes'] / 2**20:,.1f} MiB | "
                        f"{disk / 2**20:,.1f} MiB | {secs:.2f} |")
            if scale == scales[-1]:
                t_open, t_refs, n = _model(Path(info["path"]))
                model += (f"\nModel over the `{scale}` {flavour} project: `Project.open` {t_open * 1000:.0f} ms; "
                          f"`referenced_files` of every metafile of every job ({n:,} paths) {t_refs:.2f} s.\n")
    return ("Command: `python3 tests/bench/bench_demo.py` (or `python3 -m pytest tests/bench/bench_demo.py -s`).\n\n"
            f"{datetime.date.today()}, {os.cpu_count()} cores, seed 0; tiny is best of 3. Files are the project's "
            "(symlinks counted); raw/ holds each movie with an .xml and a .jpg. Apparent size is the sum of "
            "st_size (data sections of small/large are sparse).\n\n"
            "| scale | flavour | micrographs | particles | project files | raw files "
            "| apparent size | on disk | seconds |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n" + model)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where to write the demos (removed after)")
    ap.add_argument("--scales", default="tiny,small,large")
    ap.add_argument("--flavours", default="v4,legacy,v5", help="demo flavours (CryoSPARC versions) to write")
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="bench-demo-", dir=args.dir))
    try:
        body = run(base, args.scales.split(","), args.flavours.split(","))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(body)
    write_section("bench_demo", "`csfs demo` generation at each scale", body)


def test_bench_demo():
    main([])


if __name__ == "__main__":
    main()
