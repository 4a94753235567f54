"""Benchmark the FUSE mount against the native directory, on a `large` demo project.

Run (as root, so the page cache can be dropped for cold reads):
    python3 tests/bench/bench_mount.py [--workdir DIR] [--scale large] [--big-gb 4]
or  python3 -m pytest tests/bench/bench_mount.py -s
Writes its table into tests/bench/RESULTS.md (section bench_mount).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
RESULTS = Path(__file__).with_name("RESULTS.md")
CHUNK = 64 * 1024 * 1024


def sh(cmd: str, timeout: float = 1800) -> float:
    """Run a shell command; return its wall time in seconds (fails loudly)."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, shell=True, capture_output=True, timeout=timeout, executable="/bin/bash")
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed: {r.stderr.decode()[-500:]}")
    return dt


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def best(cmd: str, n: int = 3) -> float:
    return min(sh(cmd) for _ in range(n))


def make_big(path: Path, gib: float) -> None:
    if path.exists() and path.stat().st_size == int(gib * 2**30):
        return
    block = os.urandom(CHUNK)
    with open(path, "wb") as f:
        left = int(gib * 2**30)
        while left > 0:
            f.write(block[:min(left, CHUNK)])
            left -= CHUNK
    os.utime(path, (1_700_000_000, 1_700_000_000))


