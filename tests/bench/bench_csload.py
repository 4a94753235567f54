"""Benchmark: load a 1,000,000-row particle .cs — csfs vs cryosparc-tools, both forms.

Run:  python3 tests/bench/bench_csload.py [--rows 1000000] [--dir /tmp]
 or:  python3 -m pytest tests/bench/bench_csload.py -s

Writes its table into tests/bench/RESULTS.md (section "bench_csload").
The particle rows are as wide as a real heterogeneous-refinement output with its
passthroughs (the union of the fields in ../shared/realdata's files: blob, ctf,
alignments2D/3D, three alignments_class_N, quality_stats, location, pick_stats),
with CryoSPARC v4-style long paths.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from bench_results import write_section  # noqa: E402
from csfs.core import csfile  # noqa: E402

ALIGN = ["split:<u4", "shift:<f4:2", "pose:<f4:3", "psize_A", "error", "error_min", "resid_pow", "slice_pow",
         "image_pow", "cross_cor", "alpha", "alpha_min", "weight", "pose_ess", "shift_ess", "class_posterior",
         "class:<u4", "class_ess"]
CTF = ["type:S10", "exp_group_id:<u4", "accel_kv", "cs_mm", "amp_contrast", "df1_A", "df2_A", "df_angle_rad",
       "phase_shift_rad", "scale", "scale_const", "shift_A:<f4:2", "tilt_A:<f4:2", "trefoil_A:<f4:2",
       "tetra_A:<f4:4", "anisomag:<f4:4", "bfactor"]


def particle_dtype() -> np.dtype:
    slots = {"blob": ["path:S128", "idx:<u4", "shape:<u4:2", "psize_A", "sign", "import_sig:<u8"], "ctf": CTF,
             "alignments2D": ALIGN, "alignments3D": ALIGN,
             **{f"alignments_class_{i}": ALIGN for i in range(3)},
             "quality_stats": ["slice_mse", "slice_sobel", "lpradwn_denoised"],
             "location": ["micrograph_uid:<u8", "exp_group_id:<u4", "micrograph_path:S128",
                          "micrograph_shape:<u4:2", "center_x_frac", "center_y_frac", "min_dist_A",
                          "micrograph_psize_A"],
             "pick_stats": ["ncc_score", "power", "template_idx:<u4", "angle_rad"]}
    fields = [("uid", "<u8")]
    for slot, specs in slots.items():
        for spec in specs:
            name, dt, *shape = spec.split(":") + (["<f4"] if ":" not in spec else [])
            fields.append((f"{slot}/{name}", dt, tuple(map(int, shape))))
    return np.dtype(fields)


def make_particles(rows: int, mics: int = 1000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = np.zeros(rows, particle_dtype())
    mic = np.sort(rng.integers(0, mics, rows))
    muid = rng.integers(0, 2**64 - 1, mics, dtype=np.uint64)
    stem = [f"{u:021d}_FoilHole_{30000000 + m}_Data_{29000000 + m}_{29000001 + m}_20240517_{m:06d}_fractions"
            for m, u in enumerate(muid.tolist())]
    blobs = [f"J19/extract/{s}_patch_aligned_doseweighted_particles.mrc" for s in stem]
    arr["blob/path"] = np.array(blobs, "S128")[mic]
    arr["location/micrograph_path"] = np.array([f"J3/motioncorrected/{s}_patch_aligned_doseweighted.mrc"
                                                for s in stem], "S128")[mic]
    arr["location/micrograph_uid"] = muid[mic]
    arr["uid"] = rng.integers(0, 2**63, rows, dtype=np.uint64)
    arr["ctf/type"] = b"cryosparc"
    for name in arr.dtype.names:
        dt = arr.dtype[name]
        if dt.base.kind == "f":
            arr[name] = rng.random((rows, *dt.shape), np.float32)
        elif dt.base.kind == "u" and name not in ("uid", "location/micrograph_uid"):
            arr[name] = rng.integers(0, 300, (rows, *dt.shape))
    return arr


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
        del result
    return best


MEM_PROBE = """
import json, sys
sys.path.insert(0, {repo!r})
import numpy as np
from csfs.core import csfile
from cryosparc.dataset import Dataset

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")                                # reset the peak (VmHWM) to the current RSS
if {tool!r} == "csfs":
    arr = csfile.load({path!r}, ["uid", "blob/path"]); size = arr.nbytes
elif {tool!r} == "csfs-strings":
    uid = csfile.load({path!r}, ["uid"]); values, codes = csfile.load_strings({path!r}, "blob/path")
    size = uid.nbytes + values.nbytes + codes.nbytes
else:
    d = Dataset.load({path!r}, fields=["uid", "blob/path"]); size = d["uid"].nbytes + 8 * len(d)
