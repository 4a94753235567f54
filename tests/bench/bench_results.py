"""Write one benchmark's section of tests/bench/RESULTS.md (between its start/end markers)."""
from __future__ import annotations

from pathlib import Path

from csfs.core import atomic

RESULTS = Path(__file__).with_name("RESULTS.md")


def write_section(name: str, title: str, body: str) -> None:
    """Replace (or append) the section `name` of RESULTS.md."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"{start}\n## {name}: {title}\n\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        text = text[:text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    atomic.write_text(RESULTS, text)
