"""csfs against bindfs and the native directory, side by side in one run (issues 13 and 9).

Each measure runs on the native project, on `bindfs -r` (attr/entry timeouts of 60 s, with
and without `kernel_cache`) and on csfs (the default mount: exports/, sizes/, control/),
each repetition on a fresh mount with the page cache dropped for the cold rows. A second
csfs tree can be measured in the same run (`--baseline /work/main`) for before/after.

Run (as root: it drops the page cache and installs bindfs with apt-get if missing):
    python3 tests/bench/bench_bindfs.py [--reps 3] [--baseline DIR] [--exported] [--large [--project DIR --home DIR]]
or  python3 -m pytest tests/bench/bench_bindfs.py -s
`--large` measures the `large` demo instead (whole-mount and job-folder walks, du, RSS;
minutes per pass: use --reps 1). `--files 1000000` measures a project of that many files
(the tiny demo plus one job folder of small files, 1,000 per subfolder; the same rows as
--large). `--instance 5` measures an instance mount of 5 hard-linked copies of the large
demo (the same rows without bindfs-kc and csfs-plain, one warm du; its own instance in
the workdir). `--exported` adds the whole-mount
rows' fair baseline: the native project and bindfs over a copy of it with every export
written out (`native-exp`, `bindfs-exp`). `--data` measures data instead, on a copy of the
large demo whose J5 particle stacks are random bytes (dense, ~13 GB) plus a 4 GiB random
file: sequential reads cold and warm, 8 parallel readers, and rsync of the dense J5.
Writes its section of tests/bench/RESULTS.md (bench_bindfs, bench_bindfs_large,
bench_bindfs_files, bench_bindfs_instance or bench_bindfs_data).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

MANY = 10_000          # files of the many-file job folder (os.stat, rsync rows)
BINDFS_OPTS = "attr_timeout=60,entry_timeout=60"


@dataclass
class Variant:
    """One way of showing the project: native, a bindfs mount, or a csfs mount (of a tree)."""

    name: str
    kind: str                 # native | bindfs | csfs
    opts: str = ""            # bindfs -o options
    tree: Path = REPO         # csfs: the source tree mounted (PYTHONPATH)
    root: Path = Path()       # where the project shows while mounted
    pid: int | None = None
    ready_s: float = 0.0
    source: Path | None = None  # shown instead of the project (the tree with exports written)
    whole_only: bool = False    # measured in the whole-mount rows only


@dataclass
class Row:
    label: str
    times: dict[str, list[float]] = field(default_factory=dict)
    unit: str = "s"


def sh(cmd: str, timeout: float = 3600, env: dict[str, str] | None = None) -> float:
    """Run a shell command; return its wall time (fails loudly)."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, check=False, shell=True, capture_output=True, timeout=timeout,
                       executable="/bin/bash", env=env)
    dt = time.perf_counter() - t0
    if r.returncode not in (0, 24) or (r.returncode and "rsync" not in cmd):   # 24: rsync's "vanished"
        raise RuntimeError(f"{cmd!r} failed ({r.returncode}): {r.stderr.decode()[-500:]}")
    return dt


def out(cmd: str) -> str:
    return subprocess.run(cmd, check=False, shell=True, capture_output=True, text=True, executable="/bin/bash").stdout


