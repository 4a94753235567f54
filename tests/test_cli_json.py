"""Every command's --json output follows the one schema (csfs/schema.py, README "JSON output").

The commands are enumerated from the parser itself: a new subcommand that reports
something fails here until it has --json and a run in SCENARIO below.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil

import pytest

from csfs.main import build_parser
from mountutil import force_unmount, fuse_missing

# Subcommands that report nothing a script would parse (they print a document or a script).
NO_JSON = {("man",), ("completion",)}
UID_KEY = re.compile(r"^[PJW]\d+$")


def leaf_commands() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every runnable subcommand of the parser, as its word path: ("project", "create"), ..."""
    out: dict[tuple[str, ...], argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out[path] = parser
            return
        for name, sub in subs[0].choices.items():
            walk(sub, path + (name,))
    walk(build_parser(), ())
    return out


def check_conventions(obj, where: str = "$") -> None:
    """The schema's shared rules, anywhere in a document."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            here = f"{where}.{k}"
            assert not UID_KEY.match(k), f"{here}: a map keyed by uid (use a list of objects)"
            if k == "project":
                assert isinstance(v, dict) and {"uid", "path"} <= v.keys(), f"{here}: not a project object: {v!r}"
                assert v["uid"] is None or re.fullmatch(r"P\d+", v["uid"]), here
            elif k == "projects":
                assert isinstance(v, list) and all(isinstance(p, dict) and {"uid", "path"} <= p.keys() for p in v), here
            elif k == "job":
                assert v is None or (isinstance(v, dict) and re.fullmatch(r"J\d+", v.get("uid", ""))), \
                    f"{here}: not a job object: {v!r}"
            elif k == "jobs":
                assert isinstance(v, list) and all(isinstance(j, dict) and "uid" in j for j in v), \
                    f"{here}: not a list of job objects"
            elif k == "group":
                assert isinstance(v, dict) and "name" in v, here
            elif k in ("groups", "problems", "links", "files", "mounts", "skipped"):
                assert isinstance(v, list), f"{here}: not a list"
            elif k == "bytes" or k.endswith(("_bytes", "_count")) or k in ("pid", "num_items"):
                assert isinstance(v, int) and not isinstance(v, bool), f"{here}: not an integer: {v!r}"
            elif k in ("dry_run", "ok", "missing", "done"):
                assert isinstance(v, bool), f"{here}: not a boolean"
            elif k == "action":
                assert isinstance(v, str) and v, here
            check_conventions(v, here)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            check_conventions(v, f"{where}[{i}]")


def test_every_subcommand_is_known():
    """A subcommand that is neither in SCENARIO nor in NO_JSON fails: give it --json and a run."""
    leaves = leaf_commands()
    scenario = {cmd for cmd, _, _ in SCENARIO}
    assert set(leaves) == scenario | NO_JSON, (
        f"not covered by the JSON test: {sorted(set(leaves) - scenario - NO_JSON)}; "
        f"stale: {sorted((scenario | NO_JSON) - set(leaves))}")
    for cmd, parser in leaves.items():
        has_json = any("--json" in a.option_strings for a in parser._actions)
        assert has_json == (cmd not in NO_JSON), f"csfs {' '.join(cmd)}: --json {'missing' if not has_json else ''}"


# (command words, extra arguments with {placeholders}, required top-level keys), run in order.
SCENARIO: list[tuple[tuple[str, ...], list[str], set[str]]] = [
    (("demo",), ["{d}"], {"project", "job_count", "file_count", "bytes", "raw"}),
    (("jobs",), ["{demo}"], {"project", "jobs"}),
    (("cs", "show"), ["{cs}", "--head", "2"], {"format", "rows", "fields", "head"}),
    (("instance", "info"), [], {"instance", "counts"}),
    (("project", "attach"), ["{demo}"], {"action", "project"}),
    (("project", "list"), [], {"projects"}),
    (("project", "show"), ["P1"], {"project", "lock", "job_count", "job_status", "active_jobs", "problems"}),
    (("job", "list"), ["P1"], {"project", "jobs"}),
    (("instance", "recover"), [], {"action", "projects", "skipped"}),
    (("du",), ["P1"], {"project", "bytes", "other_bytes", "clearable_bytes", "jobs"}),
    (("verify",), ["P1"], {"project", "ok", "problems"}),
    (("job", "export"), ["P1", "J5"],
     {"action", "project", "job", "path", "link_count", "data_bytes", "written_bytes"}),
    (("group", "export"), ["P1", "J5", "particles"], {"action", "project", "job", "group", "path"}),
    (("clear-intermediate",), ["P1", "--dry-run"], {"action", "dry_run", "project", "jobs", "bytes"}),
    (("job", "mark-killed"), ["P1", "J9"], {"action", "project", "job"}),
    (("job", "mark-completed"), ["P1", "J10"], {"action", "project", "job"}),
    (("project", "create"), ["Other", "--dir", "{tmp}"], {"action", "project"}),
    (("group", "import"), ["P2", "{demo}/exports/groups/J5_particles/J5_particles_exported.csg"],
     {"action", "project", "job", "source"}),
    (("job", "import"), ["P2", "{demo}/exports/jobs/J5_extract_micrographs_multi", "--allow-from", "{d}"],
     {"action", "project", "job", "source"}),
    (("import", "raw"), ["P2", "--kind", "movies", "{d}/raw"], {"action", "project", "job", "source"}),
    (("relink",), ["P2", "--from", "{d}/raw", "--to", "{d}/raw2", "--dry-run"],
     {"action", "dry_run", "project", "links"}),
    (("project", "archive"), ["P1"], {"action", "project"}),
    (("project", "unarchive"), ["P1", "{demo}"], {"action", "project"}),
    (("project", "detach"), ["P1"], {"action", "project"}),
    (("project", "forget"), ["P1"], {"action", "project"}),
    (("project", "rescue"), ["{other}"], {"action", "done", "message", "project"}),
    (("mount",), ["P2", "{mnt}"], {"action", "mountpoint", "source", "pid"}),
    (("mounts",), [], {"mounts"}),
    (("umount",), ["{mnt}"], {"action", "mountpoint", "result"}),
]


def test_every_command_json_has_the_schema(tmp_path, csfs):
    home, other_home = tmp_path / "home", tmp_path / "home-other"
    d = tmp_path / "d"
    demo = d / "CS-csfs-demo"
    # a project locked by another instance, for `project rescue`
    r = csfs("project", "create", "Elsewhere", "--dir", tmp_path, home=other_home)
    assert r.returncode == 0, r.stderr
    places = {"d": d, "demo": demo, "tmp": tmp_path, "other": tmp_path / "CS-elsewhere", "mnt": tmp_path / "mnt"}
    (tmp_path / "mnt").mkdir()
    fuse = fuse_missing()
    pid = None
    try:
        for cmd, extra, keys in SCENARIO:
            if cmd in (("mount",), ("umount",)) and fuse:
                continue    # `mounts` still runs: it lists none
            if cmd == ("cs", "show"):
                places["cs"] = next(demo.glob("J5/*.cs"))
            if cmd == ("relink",):
                shutil.copytree(d / "raw", d / "raw2")
            args = [a.format(**places) for a in extra]
            r = csfs(*cmd, *args, "--json", home=home)
            assert r.returncode in ((0, 1) if cmd == ("verify",) else (0,)), f"csfs {' '.join(cmd)}: {r.stderr}"
            doc = json.loads(r.stdout)
            assert isinstance(doc, dict), f"csfs {' '.join(cmd)}: a bare {type(doc).__name__}"
            assert keys <= doc.keys(), f"csfs {' '.join(cmd)}: missing {keys - doc.keys()} in {sorted(doc)}"
            check_conventions(doc, f"csfs {' '.join(cmd)}")
            if cmd == ("mount",):
                pid = doc["pid"]
            if cmd == ("umount",):
                pid = None
    finally:
        force_unmount(tmp_path / "mnt", pid)
    if fuse:
        pytest.skip(f"mount and umount --json not run: {fuse}")


def test_check_conventions_catches_the_old_shapes():
    """The checker itself: the shapes issue 11 found would fail it."""
    bad = [{"project": "/data/CS-x"}, {"jobs": {"J1": {"bytes": 1}}}, {"job": "J1"},
           {"imported": "1 path(s)", "job": "J2"}, {"bytes": "12"}, [{"uid": "P1"}]]
    for doc in bad:
        with pytest.raises(AssertionError):
            check_conventions(doc)
            assert isinstance(doc, dict)
