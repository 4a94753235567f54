"""The lint gate: ruff and mypy (configured in pyproject.toml) report nothing.

mypy must see the installed layout (csfs.core is core/, csfs.mountpoints is mountpoints/;
setuptools' package-dir maps them, which mypy cannot follow), so it checks a tree of
symlinks arranged that way and its findings are reported with the repository's paths.
`python3 tests/test_lint.py` prints the findings of both tools. Both are in the `test` extras;
a missing one fails the test (its error is the finding).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("csfs", "core", "mountpoints")


def run_ruff() -> tuple[int, str]:
    """ruff check over the sources and the tests, from the repository root."""
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format=concise", *SOURCES, "tests"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _installed_layout(tree: Path) -> Path:
    """tree/csfs: the csfs package with core/ and mountpoints/ as its subpackages (symlinks)."""
    pkg = tree / "csfs"
    pkg.mkdir(parents=True)
    for entry in (ROOT / "csfs").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for sub in ("core", "mountpoints"):
        (pkg / sub).symlink_to(ROOT / sub, target_is_directory=True)
    return pkg


def _env() -> dict[str, str]:
    """mypy finds csfs in its working directory only (not on PYTHONPATH)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}


def run_mypy() -> tuple[int, str]:
    """mypy over csfs, csfs.core and csfs.mountpoints; paths in its report are the repository's."""
    with tempfile.TemporaryDirectory(prefix="csfs-mypy-") as tmp:
        _installed_layout(Path(tmp))
        proc = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
             "--cache-dir", str(ROOT / ".mypy_cache"), "--no-error-summary", "--hide-error-context",
             "--no-color-output", "-p", "csfs"],
            cwd=tmp, env=_env(), capture_output=True, text=True, timeout=900,
        )
    out = proc.stdout + proc.stderr
    for sub in ("core", "mountpoints"):
        out = out.replace(f"csfs/{sub}/", f"{sub}/")
    return proc.returncode, out


def test_ruff_is_clean():
    code, out = run_ruff()
    assert code == 0, "ruff check found problems (`python3 -m ruff check --fix` fixes some):\n" + out


def test_mypy_is_clean():
    code, out = run_mypy()
    assert code == 0 and "error:" not in out, "mypy found problems:\n" + out


def test_mypy_sees_the_packages():
    """The gate is real: mypy resolves csfs.core/csfs.mountpoints to this checkout and reports a type error there."""
    with tempfile.TemporaryDirectory(prefix="csfs-mypy-") as tmp:
        pkg = _installed_layout(Path(tmp))
        (pkg / "lint_probe.py").write_text(
            "from csfs.core.errors import CsfsError\nfrom csfs.mountpoints import nodes\n\n"
            "bad: int = CsfsError('x')\n"
            "assert nodes\n")
        proc = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
             "--cache-dir", str(ROOT / ".mypy_cache"), "--follow-imports=silent", str(pkg / "lint_probe.py")],
            cwd=tmp, env=_env(), capture_output=True, text=True, timeout=900,
        )
    out = proc.stdout + proc.stderr
    assert "lint_probe.py:4: error: Incompatible types in assignment" in out, out
    assert "import-not-found" not in out and "import-untyped" not in out, out


if __name__ == "__main__":
    failed = 0
    for name, run in (("ruff", run_ruff), ("mypy", run_mypy)):
        code, out = run()
        print(f"== {name}: {'clean' if code == 0 else 'FINDINGS'}\n{out}", end="" if out.endswith("\n") else "\n")
        failed |= code != 0
    sys.exit(failed)
