"""CryoSPARC `.cs` metadata files: read and write both on-disk forms.

* classic: a NumPy `.npy` file holding one 1-D structured array (memory-mapped on read);
* compressed: `\\x95CSDAT` + JSON header + one (optionally LZ4-block) column after
  another + a NUL-terminated string heap (what cryosparc-tools writes with CSDAT_FORMAT).

Either way `load` returns a 1-D structured array whose string fields are fixed-width
`|S<n>` (n = longest + 1), so the two forms of one dataset compare equal.
"""
from __future__ import annotations

import json
import mmap
import os
import struct
import tokenize
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import lz4.block
import numpy as np

from . import atomic, safeio
from .errors import CsfsError, FormatError, NotFoundError, UsageError

NUMPY_MAGIC = b"\x93NUMPY"
CSDAT_MAGIC = b"\x95CSDAT"
LEGACY_CSDAT_MAGIC = b"\x94CSDAT"
NEVER_COMPRESS = frozenset({"uid"})
MAX_HEADER = 1 << 32        # real headers exceed numpy's default limit of 10000
CHUNK_BYTES = 8 << 20       # rows copied per step when selecting columns of the classic form


class CsFormatError(FormatError):
    """A `.cs` file that is not a valid classic or compressed CryoSPARC dataset."""


@dataclass
class CsInfo:
    format: str                                # "numpy" | "csdat"
    rows: int
    fields: list[tuple[str, str, tuple]]       # (name, dtype string, sub-array shape)


@dataclass
class _Csdat:
    """A parsed compressed-form header plus where each column and the heap lie."""
    rows: int
    dtype: list[tuple[str, str, tuple]]        # strings keep "|O"
    compressed: set[str]
    columns: dict[str, tuple[int, int]]        # name -> (file offset, byte count)
    heap: tuple[int, int]                      # (file offset, byte count)


# ---------------------------------------------------------------- reading

def load(path: str | os.PathLike, fields: Sequence[str] | None = None) -> np.ndarray:
    """Read a `.cs` file (either form) as a 1-D structured array.

    With `fields`, only those columns are read (in that order). Without, the classic
    form comes back memory-mapped read-only, so opening a huge file costs nothing.
    """
    with _open(path) as f:
        kind = _sniff(f, path)
        if kind == "numpy":
            dtype, rows, offset = _numpy_header(f, path)
            if fields is None:
                if rows == 0:
                    return np.zeros(0, dtype)
                return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(rows,))
            return _numpy_columns(f, path, dtype, rows, offset, _select(path, dtype.names or (), fields))
        meta = _csdat_layout(f, path)
        names = [name for name, _, _ in meta.dtype]
        return _csdat_columns(f, path, meta, names if fields is None else _select(path, names, fields))


def info(path: str | os.PathLike) -> CsInfo:
    """Format, row count and fields of a `.cs` file, from its header alone."""
    with _open(path) as f:
        if _sniff(f, path) == "numpy":
            dtype, rows, _ = _numpy_header(f, path)
            fields = [(n, dtype[n].base.str, dtype[n].shape) for n in dtype.names or ()]
            return CsInfo("numpy", rows, fields)
        meta = _csdat_layout(f, path)
        return CsInfo("csdat", meta.rows, meta.dtype)


def is_path_field(name: str) -> bool:
    """Does a field name data files? `blob/path`, `map/path`, and `*_path` such as
    `location/micrograph_path`."""
    return "/" in name and name.endswith(("/path", "_path"))


def path_fields(arr_or_dtype: np.ndarray | np.dtype) -> list[str]:
    """The fields naming data files (`blob/path`, `map/path`, `location/micrograph_path`, ...)."""
    dtype = arr_or_dtype.dtype if isinstance(arr_or_dtype, np.ndarray) else arr_or_dtype
    return [n for n in (dtype.names or ()) if is_path_field(n)]


def _open(path: str | os.PathLike) -> IO[bytes]:
    return safeio.open_file(path)     # regular files only: a FIFO must not block


