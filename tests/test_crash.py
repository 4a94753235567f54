"""Crash safety and the lock race.

- Race: two processes with separate CSFS_HOMEs attach the same directory at the same
  instant, 20 times; exactly one wins each time and the loser changes nothing.
- Crashes: a child is SIGKILLed at named fault points (core/faults.py) inside each
  lifecycle action, and at random moments; afterwards every JSON file parses, no job
  file is lost, and re-running the action leaves lock and registry in agreement.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from csfs.core import lifecycle, lock, store
from csfs.core.errors import RefusedError
from csfs.core.instance import Instance
from csfs.core.project import Project

from lifecycle_helpers import all_json_parses, check_agree, job_data, make_project

REPO = Path(__file__).resolve().parents[1]

RACER = r"""
import json, os, sys, time
from csfs.main import main
import contextlib, io
home, start, dirs = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
for i, d in enumerate(dirs):
    while time.time() < start + i * 0.05:
        pass
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["--home", home, "project", "attach", d])
    print(json.dumps([d, rc, err.getvalue()]), flush=True)
"""


def _env(**extra: str) -> dict:
    e = dict(os.environ)
    e.pop("CSFS_FAULT", None)
    e.update(extra)
    return e


def test_lock_race_exactly_one_winner(tmp_path):
    rounds = 20
    dirs = [make_project(tmp_path / f"r{i}") for i in range(rounds)]
    names = {d: sorted(os.listdir(d)) for d in dirs}
    data = {d: job_data(d) for d in dirs}
    homes = [tmp_path / "home-A", tmp_path / "home-B"]
    insts = [Instance(h) for h in homes]
    start = time.time() + 2.0
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(h), str(start), *map(str, dirs)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=_env())
             for h in homes]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    results = [[json.loads(line) for line in o[0].splitlines()] for o in outs]
    for i, d in enumerate(dirs):
        rcs = [results[k][i][1] for k in (0, 1)]
        assert sorted(rcs) == [0, 1], f"round {i}: exit codes {rcs} {results[0][i]} {results[1][i]}"
        win = rcs.index(0)
        winner, loser = insts[win], insts[1 - win]
        assert winner.id in results[1 - win][i][2]  # the loser's message names the winner
        assert lock.read(d).instance_id == winner.id
        assert check_agree(winner, d) == "attached"
        assert check_agree(loser, d) == "none"
        assert sorted(os.listdir(d)) == sorted(names[d] + ["cs.lock"])  # no stray temp files
        assert job_data(d) == data[d]
    assert sum(r[1] == 0 for r in results[0]) + sum(r[1] == 0 for r in results[1]) == rounds


# -- crashes at fault points ---------------------------------------------------------------

def _killed(args: list[str], home: Path, fault: str) -> None:
    """Run `csfs ARGS` with CSFS_FAULT=fault; it must die by SIGKILL at that point."""
    r = subprocess.run([sys.executable, "-m", "csfs", "--home", str(home), *args], capture_output=True,
                       text=True, cwd=REPO, env=_env(CSFS_FAULT=fault), timeout=60)
    assert r.returncode == -signal.SIGKILL, f"{fault}: not reached (exit {r.returncode}): {r.stderr}"


def _setup(tmp_path: Path, action: str) -> tuple[Instance, Path, list[str], callable, str]:
    """State before `action`; returns (instance, project dir, CLI args, in-process re-run, final state)."""
    home = tmp_path / "home"
    inst = Instance(home)
    inst.allocate_uid()  # so attach gives a new UID and rewrites every job.json
    if action == "create":
        path = tmp_path / "CS-crash-me"
        return inst, path, ["project", "create", "Crash me", "--dir", str(tmp_path)], \
            lambda: lifecycle.create(inst, "Crash me", tmp_path), "attached"
    path = make_project(tmp_path, statuses=("completed", "failed", "killed", "completed"))
    if action == "attach":
        return inst, path, ["project", "attach", str(path)], lambda: lifecycle.attach(inst, path), "attached"
    if action == "rescue":
        lifecycle.attach(Instance(tmp_path / "dead"), path)
        return inst, path, ["project", "rescue", str(path), "--other-instance-is-down"], \
            lambda: lifecycle.rescue(inst, path, True), "attached"
    rec = lifecycle.attach(inst, path)
    if action == "detach":
        return inst, path, ["project", "detach", rec.uid], lambda: lifecycle.detach(inst, rec.uid), "detached"
    if action == "archive":
        return inst, path, ["project", "archive", rec.uid], lambda: lifecycle.archive(inst, rec.uid), "archived"
    if action == "mark-completed":
        return inst, path, ["job", "mark-completed", rec.uid, "J2"], \
            lambda: lifecycle.mark_completed(inst, rec.uid, "J2"), "attached"
    if action == "unarchive":
        lifecycle.archive(inst, rec.uid)
        moved = tmp_path / "moved"
        path.rename(moved)
        return inst, moved, ["project", "unarchive", rec.uid, str(moved)], \
            lambda: lifecycle.unarchive(inst, rec.uid, moved), "attached"
    raise AssertionError(action)


CASES = [
    ("create", "lock-before-link"), ("create", "lock-created"), ("create", "commit-workspaces"),
    ("create", "atomic-before-rename:2"), ("create", "registry-mid-register"),
    ("attach", "lock-before-link"), ("attach", "lock-created"), ("attach", "attach-locked"),
    ("attach", "commit-job:1"), ("attach", "atomic-before-rename:3"), ("attach", "commit-workspaces"),
    ("attach", "commit-project"), ("attach", "registry-mid-register"),
    ("detach", "atomic-before-rename:1"), ("detach", "commit-project"), ("detach", "detach-flushed"),
    ("detach", "detach-unlocked"),
    ("archive", "atomic-before-rename:2"), ("archive", "archive-flushed"),
    ("unarchive", "atomic-before-rename:1"), ("unarchive", "unarchive-flushed"),
    ("mark-completed", "commit-job"), ("mark-completed", "commit-project"),
    ("rescue", "atomic-before-rename:1"), ("rescue", "rescue-recorded"), ("rescue", "atomic-before-rename:2"),
    ("rescue", "attach-locked"), ("rescue", "registry-mid-register"),
]


@pytest.mark.parametrize("action,fault", CASES, ids=[f"{a}@{f}" for a, f in CASES])
def test_crash_then_rerun_repairs(tmp_path, action, fault):
    inst, path, args, rerun, final = _setup(tmp_path, action)
    data = job_data(path) if path.exists() else {}
    _killed(args, inst.home, fault)
    if path.exists():
        all_json_parses(path)
        left = {k: v for k, v in job_data(path).items() if ".csfs-tmp-" not in k}
        assert left == data, "a job file was lost or changed"
    try:
        rerun()
    except RefusedError as e:  # mark-completed killed after its job.json was written
        assert action == "mark-completed" and "already completed" in str(e)
    all_json_parses(path)
    assert job_data(path) == data  # temp files of the killed writer are gone too
    assert check_agree(inst, path) == final
    if action == "mark-completed":
        assert Project.open(path).jobs["J2"].status == "completed"
    if final == "attached":
        store.commit(inst, path)  # and the project is writable


@pytest.mark.parametrize("fault", ["new-job-tmp", "new-job-dir", "commit-job", "commit-project"])
def test_new_job_crash_leaves_no_half_job(tmp_path, fault):
    inst = Instance(tmp_path / "home")
    rec = lifecycle.attach(inst, make_project(tmp_path, statuses=("completed",)))
    code = ("import sys; from csfs.core.instance import Instance; from csfs.core import store; "
            f"store.new_job(Instance({str(inst.home)!r}), {str(rec.path)!r}, 'import_particles', 'x')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env=_env(CSFS_FAULT=fault), timeout=60)
    assert r.returncode == -signal.SIGKILL, r.stderr
    all_json_parses(rec.path)
    proj = Project.open(rec.path)
    assert all(j.error is None for j in proj.jobs.values()), [j.error for j in proj.jobs.values()]
    uid, _ = store.new_job(inst, rec.path, "import_particles", "y")
    assert uid == ("J2" if fault == "new-job-tmp" else "J3")
    assert check_agree(inst, rec.path) == "attached"


# -- crashes at random moments -------------------------------------------------------------

def test_random_kills_during_attach_and_detach(tmp_path):
    """Kill attach/detach of a 60-job project at random moments; a re-run always repairs."""
    rng = random.Random(7)
    inst = Instance(tmp_path / "home")
    path = make_project(tmp_path, statuses=("completed",) * 60)
    data = job_data(path)
    for round in range(6):
        action = "attach" if round % 2 == 0 else "detach"
        inst.allocate_uid()  # a fresh UID each time: attach rewrites all 60 job.json files
        args = ["project", action, str(path)]
        p = subprocess.Popen([sys.executable, "-m", "csfs", "--home", str(inst.home), *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO, env=_env())
        time.sleep(rng.uniform(0.4, 1.4))
        p.kill()
        p.communicate()
        all_json_parses(path)
        assert {k: v for k, v in job_data(path).items() if ".csfs-tmp-" not in k} == data
        try:
            (lifecycle.attach if action == "attach" else lifecycle.detach)(inst, path)
        except RefusedError as e:  # the child finished before it was killed
            assert "already" in str(e)
        assert check_agree(inst, path) == ("attached" if action == "attach" else "detached")
    assert not [n for n in os.listdir(path) if n.startswith(".cs.lock")]
