"""`csfs mount`, `csfs umount`, `csfs mounts`: the FUSE view of an instance or a project."""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from csfs.config import resolve_home
from csfs.core.errors import UsageError
from csfs.output import print_json, print_table

MOUNT_HELP = """Mount an instance (no SOURCE: one folder per registered project, plus control/)
or one project (SOURCE is a project directory or P<n>) at MOUNTPOINT.

Each project folder shows the real project directory read-only (symlinks stay
symlinks), plus:
  exports/jobs/J<n>_<type>/    virtual export of each completed job (tar it directly)
  exports/groups/J<n>_<group>/ virtual export of each output group
  sizes/J<n>, sizes/total      byte counts, as `csfs du` counts them
  control/<action>             write to act, read for the last outcome:
      echo 1 > control/detach            echo 1 > control/archive
      echo all > control/clear-intermediate   (or a job uid)
      echo J12 > control/export-job      echo 'J12 particles' > control/export-group
The instance root's control/ has attach (write a path) and unarchive (write 'P<n> <path>').
With --plain, only the real project directories are shown (no exports/, sizes/,
control/): for backups (rsync -a), diffs and anything that must see the project as is.
Semantics (errno, inodes, caching, what changes show when): SEMANTICS.md.
Returns once the mount is ready; the server keeps running in the background
(use -f to stay in the foreground; Ctrl-C, SIGTERM or SIGHUP unmount it and exit 0).
Unmount with `csfs umount MOUNTPOINT`. The server's log is
$CSFS_HOME/logs/mount_<mountpoint>.log.

/etc/fstab (mount(8) runs `csfs SOURCE MOUNTPOINT -o OPTIONS` through mount.fuse3):
  /data/CS-apoferritin  /mnt/p1  fuse.csfs  defaults,_netdev,home=/root/.local/share/csfs  0 0
  csfs                  /mnt/cs  fuse.csfs  defaults,_netdev,allow_other  0 0
SOURCE is a project directory, P<n>, or `csfs` for the whole instance; -o home=DIR
names the instance (else $CSFS_HOME or ~/.local/share/csfs of the user mounting).
`csfs` must be in /usr/local/bin, /usr/bin or /bin (mount runs helpers without PATH).

FUSE binding: mfusepy on libfuse3 (package fuse3), else fusepy on libfuse2 (package
libfuse2), with the same behaviour except that under libfuse2 files are read through
Python (no zero-copy) and SEEK_DATA/SEEK_HOLE see no holes (tar -S still finds them).
Force one with the environment variable CSFS_FUSE=mfusepy or CSFS_FUSE=fusepy.

Native tricks (zerocopy, dircache, threadstate, readdir, readahead, readdirplus,
getattr: speed-ups that reach past the binding's public API) are on by default;
CSFS_NATIVE=0 turns them all off, CSFS_NATIVE=-dircache,-readdir some of them.
`csfs mounts` shows those in use.

Memory: every path the kernel holds costs libfuse ~270 bytes; past
CSFS_MOUNT_MAX_ENTRIES (2,000,000) paths handed out, the kernel is asked to forget them
all (they are looked up again when next used). A mount of more paths than that is
walked cold every time: raise it where ~270 bytes a path is affordable.
CSFS_MOUNT_PLAN_ENTRIES (150,000) caps the export plan entries kept in the mount process."""


def _mount(args: argparse.Namespace) -> int:
    from csfs.mountpoints import mounting

    if args.list:
        return _list(args)
    if not args.paths or len(args.paths) > 2:
        raise UsageError("usage: csfs mount [SOURCE] MOUNTPOINT (see csfs mount --help)")
    options = mounting.parse_options(args.options)
    if options.get("home"):       # -o home=DIR: an fstab line names the instance this way
        args.home = str(options["home"])
    if options.pop("allow_other", False):
        args.allow_other = True
    args.options = ",".join(k if v is True else f"{k}={v}" for k, v in options.items() if k != "home") or None
    home = resolve_home(args.home)
    source = args.paths[0] if len(args.paths) == 2 else None
    if source in INSTANCE_SOURCES:   # a folder of that name is ./csfs
        source = None
    mountpoint = os.path.abspath(args.paths[-1])
    if source is None:
        _refuse_forgotten_mountpoint(args.paths[-1])
    project = _resolve_source(source, home)
    if project is not None and (Path(mountpoint) == project or project in Path(mountpoint).parents):
        raise UsageError(f"{mountpoint}: the mountpoint must not be inside the project it shows")
    mounting.check_fuse()
    mounting.check_mountpoint(mountpoint, nonempty=bool(options.get("nonempty")))
    if project is None:
        from csfs.core.instance import Instance

        Instance(home)  # create the instance (id, registry) before serving it
    log = home / "logs" / ("mount" + re.sub(r"[^A-Za-z0-9]+", "_", mountpoint) + ".log")
    started = None if args.foreground else mounting.background(mountpoint, log)
    if not isinstance(started, int):     # the server: in the foreground, or the forked child
        mounting.serve(project, mountpoint, home, options, args.allow_other, plain=args.plain, ready=started)
        return 0
    pid = started
    if args.json:
        print_json({"action": "mount", "mountpoint": mountpoint, "source": str(project or home),
                    "plain": args.plain, "pid": pid, "log": str(log)})
    else:
        what = f"{project or 'instance ' + str(home)}{' (plain)' if args.plain else ''}"
        print(f"mounted {what} at {mountpoint} (pid {pid})")
    return 0


