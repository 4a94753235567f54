"""`csfs demo`: a synthetic but structurally faithful CryoSPARC project (legacy, v4 or v5).

`make_demo(dir, scale, seed, flavour)` writes `<dir>/raw/` (the "microscope" movies)
and the project (`<dir>/CS-csfs-demo/`, or `<dir>/P12/` for legacy) with ten jobs: import → motion → CTF → blob
picks → extract → 2D classes (intermediate iterations) → ab-initio → refinement (per-iteration
volumes), one job left running and one failed. uids flow from picks to refinement,
inputs name the versions they consumed, every data file has a real MRC header.
Deterministic for a seed: all times come from a fixed base, never from "now".
Each flavour writes its version's real document shapes (core/demo_docs.py); v4
also holds a CryoSPARC Live session folder `S1/`.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bson
import numpy as np

from . import csfile, csg, mrc
from . import demo_data as dd
from . import demo_docs as docs
from .demo_docs import FLAVOURS
from .errors import RefusedError, UsageError

PROJECT_DIR = "CS-csfs-demo"      # v4 and v5; legacy: P12
TITLE = "csfs demo"
DESCRIPTION = "Synthetic demo project written by `csfs demo` (not real data)."
BASE_TIME = _dt.datetime(2024, 3, 4, 9, 0, tzinfo=_dt.UTC)
PSIZE = 0.83


@dataclass(frozen=True)
class Scale:
    mics: int            # exposures
    ppm: int             # picks per micrograph
    box: int             # particle box (px)
    mic_px: int          # micrograph edge (px)
    frames: int          # movie frames
    classes2d: int
    iters2d: int         # class_2D versions
    iters_abinit: int
    iters_refine: int
    vol: int             # volume box (px)
    dense: bool          # write real pixel values (else sparse data sections)


SCALES = {
    "tiny": Scale(mics=4, ppm=10, box=32, mic_px=128, frames=4, classes2d=4, iters2d=5,
                  iters_abinit=2, iters_refine=4, vol=16, dense=True),
    "small": Scale(mics=40, ppm=50, box=64, mic_px=512, frames=8, classes2d=20, iters2d=10,
                   iters_abinit=3, iters_refine=6, vol=64, dense=False),
    "large": Scale(mics=5000, ppm=42, box=128, mic_px=1024, frames=8, classes2d=50, iters2d=10,
                   iters_abinit=4, iters_refine=8, vol=128, dense=False),
}

VOLUME_SLOTS = ("map", "map_sharp", "map_half_A", "map_half_B", "mask_fsc", "mask_fsc_auto",
                "mask_refine", "precision")


def _t(hours: float) -> _dt.datetime:
    return BASE_TIME + _dt.timedelta(hours=hours)


class _Job:
    """Collects one job's outputs, inputs and files; `finish()` writes its metadata."""

    def __init__(self, demo: _Demo, num: int, type: str, title: str, status: str = "completed") -> None:
        self.demo, self.num, self.type, self.title, self.status = demo, num, type, title, status
        self.uid = f"J{num}"
        self.dir = demo.root / self.uid
        (self.dir / "gridfs_data").mkdir(parents=True)
        self.created = _t(num)
        self.finished = _t(num + 0.8)
        self.groups: list[dict] = []
        self.results: list[dict] = []
        self.slot_groups: list[dict] = []
        self.log: list[str] = []
        self.plots: list[str] = []      # images stored in gridfs_data/ (the event log's plots)

    def rel(self, name: str) -> str:
        return f"{self.uid}/{name}"

    def fname(self, name: str) -> str:
        """A job file name as the demo's version names it (`cryosparc_P12_J6_…` in legacy)."""
        return docs.metafile_name(self.demo.flavour, name)

    def save_cs(self, name: str, arr: np.ndarray) -> str:
        rel = self.rel(self.fname(name))
        self.demo.write(rel, csfile.dumps(arr))
        return rel

    def output(self, name: str, gtype: str, title: str, num_items: int,
               results: dict[str, tuple[list[int], list[str], bool]]) -> None:
        """Declare an output group; results: slot -> (versions, metafiles, passthrough)."""
        gi = len(self.groups) + 1
        self.groups.append({"uid": f"{self.uid}-G{gi}", "type": gtype, "name": name, "title": title,
                            "description": "", "num_items": num_items,
                            "passthrough": all(p for _, _, p in results.values()) and bool(results)})
        for slot, (versions, metafiles, passthrough) in results.items():
            self.results.append({
                "uid": f"{self.uid}-R{len(self.results) + 1}", "type": f"{gtype}.{slot}",
                "group_name": name, "name": slot, "title": slot.replace("_", " ").capitalize(),
                "versions": list(versions), "metafiles": list(metafiles),
                "num_items": [num_items] * len(versions), "passthrough": passthrough})

    def connect(self, name: str, itype: str, title: str, src: str, group: str,
                slots: dict[str, int | str]) -> None:
        """An input slot group fed by src's output `group`; slots: result -> version."""
        self.slot_groups.append({
            "type": itype, "name": name, "title": title, "description": "", "count_min": 1,
            "count_max": "inf", "repeat_allowed": False,
            "slots": [{"type": f"{itype}.{s}", "name": s, "title": s, "description": "",
                       "optional": False} for s in slots],
            "connections": [{"job_uid": src, "group_name": group, "slots": [
                {"slot_name": s, "job_uid": src, "group_name": group, "result_name": s,
                 "result_type": f"{itype}.{s}", "version": v} for s, v in slots.items()]}]})

    def finish(self, children: list[str]) -> None:
        doc = docs.job_doc(self.demo.flavour, self, children)
        if doc is not None:
            _write_json(self.dir / "job.json", doc)
        for g in self.groups:
            res = {r["name"]: r for r in self.results if r["group_name"] == g["name"] and r["metafiles"]}
            if not res:
                continue
            c = csg.Csg(created=self.finished.replace(tzinfo=None), version=self.demo.cs_version,
                        group={"name": g["name"], "title": g["title"], "type": g["type"],
                               "description": g["description"]},
                        results={s: {"metafile": ">" + Path(r["metafiles"][0 if r["passthrough"] else -1]).name,
                                     "num_items": g["num_items"], "type": r["type"]} for s, r in res.items()})
            self.demo.write(self.rel(f"{self.uid}_{g['name']}.csg"), csg.dumps(c))
        self.demo.write(self.rel("events.bson"), self._events())
        if self.plots:
            self.demo.write(self.rel("gridfs_data/gridfsdata_0"), b"".join(bson.encode({
                "_id": bson.ObjectId(self.demo.rng.bytes(12)), "filename": name, "contentType": "image/png",
                "length": len(self.demo.png), "data": bson.Binary(self.demo.png)}) for name in self.plots))
        lines = [f"[{_t(self.num + 0.1 + i * 0.01).isoformat()}] {m}" for i, m in enumerate(
            [f"Launching job {self.uid} ({self.type}) on gpu01", *self.log,
             "Traceback (most recent call last):\nRuntimeError: CUDA out of memory"
             if self.status == "failed" else
             ("iteration in progress" if self.status == "running" else "Job complete.")])]
        self.demo.write(self.rel("job.log"), ("\n".join(lines) + "\n").encode())

    def _events(self) -> bytes:
        puid = self.demo.project_uid
        texts = [f"[CPU: 1.2 GB] Project {puid} Job {self.uid} Started", *self.log]
        if self.status == "failed":
            texts.append("Job failed: CUDA out of memory")
        elif self.status == "completed":
            texts.append(f"[CPU: 1.5 GB] --------------------------------------------------------------\n"
                         f"Job {self.uid} completed.")
        out = bytearray()
        for i, text in enumerate(texts):
            oid = bson.ObjectId(self.demo.rng.bytes(12))
            out += bson.encode({"_id": oid, "project_uid": puid, "job_uid": self.uid,
                                "type": "text", "text": text, "flags": [],
                                "created_at": _t(self.num + 0.1 + i * 0.01)})
        return bytes(out)


