"""The mount with its native tricks off (CSFS_NATIVE=0) and on: real tools see the same
tree, bytes and control outcomes, on every demo flavour; `csfs mounts` and the mount log
name the tricks in use."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from conftest import copy_demo, run_csfs
from mountutil import mounted, needs_fuse, run, tar_members

pytestmark = needs_fuse

TRICKS = {"zerocopy", "dircache", "threadstate", "readdir", "readahead", "readdirplus", "getattr"}


def _completed(project: Path) -> list:
    from csfs.core.project import Project

    return [j for j in Project.open(project).jobs.values() if j.status == "completed" and not j.error]


def _battery(root: Path, mnt: Path, project: Path, job: str, physical: Path) -> dict[str, object]:
    """What ls, stat, find, du, tar, a read and a control action show through the mount;
    paths under this run's folder `root` are written as <root>."""
    def out(cmd: list[str]) -> str:
        r = run(cmd, timeout=300)
        assert r.returncode == 0, (cmd, r.stderr)
        return r.stdout.decode().replace(str(root), "<root>")

    export = mnt / "exports" / "jobs" / physical.name
    v = run(["tar", "-cf", "-", "-C", str(export.parent), export.name])
    p = run(["tar", "-chf", "-", "-C", str(physical.parent), physical.name])
    assert v.returncode == 0 and v.stderr == b"" and p.returncode == 0, (v.stderr, p.stderr)
    assert tar_members(v.stdout) == tar_members(p.stdout), "virtual export == tar -ch of the physical one"
    data = hashlib.sha256()
    for f in sorted((mnt / job).rglob("*")):
        if f.is_file():
            data.update(f.read_bytes())
    seen = {
        # no times: virtual entries carry the mount's start time
        "ls": out(["ls", "-lRa", "--time-style=+", str(mnt)]),
        "stat": out(["stat", "-c", "%n %F %s %b %h %a %U", str(mnt), str(mnt / job), str(export)]),
        "find": sorted(out(["find", str(mnt), "-printf", r"%P %y %s %m %n %l\n"]).splitlines()),
        "du": out(["du", "-s", "-B1", str(mnt)]).split()[0] + " " + out(["du", "-sb", str(mnt)]).split()[0],
        "tar": tar_members(v.stdout),
        "read": data.hexdigest(),
    }
    target = mnt / "control" / "export-job"
    with open(target, "w") as f:
        f.write(job + "\n")
    seen["control"] = re.sub(r"^\S+ ", "", target.read_text()).replace(str(root), "<root>")
    assert "ok" in seen["control"], seen["control"]
    seen["exported"] = sorted(p.name for p in (project / "exports" / "jobs").iterdir())
    return seen


def _mounts_native(home: Path, mnt: Path) -> tuple[list[str], str]:
    """The tricks `csfs mounts --json` reports for `mnt`, and its table's NATIVE cell."""
    r = run_csfs("mounts", "--json", home=home)
    assert r.returncode == 0, r.stderr
    (row,) = [m for m in json.loads(r.stdout)["mounts"] if m["mountpoint"] == str(mnt)]
    table = run_csfs("mounts", home=home).stdout.splitlines()
    (line,) = [ln for ln in table if ln.startswith(str(mnt) + " ")]
    return row["native"], line.split()[-1]


def test_tricks_on_and_off_look_the_same(flavour, demo_masters, tmp_path):
    from csfs.core import consolidate, lifecycle
    from csfs.core.instance import Instance

    seen, active = {}, {}
    for mode in ("0", "1"):
        root = tmp_path / f"run{mode}"
        project = copy_demo(demo_masters(flavour), root / "demo")
        home = root / "home"
        inst = Instance(home)
        lifecycle.attach(inst, project)
        job = next(j for j in reversed(_completed(project)) if (project / j.uid / "job.json").exists())
        phys_proj = copy_demo(demo_masters(flavour), root / "phys")
        lifecycle.attach(Instance(root / "home-phys"), phys_proj)
        physical = Path(consolidate.export_job(Instance(root / "home-phys"), str(phys_proj), job.uid))
        with mounted(home, root / "mnt", project, env={"CSFS_NATIVE": mode}) as (mnt, _pid):
            seen[mode] = _battery(root, mnt, project, job.uid, physical)
            active[mode], cell = _mounts_native(home, mnt)
        log = next((home / "logs").glob("mount*.log")).read_text()
        logged = re.findall(r"native tricks: (\S[^\n]*)", log)
        assert logged, log
        if mode == "0":
            assert active[mode] == [] and cell == "none"
            assert logged[-1].startswith("none (off: ")
        else:
            assert set(active[mode]) <= TRICKS and {"threadstate", "readahead"} <= set(active[mode])
            assert cell == ",".join(active[mode])
            assert logged[-1].split(" (off")[0] == ", ".join(active[mode])
    assert seen["0"] == seen["1"]


def test_switch_words():
    """CSFS_NATIVE: 0 turns all off, -NAME one, unknown words are a one-line error."""
    from csfs.mountpoints import native

    cases = {"": TRICKS, "1": TRICKS, "0": set(), "off": set(), "-dircache,-readdir": TRICKS - {"dircache", "readdir"}}
    with pytest.MonkeyPatch.context() as mp:
        for value, on in cases.items():
            mp.setenv(native.ENV, value)
            assert {n for n in native.TRICKS if native.wanted(n)} == on, value
            assert native.problem() == ""
        mp.setenv(native.ENV, "-dircash")
        assert "-dircash" in native.problem() and "\n" not in native.problem()


def test_mount_help_names_every_trick():
    from csfs.mountpoints import native

    from csfs.cmd_mount import MOUNT_HELP

    listed = MOUNT_HELP.split("Native tricks (", 1)[1].split(":", 1)[0]
    assert {w.strip() for w in listed.replace("\n", " ").split(",")} == set(native.TRICKS)


def test_bad_switch_refuses_to_mount(demo, tmp_path):
    (tmp_path / "mnt").mkdir()
    r = run_csfs("mount", str(demo), str(tmp_path / "mnt"), home=tmp_path / "home", env={"CSFS_NATIVE": "zerocpy"})
    assert r.returncode != 0 and "CSFS_NATIVE" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
