"""Raw data files for import jobs: which files a pattern or folder means, and their headers.

Like CryoSPARC's import jobs, a path may be a glob pattern (`/raw/session1/*.tif`); a folder
means the files in it that match the kind's default patterns, so EPU sidecars (`.jpg`,
`.xml`) and other files are skipped and counted. Every selected file's header is read and
checked (MRC, TIFF, EER): a file that is not what its name says is refused by name before
anything is imported.
"""
from __future__ import annotations

import fnmatch
import glob
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FormatError, NotFoundError, UsageError

# the kind's files in a folder (matched case-insensitively); everything else there is skipped
PATTERNS: dict[str, tuple[str, ...]] = {
    "movies": ("*.tif", "*.tiff", "*.eer", "*.mrc", "*.mrcs"),
    "micrographs": ("*.mrc", "*.tif", "*.tiff"),
    "particles": ("*.mrc", "*.mrcs"),
    "volume": ("*.mrc", "*.map"),
}
MRC_SUFFIXES = (".mrc", ".mrcs", ".map")
TIFF_SUFFIXES = (".tif", ".tiff", ".eer")
MRC_MODE_BITS = {0: 8, 1: 16, 2: 32, 3: 32, 4: 64, 6: 16, 12: 16, 101: 4}
MAX_FRAMES = 1_000_000


@dataclass(frozen=True)
class RawFile:
    """One raw data file and what its header says."""

    path: Path
    format: str                         # "mrc" | "tiff" | "eer"
    shape: tuple[int, int, int]         # (frames or sections, ny, nx)
    psize: float = 0.0                  # pixel size in Å (MRC only; 0 when unknown)


@dataclass
class Selection:
    """The files to import, and the files a folder held that were not of the kind."""

    files: list[RawFile] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)   # what was matched, for the report


def is_pattern(path: str) -> bool:
    return any(c in path for c in "*?[")


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name.lower(), p) for p in patterns)


def select(kind: str, paths: Sequence[str | os.PathLike]) -> Selection:
    """The files `paths` (files, folders, glob patterns) name for an import of `kind`, with
    their headers checked; UsageError/NotFoundError/FormatError (naming the file) otherwise."""
    if kind not in PATTERNS:
        raise UsageError(f"--kind must be one of {', '.join(PATTERNS)}, not {kind!r}")
    sel, chosen = Selection(), []
    for raw in paths:
        text = os.path.expanduser(os.fspath(raw))
        if is_pattern(text):
            hits = sorted(Path(p).absolute() for p in glob.glob(text) if os.path.isfile(p))
            if not hits:
                raise NotFoundError(f"{text}: the pattern matches no files; nothing imported")
            chosen += hits
            sel.patterns.append(text)
            continue
        p = Path(text).absolute()
        if p.is_dir():
            files = sorted(q for q in p.iterdir() if q.is_file())
            chosen += [q for q in files if _matches(q.name, PATTERNS[kind])]
            sel.skipped += [q for q in files if not _matches(q.name, PATTERNS[kind])]
            sel.patterns += [str(p / pat) for pat in PATTERNS[kind]]
        elif p.is_file():
            chosen.append(p)
            sel.patterns.append(str(p))
        else:
            raise NotFoundError(f"{p}: no such file or directory; nothing imported")
    if not chosen:
        raise UsageError(f"no {kind} files to import ({', '.join(PATTERNS[kind])}"
                         f"{'; skipped ' + str(len(sel.skipped)) + ' other file(s)' if sel.skipped else ''})")
    names = [p.name for p in chosen]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise UsageError(f"two files are named {dups[0]!r}; import them in separate jobs")
    sel.files = [read_header(p) for p in chosen]
    return sel