def _write_json(path: Path, obj: Any) -> None:
    """Plain JSON write (the demo writes a fresh folder; atomic renames buy nothing here)."""
    path.write_text(json.dumps(obj, indent=4) + "\n")


class _Demo:
    def __init__(self, root: Path, raw: Path, scale: Scale, seed: int,
                 progress: Callable[[int, int | None], None] | None, flavour: str = "v4") -> None:
        self.root, self.raw, self.s, self.flavour = root, raw, scale, flavour
        self.project_uid = docs.PROJECT_UIDS[flavour]
        self.cs_version = docs.VERSIONS[flavour]
        self.rng = np.random.default_rng(seed)
        self.progress = progress
        self.jobs: list[_Job] = []
        self.params: dict[str, dict[str, dict[str, Any]]] = {"class_2D_new": {"class2D_K": {"value": scale.classes2d}},
                                                            "homo_refine_new": {"refine_symmetry": {"value": "C1"}}}
        self.png = dd.png_bytes()
        self.traj = dd.npy_bytes(np.zeros((scale.frames, 2), "<f4"))
        self.dumped_at = _t(12)

    def object_id(self) -> str:
        """A mongo ObjectId as hex (seeded)."""
        return self.rng.bytes(12).hex()

    # -- file writers --------------------------------------------------------------------
    def write(self, rel: str, data: bytes) -> None:
        with open(self.root / rel, "wb") as f:
            f.write(data)

    def image(self, rel: str, shape: tuple[int, int, int], volume: bool = False, mode: int = 2,
              path: Path | None = None) -> None:
        """A real MRC: noise for dense scales, else a sparse data section."""
        dest = path or self.root / rel
        if self.s.dense:
            data = self.rng.standard_normal(shape, dtype=np.float32)
            mrc.write(dest, data.astype(mrc.MODES[mode]), voxel_size=PSIZE, volume=volume)
        else:
            mrc.write(dest, shape=shape, mode=mode, voxel_size=PSIZE, volume=volume)

    def job(self, num: int, type: str, title: str, status: str = "completed") -> _Job:
        j = _Job(self, num, type, title, status)
        self.jobs.append(j)
        return j

    def tick(self, done: int) -> None:
        if self.progress:
            self.progress(done, 10)

    # -- the pipeline ----------------------------------------------------------------------
    def build(self) -> None:
        s, rng = self.s, self.rng
        n = s.mics
        self.mic_uid = dd.uids(rng, n)
        names = [f"FoilHole_{10000 + i // 8}_Data_{2000 + i % 8}_{i:05d}_20240304_fractions" for i in range(n)]
        self.names = [f"{u:021d}_{nm}" for u, nm in zip(self.mic_uid, names, strict=True)]
        self._import(names)
        self.tick(1)
        self._motion()
        self.tick(2)
        self._ctf()
        self.tick(3)
        self._pick()
        self.tick(4)
        self._extract()
        self.tick(5)
        self._class2d()
        self.tick(6)
        self._abinit()
        self.tick(7)
        self._refine(8, "homo_refine_new", "Homogeneous Refinement", s.iters_refine, "J7",
                     ("particles_class_0", "volume_class_0"))
        self._refine(9, "nonuniform_refine_new", "Non-uniform Refinement", 2, "J8",
                     ("particles", "volume"), status="running")
        self.tick(9)
        self._failed_picker()
        children: dict[str, list[str]] = {j.uid: [] for j in self.jobs}
        for j in self.jobs:
            for g in j.slot_groups:
                for c in g["connections"]:
                    if j.uid not in children[c["job_uid"]]:
                        children[c["job_uid"]].append(j.uid)
        for j in self.jobs:
            j.finish(children[j.uid])
        if self.flavour == "v4":
            self._live_session()
        self._project_files()
        self._set_times()
        self.tick(10)

    def _import(self, names: list[str]) -> None:
        s = self.s
        j = self.job(1, "import_movies", "Import Movies")
        (j.dir / "imported").mkdir()
        self.raw.mkdir(parents=True, exist_ok=True)
        paths = []
        for nm, full in zip(names, self.names, strict=True):
            movie = self.raw / f"{nm}.mrc"
            self.image("", (s.frames, s.mic_px, s.mic_px), mode=0, path=movie)
            (self.raw / f"{nm}.xml").write_text(f"<MicroscopeImage><name>{nm}</name>"
                                                f"<pixelSize>{PSIZE}</pixelSize></MicroscopeImage>\n")
            (self.raw / f"{nm}.jpg").write_bytes(self.png)
            rel = j.rel(f"imported/{full}.mrc")
            os.symlink(str(movie), self.root / rel)
            paths.append(rel)
        self.exp = dd.movie_cols(paths, s.frames, s.mic_px, PSIZE)
        mf = j.save_cs("J1_imported_movies.cs", dd.table(self.mic_uid, self.exp))
        j.output("imported_movies", "exposure", "Imported movies", s.mics,
                 {"movie_blob": ([0], [mf], False), "mscope_params": ([0], [mf], False)})
        j.log.append(f"Imported {s.mics} movies")

    def _motion(self) -> None:
        s = self.s
        j = self.job(2, "patch_motion_correction_multi", "Patch Motion Correction")
        for d in ("motioncorrected", "thumbnails"):
            (j.dir / d).mkdir()
        files: dict[str, list[str]] = {k: [] for k in (
            "micrograph_blob", "micrograph_blob_non_dw", "background_blob", "rigid_motion",
            "spline_motion", "micrograph_thumbnail_blob_1x", "micrograph_thumbnail_blob_2x")}
        small = max(s.mic_px // 8, 8)
        for nm in self.names:
            mc = f"motioncorrected/{nm}"
            self.image(j.rel(f"{mc}_patch_aligned_doseweighted.mrc"), (1, s.mic_px, s.mic_px))
            self.image(j.rel(f"{mc}_patch_aligned.mrc"), (1, s.mic_px, s.mic_px))
            self.image(j.rel(f"{mc}_background.mrc"), (1, small, small))
            for kind in ("rigid_traj", "bending_traj", "spline_df"):
                self.write(j.rel(f"{mc}_{kind}.npy"), self.traj)
            self.image(j.rel(f"{mc}_patch_aligned_doseweighted_powerspec.mrc"), (1, small, small))
            for suffix in ("thumb_@1x.png", "thumb_@2x.png", "motion_plot.png", "powerspec_thumb.png"):
                self.write(j.rel(f"thumbnails/{nm}_{suffix}"), self.png)
            files["micrograph_blob"].append(j.rel(f"{mc}_patch_aligned_doseweighted.mrc"))
            files["micrograph_blob_non_dw"].append(j.rel(f"{mc}_patch_aligned.mrc"))
            files["background_blob"].append(j.rel(f"{mc}_background.mrc"))
            files["rigid_motion"].append(j.rel(f"{mc}_rigid_traj.npy"))
            files["spline_motion"].append(j.rel(f"{mc}_bending_traj.npy"))
            files["micrograph_thumbnail_blob_1x"].append(j.rel(f"thumbnails/{nm}_thumb_@1x.png"))
            files["micrograph_thumbnail_blob_2x"].append(j.rel(f"thumbnails/{nm}_thumb_@2x.png"))
        mcols = dd.micrograph_cols(self.rng, files, s.mic_px, PSIZE, s.frames)
        new = j.save_cs("J2_micrographs.cs", dd.table(self.mic_uid, mcols))
        passthrough = j.save_cs("J2_passthrough_micrographs.cs", dd.table(self.mic_uid, self.exp))
        self.exp |= mcols
        j.output("micrographs", "exposure", "Motion-corrected micrographs", s.mics,
                 {**{k: ([0], [new], False) for k in files},
                  "movie_blob": ([0], [passthrough], True), "mscope_params": ([0], [passthrough], True)})
        j.connect("movies", "exposure", "Movies", "J1", "imported_movies",
                  {"movie_blob": "F", "mscope_params": "F"})
        j.log.append(f"Processed {s.mics} movies")

    def _slots(self) -> list[str]:
        return list(dict.fromkeys(k.split("/", 1)[0] for k in self.exp))

    def _ctf(self) -> None:
        s, rng = self.s, self.rng
        j = self.job(3, "patch_ctf_estimation_multi", "Patch CTF Estimation")
        (j.dir / "ctfestimated").mkdir()
        for nm in self.names:
            base = f"ctfestimated/{nm}_patch_aligned_doseweighted"
            self.image(j.rel(f"{base}_ctf_diag_2D.mrc"), (1, 64, 64))
            for suffix in ("ctf_diag_plt.png", "ctf_diag_2D.png", "ctf_diag_2D_thumb.png"):
                self.write(j.rel(f"{base}_{suffix}"), self.png)
            self.write(j.rel(f"{base}_ctf_fit_1D.npy"), self.traj)
            self.write(j.rel(f"{base}_spline_df.npy"), self.traj)
        self.mic_df = rng.uniform(8000, 25000, s.mics)
        ccols = dd.ctf_cols(rng, s.mics, self.mic_df) | dd.ctf_stats_cols(rng, s.mics)
        inherited = self._slots()
        new = j.save_cs("J3_exposures.cs", dd.table(self.mic_uid, ccols))
        passthrough = j.save_cs("J3_passthrough_exposures.cs", dd.table(self.mic_uid, self.exp))
        self.exp |= ccols
        j.output("exposures", "exposure", "Exposures with CTF", s.mics,
                 {"ctf": ([0], [new], False), "ctf_stats": ([0], [new], False),
                  **{k: ([0], [passthrough], True) for k in inherited}})
        j.connect("exposures", "exposure", "Micrographs", "J2", "micrographs",
                  {"micrograph_blob": "F", "mscope_params": "F", "background_blob": "F"})
        j.log.append(f"Estimated CTF for {s.mics} micrographs")

    def _mic_passthrough(self, j: _Job, name: str = "micrographs") -> None:
        rel = j.save_cs(f"{j.uid}_passthrough_{name}.cs", dd.table(self.mic_uid, self.exp))
        j.output(name, "exposure", "Micrographs", self.s.mics,
                 {k: ([0], [rel], True) for k in self._slots()})

    def _pick(self) -> None:
        s, rng = self.s, self.rng
        j = self.job(4, "blob_picker_gpu", "Blob Picker")
        (j.dir / "picked").mkdir()
        n = s.mics * s.ppm
        self.pick_mic = np.repeat(np.arange(s.mics), s.ppm)
        self.pick_uid = dd.uids(rng, n)
        mic_paths = [self.exp["micrograph_blob/path"][i].decode() for i in range(s.mics)]
        self.part = dd.location_cols(rng, self.mic_uid[self.pick_mic], [mic_paths[i] for i in self.pick_mic],
                                     s.mic_px, PSIZE)
        for nm in self.names:
            self.write(j.rel(f"picked/{nm}_picks.npy"), self.traj)
        rel = j.save_cs("J4_particles.cs", dd.table(self.pick_uid, self.part))
        self._mic_passthrough(j)
        j.output("particles", "particle", "Picked particles", n,
                 {"location": ([0], [rel], False), "pick_stats": ([0], [rel], False)})
        j.connect("micrographs", "exposure", "Micrographs", "J3", "exposures",
                  {"micrograph_blob": "F", "ctf": "F"})
        j.log.append(f"Picked {n} particles")

    def _extract(self) -> None:
        s, rng = self.s, self.rng
        j = self.job(5, "extract_micrographs_multi", "Extract From Micrographs")
        (j.dir / "extract").mkdir()
        keep = rng.random(len(self.pick_uid)) >= 0.04          # a few picks too close to the edge
        self.uid = self.pick_uid[keep]
        mic = self.pick_mic[keep]
        self.part = {k: v[keep] for k, v in self.part.items()}
        paths, idx = [], np.zeros(len(self.uid), "<u4")
        counts = np.bincount(mic, minlength=s.mics)
        start = 0
        for m, nm in enumerate(self.names):
            k = int(counts[m])
            rel = j.rel(f"extract/{nm}_patch_aligned_doseweighted_particles.mrc")
            self.image(rel, (k, s.box, s.box))
            paths += [rel] * k
            idx[start:start + k] = np.arange(k)
            start += k
        n = len(self.uid)
        pcols = dd.blob_cols(paths, idx, s.box, PSIZE) | dd.ctf_cols(rng, n, self.mic_df[mic] + rng.normal(0, 50, n))
        rel = j.save_cs("J5_particles.cs", dd.table(self.uid, pcols))
        passthrough = j.save_cs("J5_passthrough_particles.cs", dd.table(self.uid, self.part))
        self.part |= pcols
        j.output("particles", "particle", "Extracted particles", n,
                 {"blob": ([0], [rel], False), "ctf": ([0], [rel], False),
                  "location": ([0], [passthrough], True), "pick_stats": ([0], [passthrough], True)})
        self._mic_passthrough(j)
        j.connect("micrographs", "exposure", "Micrographs", "J4", "micrographs",
                  {"micrograph_blob": "F", "ctf": "F"})
        j.connect("particles", "particle", "Particles", "J4", "particles", {"location": "F"})
        j.log.append(f"Extracted {n} particles at box {s.box}")

    def _class2d(self) -> None:
        s, rng = self.s, self.rng
        j = self.job(6, "class_2D_new", "2D Classification")
        n, K = len(self.uid), s.classes2d
        versions = list(range(s.iters2d))
        cls_mf, avg_mf = [], []
        class_uid = dd.uids(rng, K)
        self.align2d: dict[int, dd.Cols] = {}
        for v in versions:
            a = dd.alignment_cols(rng, "alignments2D", n, K, PSIZE, three_d=False)
            self.align2d[v] = a
            cls_mf.append(j.save_cs(f"J6_{v:03d}_particles.cs", dd.table(self.uid, a)))
            avg = j.rel(j.fname(f"J6_{v:03d}_class_averages.mrc"))
            self.image(avg, (K, s.box, s.box))
            avg_mf.append(j.save_cs(f"J6_{v:03d}_class_averages.cs",
                                    dd.table(class_uid, dd.template_cols(avg, K, s.box, PSIZE))))
        passthrough = j.save_cs("J6_passthrough_particles.cs", dd.table(self.uid, self.part))
        j.output("particles", "particle", "Particles with 2D alignments", n,
                 {"alignments2D": (versions, cls_mf, False),
                  **{k: ([0], [passthrough], True) for k in ("blob", "ctf", "location", "pick_stats")}})
        j.output("class_averages", "template", "2D class averages", K, {"blob": (versions, avg_mf, False)})
        j.connect("particles", "particle", "Particles", "J5", "particles", {"blob": "F", "ctf": "F"})
        j.log += [f"Iteration {v}: {K} classes" for v in versions]
        j.plots = [f"J6_{v:03d}_class_averages.png" for v in versions]

    def _abinit(self) -> None:
        s, rng = self.s, self.rng
        j = self.job(7, "homo_abinit", "Ab-Initio Reconstruction")
        n = len(self.uid)
        v2d = max(s.iters2d - 3, 0)                         # a non-final 2D iteration
        # legacy numbers iterations 0, 1, …; v4/v5 as real ab-initio runs do (0, 100, …), the last
        # one's files named `…_final_…`
        real = self.flavour != "legacy"
        versions = [v * 100 if real else v for v in range(s.iters_abinit)]
        pmf, vmf = [], []
        for v in versions:
            tag = "final" if real and v == versions[-1] else f"{v:05d}"
            self.align3d = dd.alignment_cols(rng, "alignments3D", n, 1, PSIZE, three_d=True)
            pmf.append(j.save_cs(f"J7_class_00_{tag}_particles.cs", dd.table(self.uid, self.align3d)))
            vol = j.rel(j.fname(f"J7_class_00_{tag}_volume.mrc"))
            self.image(vol, (s.vol,) * 3, volume=True)
            vmf.append(j.save_cs(f"J7_class_00_{tag}_volume.cs",
                                 dd.table(self.vol_uid(), dd.volume_cols({"map": vol}, s.vol, PSIZE))))
        self.part |= self.align2d[v2d]
        passthrough = j.save_cs("J7_passthrough_particles_class_0.cs",
                                dd.table(self.uid, self.part, ("blob", "ctf", "alignments2D")))
        j.output("particles_class_0", "particle", "Particles class 0", n,
                 {"alignments3D": (versions, pmf, False),
                  **{k: ([0], [passthrough], True) for k in ("blob", "ctf", "alignments2D")}})
        j.output("volume_class_0", "volume", "Volume class 0", 1, {"map": (versions, vmf, False)})
        j.connect("particles", "particle", "Particles", "J6", "particles",
                  {"blob": "F", "ctf": "F", "alignments2D": v2d})
        j.log.append(f"Using 2D alignments from J6 iteration {v2d}")

    def vol_uid(self) -> np.ndarray:
        return dd.uids(self.rng, 1)

    def _refine(self, num: int, type: str, title: str, iters: int, src: str,
                src_groups: tuple[str, str], status: str = "completed") -> None:
        s, rng = self.s, self.rng
        j = self.job(num, type, title, status)
        n = len(self.uid)
        versions, pmf, vmf = list(range(iters)), [], []
        for v in versions:
            a = dd.alignment_cols(rng, "alignments3D", n, 1, PSIZE, three_d=True)
            pmf.append(j.save_cs(f"{j.uid}_{v:03d}_particles.cs", dd.table(self.uid, a)))
            maps = {slot: j.rel(j.fname(f"{j.uid}_{v:03d}_volume_{slot}.mrc")) for slot in VOLUME_SLOTS}
            for rel in maps.values():
                self.image(rel, (s.vol,) * 3, volume=True)
            vmf.append(j.save_cs(f"{j.uid}_{v:03d}_volume.cs",
                                 dd.table(self.vol_uid(), dd.volume_cols(maps, s.vol, PSIZE))))
            self.write(j.rel(f"{j.uid}_fsc_iteration_{v:03d}.txt"),
                       "".join(f"{k}\t{1.0 / (1 + k):.4f}\n" for k in range(s.vol // 2)).encode())
            j.log.append(f"Iteration {v}: resolution {4.5 - 0.3 * v:.2f} A")
            j.plots.append(f"{j.uid}_{v:03d}_fsc.png")
        passthrough = j.save_cs(f"{j.uid}_passthrough_particles.cs",
                                dd.table(self.uid, self.part, ("blob", "ctf", "alignments2D")))
        j.output("particles", "particle", "Refined particles", n,
                 {"alignments3D": (versions, pmf, False),
                  **{k: ([0], [passthrough], True) for k in ("blob", "ctf", "alignments2D")}})
        j.output("volume", "volume", "Refined volume", 1, dict.fromkeys(VOLUME_SLOTS, (versions, vmf, False)))
        j.connect("particles", "particle", "Particles", src, src_groups[0],
                  {"blob": "F", "ctf": "F", "alignments3D": "F"})
        j.connect("volume", "volume", "Initial volume", src, src_groups[1], {"map": "F"})

    def _failed_picker(self) -> None:
        j = self.job(10, "template_picker_gpu", "Template Picker", status="failed")
        self.consumed_templates = max(self.s.iters2d - 2, 0)
        j.output("micrographs", "exposure", "Micrographs", 0, {})
        j.output("particles", "particle", "Picked particles", 0,
                 {"location": ([], [], False), "pick_stats": ([], [], False)})
        j.connect("micrographs", "exposure", "Micrographs", "J3", "exposures",
                  {"micrograph_blob": "F", "ctf": "F"})
        j.connect("templates", "template", "Templates", "J6", "class_averages",
                  {"blob": self.consumed_templates})
        j.log.append("Loading templates from J6")

    def _project_files(self) -> None:
        for name, doc in docs.project_files(self.flavour, self, TITLE, DESCRIPTION, BASE_TIME).items():
            _write_json(self.root / name, doc)

    def _live_session(self) -> None:
        """A CryoSPARC Live session folder (v4): S1/ with exposures.bson and its preprocessed files
        (for the first 40 exposures at most: the large scale stays quick to write)."""
        s = self.s
        d = self.root / "S1"
        for sub in ("motioncorrected", "ctfestimated", "thumbnails"):
            (d / sub).mkdir(parents=True)
        out = bytearray()
        for i, nm in enumerate(self.names[:40]):
            mic = f"S1/motioncorrected/{nm}_patch_aligned_doseweighted.mrc"
            self.image(mic, (1, s.mic_px // 2, s.mic_px // 2))
            self.write(f"S1/thumbnails/{nm}_thumb_@1x.png", self.png)
            self.write(f"S1/ctfestimated/{nm}_ctf_diag_2D.png", self.png)
            out += bson.encode({
                "_id": bson.ObjectId(self.rng.bytes(12)), "uid": int(self.mic_uid[i]), "project_uid": self.project_uid,
                "session_uid": "S1", "exp_group_id": 1, "stage": "ready", "abs_file_path": f"/data/microscope/{nm}.mrc",
                "groups": {"exposure": {"micrograph_blob": {"path": mic, "shape": [s.mic_px // 2] * 2}}},
                "created_at": _t(11 + i * 0.01)})
        self.write("S1/exposures.bson", bytes(out))

    def _set_times(self) -> None:
        """Every file's mtime is its job's end time (raw data: a day before the project)."""
        raw_t = (BASE_TIME - _dt.timedelta(days=1)).timestamp()
        for p in self.raw.iterdir():
            os.utime(p, (raw_t, raw_t))
        os.utime(self.raw, (raw_t, raw_t))
        for j in self.jobs:
            t = j.finished.timestamp()
            for dirpath, dirnames, filenames in os.walk(j.dir, topdown=False):
                for name in filenames + dirnames:
                    os.utime(os.path.join(dirpath, name), (t, t), follow_symlinks=False)
                os.utime(dirpath, (t, t))
        t = self.jobs[-1].finished.timestamp()
        if (self.root / "S1").exists():
            for dirpath, dirnames, filenames in os.walk(self.root / "S1", topdown=False):
                for name in filenames + dirnames:
                    os.utime(os.path.join(dirpath, name), (t, t))
                os.utime(dirpath, (t, t))
        for name in ("project.json", "workspaces.json", "job_manifest.json", "."):
            if (self.root / name).exists():
                os.utime(self.root / name, (t, t))


def make_demo(dir: str | os.PathLike, scale: str = "tiny", seed: int = 0,
              progress: Callable[[int, int | None], None] | None = None, flavour: str = "v4") -> Path:
    """Write the project (`<dir>/CS-csfs-demo/`, legacy `<dir>/P12/`) and `<dir>/raw/`; returns the project.

    `flavour` picks the CryoSPARC version whose documents it writes: legacy (<= v3.3),
    v4 (the default) or v5. Refuses to overwrite an existing project or raw folder.
    """
    if scale not in SCALES:
        raise UsageError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    if flavour not in FLAVOURS:
        raise UsageError(f"unknown flavour {flavour!r}; choose one of: {', '.join(FLAVOURS)}")
    if not isinstance(seed, int) or seed < 0:
        raise UsageError(f"--seed must be a whole number >= 0, not {seed!r}")
    dir = Path(dir).expanduser().absolute()
    root, raw = dir / docs.project_dir_name(flavour), dir / "raw"
    for p in (root, raw):
        if p.exists() or p.is_symlink():
            raise RefusedError(f"{p} already exists; choose an empty folder for the demo")
    dir.mkdir(parents=True, exist_ok=True)
    root.mkdir()
    try:
        _Demo(root, raw, SCALES[scale], seed, progress, flavour).build()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(raw, ignore_errors=True)
        raise
    return root


def summarize(project_dir: str | os.PathLike) -> dict:
    """Counts for a demo (or any) project: jobs, particles in J5, files and apparent bytes."""
    from .project import Project
    from .walk import walk_entries

    root = Path(project_dir)
    files = size = 0
    for e in walk_entries(root):
        files += 1
        size += e.stat(follow_symlinks=False).st_size
    proj = Project.open(root)
    groups = [g for j in proj.jobs.values() for g in j.groups]
    # by the outputs, not the job types: a legacy job without job.json has no type
    particles = next((g.num_items for g in groups if g.type == "particle"
                      and any(r.name == "blob" for r in g.results)), 0)
    micrographs = next((g.num_items for g in groups if g.type == "exposure"), 0)
    return {"path": str(root), "title": proj.title, "jobs": len(proj.jobs), "micrographs": micrographs,
            "particles": particles, "files": files, "bytes": size}
