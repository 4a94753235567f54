"""Column builders for the demo's .cs files: exposures, particles, volumes (seeded, vectorised)."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np

Cols = dict[str, np.ndarray]


def table(uid: np.ndarray, cols: Cols, slots: tuple[str, ...] | None = None) -> np.ndarray:
    """A structured array with `uid` first, then the columns (of `slots` only, if given)."""
    names = [n for n in cols if slots is None or n.split("/", 1)[0] in slots]
    fields = [("uid", "<u8")] + [(n, cols[n].dtype, cols[n].shape[1:]) for n in names]
    arr = np.zeros(len(uid), dtype=fields)
    arr["uid"] = uid
    for n in names:
        arr[n] = cols[n]
    return arr


def strings(values: list[str]) -> np.ndarray:
    """Fixed-width bytes (the writer adds the trailing NUL width)."""
    return np.array([v.encode() for v in values], dtype=f"S{max((len(v) for v in values), default=0) + 1}")


def full(n: int, value: object, dtype: str, shape: tuple = ()) -> np.ndarray:
    return np.full((n, *shape), value, dtype=dtype)


def uids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct random 63-bit uids."""
    while True:
        u = rng.integers(1, 2**63 - 1, size=n, dtype=np.uint64)
        if len(np.unique(u)) == n:
            return u


def movie_cols(paths: list[str], frames: int, px: int, psize: float) -> Cols:
    n = len(paths)
    return {
        "movie_blob/path": strings(paths),
        "movie_blob/shape": np.tile(np.array([frames, px, px], "<u4"), (n, 1)),
        "movie_blob/psize_A": full(n, psize, "<f4"),
        "movie_blob/is_gain_corrected": full(n, 1, "<u4"),
        "movie_blob/format": strings(["MRC/1.0"] * n),
        "movie_blob/has_defect_file": full(n, 0, "<u4"),
        "movie_blob/import_sig": full(n, 0, "<u8"),
        "mscope_params/accel_kv": full(n, 300.0, "<f4"),
        "mscope_params/cs_mm": full(n, 2.7, "<f4"),
        "mscope_params/total_dose_e_per_A2": full(n, 60.0, "<f4"),
        "mscope_params/phase_plate": full(n, 0, "<u4"),
        "mscope_params/neg_stain": full(n, 0, "<u4"),
        "mscope_params/exp_group_id": full(n, 1, "<u4"),
        "mscope_params/beam_shift": np.zeros((n, 2), "<f4"),
    }