def main(argv: list[str] | None = None) -> list[tuple]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/csfs-bench-mount", help="where the demo and mount live")
    ap.add_argument("--scale", default="large", choices=["tiny", "small", "large"])
    ap.add_argument("--big-gb", type=float, default=4.0, help="size of the big data file (GiB)")
    ap.add_argument("--no-results", action="store_true", help="do not rewrite RESULTS.md")
    args = ap.parse_args(argv)

    from csfs.core import consolidate, lifecycle
    from csfs.core.demo import make_demo
    from csfs.core.exportplan import group_export_plan, job_export_plan
    from csfs.core.instance import Instance
    from csfs.core.project import Project

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    project = work / "demo" / "CS-csfs-demo"
    t0 = time.perf_counter()
    if not project.exists():
        make_demo(work / "demo", scale=args.scale, seed=0)
    made = time.perf_counter() - t0
    home = work / "home"
    inst = Instance(home)
    if not any(Path(r.path) == project for r in inst.projects()):
        lifecycle.attach(inst, project)
    big = project / "J8" / "bench_big.bin"
    make_big(big, args.big_gb)

    proj = Project.open(project)
    plans = {uid: job_export_plan(proj, uid) for uid, job in proj.jobs.items() if job.status == "completed"}
    # the job export with the most files that the page cache can hold twice
    juid = max((u for u in plans if plans[u].total_size <= 16 * 2**30),
               key=lambda u: (len(plans[u].entries), -plans[u].total_size))
    plan = plans[juid]
    physical = Path(consolidate.export_job(inst, str(project), juid))
    nfiles = sum(1 for e in plan.entries if e.kind != "dir")
    small_job, small_group = next((u, g.name) for u, j in reversed(proj.jobs.items()) if u in plans
                                  for g in j.groups if group_export_plan(proj, u, g.name).total_size < 2**30
                                  and len(group_export_plan(proj, u, g.name).entries) > 3)
    small = Path(consolidate.export_group(inst, str(project), small_job, small_group))
    real_top = sorted(p.name for p in project.iterdir() if p.name not in ("exports",))
    n_project_files = int(subprocess.run(f"find {project} | wc -l", shell=True, capture_output=True,
                                         text=True).stdout)

    mnt = work / "mnt"
    mnt.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "csfs", "umount", str(mnt)], capture_output=True, cwd=REPO)
    r = subprocess.run([sys.executable, "-m", "csfs", "--home", str(home), "mount", str(project), str(mnt)],
                       capture_output=True, text=True, cwd=REPO)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    pid = int(re.search(r"pid (\d+)", r.stdout).group(1))
    time.sleep(2.5)  # read-ahead tuning settles
    rows: list[tuple] = []
    try:
        can_drop = drop_caches()
        # --- first walk of a fresh mount vs a cold native walk
        top = " ".join(real_top)
        if can_drop:
            drop_caches()
            native_cold = sh(f"cd {project} && find {top} | wc -l")
            drop_caches()
            mount_cold = sh(f"cd {mnt}/ && find {top} | wc -l")
            rows.append(("find \\| wc -l, cold (first walk)", native_cold, mount_cold, "≤ 3×"))
        # --- metadata, warm
        for label, cmd in [("du -s", "du -s {top} >/dev/null"), ("find \\| wc -l", "find {top} | wc -l"),
                           ("ls -lR", "ls -lR {top} >/dev/null")]:
            n = best(f"cd {project} && " + cmd.format(top=top))
            best(f"cd {mnt} && " + cmd.format(top=top), 1)  # warm the kernel caches
            m = best(f"cd {mnt} && " + cmd.format(top=top))
            rows.append((f"{label}, warm", n, m, "≤ 3×"))
        # --- sequential read of the big file
        if can_drop:
            n = m = 1e9
            for _ in range(2):
                drop_caches()
                n = min(n, sh(f"cat {big} >/dev/null"))
                drop_caches()
                m = min(m, sh(f"cat {mnt}/J8/{big.name} >/dev/null"))
            rows.append((f"sequential read {args.big_gb:g} GiB, cold", n, m, "≥ 0.8× speed"))
        sh(f"cat {big} >/dev/null")
        sh(f"cat {mnt}/J8/{big.name} >/dev/null")
        n = best(f"cat {big} >/dev/null")
        m = best(f"cat {mnt}/J8/{big.name} >/dev/null")
        rows.append((f"sequential read {args.big_gb:g} GiB, warm", n, m, "≥ 0.6× speed"))
        # --- tar of the virtual export vs tar -ch of the physical consolidation
        name = physical.name
        tar_p = f"tar -chf - -C {physical.parent} {name} | cat >/dev/null"
        tar_v = f"tar -cf - -C {mnt}/exports/jobs {name} | cat >/dev/null"
        if can_drop:   # too big to keep warm twice: one cold pass each
            drop_caches()
            n = sh(tar_p)
            drop_caches()
            m = sh(tar_v)
            rows.append((f"tar job export {name} ({plan.total_size / 2**30:.1f} GiB), cold", n, m,
                         "≥ 0.8× speed"))
            drop_caches()
            n = sh(tar_p.replace("tar -chf", "tar -chSf"))
            drop_caches()
            m = sh(tar_v.replace("tar -cf", "tar -cSf"))
            rows.append(("tar -S (sparse-aware) of the same, cold", n, m, "none (speed)"))
        tar_p = f"tar -chf - -C {small.parent} {small.name} | cat >/dev/null"
        tar_v = f"tar -cf - -C {mnt}/exports/groups {small.name} | cat >/dev/null"
        sh(tar_p), sh(tar_v)
        rows.append((f"tar group export {small.name}, warm", best(tar_p), best(tar_v), "≥ 0.8× speed"))
        with open(f"/proc/{pid}/status") as f:
            hwm = int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) / 1024
    finally:
        subprocess.run([sys.executable, "-m", "csfs", "umount", str(mnt)], capture_output=True, cwd=REPO)
        physical_root = project / "exports"
        shutil.rmtree(physical_root, ignore_errors=True)

    export_bytes = plan.total_size
    header = (f"`{args.scale}` demo: {n_project_files:,} paths in the project, plus a {args.big_gb:g} GiB file; "
              f"job export {name} = {nfiles:,} files, {export_bytes / 2**20:,.0f} MiB (mostly sparse "
              f"particle stacks). "
              f"Demo made in {made:.0f} s (0 = reused). Best of 3 (cold: best of 2 / single run after "
              f"dropping the page cache). {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, "
              f"libfuse {_libfuse()}.")
    lines = ["| measurement | native (s) | mount (s) | mount ÷ native | target |", "|---|---:|---:|---:|---|"]
    for label, n, m, target in rows:
        ratio = (f"{n / m:.2f}× speed" if "speed" in target else f"{m / n:.2f}× time")
        lines.append(f"| {label} | {n:.3f} | {m:.3f} | {ratio} | {target} |")
    lines.append(f"| mount process peak RSS | – | {hwm:.0f} MiB | – | < 200 MiB |")
    text = "\n".join(lines)
    print(header)
    print(text)
    if not args.no_results:
        write_section(header, text)
    return rows


