"""The views without FUSE, against a reference model (tests/viewmodel.py): for each demo
flavour, the tree ProjectView and InstanceView resolve (names, kinds, modes, sizes, link
targets, times, inodes, sizes/ values, control/, and every file's bytes) equals a model
built independently from the project directory and core's physical exports. One kernel
check per flavour compares the same model with a real FUSE mount."""
from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from conftest import copy_demo
from mountutil import fuse_missing, mounted, write_sparse
from viewmodel import (
    Bound,
    Exports,
    Model,
    differences,
    instance_model,
    look,
    look_kernel,
    physical_exports,
    plain_instance_model,
    plain_model,
    project_model,
)

SLACK = 1_000_000   # ns: the mount's start is taken from a float clock

@pytest.fixture
def attached(flavour_demo: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(instance home, project) of a tiny demo of each flavour, attached to the instance."""
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    home = tmp_path / "home"
    lifecycle.attach(Instance(home), flavour_demo)
    return home, flavour_demo


@pytest.fixture
def exports(attached: tuple[Path, Path], tmp_path: Path) -> Exports:
    """The project's physical exports, written by core outside the project."""
    return physical_exports(attached[1], tmp_path / "physical")


@pytest.fixture(autouse=True, scope="module")
def _stop_workers() -> Iterator[None]:
    """The views build plans in worker processes: stop them after these tests."""
    yield
    from csfs.mountpoints import generated

    generated.shutdown()


def _started(fn: Any) -> tuple[Any, Bound]:
    """fn() and the time bounds around it (when the view or mount started)."""
    t0 = time.time_ns()
    out = fn()
    return out, (t0 - SLACK, time.time_ns() + SLACK)


def _project_view(home: Path, project: Path, mnt: Path, plain: bool = False) -> tuple[Any, Any]:
    from csfs.mountpoints.context import Context
    from csfs.mountpoints.control import Controls
    from csfs.mountpoints.project_view import ProjectView

    ctx = Context(home, str(mnt), plain=plain)
    return ctx, ProjectView(ctx, Controls(ctx), project, "")


def _instance_view(home: Path, mnt: Path, plain: bool = False) -> tuple[Any, Any]:
    from csfs.mountpoints.context import Context
    from csfs.mountpoints.control import Controls
    from csfs.mountpoints.instance_view import InstanceView

    ctx = Context(home, str(mnt), plain=plain)
    return ctx, InstanceView(ctx, Controls(ctx))


def _check(model: Model, seen: Any, flavour: str) -> dict[str, int]:
    diffs, own = differences(model, seen)
    assert not diffs, f"{len(diffs)} differences from the model:\n" + "\n".join(diffs[:60])
    return own


def _model_is_not_empty(model: Model, exports: Exports) -> None:
    """The model covers what the test claims: exports of both kinds, shared data files
    (links >= 2), generated files, symlinks of the real tree, sizes and control files."""
    shared = [p for p, w in model.items() if p.startswith("exports/") and w.ino is not None]
    generated = [p for p, w in model.items() if p.startswith("exports/") and w.ino is None and w.children is None]
    links = [p for p, w in model.items() if w.target is not None]
    assert exports["groups"] and shared and generated and links
    assert all(model[p].nlink >= 2 for p in shared)
    assert len([p for p in model if p.startswith("sizes/")]) >= 2


def _missing_names_are_enoent(model: Model, seen: Any) -> None:
    """A name missing from any folder of any tree is ENOENT."""
    for path, want in model.items():
        if want.children is not None:
            with pytest.raises(OSError) as e:
                seen(f"{path}/no-such-name" if path else "no-such-name")
            assert e.value.errno == errno.ENOENT, path


def _real_tree_listed_first(model: Model, seen: Any, top: str = "") -> None:
    """The real entries come before exports/ (a walk meets project files before their copies)."""
    names = [c[0] for c in seen(top).children]
    assert names.index("exports") > max(i for i, n in enumerate(names) if n not in ("exports", "sizes", "control"))


def test_project_view_equals_model(flavour, attached, exports, tmp_path):
    home, project = attached
    (ctx, view), started = _started(lambda: _project_view(home, project, tmp_path / "mnt"))
    model = project_model(project, exports, started)
    _model_is_not_empty(model, exports)
    own = _check(model, partial(look, view), flavour)
    _missing_names_are_enoent(model, partial(look, view))
    _real_tree_listed_first(model, partial(look, view))
    # the mount's own inode numbers are stable: the same after its caches are dropped
    ctx.invalidate()
    diffs, again = differences(model, partial(look, view), read=False)
    assert not diffs and again == own


@pytest.mark.parametrize("flavour", ["v5"])
def test_big_generated_files_equal_model(flavour, attached, exports, tmp_path, monkeypatch):
    """Generated files too big to keep in memory (here: all of them) are made into the
    instance's cache on first read and served from there: same stat, same bytes."""
    from csfs.core.instance import Instance
    from csfs.mountpoints import generated

    generated.shutdown()       # the next workers start with the new limit
    monkeypatch.setenv("CSFS_MOUNT_INLINE_MAX", "0")
    monkeypatch.setattr(generated, "BIG", 0)    # where the mount process itself decides
    home, project = attached
    (_ctx, view), started = _started(lambda: _project_view(home, project, tmp_path / "mnt"))
    model = project_model(project, exports, started)
    _check(model, partial(look, view), flavour)
    made = list((Instance(home).cache_dir / "mount-generated").glob("*.bin"))
    assert len(made) == len([p for p, w in model.items() if p.startswith("exports/") and w.ino is None
                             and w.children is None])


def _add_odd_entries(project: Path, outside: Path) -> None:
    """What real projects hold besides the demo: odd names, a FIFO, a dangling link, a hard
    link of a data file, an empty folder, a sparse file, a completed job folder moved to
    other storage and linked back, a Live session (S1/) and a folder that only looks like one."""
    j2, j3 = project / "J2", project / "J3"
    (j2 / "odd name with spaces.txt").write_text("spaces\n")
    (j2 / "new\nline").write_text("newline\n")
    with open(os.fsencode(j2) + b"/caf\xff.bin", "wb") as f:    # not UTF-8
        f.write(b"latin-1 name\n")
    os.mkfifo(j3 / "pipe")
    (j3 / "dangling").symlink_to("nowhere")
    data = next(p for p in sorted((j2 / "motioncorrected").iterdir()) if p.name.endswith("doseweighted.mrc"))
    os.link(data, j2 / "hard-link.mrc")
    (project / "J4" / "empty").mkdir()
    write_sparse(project / "J5" / "sparse.bin")
    for session in ("S1", "S2"):
        (project / session / "exposures").mkdir(parents=True)
        (project / session / "exposures" / "e.bin").write_bytes(b"x" * 5000)
    (project / "S1" / "exposures.bson").write_bytes(b"\0" * 100)
    moved = outside / "J8"
    outside.mkdir()
    (project / "J8").rename(moved)
    (project / "J8").symlink_to(moved)


def test_odd_entries_equal_model(flavour, attached, tmp_path):
    home, project = attached
    _add_odd_entries(project, tmp_path / "other-storage")
    exports = physical_exports(project, tmp_path / "physical")
    assert any(n.startswith("J8_") for n in exports["groups"])
    (ctx, view), started = _started(lambda: _project_view(home, project, tmp_path / "mnt"))
    model = project_model(project, exports, started)
    assert model["J8"].target is not None and model["J3/pipe"].type == stat.S_IFIFO
    assert "sizes/S1" in model and "sizes/S2" not in model
    assert any(w.nlink == 3 for p, w in model.items() if p.startswith("exports/") and w.ino is not None)
    _check(model, partial(look, view), flavour)


@pytest.mark.parametrize("flavour", ["v5"])
def test_exports_with_missing_data_equal_model(flavour, attached, tmp_path):
    """A data file an output names is gone: core refuses to export what needs it (`csfs verify`
    first); the view lists such an export but answers EPERM for it, never a partial one."""
    home, project = attached
    victim = next(p for p in sorted((project / "J5").rglob("*.mrc")))
    victim.unlink()
    exports = physical_exports(project, tmp_path / "physical")
    (ctx, view), started = _started(lambda: _project_view(home, project, tmp_path / "mnt"))
    model = project_model(project, exports, started)
    _check(model, partial(look, view), flavour)


def test_physical_exports_are_merged(flavour, attached, exports, tmp_path, csfs):
    """Exports made by the CLI inside the project (`csfs job export`, `group export`) and a
    stray file beside them: exports/ is the real folder with the virtual exports over it, and
    those virtual exports equal the CLI's physical ones read with links followed."""
    home, project = attached
    made: Exports = {"jobs": {}, "groups": {}}
    for kind, name in (("jobs", next(iter(exports["jobs"]))), ("groups", sorted(exports["groups"])[-1])):
        juid, group = name.split("_", 1)
        args = ["job", "export", juid] if kind == "jobs" else ["group", "export", juid, group]
        r = csfs(args[0], args[1], str(project), *args[2:], home=home)
        assert r.returncode == 0, r.stderr
        made[kind][name] = folder = project / "exports" / kind / name
        assert folder.is_dir()
    (project / "exports" / "jobs" / "notes.txt").write_text("kept beside the exports\n")
    (project / "exports" / "old").mkdir()
    (project / "exports" / "old" / "list.txt").write_text("a folder of the user's\n")
    (ctx, view), started = _started(lambda: _project_view(home, project, tmp_path / "mnt"))
    model = project_model(project, {k: {**exports[k], **made[k]} for k in exports}, started)
    assert model["exports"].ino == (project / "exports").lstat().st_ino
    assert model["exports/jobs/notes.txt"].ino is not None and model["exports/old/list.txt"].ino is not None
    _check(model, partial(look, view), flavour)


def test_instance_view_equals_model(flavour, attached, exports, demo_masters, tmp_path):
    """An instance with two projects whose folders have one name (the second, a copy with its
    import job only): the second registered one is shown as <name>-<P uid>. A detached project
    (still registered, its folder there) is shown; one archived and moved away is not."""
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    home, project = attached
    inst = Instance(home)
    second = copy_demo(demo_masters(flavour), tmp_path / "second")
    assert second.name == project.name
    for job in second.glob("J*"):
        if job.name != "J1":
            shutil.rmtree(job)
    uid = lifecycle.attach(inst, second).uid
    (tmp_path / "third").mkdir()
    (tmp_path / "fourth").mkdir()
    detached = lifecycle.create(inst, "left behind", tmp_path / "third")
    lifecycle.detach(inst, detached.uid)
    moved = lifecycle.create(inst, "moved away", tmp_path / "fourth")
    lifecycle.archive(inst, moved.uid)
    Path(moved.path).rename(tmp_path / "fourth" / "elsewhere")
    folders = {project.name: (project, exports), f"{second.name}-{uid}": (second, None),
               Path(detached.path).name: (Path(detached.path), None)}
    (ctx, view), started = _started(lambda: _instance_view(home, tmp_path / "mnt"))
    model = instance_model({name: project_model(path, done or physical_exports(path, tmp_path / "physical" / name),
                                                started) for name, (path, done) in folders.items()}, started)
    own = _check(model, partial(look, view), flavour)
    _missing_names_are_enoent(model, partial(look, view))
    _real_tree_listed_first(model, partial(look, view), project.name)
    ctx.invalidate()
    diffs, again = differences(model, partial(look, view), read=False)
    assert not diffs and again == own


def test_plain_views_equal_model(flavour, attached, tmp_path):
    """--plain: the project as it is on disk (real link counts), no exports/, sizes/, control/;
    an instance shows only its project folders."""
    home, project = attached
    (_ctx, view), _ = _started(lambda: _project_view(home, project, tmp_path / "mnt", plain=True))
    _check(plain_model(project), partial(look, view), flavour)
    (_ctx, view), started = _started(lambda: _instance_view(home, tmp_path / "mnt", plain=True))
    _check(plain_instance_model({project.name: plain_model(project)}, started), partial(look, view), flavour)


@pytest.mark.parametrize("flavour", ["v4"])
def test_model_differences_are_found(flavour, attached, exports, tmp_path):
    """The comparison is not vacuous: a model one detail off is reported, path by path."""
    home, project = attached
    (_ctx, view), started = _started(lambda: _project_view(home, project, tmp_path / "mnt"))
    model = project_model(project, exports, started)
    data, ino = next((p, w.ino) for p, w in model.items() if p.startswith("exports/groups/") and w.ino is not None)
    gen = next(p for p, w in model.items() if p.endswith("_exported.csg"))
    size = next(p for p in model if p.startswith("sizes/J"))
    link = next(p for p, w in model.items() if w.target is not None)
    wrong = dict(model)
    wrong[data] = replace(model[data], ino=ino + 1)
    wrong[gen] = replace(model[gen], content=b"not the export's bytes")
    wrong[size] = replace(model[size], content=b"0\n")
    wrong[link] = replace(model[link], target="elsewhere")
    wrong["control/archive"] = replace(model["control/archive"], writable=False)
    del wrong["control/detach"]
    diffs, _ = differences(wrong, partial(look, view))
    for path in (data, gen, size, link, "control/archive", "control/detach"):
        assert any(d.startswith(repr(path)) for d in diffs), (path, diffs)
    assert len(diffs) == 6, diffs


@pytest.mark.fuse
@pytest.mark.skipif(fuse_missing() is not None, reason=str(fuse_missing()))
@pytest.mark.parametrize("flavour", ["v5"])
def test_kernel_mount_with_odd_entries_equals_model(flavour, attached, tmp_path):
    """Odd names (not UTF-8, a newline), a FIFO, a dangling link and a job folder on other
    storage through the kernel: the same model."""
    home, project = attached
    _add_odd_entries(project, tmp_path / "other-storage")
    exports = physical_exports(project, tmp_path / "physical")
    t0 = time.time_ns()
    with mounted(home, tmp_path / "mnt", project) as (mnt, _pid):
        model = project_model(project, exports, (t0 - SLACK, time.time_ns() + SLACK))
        _check(model, partial(look_kernel, mnt), flavour)


@pytest.mark.fuse
@pytest.mark.skipif(fuse_missing() is not None, reason=str(fuse_missing()))
def test_kernel_mount_equals_model(flavour, attached, exports, tmp_path):
    """The same models through real FUSE mounts of the project and of the instance: lstat,
    readdir (d_ino, d_type), readlink, read."""
    home, project = attached
    t0 = time.time_ns()
    with mounted(home, tmp_path / "mnt", project) as (mnt, _pid):
        model = project_model(project, exports, (t0 - SLACK, time.time_ns() + SLACK))
        _check(model, partial(look_kernel, mnt), flavour)
    t0 = time.time_ns()
    with mounted(home, tmp_path / "mnt-instance") as (mnt, _pid):
        started = (t0 - SLACK, time.time_ns() + SLACK)
        model = instance_model({project.name: project_model(project, exports, started)}, started)
        _check(model, partial(look_kernel, mnt), flavour)
