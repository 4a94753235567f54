"""The whole life of a project of each CryoSPARC version, through the real command line and
the real mount: attach -> show -> du -> job export -> group export -> import into another
instance's project -> verify -> clear-intermediate -> mount (ls -lR, tar of every virtual
export, sizes/) -> detach, with no false problem and no traceback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import copy_demo
from mountutil import check_du_and_sizes, mounted, needs_fuse, run


def _ok(r, what: str) -> str:
    assert r.returncode == 0, f"{what}: exit {r.returncode}: {r.stderr}"
    assert "Traceback" not in r.stderr, f"{what}: {r.stderr}"
    return r.stdout


@pytest.mark.parametrize("version,target", [("legacy", "v5"), ("v4", "v5"), ("v5", "v4")])
def test_cli_life_of_a_project(demo_masters, tmp_path, csfs, version, target):
    """`version`'s project, its exports imported into a project of `target`'s version."""
    src = copy_demo(demo_masters(version), tmp_path / "src")
    dst = copy_demo(demo_masters(target), tmp_path / "dst")
    home_a, home_b = tmp_path / "A", tmp_path / "B"
    attached = json.loads(_ok(csfs("project", "attach", src, "--json", home=home_a), "attach"))
    puid = attached.get("uid") or attached["project"]["uid"]
    puid_b = json.loads(_ok(csfs("project", "attach", dst, "--json", home=home_b), "attach B"))
    puid_b = puid_b.get("uid") or puid_b["project"]["uid"]
    show = json.loads(_ok(csfs("project", "show", puid, "--json", home=home_a), "show"))
    assert not show.get("problems"), show.get("problems")
    du = json.loads(_ok(csfs("du", puid, "--json", home=home_a), "du"))
    assert du["total"] > 0 and set(du["jobs"]) >= {"J1", "J8"}
    _ok(csfs("job", "export", puid, "J8", home=home_a), "job export")
    _ok(csfs("group", "export", puid, "J6", "particles", home=home_a), "group export")
    (job_export,) = (src / "exports" / "jobs").iterdir()
    (csg,) = (src / "exports" / "groups" / "J6_particles").glob("*.csg")
    _ok(csfs("job", "import", puid_b, job_export, home=home_b), "job import")
    _ok(csfs("group", "import", puid_b, csg, home=home_b), "group import")
    for home, p in ((home_a, puid), (home_b, puid_b)):
        _ok(csfs("verify", p, home=home), f"verify {p}")
        cleared = json.loads(_ok(csfs("clear-intermediate", p, "--json", home=home), f"clear {p}"))
        assert any(j["files"] for j in cleared["jobs"]), "something intermediate was cleared"
        _ok(csfs("verify", p, home=home), f"verify after clear {p}")
    with mounted(home_a, tmp_path / "mnt", src) as (mnt, _pid):
        r = run(["ls", "-lR", str(mnt)])
        assert r.returncode == 0 and b"exports" in r.stdout, r.stderr
        exports = [d for kind in ("jobs", "groups") for d in sorted((mnt / "exports" / kind).iterdir())]
        assert len(exports) > 5
        for d in exports:
            r = run(["tar", "-cf", "/dev/null", "-C", str(d.parent), d.name], timeout=300)
            assert r.returncode == 0, (d, r.stderr)
        check_du_and_sizes(home_a, src, mnt)
    for home, p in ((home_a, puid), (home_b, puid_b)):
        _ok(csfs("job", "mark-killed", p, "J9", home=home), "mark-killed")
        _ok(csfs("project", "detach", p, home=home), f"detach {p}")


pytestmark = needs_fuse