INSTANCE_SOURCES = ("csfs", "instance")   # SOURCE words for the whole instance (an fstab line needs one)


def _refuse_forgotten_mountpoint(arg: str) -> None:
    """`csfs mount P1` or `csfs mount /data/CS-x`: a source given without its mountpoint."""
    from csfs.core import ids

    if ((ids.project_num(arg) is not None and not os.path.isdir(arg))
            or os.path.isfile(os.path.join(arg, "project.json"))):
        raise UsageError(f"{arg} is a project, and the mountpoint is missing: "
                         f"csfs mount {arg} MOUNTPOINT (an existing, empty directory)")


def _resolve_source(source: str | None, home: Path) -> Path | None:
    """None for an instance mount, else the project directory (checked to be a project)."""
    if source is None:
        return None
    from csfs.core import ids
    from csfs.core.project import Project

    if ids.project_num(source) is not None:
        from csfs.core.instance import Instance

        path = Instance(home).locate(source)[1]
    else:
        path = Path(source).expanduser().absolute()
    Project.open(path)   # NotFoundError / FormatError when it is not a project directory
    return path.resolve()


def _umount(args: argparse.Namespace) -> int:
    from csfs.mountpoints import mounting

    done = mounting.unmount(args.mountpoint)
    if args.json:
        print_json({"action": "umount", "mountpoint": os.path.abspath(args.mountpoint), "result": done})
    else:
        print(f"{done}: {os.path.abspath(args.mountpoint)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from csfs.mountpoints import mountinfo, mounting, native

    rows: list[dict[str, Any]] = [
        {"mountpoint": m.mountpoint, "source": m.source.removeprefix("csfs:"),
         "state": mounting.probe(m.mountpoint), "native": native.read_state(m.mountpoint)}
        for m in mountinfo.mounts()]
    if getattr(args, "json", False):
        print_json({"mounts": rows})
    else:
        print_table([(r["mountpoint"], r["source"], r["state"], _tricks(r["native"])) for r in rows],
                    ["MOUNTPOINT", "SOURCE", "STATE", "NATIVE"])
    return 0


def _tricks(names: list[str] | None) -> str:
    """The NATIVE column: the tricks in use, "none", or "?" (not known: another user's mount)."""
    if names is None:
        return "?"
    return ",".join(names) or "none"


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("mount", parents=[common], help="mount an instance or a project (FUSE)",
                       description=MOUNT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="[SOURCE] MOUNTPOINT",
                   help="optional project directory, P<n> or `csfs` (the whole instance), then the "
                        "(existing, empty) mountpoint")
    p.add_argument("-f", "--foreground", action="store_true",
                   help="stay in the foreground (Ctrl-C unmounts)")
    p.add_argument("-o", dest="options", metavar="OPTS",
                   help="FUSE and mount options, comma separated (e.g. -o debug, -o nonempty to mount over a "
                        "non-empty directory, -o home=DIR, -o allow_other; fstab's defaults, _netdev, "
                        "nofail, x-* are accepted and ignored)")
    p.add_argument("--allow-other", action="store_true",
                   help="let other users read the mount (adds default_permissions; "
                        "needs user_allow_other in /etc/fuse.conf for non-root)")
    p.add_argument("--plain", action="store_true",
                   help="show the project (or instance) only: no exports/, sizes/, control/ "
                        "(for backups and diffs)")
    p.add_argument("--list", action="store_true", help="list active csfs mounts instead (= csfs mounts)")
    p.add_argument("--json", action="store_true", help="print JSON (what was mounted, or with --list the mounts)")
    p.set_defaults(func=_mount)

    u = sub.add_parser("umount", parents=[common], help="unmount a csfs mount (also a stale one)",
                       description="Unmount a csfs mount. Works on a stale mount whose server died "
                                   "(\"Transport endpoint is not connected\"); refuses when busy.")
    u.add_argument("mountpoint", help="where the mount is")
    u.add_argument("--json", action="store_true", help="print JSON")
    u.set_defaults(func=_umount)

    m = sub.add_parser("mounts", parents=[common], help="list active csfs mounts",
                       description="List active csfs mounts: mountpoint, source, state "
                                   "(ok, stale, unresponsive) and the native tricks the server uses "
                                   "(? when unknown: another user's mount).")
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(func=_list)
