"""`csfs cs show`: what a CryoSPARC .cs file holds."""
from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, Any

from csfs.core.errors import UsageError
from csfs.output import print_json, print_table

from . import cli

if TYPE_CHECKING:
    import numpy as np


def register(sub: cli.Subparsers, common: argparse.ArgumentParser) -> None:
    cs = cli.group(sub, "cs", "inspect CryoSPARC .cs metadata files")
    p = cs.add_parser(
        "show", parents=[common], help="format, row count and fields of a .cs file",
        description="Show a .cs file's form (numpy = classic .npy, csdat = compressed "
                    "\\x95CSDAT), its row count and its fields with dtypes and shapes. "
                    "Malformed files are reported in one line with exit code 2.")
    p.add_argument("file", metavar="FILE", help="the .cs file")
    p.add_argument("--head", type=int, metavar="N", default=0,
                   help="also print the first N rows as a table (reads only those rows' data)")
    p.add_argument("--json", action="store_true",
                   help='machine-readable output: {"format", "rows", "fields": [{name, dtype, shape}], "head"} '
                        '(NaN and infinities in head are null)')
    p.set_defaults(func=show)


def show(args: argparse.Namespace) -> int:
    from csfs.core import csfile

    if args.head < 0:
        raise UsageError("--head takes a number of rows >= 0")
    info = csfile.info(args.file)
    fields = [{"name": n, "dtype": "str" if d in ("|O", "O") else d, "shape": list(s)}
              for n, d, s in info.fields]
    rows = _head(args.file, args.head) if args.head else None
    if args.json:
        out: dict[str, Any] = {"format": info.format, "rows": info.rows, "fields": fields}
        if rows is not None:
            out["head"] = [{n: _json_cell(r[n]) for n in r.dtype.names or ()} for r in rows]
        print_json(out)
        return 0
    print(f"{args.file}: {info.format} form, {info.rows} rows, {len(fields)} fields")
    print_table(([f["name"], f["dtype"], "x".join(map(str, f["shape"]))] for f in fields),
                ["FIELD", "DTYPE", "SHAPE"])
    if rows is not None:
        print()
        names = rows.dtype.names or ()
        print_table(([_text(r[n]) for n in names] for r in rows), list(names))
    return 0


def _head(path: str, n: int) -> np.ndarray:
    import numpy as np

    from csfs.core import csfile

    arr = csfile.load(path)
    return np.array(arr[:n])        # the classic form is memory-mapped: copies n rows only


def _plain(v: Any) -> Any:
    """A JSON-ready form of one cell."""
    if hasattr(v, "tolist"):            # numpy scalars and arrays
        v = v.tolist()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _json_cell(v: Any) -> Any:
    """One cell for strict JSON: NaN and infinities (not JSON) become null."""
    v = _plain(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_json_cell(x) for x in v]
    return v


def _text(v: Any) -> str:
    v = _plain(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return "[" + ",".join(_text(x) for x in v) + "]"
    return str(v)
