"""A tiny MRC2014 writer/reader for the demo's data files (images, stacks, volumes)."""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER_SIZE = 1024
# MRC mode -> numpy dtype (little-endian)
MODES: dict[int, np.dtype] = {0: np.dtype("i1"), 1: np.dtype("<i2"), 2: np.dtype("<f4"), 6: np.dtype("<u2"),
                              12: np.dtype("<f2")}


@dataclass(frozen=True)
class MrcHeader:
    nx: int
    ny: int
    nz: int
    mode: int
    voxel_size: float
    ispg: int
    label: str

    @property
    def data_size(self) -> int:
        return self.nx * self.ny * self.nz * MODES[self.mode].itemsize

    @property
    def file_size(self) -> int:
        return HEADER_SIZE + self.data_size


def header_bytes(shape: tuple[int, int, int], mode: int = 2, voxel_size: float = 1.0,
                 volume: bool = False, stats: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
                 label: str = "") -> bytes:
    """The 1024-byte MRC2014 header for data of `shape` (nz, ny, nx).

    `volume` sets ISPG 1 (a 3-D map); otherwise ISPG 0 (an image or image stack).
    `stats` is (dmin, dmax, dmean, rms).
    """
    if mode not in MODES:
        raise ValueError(f"unsupported MRC mode {mode}")
    nz, ny, nx = (int(v) for v in shape)
    h = bytearray(HEADER_SIZE)
    mz = nz if volume else 1
    struct.pack_into("<10i", h, 0, nx, ny, nz, mode, 0, 0, 0, nx, ny, mz)
    struct.pack_into("<6f", h, 40, nx * voxel_size, ny * voxel_size, mz * voxel_size, 90.0, 90.0, 90.0)
    struct.pack_into("<3i", h, 64, 1, 2, 3)
    dmin, dmax, dmean, rms = stats
    struct.pack_into("<3f", h, 76, dmin, dmax, dmean)
    struct.pack_into("<2i", h, 88, 1 if volume else 0, 0)       # ISPG, NSYMBT
    struct.pack_into("<4s", h, 104, b"MRCO")                     # EXTTYP
    struct.pack_into("<i", h, 108, 20140)                        # NVERSION
    struct.pack_into("<3f", h, 196, 0.0, 0.0, 0.0)               # ORIGIN
    h[208:212] = b"MAP "
    h[212:216] = b"\x44\x44\x00\x00"                               # little-endian stamp
    struct.pack_into("<f", h, 216, rms)
    labels = [label[:80]] if label else []
    struct.pack_into("<i", h, 220, len(labels))
    for i, text in enumerate(labels):
        h[224 + 80 * i:224 + 80 * (i + 1)] = text.encode("ascii", "replace").ljust(80)
    return bytes(h)


def write(path: str | os.PathLike, data: np.ndarray | None = None, *, shape: tuple[int, int, int] | None = None,
          mode: int = 2, voxel_size: float = 1.0, volume: bool = False, label: str = "") -> int:
    """Write an MRC file; returns its size.

    With `data` (2-D or 3-D) the values are written. With only `shape`, the data
    section is left sparse (the file is truncated to its full size), which is how the
    demo makes large files cheaply.
    """
    if data is not None:
        arr = np.asarray(data)
        if arr.ndim == 2:
            arr = arr[None]
        found = [k for k, v in MODES.items() if v == arr.dtype]
        if not found:
            raise ValueError(f"no MRC mode for dtype {data.dtype}")
        mode = found[0]
        f = arr.astype(np.float64)
        stats = (float(f.min()), float(f.max()), float(f.mean()), float(f.std())) if arr.size else (0, 0, 0, 0)
        head = header_bytes(arr.shape, mode, voxel_size, volume, stats, label)
        with open(path, "wb") as fh:
            fh.write(head)
            fh.write(np.ascontiguousarray(arr).tobytes())
        return HEADER_SIZE + arr.nbytes
    if shape is None:
        raise ValueError("give data or shape")
    head = header_bytes(shape, mode, voxel_size, volume, label=label)
    size = HEADER_SIZE + int(np.prod(shape)) * MODES[mode].itemsize
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)
    return size


def read_header(path: str | os.PathLike) -> MrcHeader:
    """Parse the main fields of an MRC header; ValueError if it is not one."""
    from . import safeio
    with safeio.open_file(path) as fh:     # a FIFO or device among raw data must not hang us
        h = fh.read(HEADER_SIZE)
    if len(h) < HEADER_SIZE or h[208:212] != b"MAP ":
        raise ValueError(f"{path}: not an MRC2014 file")
    nx, ny, nz, mode = struct.unpack_from("<4i", h, 0)
    mx = struct.unpack_from("<i", h, 28)[0]
    xlen = struct.unpack_from("<f", h, 40)[0]
    ispg = struct.unpack_from("<i", h, 88)[0]
    nlabl = struct.unpack_from("<i", h, 220)[0]
    label = h[224:304].decode("ascii", "replace").rstrip() if nlabl else ""
    return MrcHeader(nx, ny, nz, mode, xlen / mx if mx else 0.0, ispg, label)


def read(path: str | os.PathLike) -> np.ndarray:
    """The data of an MRC file as an array of shape (nz, ny, nx)."""
    h = read_header(path)
    arr = np.fromfile(Path(path), dtype=MODES[h.mode], offset=HEADER_SIZE, count=h.nx * h.ny * h.nz)
    return arr.reshape(h.nz, h.ny, h.nx)
