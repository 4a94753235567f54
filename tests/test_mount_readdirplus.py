"""readdirplus (native trick `readdirplus`): the real tree's listings carry each entry's
attributes, handed out with offsets over several kernel requests. Through the real tools,
a big folder listed in several requests, walked by two readers at once, and listed again
after it changed must show exactly what the project holds (as with the trick off)."""
from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path

from conftest import copy_demo
from mountutil import mounted, needs_fuse, run

pytestmark = needs_fuse

FILES = 1500    # ~250 KiB of READDIRPLUS replies: many requests of one listing


def _tree(root: Path) -> dict[str, tuple]:
    """rel path -> (type, mode, size, mtime_ns, inode) of every entry, links not followed."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_size, st.st_mtime_ns,
                                             st.st_ino)
    return out


def _ls(path: Path) -> list[str]:
    """`ls -lan` of a folder (full-iso times), link counts left out (the mount adds one)."""
    r = run(["ls", "-lan", "--time-style=full-iso", str(path)])
    assert r.returncode == 0, r.stderr
    return [" ".join(ln.split()[:1] + ln.split()[2:]) for ln in r.stdout.decode().splitlines()[1:]]


def _fill(folder: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        # names of many lengths, so entries straddle request boundaries at varying points
        (folder / (f"f{i:05d}" + "x" * (i % 37))).write_bytes(b"a" * (i % 300))
    (folder / "sub").mkdir()
    (folder / "link").symlink_to("sub")


def test_big_folders_list_exactly(demo_masters, tmp_path):
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    project = copy_demo(demo_masters("v4"), tmp_path / "demo")
    _fill(project / "J1" / "many", FILES)
    home = tmp_path / "home"
    lifecycle.attach(Instance(home), project)
    for native in ("1", "-readdirplus"):
        with mounted(home, tmp_path / f"mnt{native}", project, env={"CSFS_NATIVE": native}) as (mnt, _pid):
            # two readers of the same big folder at once, on a fresh mount (cold)
            seen: dict[int, list[str]] = {}

            def read(k: int, folder: Path = mnt / "J1" / "many", seen: dict[int, list[str]] = seen) -> None:
                seen[k] = _ls(folder)
            readers = [threading.Thread(target=read, args=(k,)) for k in range(2)]
            for t in readers:
                t.start()
            for t in readers:
                t.join(120)
            want = _ls(project / "J1" / "many")
            assert seen[0] == want and seen[1] == want, native
            assert len(want) == FILES + 4     # ., .., sub, link
            # the whole real tree: every entry's lstat through the mount is the project's
            # (inode numbers too: the project's own filesystem keeps them)
            via = {k: v for k, v in _tree(mnt).items() if k.split("/")[0] not in ("exports", "sizes", "control")}
            assert via == _tree(project), native
            # a folder that changed behind the mount lists anew (inotify drops the cached listing)
            (project / "J1" / "many" / "added").write_bytes(b"new")
            os.unlink(project / "J1" / "many" / "f00000")
            for _ in range(50):
                now = os.listdir(mnt / "J1" / "many")
                if "added" in now and "f00000" not in now:
                    break
                threading.Event().wait(0.1)
            assert sorted(now) == sorted(os.listdir(project / "J1" / "many")), native
            assert _ls(mnt / "J1" / "many") == _ls(project / "J1" / "many"), native
            (project / "J1" / "many" / "f00000").write_bytes(b"")   # back as it was for the next round
            os.unlink(project / "J1" / "many" / "added")


def test_exports_list_the_same_with_and_without(flavour, demo_masters, tmp_path):
    """exports/ entries carry their attributes too (from the export's index): a cold `ls -lR`
    and an lstat walk of exports/ show the same as with readdirplus off."""
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    project = copy_demo(demo_masters(flavour), tmp_path / "demo")
    home = tmp_path / "home"
    lifecycle.attach(Instance(home), project)
    seen = {}
    for native in ("1", "-readdirplus"):
        with mounted(home, tmp_path / f"mnt{native}", project, env={"CSFS_NATIVE": native}) as (mnt, _pid):
            r = run(["ls", "-lanR", "--time-style=full-iso", "."], cwd=mnt / "exports")
            assert r.returncode == 0, r.stderr
            # virtual folders show the mount's start (the time of exports/ itself): not compared
            started = os.stat(mnt / "exports").st_mtime_ns
            shown = r.stdout.decode().splitlines()[2].split()[5:7]    # the line of "."
            listing = r.stdout.decode().replace(" ".join(shown), "STARTED")
            tree = {k: v[:3] + ("STARTED" if v[3] == started else v[3],) + v[4:]
                    for k, v in _tree(mnt / "exports").items()}
            seen[native] = (listing, tree)
    assert seen["1"][0].count("\n") > 100
    assert seen["1"] == seen["-readdirplus"]


def _opcodes(log: Path, start: int) -> dict[str, int]:
    """FUSE requests (-o debug) logged after byte `start` of the mount log, by opcode."""
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    out: dict[str, int] = {}
    for m in re.finditer(r"opcode: ([A-Z_]+)", text):
        out[m.group(1)] = out.get(m.group(1), 0) + 1
    return out


def test_rsync_second_pass_stats_from_the_kernel(flavour, demo_masters, tmp_path):
    """After a first `rsync -a` read every file of a completed job's folder, the kernel holds
    their atime stale (the mount is writable, for control/), so each `lstat` of the second
    pass would be a GETATTR round trip. The mount lists that folder afresh once instead
    (one readdirplus refreshes every entry): the second pass sends a handful of requests
    and copies nothing, and the third is served from the kernel alone. A --plain mount is
    read-only: its listing stays cached, and the second pass is served by the kernel."""
    from csfs.core import lifecycle
    from csfs.core.instance import Instance

    project = copy_demo(demo_masters(flavour), tmp_path / "demo")
    _fill(project / "J1" / "many", 300)
    home = tmp_path / "home"
    lifecycle.attach(Instance(home), project)
    for extra in ([], ["--plain"]):
        dest = tmp_path / f"dest{len(extra)}"
        mnt_dir = tmp_path / f"mnt{len(extra)}"
        with mounted(home, mnt_dir, project, extra=["-o", "debug", *extra]) as (mnt, _pid):
            log = next((home / "logs").glob(f"mount_*{mnt_dir.name}.log"))
            src = f"{mnt}/J1/many/"
            r = run(["rsync", "-a", src, f"{dest}/"])
            assert r.returncode == 0, r.stderr
            passes = []
            for _ in range(2):
                start = log.stat().st_size
                r = run(["rsync", "-a", "--itemize-changes", src, f"{dest}/"])
                assert r.returncode == 0, r.stderr
                assert r.stdout == b"", r.stdout[:500]      # nothing changed, nothing copied
                passes.append(_opcodes(log, start))
            assert passes[0].get("GETATTR", 0) <= 3, (extra, passes[0])     # not one per file (300)
            if extra:
                assert "READDIRPLUS" not in passes[0], passes[0]            # still cached
            else:
                assert passes[0].get("READDIRPLUS", 0) >= 1, passes[0]      # the folder listed afresh
            assert passes[1].get("GETATTR", 0) <= 3 and "READDIRPLUS" not in passes[1], (extra, passes[1])
            assert "READ" not in passes[0] and "READ" not in passes[1]
        files = {k: v[:4] for k, v in _tree(project / "J1" / "many").items() if stat.S_ISREG(v[0])}
        assert len(files) == 300
        assert {k: v[:4] for k, v in _tree(dest).items() if stat.S_ISREG(v[0])} == files