def drop_caches(level: int = 3) -> None:
    """Drop the page cache and dentries (3), or the dentries and inodes only (2: FUSE then
    sends FORGET for them)."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write(f"{level}\n")
    except OSError:
        pass   # not root: "cold" rows are then only a fresh mount


def ensure_bindfs() -> None:
    if shutil.which("bindfs"):
        return
    subprocess.run("apt-get install -y bindfs || (apt-get update && apt-get install -y bindfs)", shell=True,
                   check=True, capture_output=True)


def env_for(tree: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(tree))


def prepare_files(work: Path, n: int) -> tuple[Path, Path]:
    """A project of `n` files (made once, reused): the tiny demo plus J1/bench_files, n small
    files in subfolders of 1,000, attached to its own instance."""
    from csfs.core import lifecycle
    from csfs.core.demo import make_demo
    from csfs.core.instance import Instance

    root = work / f"files-{n}"
    project = root / "demo" / "CS-csfs-demo"
    if not project.exists():
        make_demo(root / "demo", scale="tiny", seed=0)
    many = project / "J1" / "bench_files"
    if not many.exists():
        tmp = project / "J1" / ".bench_files.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for d in range(0, n, 1000):
            sub = tmp / f"d{d // 1000:04d}"
            sub.mkdir()
            for i in range(d, min(n, d + 1000)):
                fd = os.open(sub / f"f{i:07d}.dat", os.O_WRONLY | os.O_CREAT, 0o644)
                os.write(fd, b"x" * (i % 512))
                os.close(fd)
        tmp.rename(many)
    home = root / "home"
    inst = Instance(home)
    if not any(Path(r.path) == project for r in inst.projects()):
        lifecycle.attach(inst, project)
    return project, home


def prepare(work: Path, scale: str, project: Path | None, home: Path | None = None) -> tuple[Path, Path]:
    """The demo project (made once, reused) with a many-file folder in J8, and its instance."""
    from csfs.core import lifecycle
    from csfs.core.demo import make_demo
    from csfs.core.instance import Instance

    root = work / scale
    if project is None:
        project = root / "demo" / "CS-csfs-demo"
        if not project.exists():
            make_demo(root / "demo", scale=scale, seed=0)
    home = home or root / "home"
    inst = Instance(home)
    if not any(Path(r.path) == project for r in inst.projects()):
        lifecycle.attach(inst, project)
    many = project / "J8" / "bench_many"
    if not many.exists():   # a many-file job folder: 10,000 files of 1-64 KiB (os.stat, rsync)
        tmp = project / "J8" / ".bench_many.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        block = os.urandom(64 * 1024)
        for i in range(MANY):
            sub = tmp / f"d{i // 500:02d}"
            sub.mkdir(exist_ok=True)
            (sub / f"f{i:05d}.dat").write_bytes(block[: 1024 * (1 + i % 64)])
            os.utime(sub / f"f{i:05d}.dat", (1_700_000_000, 1_700_000_000))
        tmp.rename(many)
    return project, home


def prepare_exported(work: Path, project: Path) -> Path:
    """A copy of `project` (hard links, made once) with every export of every job written
    under exports/ as `csfs job export` and `csfs group export` write them (generated
    metadata, symlinks to the data): the tree the mount shows, on disk (issue 13's walk
    baseline)."""
    from csfs.core.consolidate import write_plan
    from csfs.core.errors import CsfsError
    from csfs.core.exportplan import export_plans
    from csfs.core.project import Project

    dest = project.parent.parent / "exported" / project.name
    if dest.exists():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(project), str(tmp)], check=True)
    copy = Project.open(tmp)
    for juid in copy.jobs:
        try:
            plans = export_plans(copy, juid)
        except CsfsError:
            continue
        for (kind, name), plan in plans.items():
            if not isinstance(plan, CsfsError) and plan.refusal() is None:
                write_plan(plan, tmp / "exports" / kind / name, tmp)
    tmp.rename(dest)
    return dest


def prepare_instance(work: Path, project: Path, exported: Path | None, n: int) -> tuple[Path, Path, Path | None]:
    """`n` hard-linked copies of `project` (made once), attached to their own instance: the
    folder holding them, the instance home, and the folder of as many copies of `exported`."""
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    root = work / f"instance-{n}"
    projects, home = root / "projects", root / "home"
    projects.mkdir(parents=True, exist_ok=True)
    inst = Instance(home)
    for i in range(1, n + 1):
        copy = projects / f"{project.name}-{i}"
        if not copy.exists():
            subprocess.run(["cp", "-al", str(project), str(copy) + ".tmp"], check=True)
            (copy.with_name(copy.name + ".tmp") / "cs.lock").unlink()   # the copy is attached anew
            os.rename(str(copy) + ".tmp", copy)
        if not any(Path(r.path) == copy for r in inst.projects()):
            lifecycle.attach(inst, copy)
    if exported is None:
        return projects, home, None
    exp = root / "exported"
    exp.mkdir(exist_ok=True)
    for i in range(1, n + 1):
        if not (exp / f"{exported.name}-{i}").exists():
            subprocess.run(["cp", "-al", str(exported), str(exp / f"{exported.name}-{i}")], check=True)
    return projects, home, exp


BIG = 4 << 30   # the sequential-read file of --data


def prepare_dense(work: Path, project: Path) -> tuple[Path, Path]:
    """A copy of the large `project` (hard links, made once) whose J5 particle stacks are
    new files of random bytes (the demo's are sparse) plus J7/bench_big.dat (BIG random
    bytes), attached to its own instance: the project and the instance home."""
    import numpy as np
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    root = work / "dense"
    dense, home = root / project.name, root / "home"
    if not dense.exists():
        tmp = root / (project.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-al", str(project), str(tmp)], check=True)
        (tmp / "cs.lock").unlink(missing_ok=True)    # the copy is attached anew
        rng = np.random.default_rng(0)
        for f in sorted((tmp / "J5").rglob("*.mrc")):
            st = f.stat()
            head = f.read_bytes()[:1024]             # the MRC header stays valid
            f.unlink()                               # a new inode: the original keeps its data
            with open(f, "wb") as w:
                w.write(head + rng.bytes(st.st_size - len(head)))
            os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
        with open(tmp / "J7" / "bench_big.dat", "wb") as w:
            for _ in range(BIG >> 26):
                w.write(rng.bytes(1 << 26))
        tmp.rename(dense)
    inst = Instance(home)
    if not any(Path(r.path) == dense for r in inst.projects()):
        lifecycle.attach(inst, dense)
    return dense, home


def run_data(args: argparse.Namespace, work: Path, project: Path) -> tuple[list[Row], list[Variant], dict[str, str]]:
    """--data: sequential and parallel reads and rsync of the dense J5, per variant."""
    dense, home = prepare_dense(work, project)
    m = Mounts(work, dense, home)
    variants = [Variant("native", "native"), Variant("bindfs", "bindfs", BINDFS_OPTS),
                Variant("bindfs-kc", "bindfs", BINDFS_OPTS + ",kernel_cache"),
                Variant("csfs", "csfs"), Variant("csfs-plain", "csfs", opts="--plain")]
    stacks = sorted(str(p.relative_to(dense)) for p in (dense / "J5").rglob("*.mrc"))
    facts = {"scale": "large, J5 dense", "J5 particle stacks": f"{len(stacks):,}",
             "J5 bytes": f"{int(out(f'du -sb {dense}/J5').split()[0]):,}", "big file": f"{BIG:,} bytes"}
    listing = work / "stack-list"
    dest = work / "rsync-dest"
    rows: dict[str, Row] = {}

    def add(label: str, name: str, t: float) -> None:
        rows.setdefault(label, Row(label)).times.setdefault(name, []).append(t)
    for _ in range(args.reps):
        for v in variants:
            m.up(v)
            big = f"{v.root}/J7/bench_big.dat"
            drop_caches()
            add("sequential read of a 4 GiB file, cold", v.name, sh(f"cat {big} >/dev/null"))
            add("sequential read of the same, warm", v.name, sh(f"cat {big} >/dev/null"))
            listing.write_text("\n".join(f"{v.root}/{p}" for p in stacks) + "\n")
            drop_caches()
            par = f"xargs -P 8 -n {len(stacks) // 8 + 1} cat < {listing} >/dev/null"
            add("8 parallel readers of J5's particle stacks, cold", v.name, sh(par))
            add("8 parallel readers, warm", v.name, sh(par))
            m.down(v)
            m.up(v)
            shutil.rmtree(dest, ignore_errors=True)
            drop_caches()
            add("`rsync -a` of the dense J5, first pass, cold", v.name, sh(f"rsync -a {v.root}/J5/ {dest}/"))
            m.down(v)
            shutil.rmtree(dest, ignore_errors=True)
    return list(rows.values()), variants, facts


class Mounts:
    """Mount and unmount the variants (each repetition on a fresh mount). `project` None:
    csfs mounts the instance at `home`, and the native variants show `native`."""

    def __init__(self, work: Path, project: Path | None, home: Path, native: Path | None = None) -> None:
        self.work, self.project, self.home = work, project, home
        self.native = native or project

    def up(self, v: Variant) -> None:
        source = v.source or self.native
        if v.kind == "native":
            v.root = source
            return
        mnt = self.work / "mnt" / v.name
        self.down(v)
        mnt.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if v.kind == "bindfs":
            subprocess.run(["bindfs", "-r", "-o", v.opts, str(source), str(mnt)], check=True)
            v.root = mnt
            v.ready_s = time.perf_counter() - t0
            pids = out(f"pgrep -n -f '^bindfs .* {mnt}$'").split()
            v.pid = int(pids[0]) if pids else None
            return
        else:
            r = subprocess.run([sys.executable, "-m", "csfs", "--home", str(self.home), "mount",
                                *v.opts.split(), *([str(self.project)] if self.project else []),
                                str(mnt)], check=False,
                               capture_output=True, text=True, cwd=v.tree,
                               env=env_for(v.tree))
            if r.returncode != 0:
                raise SystemExit(r.stderr)
            m = re.search(r"pid (\d+)", r.stdout)
            v.pid = int(m.group(1)) if m else None
            v.root = mnt
        v.ready_s = time.perf_counter() - t0

    def down(self, v: Variant) -> None:
        if v.kind == "native":
            return
        mnt = self.work / "mnt" / v.name
        if os.path.ismount(mnt) or _in_mountinfo(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False, capture_output=True)
            if v.pid:
                for _ in range(100):   # the daemon exits once unmounted
                    if not os.path.exists(f"/proc/{v.pid}"):
                        break
                    time.sleep(0.05)
        v.pid = None


def _in_mountinfo(mnt: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(f" {mnt} " in line for line in f)


def rss_mib(pid: int | None) -> tuple[float, float]:
    """VmRSS of the mount process and of its children (the export workers), MiB."""
    if not pid:
        return 0.0, 0.0

    def one(p: int) -> float:
        try:
            with open(f"/proc/{p}/status") as f:
                return int(next(ln for ln in f if ln.startswith("VmRSS")).split()[1]) / 1024
        except (OSError, StopIteration):
            return 0.0
    kids = [int(x) for x in out(f"pgrep -P {pid}").split()]
    return one(pid), sum(one(k) for k in kids)


STAT_SCRIPT = "import os, sys\nfor p in open(sys.argv[1]).read().splitlines():\n    os.stat(p)\n"


def run(args: argparse.Namespace) -> tuple[list[Row], list[Variant], dict[str, str]]:
    ensure_bindfs()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    args.large = args.large or bool(args.instance)
    scale = "large" if args.large else f"{args.files:,} files" if args.files else "small"
    big = bool(args.large or args.files)    # walks, du and RSS only (no many-file rows)
    if args.files:
        project, home = prepare_files(work, args.files)
    elif args.data:
        project, _ = prepare(work, "large", Path(args.project) if args.project else None,
                             Path(args.home) if args.home else None)
        return run_data(args, work, project)
    else:
        project, home = prepare(work, scale, Path(args.project) if args.project else None,
                                Path(args.home) if args.home else None)
    variants = [Variant("native", "native"),
                Variant("bindfs", "bindfs", BINDFS_OPTS),
                Variant("bindfs-kc", "bindfs", BINDFS_OPTS + ",kernel_cache"),
                Variant("csfs", "csfs"),
                Variant("csfs-plain", "csfs", opts="--plain")]
    exported = prepare_exported(work, project) if args.exported else None
    m = Mounts(work, project, home)
    jobs = sorted((p.name for p in project.iterdir() if re.fullmatch(r"J\d+", p.name)), key=lambda s: int(s[1:]))
    jlist = " ".join(jobs)
    if args.instance:
        native, home, exported = prepare_instance(work, project, exported, args.instance)
        m = Mounts(work, None, home, native)
        jlist = " ".join(f"{p.name}/{j}" for p in sorted(native.iterdir()) for j in jobs)
        project = native
        scale = f"an instance of {args.instance} large projects"
    if args.instance:   # the slowest variants left out: a pass over 2.5M paths takes minutes
        variants = [v for v in variants if v.name not in ("bindfs-kc", "csfs-plain")]
    if exported is not None:
        variants[1:1] = [Variant("native-exp", "native", source=exported, whole_only=True),
                         Variant("bindfs-exp", "bindfs", BINDFS_OPTS, source=exported, whole_only=True)]
    if args.baseline:
        variants.append(Variant("csfs-base", "csfs", tree=Path(args.baseline).resolve()))
    many_rel = [] if big else sorted(str(p.relative_to(project))
                                     for p in (project / "J8" / "bench_many").rglob("*.dat"))
    facts = {"scale": scale, "project files": f"{int(out(f'find {project} | wc -l')):,}",
             "job folders": str(len(jlist.split()))}
    if not big:
        facts["many-file folder"] = f"J8/bench_many ({len(many_rel):,} files)"
    dest = work / "rsync-dest"
    rows: dict[str, Row] = {}

    def add(label: str, name: str, t: float, unit: str = "s") -> None:
        rows.setdefault(label, Row(label, unit=unit)).times.setdefault(name, []).append(t)

    stat_list, stat_py = work / "stat-list", work / "stat.py"
    stat_py.write_text(STAT_SCRIPT)
    for rep in range(args.reps):
        for v in variants:
            r = v.root
            # --- a first ls -lR of the whole mount (virtual trees included on csfs)
            m.up(v)
            add("mount ready (command returns)", v.name, v.ready_s)
            drop_caches()
            add("first `ls -lR` of the whole mount", v.name, sh(f"ls -lR {v.root} >/dev/null"))
            if v.kind != "native":
                main, worker = rss_mib(v.pid)
                add("mount RSS after it: main process", v.name, main, "MiB")
                if v.kind == "csfs":
                    add("mount RSS after it: export workers", v.name, worker, "MiB")
            if v.kind == "csfs" and big:
                # once the kernel has forgotten the walk's entries (libfuse frees its nodes; the
                # mount hands freed heap back within 30 s)
                drop_caches(2)
                time.sleep(35)
                add("mount RSS 35 s after the kernel forgot them: main process", v.name, rss_mib(v.pid)[0], "MiB")
                sh(f"ls -lR {v.root} >/dev/null")   # warm again for the du row
            # --- warm du -s of the whole mount (issue 9: <= 3x the project's)
            sh(f"du -s {v.root} >/dev/null")
            add("warm `du -s` of the whole mount", v.name,
                min(sh(f"du -s {v.root} >/dev/null") for _ in range(1 if args.instance else 3)))
            if rep == 0 and v.name in ("native", "native-exp", "bindfs", "csfs") and not (
                    args.instance and v.kind == "csfs"):     # minutes each there
                facts[f"du -sb {v.name}"] = out(f"du -sb {v.root}").split()[0]
                if v.name == "csfs":
                    facts["sizes/total"] = Path(v.root, "sizes", "total").read_text().strip()
                    facts["paths csfs"] = f"{int(out(f'find {v.root} | wc -l')):,}"
                if v.name == "native-exp":
                    facts["paths native-exp"] = f"{int(out(f'find {v.root} | wc -l')):,}"
            m.down(v)
            if v.whole_only:
                continue
            # --- a first ls -lR of the job folders only
            m.up(v)
            r = v.root
            drop_caches()
            add("first `ls -lR` of the job folders only", v.name, sh(f"cd {r} && ls -lR {jlist} >/dev/null"))
            m.down(v)
            if big:
                continue   # the many-file rows are the small run's (rsync of large J8: 12 GiB)
            # --- os.stat of 10,000 files, cold
            m.up(v)
            stat_list.write_text("\n".join(f"{v.root}/{p}" for p in many_rel))
            drop_caches()
            add(f"`os.stat` of {len(many_rel):,} files, cold", v.name,
                sh(f"{sys.executable} {stat_py} {stat_list}"))
            m.down(v)
            # --- rsync -a of the many-file job: first pass cold, then a second (nothing changed)
            m.up(v)
            shutil.rmtree(dest, ignore_errors=True)
            drop_caches()
            add("`rsync -a` of a many-file job (J8), first pass, cold", v.name,
                sh(f"rsync -a {v.root}/J8/ {dest}/"))
            add("`rsync -a` of the same, second pass (nothing changed)", v.name,
                sh(f"rsync -a {v.root}/J8/ {dest}/"))
            add("`rsync -a` of the same, third pass", v.name, sh(f"rsync -a {v.root}/J8/ {dest}/"))
            m.down(v)
            shutil.rmtree(dest, ignore_errors=True)
    return list(rows.values()), variants, facts


def fmt(ts: list[float], unit: str) -> str:
    if unit == "MiB":
        return f"{max(ts):.0f}"
    lo, hi = min(ts), max(ts)
    return f"{lo:.3f}" if len(ts) == 1 or hi - lo < 0.0005 else f"{lo:.3f}–{hi:.3f}"


def table(rows: list[Row], variants: list[Variant]) -> str:
    names = [v.name for v in variants]
    exp = "native-exp" in names
    extra = " csfs ÷ bindfs-exp | csfs ÷ native-exp |" if exp else ""
    head = "| measure | " + " | ".join(names) + " | csfs ÷ best bindfs | csfs ÷ native |" + extra
    lines = [head, "|---|" + "---:|" * (len(names) + 2 + 2 * exp)]

    def ratio(row: Row, *of: str) -> str:
        base = [min(row.times[n]) for n in of if n in row.times]
        if row.unit != "s" or "csfs" not in row.times or not base or min(base) <= 0:
            return "–"
        return f"{min(row.times['csfs']) / min(base):.2f}×"
    for row in rows:
        cells = [fmt(row.times[n], row.unit) if n in row.times else "–" for n in names]
        ratios = [ratio(row, "bindfs", "bindfs-kc"), ratio(row, "native")]
        if exp:
            ratios += [ratio(row, "bindfs-exp"), ratio(row, "native-exp")]
        lines.append(f"| {row.label} ({row.unit}) | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/csfs-bench-bindfs")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--project", help="reuse this demo project (else one is made in the workdir)")
    ap.add_argument("--home", help="the csfs instance that has --project attached (else one in the workdir)")
    ap.add_argument("--large", action="store_true", help="the `large` demo instead of `small` (minutes per pass)")
    ap.add_argument("--files", type=int, default=0, metavar="N",
                    help="a project of N files instead of a demo (e.g. 1000000; made once in the workdir)")
    ap.add_argument("--instance", type=int, default=0, metavar="N",
                    help="an instance mount of N hard-linked copies of the large demo (implies --large)")
    ap.add_argument("--baseline", help="also mount csfs from this source tree (before/after in one run)")
    ap.add_argument("--exported", action="store_true",
                    help="also walk a copy of the project with every export written out (native-exp, "
                         "bindfs-exp: the whole-mount rows' fair baseline; made once in the workdir)")
    ap.add_argument("--data", action="store_true",
                    help="data rows instead (reads, parallel readers, rsync) on a dense copy of the "
                         "large demo (made once in the workdir: ~17 GB of disk)")
    ap.add_argument("--no-results", action="store_true")
    args = ap.parse_args(argv)
    rows, variants, facts = run(args)
    load = os.getloadavg()[0]
    desc = ", ".join(f"{k}: {v}" for k, v in facts.items())
    commit = out(f"git -C {args.baseline} rev-parse --short HEAD").strip() if args.baseline else ""
    base = f"; `csfs-base` = the tree at {args.baseline} ({commit or 'not a git tree'})" if args.baseline else ""
    flags = (f" --instance {args.instance}" if args.instance else " --data" if args.data
             else " --large" if args.large else "") + \
        (f" --files {args.files}" if args.files else "") + \
        (" --baseline DIR" if args.baseline else "") + (" --exported" if args.exported else "")
    body = (f"Command: `python3 tests/bench/bench_bindfs.py --reps {args.reps}{flags}` (as root).\n\n"
            f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average {load:.1f} at the end "
            f"(a shared machine). bindfs {_bindfs_version()} `-r -o {BINDFS_OPTS}` (`bindfs-kc`: plus "
            f"`kernel_cache`); csfs = this tree's default mount, `csfs-plain` its `--plain` mount "
            f"(read-only, no virtual trees){base}.{EXPORTED if args.exported else ''} "
            f"Each cell: min–max of {args.reps} runs, each on a fresh mount, page cache dropped "
            f"before cold rows; ratios from the minima.\n\n"
            f"{desc}.\n\n{table(rows, variants)}\n\n{DATA_NOTES if args.data else NOTES}")
    print(body)
    if not args.no_results:
        from bench_results import write_section

        suffix = ("_instance" if args.instance else "_data" if args.data else "_large" if args.large
                  else "_files" if args.files else "")
        what = (f"an instance of {args.instance} large projects" if args.instance
                else "data: the large demo with dense particle stacks" if args.data else "large demo" if args.large
                else f"a project of {args.files:,} files" if args.files else "small demo")
        write_section("bench_bindfs" + suffix, f"csfs vs bindfs vs native, one run ({what})", body)
    return body


EXPORTED = (" `native-exp` and `bindfs-exp` walk a hard-linked copy of the project with every export "
            "of every job written out (what `csfs job export` and `csfs group export` write: generated "
            "metadata and symlinks to the data), the tree the default mount shows; they are measured in "
            "the whole-mount rows only.")
DATA_NOTES = """Data rows: `cat` to /dev/null, `xargs -P 8 cat` over the stacks split in eight, and
`rsync -a` into a local folder (first pass, page cache dropped). csfs reads real data
with libfuse's fd buffers (splice, native trick `zerocopy`) and opens completed jobs'
files with `keep_cache`; bindfs reads through its own buffer."""
NOTES = """Where the time goes (`-o debug` request counts, py-spy, the kernel's fs/fuse source):
- rsync's second pass: on a writable FUSE superblock the kernel marks a file's atime stale
  after every read that reaches the daemon (`fuse_invalidate_atime` skips only read-only
  superblocks), and `lstat` asks for the atime, so the next `lstat` of every file read in
  the first pass was a GETATTR round trip into Python (501 for a 500-file folder).
  `bindfs -r` is a read-only superblock; so is `--plain` (`csfs-plain`). The default mount
  stays writable for `control/`, and now lists a folder one of whose files was read
  through it afresh, once: the kernel refreshes every entry's attributes from that one
  READDIRPLUS (1 GETATTR and 2 READDIRPLUS for the same 500-file folder), then caches the
  listing again. What remains is ~10 us of Python per entry of that READDIRPLUS.
- readdirplus: libfuse 3.14's high-level API drops the attributes a file system hands
  its filler with offset 0, so `ls -l` paid a LOOKUP per entry; the mount answers with
  offsets and the attributes of the real tree and of exports/ (native trick
  `readdirplus`); sizes/ and control/ entries are still looked up.
- Python per request: in-process, a cold getattr of a real file is ~8.5 us (an `lstat`
  is 2.7 us) since the lstat/listing caches are plain timed dicts instead of cachetools
  (15.5 us before); an export entry ~28 us. The rest of a cold `os.stat` through the
  mount is the round trip: libfuse's high-level path lookup, the ctypes callback and the
  GIL hand-over, ~60 us a request on these machines, about what bindfs's C costs.
- Whole-mount walks list 4.6x the paths of the project (exports/ shows every export's
  files), so warm `du -s` of the whole mount is ~5x bindfs on the project, at ~3.5 us a
  path in the kernel against 2.6 us natively: its fair baseline is the project with
  every export written out (issue 9).
- Memory: libfuse keeps a node (~270 bytes) per path the kernel holds, 130 MiB after a
  walk of the `large` demo's 510,497 paths. CSFS_MOUNT_MAX_ENTRIES (default 2,000,000)
  has the kernel forget them all once that many attributes were handed out: with
  150,000, RSS after the same `ls -lR` was 168 MiB instead of 254 MiB (kernel dentries
  185k instead of 627k). A cold `du -s` peaked higher (365 MiB): the readdirplus walks
  the kernel abandoned (it asks for attributes only at offset 0, then goes on with plain
  READDIR) were kept, up to 64 listings of 25k entries; they are now dropped: 260 MiB,
  116 MiB once the kernel forgets.
- The 5-project instance (2.55M paths) holds more than the default entry budget (2M):
  every walk crosses it, the kernel forgets everything, and the next walk starts cold,
  so its "warm" du is a cold walk (bindfs over the exported copies keeps all 2.55M nodes
  instead: 704 MiB). More budget (~270 bytes a path) buys warm re-walks.
"""


def _bindfs_version() -> str:
    return out("bindfs --version").split()[-1] if shutil.which("bindfs") else "?"


def test_bench_bindfs() -> None:
    main(["--reps", "1"])


if __name__ == "__main__":
    main()
