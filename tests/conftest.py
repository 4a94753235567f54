"""Shared fixtures: temporary instances, the tiny demo project, and a CLI runner."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


@pytest.fixture
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is not beside the checkout")
    return REALDATA


FLAVOURS = ("legacy", "v4", "v5")   # csfs.core.demo_docs.FLAVOURS


@pytest.fixture(scope="session")
def demo_masters(tmp_path_factory):
    """flavour -> one tiny demo folder (project + raw data) per session, made on first use; tests copy it."""
    from csfs.core.demo import make_demo

    made: dict[str, Path] = {}

    def get(flavour: str = "v4") -> Path:
        if flavour not in made:
            root = tmp_path_factory.mktemp(f"demo-master-{flavour}")
            make_demo(root, scale="tiny", seed=1, flavour=flavour)
            made[flavour] = root
        return made[flavour]
    return get


@pytest.fixture(scope="session")
def _demo_master(demo_masters) -> Path:
    """The tiny v4 demo master (the default flavour)."""
    return demo_masters("v4")


def copy_demo(master: Path, dst: Path) -> Path:
    """Copy a demo folder (symlinks kept, import links repointed); returns the project directory."""
    shutil.copytree(master, dst, symlinks=True)
    # import symlinks point into the master's raw/ folder: repoint them at this copy's
    for link in dst.rglob("*"):
        if link.is_symlink():
            target = os.readlink(link)
            if target.startswith(str(master)):
                link.unlink()
                link.symlink_to(str(dst) + target[len(str(master)):])
    (project,) = [p for p in dst.iterdir() if p.name != "raw"]
    return project


@pytest.fixture
def demo(_demo_master, tmp_path) -> Path:
    """A fresh copy of the tiny v4 demo folder (symlinks kept); returns the project directory."""
    return copy_demo(_demo_master, tmp_path / "demo")


@pytest.fixture(params=FLAVOURS)
def flavour(request) -> str:
    """Each demo flavour in turn: legacy (<= v3.3), v4, v5."""
    return request.param


@pytest.fixture
def flavour_demo(flavour, demo_masters, tmp_path) -> Path:
    """A fresh copy of the tiny demo of `flavour`; returns the project directory."""
    return copy_demo(demo_masters(flavour), tmp_path / "demo")


def run_csfs(*args: str, home: Path | None = None, input: str | None = None,
             env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real `csfs` command line in a subprocess."""
    e = dict(os.environ)
    if home is not None:
        e["CSFS_HOME"] = str(home)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "csfs", *map(str, args)], capture_output=True,
                          text=True, input=input, env=e, timeout=timeout, cwd=REPO)


@pytest.fixture
def home(tmp_path) -> Path:
    """An empty instance home (CSFS_HOME) for one test."""
    return tmp_path / "home-A"


@pytest.fixture
def csfs():
    return run_csfs
