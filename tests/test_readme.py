"""The README's shell recipes run as written."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import REPO


def readme_block(marker: str) -> str:
    """The fenced code block that follows `<!-- marker -->` in README.md."""
    text = (REPO / "README.md").read_text()
    m = re.search(rf"<!-- {re.escape(marker)} -->\s*```\w*\n(.*?)```", text, re.S)
    assert m, f"README.md has no block marked {marker}"
    return m.group(1)


def test_tidy_up_after_the_demo(tmp_path, home):
    """The demo, attached as in README command 1, is tidied away by the README's recipe."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "csfs").write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m csfs "$@"\n')
    (bin_dir / "csfs").chmod(0o755)
    d = tmp_path / "d"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CSFS_HOME": str(home), "d": str(d)}
    setup = "csfs -q demo $d >/dev/null && csfs project attach $d/CS-csfs-demo >/dev/null && csfs project detach P1"
    r = subprocess.run(["bash", "-c", setup], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "J9" in r.stderr, r.stderr      # the problem the recipe solves
    r = subprocess.run(["bash", "-c", readme_block("tidy-demo")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert not d.exists()
    r = subprocess.run(["csfs", "project", "list", "--json"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and '"projects": []' in r.stdout


def test_ci_finds_the_test_command():
    """.ci/run runs the second ```sh block: it must stay the test command (other recipes use
    other fence names), and install the apt packages the suite needs."""
    r = subprocess.run(["awk", r"/^```sh$/{n++; next} /^```$/{if (n==2) exit} n==2", "README.md"],
                       capture_output=True, text=True, cwd=REPO)
    cmd = r.stdout.strip()
    assert "pip install -q -e '.[test]'" in cmd and "python3 -m pytest" in cmd, cmd
    for apt in ("fuse3", "libfuse2", "rsync", "groff-base"):
        assert re.search(rf"apt-get install .*\b{apt}\b", cmd), apt
