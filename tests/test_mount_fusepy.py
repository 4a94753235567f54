"""The fallback binding: the same Operations served by fusepy on libfuse2 (CSFS_FUSE=fusepy),
mounted by the real `csfs mount` and checked with the real tools. Skipped only when
libfuse2 or fusepy is missing (the README's test command installs both)."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, copy_demo, run_csfs
from mountutil import (
    check_du_and_sizes,
    check_inodes,
    fusepy_missing,
    is_mounted,
    ls_links_shared,
    mounted,
    needs_fuse,
    run,
    tar_members,
    write_sparse,
)

FUSEPY = {"CSFS_FUSE": "fusepy"}


pytestmark = needs_fuse + [pytest.mark.skipif(fusepy_missing() is not None, reason=str(fusepy_missing()))]


def _libfuses(pid: int) -> set[str]:
    """The libfuse libraries a process has loaded."""
    with open(f"/proc/{pid}/maps") as f:
        return {os.path.basename(ln.split()[-1]) for ln in f if "/libfuse" in ln}


@pytest.fixture(scope="module")
def env(_demo_master, tmp_path_factory):
    """(home, real project dir, mountpoint, server pid): the demo attached, mounted via fusepy."""
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    base = tmp_path_factory.mktemp("mount-fusepy")
    project = copy_demo(_demo_master, base / "demo")
    write_sparse(project / "J5" / "sparse.bin")
    home = base / "home"
    lifecycle.attach(Instance(home), project)
    with mounted(home, base / "mnt", project, env=FUSEPY) as (mnt, pid):
        yield home, project, mnt, pid


def test_binding_is_chosen_once_and_reported(tmp_path):
    code = ("from csfs.mountpoints import fusecompat as f; "
            "print(f.describe(), f.READ_BUF, f.LSEEK, f.INVALIDATE)")
    out = {}
    for choice in ("fusepy", "mfusepy", "auto", "nonsense"):
        r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "CSFS_FUSE": choice},
                           cwd=REPO, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        out[choice] = r.stdout.split()
    assert out["fusepy"][:4] == ["fusepy", "on", "libfuse", "2.9"]
    assert out["fusepy"][4:] == ["False", "False", "False"], "libfuse2: no read_buf, lseek, invalidation"
    # with libfuse2 installed too, mfusepy must still run on libfuse3
    assert out["mfusepy"][:3] == ["mfusepy", "on", "libfuse"] and out["mfusepy"][3].startswith("3.")
    assert out["auto"] == out["mfusepy"]
    assert "nonsense" in " ".join(out["nonsense"]) and out["nonsense"][:2] == ["no", "FUSE"]
    r = run_csfs("mount", str(tmp_path), home=tmp_path / "home", env={"CSFS_FUSE": "nonsense"})
    assert r.returncode != 0 and "CSFS_FUSE" in r.stderr and "Traceback" not in r.stderr


def test_served_by_fusepy_on_libfuse2(env):
    _home, _project, _mnt, pid = env
    libs = _libfuses(pid)
    assert any(n.startswith("libfuse.so.2") for n in libs), libs
    assert not any(n.startswith("libfuse3") for n in libs), libs


def test_ls_l_matches_native(env):
    _home, project, mnt, _pid = env
    r = run(["ls", "-lR", str(mnt)])
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    top = run(["ls", "-1", str(mnt)]).stdout.decode().split()
    assert {"exports", "sizes", "control", "project.json", "J1"} <= set(top)
    for rel in ("J1", "J5", "J8"):   # real folders: the same listing, names, modes, sizes, times
        via = run(["ls", "-ln", "--time-style=full-iso", str(mnt / rel)])
        native = run(["ls", "-ln", "--time-style=full-iso", str(project / rel)])
        assert via.returncode == 0 and via.stdout == ls_links_shared(native.stdout), rel
    check_inodes(mnt)   # use_ino works under libfuse2 too


def test_du_consistent_with_sizes(env):
    home, project, mnt, _pid = env
    check_du_and_sizes(home, project, mnt)


def test_sparse_file_reads_and_tar_S(env):
    """No lseek under libfuse2: the data is right and tar -S still finds the hole."""
    _home, project, mnt, _pid = env
    real, via = project / "J5" / "sparse.bin", mnt / "J5" / "sparse.bin"
    assert via.read_bytes() == real.read_bytes()
    native = run(["tar", "-cSf", "-", "-C", str(real.parent), real.name]).stdout
    r = run(["tar", "-cSf", "-", "-C", str(via.parent), via.name])
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    assert tar_members(r.stdout) == tar_members(native)
    assert len(r.stdout) < 1024 * 1024, "the hole was archived as data"


def test_writes_elsewhere_are_erofs(env):
    _home, project, mnt, _pid = env
    for act in (lambda: open(mnt / "project.json", "a"), lambda: os.mkdir(mnt / "newdir"),
                lambda: open(mnt / "sizes" / "total", "w")):
        with pytest.raises(OSError) as e:
            act()
        assert e.value.errno == errno.EROFS


def test_bad_control_input_is_einval(env):
    _home, project, mnt, _pid = env
    before = sorted(str(p.relative_to(project)) for p in project.rglob("*"))
    for name, text in (("export-job", "garbage"), ("clear-intermediate", "everything"),
                       ("export-group", "J8")):
        with pytest.raises(OSError) as e:
            with open(mnt / "control" / name, "w") as f:
                f.write(text + "\n")
        assert e.value.errno == errno.EINVAL, name
        outcome = (mnt / "control" / name).read_text()
        assert "EINVAL" in outcome and text in outcome, outcome
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*")) == before


def test_virtual_export_tar_equals_physical(env):
    """tar -cf of exports/jobs/J8_… equals tar -chf of the consolidation that the control
    file export-job then writes (a successful control action, through fusepy)."""
    _home, project, mnt, _pid = env
    (name,) = [n for n in os.listdir(mnt / "exports" / "jobs") if n.startswith("J8_")]
    r_v = run(["tar", "-cf", "-", "-C", str(mnt / "exports" / "jobs"), name])
    assert r_v.returncode == 0 and r_v.stderr == b"", r_v.stderr
    with open(mnt / "control" / "export-job", "w") as f:
        f.write("J8\n")
    assert "ok" in (mnt / "control" / "export-job").read_text()
    physical = project / "exports" / "jobs" / name
    assert physical.is_dir()
    r_p = run(["tar", "-chf", "-", "-C", str(physical.parent), name])
    assert r_p.returncode == 0, r_p.stderr
    v, p = tar_members(r_v.stdout), tar_members(r_p.stdout)
    assert len(v) > 3 and v == p


def _gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_umount_clean_and_stale(demo, tmp_path):
    """`csfs umount` ends a fusepy mount, and recovers one whose server was killed."""
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    home = tmp_path / "home"
    lifecycle.attach(Instance(home), demo)
    with mounted(home, tmp_path / "mnt", demo, env=FUSEPY) as (mnt, pid):
        assert (mnt / "project.json").read_bytes() == (demo / "project.json").read_bytes()
        r = run_csfs("umount", str(mnt), home=home)
        assert r.returncode == 0 and r.stdout.startswith("unmounted:"), r.stderr
        assert not is_mounted(mnt) and _gone(pid)
    with mounted(home, tmp_path / "mnt", demo, env=FUSEPY) as (mnt, pid):
        os.kill(pid, signal.SIGKILL)
        assert _gone(pid)
        with pytest.raises(OSError) as e:
            os.stat(mnt / "project.json")
        assert e.value.errno == errno.ENOTCONN
        r = run_csfs("umount", str(mnt), home=home)
        assert r.returncode == 0 and "stale" in r.stdout, r.stderr
        assert not is_mounted(mnt)
    assert (demo / "project.json").is_file()