def _sniff(f: IO[bytes], path: str | os.PathLike) -> str:
    magic = f.read(6)
    if magic == NUMPY_MAGIC:
        return "numpy"
    if magic == CSDAT_MAGIC:
        return "csdat"
    if magic == LEGACY_CSDAT_MAGIC:
        raise CsFormatError(f"{path}: legacy snappy-compressed .cs (\\x94CSDAT) is not supported; "
                            "re-save it as numpy with cryosparc-tools")
    if not magic:
        raise CsFormatError(f"{path}: empty file, not a .cs file")
    raise CsFormatError(f"{path}: not a .cs file (starts with {magic!r}, "
                        "expected \\x93NUMPY or \\x95CSDAT)")


def _select(path: str | os.PathLike, names: Sequence[str], fields: Sequence[str]) -> list[str]:
    missing = [f for f in fields if f not in names]
    if missing:
        raise NotFoundError(f"{path}: no field {missing[0]!r} (list them with `csfs cs show`)")
    return list(dict.fromkeys(fields))


def _numpy_header(f: IO[bytes], path: str | os.PathLike) -> tuple[np.dtype, int, int]:
    """(dtype, rows, data offset) of a classic-form file positioned after its magic."""
    fmt = np.lib.format
    try:
        f.seek(0)
        version = fmt.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy version {version}")
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _fortran, dtype = reader(f, max_header_size=MAX_HEADER)
    except (ValueError, SyntaxError, TypeError, EOFError, tokenize.TokenError) as e:
        raise CsFormatError(f"{path}: bad .npy header ({e})") from None
    if dtype.hasobject:
        raise CsFormatError(f"{path}: holds Python objects (a pickled array); refusing to load it")
    if dtype.names is None or len(shape) != 1:
        raise CsFormatError(f"{path}: not a 1-D structured array (shape {shape}, dtype {dtype})")
    rows, offset = shape[0], f.tell()
    _check_size(path, rows, rows * dtype.itemsize, os.fstat(f.fileno()).st_size - offset)
    return dtype, rows, offset


def _check_size(path: str | os.PathLike, rows: int, need: int, have: int, what: str = "the file holds") -> None:
    if have < need:
        raise CsFormatError(f"{path}: truncated: the header says {rows} rows ({need} bytes) "
                            f"but {what} only {have} bytes")
    if have > need:
        raise CsFormatError(f"{path}: the header's row count ({rows}) is wrong: it needs "
                            f"{need} bytes but {what} {have}")


def _numpy_columns(f: IO[bytes], path: str | os.PathLike, dtype: np.dtype, rows: int, offset: int,
                   names: list[str]) -> np.ndarray:
    """Copy only `names` out of the memory-mapped rows, a chunk at a time."""
    out = np.empty(rows, _packed([(n, dtype[n]) for n in names]))

    def copy(start: int, chunk: np.ndarray) -> None:
        for name in names:
            out[name][start:start + len(chunk)] = chunk[name]
    _numpy_scan(f, dtype, rows, offset, copy)
    return out