print(json.dumps({{"delta": status("VmHWM") - before, "result": int(size)}}))
"""


def peak_two_columns(tool: str, path: Path) -> dict:
    """Peak RSS growth (VmHWM after a reset, minus VmRSS before) of reading uid + blob/path,
    in a fresh process; file pages mapped by a reader count too."""
    code = MEM_PROBE.format(repo=str(REPO), tool=tool, path=str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def run(rows: int, workdir: Path) -> str:
    from cryosparc.dataset import CSDAT_FORMAT, Dataset

    numpy_path, csdat_path = workdir / "particles.cs", workdir / "particles.csdat.cs"
    t = time.perf_counter()
    arr = make_particles(rows)
    csfile.save(numpy_path, arr)
    Dataset.load(numpy_path).save(csdat_path, format=CSDAT_FORMAT)    # written by cryosparc-tools
    del arr
    setup = time.perf_counter() - t
    sizes = {p: p.stat().st_size for p in (numpy_path, csdat_path)}
    on_disk = csfile.load(numpy_path).dtype
    two = ["uid", "blob/path"]
    cases = [
        ("numpy, all fields (materialized in RAM)", numpy_path,
         lambda: np.array(csfile.load(numpy_path)), lambda: Dataset.load(numpy_path)),
        ("numpy, uid + blob/path", numpy_path,
         lambda: csfile.load(numpy_path, two), lambda: Dataset.load(numpy_path, fields=two)),
        ("csdat, all fields", csdat_path, lambda: csfile.load(csdat_path), lambda: Dataset.load(csdat_path)),
        ("csdat, uid + blob/path", csdat_path,
         lambda: csfile.load(csdat_path, two), lambda: Dataset.load(csdat_path, fields=two)),
    ]
    open_time = timed(lambda: csfile.load(numpy_path))
    lines = ["| case | file size | csfs (s) | cryosparc-tools (s) | speed-up (tools / csfs) |",
             "|---|---:|---:|---:|---:|",
             f"| numpy, open (memory-mapped, lazy) | {sizes[numpy_path] / 2**20:.0f} MiB | {open_time:.4f} | – | – |"]
    for label, path, ours, theirs in cases:
        a, b = timed(ours), timed(theirs)
        lines.append(f"| {label} | {sizes[path] / 2**20:.0f} MiB | {a:.3f} | {b:.3f} | {b / a:.1f}× |")
        print(lines[-1], flush=True)
    mem = ["", "Peak memory of reading only `uid` + `blob/path` from the numpy form (fresh process, "
           "peak VmHWM minus VmRSS before the read; mapped file pages count):", "",
           "| reader | peak RSS growth | % of file | the returned columns themselves "
           "| overhead beyond them (% of file) |",
           "|---|---:|---:|---:|---:|"]
    for tool in ("csfs", "csfs-strings", "cryosparc-tools"):
        m = peak_two_columns(tool, numpy_path)
        size = sizes[numpy_path]
        mem.append(f"| {tool} | {m['delta'] / 2**20:.0f} MiB | {100 * m['delta'] / size:.1f}% | "
                   f"{m['result'] / 2**20:.0f} MiB | {100 * max(0, m['delta'] - m['result']) / size:.1f}% |")
        print(mem[-1], flush=True)
    head = [f"Command: `python3 tests/bench/bench_csload.py --rows {rows}` "
            f"(or `python3 -m pytest tests/bench/bench_csload.py -s`). ",
            "",
            f"{rows:,} particles, {len(on_disk.names)} fields, {on_disk.itemsize} bytes/row "
            f"(blob/path {on_disk['blob/path'].str}). Best of 3, warm page cache; {time.strftime('%Y-%m-%d')}, "
            f"numpy {np.__version__}, "
            f"cryosparc-tools {_tools_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
            f"at the end (other work shares the machine). Files made in {setup:.0f} s. csfs's 'all fields' "
            "numpy case copies the memory map into RAM so both sides end with the data in memory.",
            "In the memory table, `csfs` reads both columns as one structured array with fixed-width "
            "`|S` paths; `csfs-strings` reads `uid` plus `load_strings` (distinct paths + uint32 codes), "
            "the form csfs itself uses to find referenced files.", ""]
    return "\n".join(head + lines + mem)


def _tools_version() -> str:
    from importlib.metadata import version

    return version("cryosparc-tools")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dir", default=None, help="scratch folder for the generated files (default: a temp dir)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        body = run(args.rows, Path(tmp))
    write_section("bench_csload", "loading a 1M-row particle .cs", body)
    print(body)


def test_bench_csload():
    main([])


if __name__ == "__main__":
    main()