def read_header(path: Path) -> RawFile:
    """The checked header of one raw file, chosen by its suffix; FormatError names the file."""
    suffix = path.suffix.lower()
    try:
        if suffix in MRC_SUFFIXES:
            return _mrc(path)
        if suffix in TIFF_SUFFIXES:
            return _tiff(path, "eer" if suffix == ".eer" else "tiff")
    except OSError as e:
        raise FormatError(f"{path}: cannot be read ({e.strerror or e}); nothing imported") from None
    raise UsageError(f"{path}: not a format csfs imports (.mrc, .mrcs, .map, .tif, .tiff, .eer); "
                     "choose a narrower pattern; nothing imported")


def _bad(path: Path, what: str, why: str) -> FormatError:
    return FormatError(f"{path}: not a valid {what} file ({why}); nothing imported")


def _mrc(path: Path) -> RawFile:
    with open(path, "rb") as f:
        h = f.read(1024)
        size = os.fstat(f.fileno()).st_size
    if len(h) < 1024:
        raise _bad(path, "MRC", f"{len(h)} bytes, shorter than the 1024-byte header")
    nx, ny, nz, mode = struct.unpack_from("<4i", h, 0)
    if mode not in MRC_MODE_BITS or not (0 < nx <= 1 << 20 and 0 < ny <= 1 << 20 and 0 < nz <= 1 << 24):
        raise _bad(path, "MRC", f"header says {nx}x{ny}x{nz} in mode {mode}")
    nsymbt = struct.unpack_from("<i", h, 92)[0]
    need = 1024 + max(nsymbt, 0) + (nx * ny * nz * MRC_MODE_BITS[mode] + 7) // 8
    if size < need:
        raise _bad(path, "MRC", f"{size} bytes, but its header needs {need}: truncated")
    mx = struct.unpack_from("<i", h, 28)[0]
    xlen = struct.unpack_from("<f", h, 40)[0]
    psize = xlen / mx if mx > 0 and xlen == xlen and xlen > 0 else 0.0
    return RawFile(path, "mrc", (nz, ny, nx), float(psize))


def _tiff(path: Path, fmt: str) -> RawFile:
    """Frames and size from the IFD chain of a TIFF or BigTIFF (EER files are TIFFs)."""
    what = fmt.upper()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(16)
        if head[:4] in (b"II*\0", b"MM\0*"):
            big = False
        elif head[:4] in (b"II+\0", b"MM\0+"):
            big = True
        else:
            raise _bad(path, what, "no TIFF signature")
        e = "<" if head[:2] == b"II" else ">"
        count_fmt, entry_size, off_fmt = ("Q", 20, "Q") if big else ("H", 12, "I")
        offset = struct.unpack_from(e + off_fmt, head, 8 if big else 4)[0]
        frames, width, length, seen = 0, 0, 0, set()
        while offset:
            if offset in seen or offset + 8 > size or frames >= MAX_FRAMES:
                raise _bad(path, what, "damaged directory chain")
            seen.add(offset)
            f.seek(offset)
            n = struct.unpack(e + count_fmt, f.read(struct.calcsize(count_fmt)))[0]
            block = f.read(n * entry_size + struct.calcsize(off_fmt))
            if len(block) < n * entry_size + struct.calcsize(off_fmt):
                raise _bad(path, what, "truncated")
            if frames == 0:
                width, length = _tiff_dims(block, n, e, big)
            frames += 1
            offset = struct.unpack_from(e + off_fmt, block, n * entry_size)[0]
    if not frames or width <= 0 or length <= 0:
        raise _bad(path, what, "no image size in its first directory")
    return RawFile(path, fmt, (frames, length, width))


def _tiff_dims(block: bytes, n: int, e: str, big: bool) -> tuple[int, int]:
    """ImageWidth (256) and ImageLength (257) of one IFD's entries."""
    dims = {256: 0, 257: 0}
    entry = 20 if big else 12
    for i in range(n):
        tag, typ = struct.unpack_from(e + "HH", block, i * entry)
        if tag in dims:
            value_at = i * entry + (12 if big else 8)
            dims[tag] = struct.unpack_from(e + {3: "H", 16: "Q"}.get(typ, "I"), block, value_at)[0]
    return dims[256], dims[257]