def _numpy_scan(f: IO[bytes], dtype: np.dtype, rows: int, offset: int,
                visit: Callable[[int, np.ndarray], None]) -> None:
    """Call visit(first row, rows) on ~CHUNK_BYTES chunks of a memory map of the classic
    form; pages already visited are dropped (MADV_DONTNEED) so memory stays bounded."""
    if not rows:
        return
    with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
        data = np.frombuffer(mm, dtype, rows, offset)
        step, dropped = max(1, CHUNK_BYTES // dtype.itemsize), 0
        for start in range(0, rows, step):
            chunk = data[start:start + step]
            visit(start, chunk)
            done = (offset + (start + len(chunk)) * dtype.itemsize) // mmap.PAGESIZE * mmap.PAGESIZE
            if hasattr(mm, "madvise") and done > dropped:
                mm.madvise(mmap.MADV_DONTNEED, dropped, done - dropped)
                dropped = done
        del data, chunk                 # release the buffer exports before the map closes


def load_strings(path: str | os.PathLike, field: str) -> tuple[np.ndarray, np.ndarray]:
    """One string column as (distinct values, per-row codes): `values[codes]` is the column.

    Values are fixed-width `|S` in order of first appearance; codes are uint32. Paths
    repeat (one per micrograph), so this costs a small fraction of the `|S` column.
    """
    with _open(path) as f:
        if _sniff(f, path) == "numpy":
            dtype, rows, offset = _numpy_header(f, path)
            _select(path, dtype.names or (), [field])
            if dtype[field].kind != "S" or dtype[field].shape:
                raise UsageError(f"{path}: field {field!r} is not a string column")
            codes = np.empty(rows, np.uint32)
            index: dict[bytes, int] = {}

            def encode(start: int, chunk: np.ndarray) -> None:
                local, inverse = _first_seen(chunk[field])
                mapped = np.array([index.setdefault(v, len(index)) for v in local.tolist()], np.uint32)
                codes[start:start + len(chunk)] = mapped[inverse]
            _numpy_scan(f, dtype, rows, offset, encode)
            return np.array(list(index), dtype[field]), codes
        meta = _csdat_layout(f, path)
        spec = {name: dstr for name, dstr, _ in meta.dtype}
        _select(path, list(spec), [field])
        if spec[field] not in ("|O", "O"):
            raise UsageError(f"{path}: field {field!r} is not a string column")
        if not meta.rows:
            return np.zeros(0, "S1"), np.zeros(0, np.uint32)
        offsets, heap = _csdat_raw(f, path, meta, field)
        local, inverse = _first_seen(offsets.ravel())
        return _heap_strings(path, field, heap(), local), inverse.astype(np.uint32)


def _first_seen(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of `col` in order of first appearance, and each row's index into them."""
    uniq, first, inverse = np.unique(col, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty(len(order), np.intp)
    rank[order] = np.arange(len(order))
    return uniq[order], rank[inverse.ravel()]


def _csdat_layout(f: IO[bytes], path: str | os.PathLike) -> _Csdat:
    """Parse the header of a compressed-form file and locate each column by seeking."""
    size = os.fstat(f.fileno()).st_size
    hlen = _u32(f, path, "header length")
    raw = f.read(hlen)
    if len(raw) < hlen:
        raise CsFormatError(f"{path}: truncated inside the CSDAT header")
    try:
        header = safeio.parse_json(raw, "header")
        rows = header["length"]
        dtype = [(str(d[0]), str(d[1]), tuple(d[2]) if len(d) > 2 else ()) for d in header["dtype"]]
        compression = header.get("compression")
        compressed = set(header.get("compressed_fields") or [])
    except FormatError as e:
        raise CsFormatError(f"{path}: bad CSDAT {e}") from None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise CsFormatError(f"{path}: bad CSDAT header ({type(e).__name__}: {e})") from None
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise CsFormatError(f"{path}: bad CSDAT header (length {rows!r})")
    if compression not in (None, "lz4"):
        raise CsFormatError(f"{path}: unsupported CSDAT compression {compression!r}")
    names = [d[0] for d in dtype]
    if len(set(names)) != len(names) or not compressed <= set(names) or (compressed and not compression):
        raise CsFormatError(f"{path}: bad CSDAT header (duplicate or unknown field names)")
    row_bytes = {name: _column_dtype(path, name, dstr).itemsize * _shape_items(path, name, shape)
                 for name, dstr, shape in dtype}
    columns: dict[str, tuple[int, int]] = {}
    pos = f.tell()
    for name in names if rows else ():        # empty datasets have no column section
        count = _u32(f, path, f"size of column {name!r}")
        pos += 4
        if pos + count > size:
            raise CsFormatError(f"{path}: truncated in column {name!r}")
        need = rows * row_bytes[name]
        # LZ4 expands a block at most ~255 times: a header claiming more is lying
        lying = need > 255 * count + 64 if name in compressed else need != count
        if lying:
            raise CsFormatError(f"{path}: column {name!r} holds {count} bytes, which cannot be the "
                                f"{rows} rows the header claims")
        columns[name] = (pos, count)
        pos += count
        f.seek(pos)
    return _Csdat(rows, dtype, compressed, columns, (pos, size - pos))


MAX_ROW_BYTES = 1 << 24    # one field of one row: real ones are at most a few KiB


def _shape_items(path: str | os.PathLike, name: str, shape: tuple) -> int:
    """Elements per row of a field with sub-array `shape` (a list of small non-negative ints)."""
    n = 1
    if len(shape) > 32 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise CsFormatError(f"{path}: field {name!r} has a bad shape {list(shape)!r}")
    for d in shape:
        n *= d
    if n > MAX_ROW_BYTES:
        raise CsFormatError(f"{path}: field {name!r} has an implausible shape {list(shape)!r}")
    return n


def _u32(f: IO[bytes], path: str | os.PathLike, what: str) -> int:
    raw = f.read(4)
    if len(raw) < 4:
        raise CsFormatError(f"{path}: truncated before the {what}")
    return struct.unpack("<I", raw)[0]


def _column_dtype(path: str | os.PathLike, name: str, dstr: str) -> np.dtype:
    """The stored element dtype of a column (strings are stored as u64 heap offsets)."""
    try:
        dt = np.dtype("<u8" if dstr in ("|O", "O") else dstr)
    except (TypeError, ValueError, SyntaxError):
        raise CsFormatError(f"{path}: field {name!r} has unknown dtype {dstr!r}") from None
    if dt.hasobject or dt.names is not None or dt.shape:
        raise CsFormatError(f"{path}: field {name!r} has unsupported dtype {dstr!r}")
    return dt


def _csdat_raw(f: IO[bytes], path: str | os.PathLike, meta: _Csdat,
               name: str) -> tuple[np.ndarray, Callable[[], bytes]]:
    """One column as stored (strings as u64 heap offsets), and a loader of the heap."""
    (dstr, shape), = [(d, sh) for n, d, sh in meta.dtype if n == name]
    stored = _column_dtype(path, name, dstr)
    offset, count = meta.columns[name]
    f.seek(offset)
    data = f.read(count)
    need = meta.rows * stored.itemsize * int(np.prod(shape, dtype=np.int64))
    if name in meta.compressed:
        try:
            data = lz4.block.decompress(data, uncompressed_size=need)
        except lz4.block.LZ4BlockError:
            raise CsFormatError(f"{path}: column {name!r} is corrupt or holds more than the "
                                f"header's {meta.rows} rows") from None
    _check_size(path, meta.rows, need, len(data), f"column {name!r} holds")

    def heap() -> bytes:
        f.seek(meta.heap[0])
        return f.read(meta.heap[1])
    return np.frombuffer(data, stored).reshape(meta.rows, *shape), heap


def _csdat_columns(f: IO[bytes], path: str | os.PathLike, meta: _Csdat, names: list[str]) -> np.ndarray:
    """Decode only the columns in `names`; strings become fixed-width |S."""
    spec = {name: (dstr, shape) for name, dstr, shape in meta.dtype}
    cols: dict[str, np.ndarray] = {}
    heap = None
    for name in names:
        dstr, shape = spec[name]
        if not meta.rows:
            cols[name] = np.zeros((0, *shape), "S1" if dstr in ("|O", "O") else _column_dtype(path, name, dstr))
            continue
        col, load_heap = _csdat_raw(f, path, meta, name)
        if dstr in ("|O", "O"):
            if heap is None:
                heap = load_heap()
            col = _heap_strings(path, name, heap, col)
        cols[name] = col
    out = np.empty(meta.rows, _packed([(n, np.dtype((cols[n].dtype, cols[n].shape[1:]))) for n in names]))
    step = max(256, (1 << 20) // max(1, out.dtype.itemsize))   # fill ~1 MiB of rows at a time,
    for start in range(0, meta.rows, step):                     # cache-friendly column -> row copy
        block = out[start:start + step]
        for name in names:
            block[name] = cols[name][start:start + step]
    return out


def _heap_strings(path: str | os.PathLike, name: str, heap: bytes, offsets: np.ndarray) -> np.ndarray:
    """Turn u64 heap offsets into a fixed-width |S array (width = longest + 1)."""
    uniq, inverse = np.unique(offsets.ravel(), return_inverse=True)
    nuls = np.flatnonzero(np.frombuffer(heap, np.uint8) == 0)
    where = np.searchsorted(nuls, uniq)
    if len(uniq) and where[-1] >= len(nuls):
        raise CsFormatError(f"{path}: column {name!r} points outside the string heap")
    ends = nuls[where]
    width = int((ends - uniq).max(initial=0)) + 1
    strings = np.array([heap[s:e] for s, e in zip(uniq.tolist(), ends.tolist(), strict=True)], f"S{width}")
    return strings[inverse.reshape(offsets.shape)] if len(uniq) else np.zeros(offsets.shape, "S1")


def _packed(fields: list[tuple[str, np.dtype]]) -> np.dtype:
    return np.dtype([(n, dt.base, dt.shape) for n, dt in fields])


# ---------------------------------------------------------------- writing

def save(path: str | os.PathLike, arr: np.ndarray, compressed: bool = False) -> None:
    """Atomically write `arr` as a `.cs` file: classic numpy form (what CryoSPARC writes)
    unless `compressed`, then the LZ4 `\\x95CSDAT` form."""
    arr = _normalize(arr)
    atomic.write_file(path, lambda f: _write(f, arr, compressed))


def dumps(arr: np.ndarray, compressed: bool = False) -> bytes:
    """The bytes `save` would write."""
    import io

    buf = io.BytesIO()
    _write(buf, _normalize(arr), compressed)
    return buf.getvalue()


def _write(f: IO[bytes], arr: np.ndarray, compressed: bool) -> None:
    if compressed:
        for chunk in _csdat_chunks(arr):
            f.write(chunk)
    else:
        np.lib.format.write_array(f, arr, allow_pickle=False)


def _normalize(arr: np.ndarray) -> np.ndarray:
    """A packed little-endian 1-D structured array with strings as |S(longest + 1)."""
    arr = np.asarray(arr)
    if arr.dtype.names is None or arr.ndim != 1:
        raise UsageError(f"a .cs file holds a 1-D structured array, not {arr.ndim}-D {arr.dtype}")
    cols, fields = {}, []
    for name in arr.dtype.names:
        col, dt = arr[name], arr.dtype[name]
        if dt.base.kind in "OU":
            col = _encode(name, col)
        if col.dtype.kind == "S":
            width = int(np.char.str_len(col).max(initial=0)) + 1
            base = np.dtype(f"S{width}")
        else:
            base = col.dtype.newbyteorder("<") if col.dtype.byteorder == ">" else col.dtype
        cols[name] = col
        fields.append((name, base, dt.shape))
    dtype = np.dtype(fields)
    if dtype == arr.dtype and arr.flags.c_contiguous:
        return arr
    out = np.empty(len(arr), dtype)
    for name, col in cols.items():
        out[name] = col
    return out


def _encode(name: str, col: np.ndarray) -> np.ndarray:
    if col.dtype.kind == "U":
        return np.char.encode(col, "utf-8")
    flat = col.ravel().tolist()
    if not all(isinstance(v, (str, bytes)) for v in flat):
        raise UsageError(f"field {name!r} holds Python objects other than strings")
    enc = [v.encode() if isinstance(v, str) else v for v in flat]
    return np.array(enc, dtype=f"S{max(map(len, enc), default=0) + 1}").reshape(col.shape)


def _csdat_chunks(arr: np.ndarray) -> Iterator[bytes]:
    """The compressed form: magic, header, one column after another, string heap."""
    names = arr.dtype.names or ()
    strings = [n for n in names if arr.dtype[n].base.kind == "S"]
    compressed = [n for n in names if n not in NEVER_COMPRESS]
    dtype = [[n, "|O" if n in strings else arr.dtype[n].base.str, *([list(arr.dtype[n].shape)]
             if arr.dtype[n].shape else [])] for n in names]
    header = json.dumps({"length": len(arr), "dtype": dtype, "compression": "lz4",
                         "compressed_fields": compressed}).encode()
    yield CSDAT_MAGIC + struct.pack("<I", len(header)) + header
    heap, where = [b""], {b"": 0}
    size = 1
    for name in names if len(arr) else ():
        col = arr[name]
        if name in strings:
            uniq, inverse = np.unique(col.ravel(), return_inverse=True)
            offs = np.empty(len(uniq), "<u8")
            for i, s in enumerate(uniq.tolist()):
                if s not in where:
                    where[s] = size
                    heap.append(s)
                    size += len(s) + 1
                offs[i] = where[s]
            col = offs[inverse].reshape(col.shape)
        data = np.ascontiguousarray(col).tobytes()
        if name in compressed:
            data = lz4.block.compress(data, store_size=False)
        yield struct.pack("<I", len(data))
        yield data
    yield b"\0".join(heap) + b"\0"


def is_cs(path: str | os.PathLike) -> bool:
    """True when `path` starts like a `.cs` file of either form."""
    try:
        with safeio.open_file(path) as f:
            return f.read(6) in (NUMPY_MAGIC, CSDAT_MAGIC)
    except CsfsError:
        return False


__all__ = ["CsFormatError", "CsInfo", "load", "info", "save", "dumps", "path_fields", "is_cs"]
