"""Output helpers: aligned tables, JSON for scripts, and terminal progress bars."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

QUIET = False   # -q: no progress bars


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(rows: Iterable[Sequence[Any]], headers: Sequence[str], right: Sequence[str] = ()) -> None:
    """Print rows as an aligned text table; columns named in `right` are right-aligned."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))

    def fmt(row: Sequence[str]) -> str:
        parts = [v.rjust(w) if h in right else v.ljust(w) for v, w, h in zip(row, widths, headers, strict=False)]
        return "  ".join(parts).rstrip()

    print(fmt(list(headers)))
    for row in cells:
        print(fmt(row))


def human_bytes(n: int | float) -> str:
    """1536 -> '1.5 KiB'."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


class Progress:
    """A progress bar on stderr, drawn only when stderr is a terminal.

    Call it as core's progress callback: progress(done, total) with total None when
    unknown. Use as a context manager so the line is finished at the end.
    """

    def __init__(self, label: str, enabled: bool | None = None) -> None:
        self.label = label
        self.enabled = (sys.stderr.isatty() and not QUIET) if enabled is None else enabled
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and (total is None or done < total):
            return
        self._last = now
        if total:
            frac = min(1.0, done / total)
            bar = "#" * int(frac * 30)
            line = f"\r{self.label} [{bar:<30}] {done}/{total}"
        else:
            line = f"\r{self.label} {done}"
        sys.stderr.write(line)
        sys.stderr.flush()
        self._drawn = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
