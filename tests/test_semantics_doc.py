"""SEMANTICS.md keeps its promise: every row of every table names at least one test, and
every test it names exists (a renamed or deleted test fails here)."""
from __future__ import annotations

import re

from conftest import REPO

DOC = REPO / "SEMANTICS.md"
FILE_REF = re.compile(r"`(tests/[\w/]+\.py)(?:::(test_\w+))?[^`]*`")
BARE_REF = re.compile(r"`(test_\w+)(?:\[[^\]]*\])?`")


def _defined() -> dict[str, set[str]]:
    """test file -> the test functions it defines."""
    out = {}
    for f in (REPO / "tests").rglob("test_*.py"):
        out[str(f.relative_to(REPO))] = set(re.findall(r"^def (test_\w+)\(", f.read_text(), re.M))
    return out


def _rows() -> list[str]:
    rows = []
    for line in DOC.read_text().splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[-:| ]+\|", line):
            rows.append(line)
    return rows


def test_every_row_names_a_test_that_exists():
    defined = _defined()
    everywhere = set().union(*defined.values())
    rows = _rows()
    headers = {r for r in rows if r.split("|")[-2].strip() == "test"}
    assert len(rows) - len(headers) > 40
    for row in rows:
        if row in headers:
            continue
        refs = FILE_REF.findall(row) + [(None, n) for n in BARE_REF.findall(row)]
        assert refs, f"a row without a test: {row[:100]}"
        for path, name in refs:
            if path is not None:
                assert path in defined, f"{path} does not exist"
                assert not name or name in defined[path], f"{path}::{name} does not exist"
            else:
                assert name in everywhere, f"{name} is not a test in tests/"


def test_readme_links_it():
    assert "(SEMANTICS.md)" in (REPO / "README.md").read_text()
