"""Benchmark: physical export of a job with 10,000 data files (time, bytes written).

Builds a project with one completed extraction job whose particle output names
10,000 stack files (sparse, 1 MiB apparent each) and 100,000 particles, attaches it
to a scratch instance, and times the plan and `csfs job export` (consolidation:
metadata and symlinks only, no data copied). Writes its table into
tests/bench/RESULTS.md (section "bench_export").

    python3 tests/bench/bench_export.py [--files 10000] [--rows 100000]
    python3 -m pytest tests/bench/bench_export.py -s
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_results import write_section
from csfs.core import consolidate, csfile, exportplan, lifecycle
from csfs.core.instance import Instance
from csfs.core.project import Project

STACK_BYTES = 1 << 20


def make_project(root: Path, files: int, rows: int) -> Path:
    """CS-bench-export/ with J1 (extract) holding `files` stacks and `rows` particles."""
    proj = root / "CS-bench-export"
    job = proj / "J1"
    (job / "extract").mkdir(parents=True)
    (job / "gridfs_data").mkdir()
    (proj / "project.json").write_text(json.dumps({"uid": "P1", "title": "bench export", "detached": True}))
    (proj / "workspaces.json").write_text(json.dumps([{"uid": "W1", "title": "bench"}]))
    (job / "events.bson").write_bytes(b"\x05\x00\x00\x00\x00")
    names = []
    for i in range(files):
        rel = f"J1/extract/{i:06d}_FoilHole_{i}_Data_fractions_patch_aligned_doseweighted_particles.mrc"
        with open(proj / rel, "wb") as f:
            f.truncate(STACK_BYTES)
        names.append(rel)
    rng = np.random.default_rng(0)
    arr = np.zeros(rows, dtype=[("uid", "<u8"), ("blob/path", f"|S{max(map(len, names)) + 1}"),
                                ("blob/idx", "<u4"), ("blob/shape", "<u4", (2,)), ("blob/psize_A", "<f4"),
                                ("ctf/df1_A", "<f4"), ("ctf/df2_A", "<f4")])
    arr["uid"] = rng.integers(1, 2**63, rows, dtype=np.uint64)
    arr["blob/path"] = np.array(names, dtype="S")[np.arange(rows) % files]
    arr["blob/idx"] = np.arange(rows) // files
    arr["blob/shape"] = 128
    arr["ctf/df1_A"] = rng.uniform(5000, 20000, rows)
    csfile.save(job / "J1_particles.cs", arr[["uid", "blob/path", "blob/idx", "blob/shape", "blob/psize_A"]])
    csfile.save(job / "J1_passthrough_particles.cs", arr[["uid", "ctf/df1_A", "ctf/df2_A"]])
    doc = {"uid": "J1", "project_uid": "P1", "type": "extract_micrographs_multi", "title": "Extract",
           "status": "completed", "created_at": "2024-03-04T10:00:00Z", "completed_at": "2024-03-04T11:00:00Z",
           "output_result_groups": [{"uid": "J1-G1", "type": "particle", "name": "particles", "title": "Particles",
                                     "description": "", "num_items": rows, "passthrough": False}],
           "output_results": [
               {"uid": "J1-R1", "type": "particle.blob", "group_name": "particles", "name": "blob",
                "versions": [0], "metafiles": ["J1/J1_particles.cs"], "num_items": [rows], "passthrough": False},
               {"uid": "J1-R2", "type": "particle.ctf", "group_name": "particles", "name": "ctf",
                "versions": [0], "metafiles": ["J1/J1_passthrough_particles.cs"], "num_items": [rows],
                "passthrough": True}],
           "input_slot_groups": [], "parents": [], "children": [], "workspace_uids": ["W1"]}
    (job / "job.json").write_text(json.dumps(doc))
    return proj


def run(files: int, rows: int, workdir: Path) -> str:
    t0 = time.perf_counter()
    proj = make_project(workdir, files, rows)
    made = time.perf_counter() - t0
    inst = Instance(workdir / "home")
    puid = lifecycle.attach(inst, proj).uid
    t0 = time.perf_counter()
    plan = exportplan.job_export_plan(Project.open(proj), "J1")
    t_plan = time.perf_counter() - t0
    timings, stats = [], {}
    for _ in range(3):
        shutil.rmtree(proj / "exports", ignore_errors=True)  # a fresh export each time
        t0 = time.perf_counter()
        consolidate.export_job(inst, puid, "J1", stats=stats)
        timings.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    consolidate.export_job(inst, puid, "J1")
    t_again = time.perf_counter() - t0
    dest = Path(stats["path"])
    on_disk = int(subprocess.run(["du", "-sb", str(dest)], capture_output=True, text=True).stdout.split()[0])
    data_files = sum(1 for e in plan.entries if e.kind == "file" and "/extract/" in e.path)
    t0 = time.perf_counter()
    cli = subprocess.run([sys.executable, "-m", "csfs", "job", "export", puid, "J1", "--json"],
                         capture_output=True, text=True, env={**os.environ, "CSFS_HOME": str(inst.home)},
                         cwd=Path(__file__).resolve().parents[2])
    t_cli = time.perf_counter() - t0
    assert cli.returncode == 0, cli.stderr
    rows_md = [
        ("data files in the export (symlinks)", f"{data_files:,}"),
        ("particles in the joined _exported.cs", f"{rows:,}"),
        ("plan (job_export_plan)", f"{t_plan:.2f} s"),
        ("consolidation (export_job), best of 3",
         f"{min(timings):.2f} s (runs: {', '.join(f'{t:.2f}' for t in timings)})"),
        ("re-export over the previous one (updated in place, nothing changed)", f"{t_again:.2f} s"),
        ("`csfs job export` end to end (CLI, new process, re-export)", f"{t_cli:.2f} s"),
        ("generated bytes written (job.json, .cs, .csg)", f"{stats['bytes_written']:,} B"),
        ("export on disk (`du -sb`, links not followed)", f"{on_disk:,} B"),
        ("data represented (apparent, not copied)", f"{stats['data_bytes']:,} B"),
    ]
    body = [f"Command: `python3 tests/bench/bench_export.py --files {files} --rows {rows}` "
            "(or `python3 -m pytest tests/bench/bench_export.py -s`).", "",
            f"One completed job, {files:,} sparse 1 MiB particle stacks, {rows:,} particles "
            f"(project made in {made:.1f} s). {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.1f} at the end (a shared machine).", "",
            "| measure | value |", "|---|---:|"]
    body += [f"| {k} | {v} |" for k, v in rows_md]
    return "\n".join(body) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dir", default=None, help="scratch folder (default: a temp dir)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        body = run(args.files, args.rows, Path(tmp))
    write_section("bench_export", "physical export of a job with 10,000 data files", body)
    print(body)


def test_bench_export():
    main([])


if __name__ == "__main__":
    main()
