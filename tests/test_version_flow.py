"""The whole life of a project of each CryoSPARC version (the demo's legacy, v4 and v5 flavours),
through the real command line and the real mount: attach -> show -> du -> job export -> group
export -> import into another instance's project of another version -> verify -> clear-intermediate
-> mount (ls -lR, tar of every virtual export, sizes/) -> detach, with no false problem and no
traceback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import copy_demo
from data_helpers import read_tree
from lifecycle_helpers import run_main
from mountutil import check_du_and_sizes, check_inodes, mounted, needs_fuse, run, tar_members


def _ok(r, what: str) -> str:
    assert r.returncode == 0, f"{what}: exit {r.returncode}: {r.stderr}"
    assert "Traceback" not in r.stderr, f"{what}: {r.stderr}"
    return r.stdout


def _uid(out: str) -> str:
    doc = json.loads(out)
    return doc["project"]["uid"]


def _uids(path: Path) -> list[int]:
    from cryosparc.dataset import Dataset

    return sorted(int(u) for u in Dataset.load(str(path))["uid"])


def _documents_name(project: Path, puid: str) -> None:
    """Every document that names the project names it by its new uid (and number) after attach."""
    num = int(puid[1:])
    pdoc = json.loads((project / "project.json").read_text())
    assert pdoc["uid"] == puid and pdoc.get("uid_num", num) == num
    for ws in json.loads((project / "workspaces.json").read_text()):
        assert ws.get("project_uid", puid) == puid and ws.get("project_uid_num", num) == num, ws
    for jj in project.glob("J*/job.json"):
        d = json.loads(jj.read_text())
        assert d.get("project_uid", puid) == puid and d.get("project_uid_num", num) == num, jj


@pytest.mark.parametrize("version,target", [("legacy", "v5"), ("v4", "v5"), ("v5", "v4"), ("v4", "legacy")])
def test_cli_life_of_a_project(demo_masters, tmp_path, version, target):
    """`version`'s project, its exports imported into a project of `target`'s version.

    The command line runs in this process (its real entry point: fast); the mount is real."""
    def csfs(*args, home=tmp_path / "none"):
        return run_main(*args, home=home)

    src = copy_demo(demo_masters(version), tmp_path / "src")
    dst = copy_demo(demo_masters(target), tmp_path / "dst")
    home_a, home_b = tmp_path / "A", tmp_path / "B"
    (tmp_path / "B-projects").mkdir()
    _ok(csfs("project", "create", "first", "--dir", tmp_path / "B-projects", home=home_b), "create")  # dst: P2
    puid = _uid(_ok(csfs("project", "attach", src, "--json", home=home_a), "attach"))
    puid_b = _uid(_ok(csfs("project", "attach", dst, "--json", home=home_b), "attach B"))
    assert puid_b == "P2"
    _documents_name(dst, puid_b)
    show = json.loads(_ok(csfs("project", "show", puid, "--json", home=home_a), "show"))
    assert not show.get("problems"), show.get("problems")
    listed = json.loads(_ok(csfs("jobs", src, "--json"), "jobs"))
    assert [(j["uid"], j["error"], j["problems"]) for j in listed["jobs"]] == [
        (f"J{i}", None, []) for i in range(1, 11)]
    du = json.loads(_ok(csfs("du", puid, "--json", home=home_a), "du"))
    assert du["bytes"] > 0 and {j["uid"] for j in du["jobs"]} == {f"J{i}" for i in range(1, 11)}
    assert [s["uid"] for s in du["sessions"]] == (["S1"] if version == "v4" else [])
    _ok(csfs("job", "export", puid, "J8", home=home_a), "job export")
    _ok(csfs("group", "export", puid, "J6", "particles", home=home_a), "group export")
    (job_export,) = (src / "exports" / "jobs").iterdir()
    group_dir = src / "exports" / "groups" / "J6_particles"
    (csg,) = group_dir.glob("*.csg")
    want = _uids(group_dir / "J6_particles_exported.cs")
    n = json.loads(_ok(csfs("jobs", src, "--json"), "jobs src"))["jobs"][5]["groups"][0]["num_items"]
    assert len(want) == n > 0
    before = {json.loads(_ok(csfs("jobs", dst, "--json"), "jobs"))["jobs"][i]["uid"] for i in range(10)}
    _ok(csfs("job", "import", puid_b, job_export, home=home_b), "job import")
    _ok(csfs("group", "import", puid_b, csg, home=home_b), "group import")
    listing = json.loads(_ok(csfs("jobs", dst, "--json"), "jobs"))
    new = [j for j in listing["jobs"] if j["uid"] not in before]
    assert len(new) == 2 and all(not j["problems"] and not j["error"] for j in new), new
    assert any(g["name"] == "particles" and g["num_items"] == n for j in new for g in j["groups"]), new
    for j in new:       # the imported particles keep their uids, whatever the versions
        for g in j["groups"]:
            if g["type"] == "particle":
                mf = next(r["versions"][-1]["metafile"] for r in g["results"] if r["versions"])
                assert _uids(dst / mf) == want, (j["uid"], mf)
    for home, p in ((home_a, puid), (home_b, puid_b)):
        _ok(csfs("verify", p, home=home), f"verify {p}")
        cleared = json.loads(_ok(csfs("clear-intermediate", p, "--json", home=home), f"clear {p}"))
        assert any(j["files"] for j in cleared["jobs"]), "something intermediate was cleared"
        _ok(csfs("verify", p, home=home), f"verify after clear {p}")
    # physical exports again after clearing: the virtual ones must equal them
    _ok(csfs("job", "export", puid, "J8", home=home_a), "job export after clear")
    _ok(csfs("group", "export", puid, "J6", "particles", home=home_a), "group export after clear")
    physical = {f"{kind}/{d.name}": d for kind in ("jobs", "groups") for d in (src / "exports" / kind).iterdir()}
    with mounted(home_a, tmp_path / "mnt", src) as (mnt, _pid):
        r = run(["ls", "-lR", str(mnt)])
        assert r.returncode == 0 and b"exports" in r.stdout and not r.stderr, r.stderr
        check_inodes(mnt)
        exports = [d for kind in ("jobs", "groups") for d in sorted((mnt / "exports" / kind).iterdir())]
        assert len(exports) > 5
        for d in exports:      # into a pipe: GNU tar does not read the data when writing to /dev/null
            r = run(["tar", "-cf", "-", "-C", str(d.parent), d.name], timeout=300)
            assert r.returncode == 0 and not r.stderr, (d, r.stderr)
            members = tar_members(r.stdout)
            body = {k: v[3] if v[3] is not None or v[1] is None else members[v[1]][3] for k, v in members.items()}
            assert any(v for v in body.values()), d
            twin = physical.get(f"{d.parent.name}/{d.name}")
            if twin is not None:
                want = {d.name if k == "." else f"{d.name}/{k}": v[1] for k, v in read_tree(twin).items()}
                assert body == want, d
        assert {f"{d.parent.name}/{d.name}" for d in exports} >= set(physical)
        check_du_and_sizes(home_a, src, mnt)
        if version == "v4":
            assert int((mnt / "sizes" / "S1").read_text()) == du["sessions"][0]["bytes"] > 0
    for home, p in ((home_a, puid), (home_b, puid_b)):
        _ok(csfs("job", "mark-killed", p, "J9", home=home), "mark-killed")
        _ok(csfs("project", "detach", p, home=home), f"detach {p}")
    assert not (src / "cs.lock").exists() and not (dst / "cs.lock").exists()


pytestmark = needs_fuse
