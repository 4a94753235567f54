"""The test suite itself: every module the tests import is declared, and nothing skips silently."""
from __future__ import annotations

import ast
import re
import sys
from importlib import metadata

import pytest

from conftest import REPO

TESTS = REPO / "tests"


def _declared() -> set[str]:
    """Normalised names of the runtime dependencies and the `test` extras in pyproject.toml."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["test"]
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def _imported_modules() -> dict[str, str]:
    """Top-level modules the test files import -> the first file importing each."""
    local = {p.stem for p in TESTS.glob("*.py")} | {"csfs"}
    out: dict[str, str] = {}
    for f in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for n in names:
                top = n.split(".")[0]
                if top not in local and top not in sys.stdlib_module_names:
                    out.setdefault(top, f.name)
    return out


def test_every_module_the_tests_import_is_a_declared_dependency():
    declared = _declared()
    dists = metadata.packages_distributions()
    missing = []
    for module, where in sorted(_imported_modules().items()):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [])}
        if not names & declared:
            missing.append(f"{module} (imported by {where}; distribution {sorted(names) or '?'})")
    assert not missing, "add to pyproject's test extras: " + ", ".join(missing)


def test_no_silent_skips():
    """A test dependency that is missing fails; a skip names its reason in the summary (-ra)."""
    for f in sorted(set(TESTS.glob("*.py")) - {TESTS / "test_suite_hygiene.py"}):
        text = f.read_text()
        assert "importorskip(" not in text, \
            f"{f.name}: importorskip hides a missing test dependency; import it (it is in the extras)"
        for m in re.finditer(r"skipif\((.*?)\)\s*$", text, re.S | re.M):
            assert "reason=" in m.group(1), f"{f.name}: a skipif without a reason"
        assert "pytest.skip()" not in text, f"{f.name}: pytest.skip() without a reason"