def _libfuse() -> str:
    from csfs.mountpoints import fusecompat

    return f"{fusecompat.FUSE_MAJOR}.{fusecompat.FUSE_MINOR} via {fusecompat.LIBRARY}"


NOTES = """Where the time goes (strace/perf, the kernel's fuse_request_send/end trace events, py-spy):
- Sequential reads are served by libfuse itself from our fd (`read_buf` with an fd buffer,
  spliced to the kernel), the source is prefetched ahead of the kernel's out-of-order
  requests and dropped behind, and the mount's read-ahead is raised to four requests: cold
  reads run at disk speed, warm ones from the kernel's page cache (`keep_cache`).
- Requests are capped at 1 MiB - 16 KiB (`max_read`): libfuse splices a reply through a
  pipe, which cannot grow past 1 MiB without CAP_SYS_RESOURCE (root in this VM lacks it);
  full 1 MiB replies silently fell back to a malloc'd buffer and an extra copy.
- The export's 5,000 particle stacks are sparse (2.6 MB apparent, 4 KiB of data each), so
  natively tar reads zero pages. Through FUSE every zero byte is still copied into the
  mount's page cache, but holes are now handed to libfuse as an fd buffer on an empty memfd
  (spliced as the shared zero page: no calloc/memset, no munmap), and sparse sources get no
  read-ahead (it zero-filled 12 GiB of the source's page cache: 10 s of the daemon's system
  time, also under `tar -S`). ctypes used to create and destroy a Python thread state
  around every callback (an mmap/munmap pair per request); the mount keeps one per libfuse
  thread. Each 2.6 MB file still costs ~10 round trips (lookup, open, 4-5 reads as the
  kernel's read-ahead ramps up, getattr after the read, release; ~0.1-0.2 ms each) plus one
  copy more than native on a 2-CPU machine, which is why this tar stays below native speed:
  0.26x before these changes (36 s), 0.63-0.78x after them (16-21 s against 10-14 s native
  over several runs; the machine was shared with other test runs, so single cold runs vary).
- Metadata: the kernel caches attributes and entries for 60 s, and now also the listings of
  immutable directories (completed jobs, exports). libfuse 3.14's high-level API drops the
  `cache_readdir`/`keep_cache` an opendir sets (fuse_lib_opendir does not copy them into its
  reply: why an earlier attempt "had no effect"), so the mount wraps the session's low-level
  opendir and sets them there (mountpoints/dircache.py); control actions drop them. Warm
  `find` then never reaches Python. A first walk still lists every directory in Python:
  ~2 us per entry, mostly the ctypes call of libfuse's filler (mfusepy's generic readdir
  loop took ~3.5 us).
- Peak RSS: plans and big generated files (a joined `_exported.cs`) are built by a child
  process, the lstat/listing caches are bounded, and malloc uses two arenas."""


def write_section(header: str, table: str) -> None:
    start, end = "<!-- bench_mount:start -->", "<!-- bench_mount:end -->"
    body = (f"{start}\n## bench_mount: the FUSE mount vs the native directory\n\n"
            f"Command: `python3 tests/bench/bench_mount.py --scale large --big-gb 4` (as root: it drops "
            f"the page cache for cold runs; or `python3 -m pytest tests/bench/bench_mount.py -s`).\n\n"
            f"{header}\n\n{table}\n\n{NOTES}\n{end}")
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if start in old:
        new = old[:old.index(start)] + body + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + body + "\n"
    RESULTS.write_text(new)


def test_bench_mount():
    main([])


if __name__ == "__main__":
    main()