def micrograph_cols(rng: np.random.Generator, files: dict[str, list[str]], px: int, psize: float,
                    frames: int) -> Cols:
    """Motion-correction outputs; `files` maps slot -> per-exposure project-relative paths."""
    n = len(files["micrograph_blob"])
    cols: Cols = {}
    for slot in ("micrograph_blob", "micrograph_blob_non_dw", "background_blob"):
        cols |= {f"{slot}/path": strings(files[slot]), f"{slot}/idx": full(n, 0, "<u4"),
                 f"{slot}/shape": np.tile(np.array([px, px], "<u4"), (n, 1)),
                 f"{slot}/psize_A": full(n, psize, "<f4"), f"{slot}/format": strings(["MRC/1.0"] * n)}
    cols["micrograph_blob/is_background_subtracted"] = full(n, 1, "<u4")
    cols["micrograph_blob/vmin"] = rng.normal(-2, 0.1, n).astype("<f4")
    cols["micrograph_blob/vmax"] = rng.normal(2, 0.1, n).astype("<f4")
    for slot, kind in (("rigid_motion", "rigid"), ("spline_motion", "spline")):
        cols |= {f"{slot}/type": strings([kind] * n), f"{slot}/path": strings(files[slot]),
                 f"{slot}/idx": full(n, 0, "<u4"), f"{slot}/frame_start": full(n, 0, "<u4"),
                 f"{slot}/frame_end": full(n, frames, "<u4"), f"{slot}/zero_shift_frame": full(n, 0, "<u4"),
                 f"{slot}/psize_A": full(n, psize, "<f4")}
    for slot, b in (("micrograph_thumbnail_blob_1x", 1), ("micrograph_thumbnail_blob_2x", 2)):
        cols |= {f"{slot}/path": strings(files[slot]), f"{slot}/idx": full(n, 0, "<u4"),
                 f"{slot}/shape": np.tile(np.array([128 * b, 128 * b], "<u4"), (n, 1)),
                 f"{slot}/format": strings(["png"] * n), f"{slot}/binfactor": full(n, 8 // b, "<u4")}
    return cols


def ctf_cols(rng: np.random.Generator, n: int, defocus: np.ndarray | None = None) -> Cols:
    df = rng.uniform(8000, 25000, n) if defocus is None else defocus
    astig = rng.uniform(0, 400, n)
    return {
        "ctf/type": strings(["spline"] * n),
        "ctf/exp_group_id": full(n, 1, "<u4"),
        "ctf/accel_kv": full(n, 300.0, "<f4"),
        "ctf/cs_mm": full(n, 2.7, "<f4"),
        "ctf/amp_contrast": full(n, 0.1, "<f4"),
        "ctf/df1_A": (df + astig / 2).astype("<f4"),
        "ctf/df2_A": (df - astig / 2).astype("<f4"),
        "ctf/df_angle_rad": rng.uniform(-np.pi, np.pi, n).astype("<f4"),
        "ctf/phase_shift_rad": full(n, 0.0, "<f4"),
        "ctf/scale": full(n, 1.0, "<f4"),
        "ctf/scale_const": full(n, 0.0, "<f4"),
        "ctf/shift_A": np.zeros((n, 2), "<f4"),
        "ctf/tilt_A": np.zeros((n, 2), "<f4"),
        "ctf/trefoil_A": np.zeros((n, 2), "<f4"),
        "ctf/tetra_A": np.zeros((n, 4), "<f4"),
        "ctf/anisomag": np.zeros((n, 4), "<f4"),
        "ctf/bfactor": full(n, 0.0, "<f4"),
    }


def ctf_stats_cols(rng: np.random.Generator, n: int) -> Cols:
    return {
        "ctf_stats/cross_corr_ctffind4": rng.uniform(0.05, 0.3, n).astype("<f4"),
        "ctf_stats/ctf_fit_to_A": rng.uniform(2.8, 6.0, n).astype("<f4"),
        "ctf_stats/df_range": np.tile(np.array([5000, 30000], "<f4"), (n, 1)),
        "ctf_stats/ice_thickness_rel": rng.uniform(1.0, 1.1, n).astype("<f4"),
        "ctf_stats/diag_image_shape": np.tile(np.array([512, 512], "<u4"), (n, 1)),
    }


def location_cols(rng: np.random.Generator, mic_uid: np.ndarray, mic_path: list[str], px: int,
                  psize: float) -> Cols:
    n = len(mic_uid)
    return {
        "location/micrograph_uid": mic_uid.astype("<u8"),
        "location/exp_group_id": full(n, 1, "<u4"),
        "location/micrograph_path": strings(mic_path),
        "location/micrograph_shape": np.tile(np.array([px, px], "<u4"), (n, 1)),
        "location/micrograph_psize_A": full(n, psize, "<f4"),
        "location/center_x_frac": rng.uniform(0.05, 0.95, n).astype("<f4"),
        "location/center_y_frac": rng.uniform(0.05, 0.95, n).astype("<f4"),
        "pick_stats/ncc_score": rng.uniform(0.2, 0.6, n).astype("<f4"),
        "pick_stats/power": rng.uniform(50, 400, n).astype("<f4"),
        "pick_stats/template_idx": full(n, 0, "<u4"),
        "pick_stats/angle_rad": full(n, 0.0, "<f4"),
    }


def blob_cols(paths: list[str], idx: np.ndarray, box: int, psize: float) -> Cols:
    n = len(paths)
    return {
        "blob/path": strings(paths),
        "blob/idx": idx.astype("<u4"),
        "blob/shape": np.tile(np.array([box, box], "<u4"), (n, 1)),
        "blob/psize_A": full(n, psize, "<f4"),
        "blob/sign": full(n, -1.0, "<f4"),
        "blob/import_sig": full(n, 0, "<u8"),
    }


def alignment_cols(rng: np.random.Generator, slot: str, n: int, classes: int, psize: float,
                   three_d: bool) -> Cols:
    pose = rng.uniform(-np.pi, np.pi, (n, 3) if three_d else n).astype("<f4")
    cols = {
        f"{slot}/split": rng.integers(0, 2, n).astype("<u4"),
        f"{slot}/shift": rng.normal(0, 2, (n, 2)).astype("<f4"),
        f"{slot}/pose": pose,
        f"{slot}/psize_A": full(n, psize, "<f4"),
        f"{slot}/error": rng.uniform(1e4, 2e4, n).astype("<f4"),
        f"{slot}/error_min": rng.uniform(1e4, 2e4, n).astype("<f4"),
        f"{slot}/resid_pow": rng.uniform(1e4, 2e4, n).astype("<f4"),
        f"{slot}/slice_pow": rng.uniform(1, 10, n).astype("<f4"),
        f"{slot}/image_pow": rng.uniform(1e4, 2e4, n).astype("<f4"),
        f"{slot}/cross_cor": rng.uniform(10, 100, n).astype("<f4"),
        f"{slot}/alpha": rng.uniform(0.5, 1.5, n).astype("<f4"),
        f"{slot}/weight": full(n, 1.0, "<f4"),
        f"{slot}/pose_ess": rng.uniform(1, 50, n).astype("<f4"),
        f"{slot}/shift_ess": rng.uniform(1, 50, n).astype("<f4"),
        f"{slot}/class_posterior": full(n, 1.0, "<f4"),
        f"{slot}/class": rng.integers(0, max(classes, 1), n).astype("<u4"),
        f"{slot}/class_ess": full(n, 1.0, "<f4"),
    }
    return cols


def volume_cols(slots: dict[str, str], box: int, psize: float) -> Cols:
    """One-row volume table: slot -> project-relative .mrc path."""
    cols: Cols = {}
    for slot, path in slots.items():
        cols |= {f"{slot}/path": strings([path]), f"{slot}/shape": np.array([[box] * 3], "<u4"),
                 f"{slot}/psize_A": full(1, psize, "<f4")}
    return cols


def template_cols(path: str, classes: int, box: int, psize: float) -> Cols:
    cols = blob_cols([path] * classes, np.arange(classes), box, psize)
    del cols["blob/import_sig"]
    return cols


def png_bytes(size: int = 8) -> bytes:
    """A small valid grey PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + bytes((x * 255 // size) for x in range(size)) for _ in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()
