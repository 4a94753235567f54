"""The Python API (csfs.api, re-exported as csfs.<name>): the README example runs as written,
using only public names, and errors are the CLI's."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

import csfs
from conftest import REPO, run_csfs
from test_readme import readme_block


def test_readme_example_runs(tmp_path):
    code = readme_block("api-example")
    env = {**os.environ, "CSFS_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "refused:" in r.stdout and "J9" in r.stdout
    assert "J5/extract/" in r.stdout            # a project-relative data path
    projects = csfs.open_instance(tmp_path / "home").projects()
    assert [(p["uid"], p["title"]) for p in projects] == [("P2", "Reprocessing")]


def test_readme_example_uses_only_the_public_api():
    tree = ast.parse(readme_block("api-example"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert all(m == "csfs" or not m.startswith("csfs") for m in mods), mods
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "csfs":
            assert node.attr in csfs.api.__all__, node.attr


def test_every_public_name_is_documented():
    for name in csfs.api.__all__:
        obj = getattr(csfs, name)
        assert obj is getattr(csfs.api, name) and (obj.__doc__ or "").strip(), name
    for cls in (csfs.Instance, csfs.Project):
        for attr, member in vars(cls).items():
            if not attr.startswith("_") and callable(member):
                assert (member.__doc__ or "").strip(), f"{cls.__name__}.{attr}"


def test_errors_are_the_clis(tmp_path):
    home = tmp_path / "home"
    with pytest.raises(csfs.NotFoundError) as e:
        csfs.open_project("P9", home=home)
    r = run_csfs("project", "show", "P9", home=home)
    assert r.returncode == e.value.exit_code == 2 and r.stderr.strip() == f"csfs: {e.value}"
    # an unregistered directory reads, and refuses changes with the CLI's error
    demo = csfs.write_demo(tmp_path / "d")
    proj = csfs.open_project(demo, home=home)
    assert proj.uid is None and proj.state is None and len(proj.jobs()) == 10
    assert "particles" in {g.name for g in proj.groups("J5")}
    with pytest.raises(csfs.NotFoundError, match="not known to this instance"):
        proj.export_job("J8")
    proj = csfs.open_instance(home).attach(demo)
    with pytest.raises(csfs.RefusedError):
        proj.export_job("J9")                     # running: not exportable
    assert proj.clear_intermediate(dry_run=True) > 0
    assert proj.verify() == []


def test_dataset_matches_the_export_and_cryosparc_tools(tmp_path):
    """proj.dataset() is the exported group's .cs with paths made project-relative again."""
    from cryosparc.dataset import Dataset

    home = tmp_path / "home"
    proj = csfs.open_instance(home).attach(csfs.write_demo(tmp_path / "d"))
    arr = proj.dataset("J5", "particles")
    export = proj.export_group("J5", "particles")
    exported = Dataset.load(export / "J5_particles_exported.cs")
    assert len(exported) == len(arr) and list(exported["uid"]) == list(arr["uid"])
    assert [p.lstrip(">") for p in exported["blob/path"]] == [p.decode() for p in arr["blob/path"]]
    assert all((proj.path / p.decode()).is_file() for p in set(arr["blob/path"]))
    with pytest.raises(csfs.NotFoundError, match="no output group"):
        proj.dataset("J5", "nope")
