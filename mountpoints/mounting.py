"""Mounting and unmounting: checks with one-line errors, serving, the background daemon."""
from __future__ import annotations

import errno
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from csfs.core.errors import CsfsError, NotFoundError, RefusedError, UsageError

from .mountinfo import FSTYPE, find_mount

READY_TIMEOUT = 30.0
FUSE_HINT = "install the Debian/Ubuntu package fuse3 (apt-get install fuse3)"


def check_fuse() -> None:
    """Raise one clear line when FUSE cannot work on this machine (or CSFS_NATIVE is wrong)."""
    from . import fusecompat, native

    if native.problem():
        raise UsageError(native.problem())

    if not os.path.exists("/dev/fuse"):
        raise CsfsError(f"FUSE is unavailable: /dev/fuse is missing; {FUSE_HINT} and load the fuse module")
    if not fusecompat.AVAILABLE:
        raise CsfsError(f"FUSE is unavailable: no binding ({fusecompat.PROBLEM}); {fusecompat.install_hint()}")
    if not (shutil.which("fusermount3") or shutil.which("fusermount")):
        raise CsfsError(f"FUSE is unavailable: fusermount3 not found; {FUSE_HINT}")


def probe(path: str, timeout: float = 2.0) -> str:
    """'ok', 'stale' (transport endpoint not connected), 'missing' or 'unresponsive'."""
    result = ["unresponsive"]

    def run() -> None:
        try:
            os.stat(path)
            result[0] = "ok"
        except OSError as e:
            result[0] = "stale" if e.errno in (errno.ENOTCONN, errno.ECONNABORTED) else "missing"
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    return result[0]


def check_mountpoint(mountpoint: str, nonempty: bool = False) -> None:
    """Raise a one-line error when `mountpoint` cannot take a new mount (a non-empty
    directory only with `nonempty`: the mount would hide its files)."""
    state = probe(mountpoint)
    m = find_mount(mountpoint)
    if state == "stale":
        raise RefusedError(f"{mountpoint}: a dead mount is still there (Transport endpoint is not connected); "
                           f"run `csfs umount {mountpoint}` first")
    if m is not None:
        raise RefusedError(f"{mountpoint}: busy, already a mount point ({m.fstype} from {m.source}); "
                           f"unmount it first (csfs umount {mountpoint})")
    if state == "missing":
        raise NotFoundError(f"{mountpoint}: no such directory; create it first (mkdir -p {mountpoint})")
    if not os.path.isdir(mountpoint):
        raise UsageError(f"{mountpoint}: not a directory")
    if not nonempty and any(os.scandir(mountpoint)):
        raise RefusedError(f"{mountpoint}: not empty (the mount would hide its files); use an empty "
                           f"directory, or -o nonempty to mount over it anyway")


def serve(source: Path | None, mountpoint: str, home: Path, options: dict[str, object],
          allow_other: bool, plain: bool = False, ready: Ready | None = None) -> None:
    """Mount and serve in the foreground until unmounted (libfuse handles SIGINT/SIGTERM).
    `plain`: the project(s) only, without exports/, sizes/ and control/. `ready` is called
    once the mount answers (a background mount's parent then returns)."""
    import logging

    from .context import Context
    from .fs import CsfsFS, fuse_class

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s csfs-mount %(levelname)s %(message)s")
    logging.getLogger("csfs.native").setLevel(logging.INFO)   # the tricks in use (native.report)
    _tune_malloc()
    sys.setswitchinterval(0.0005)   # requests are short: hand the GIL over quickly
    ctx = Context(home, mountpoint, plain=plain)
    ctx.allow_other = allow_other
    fs = CsfsFS(ctx, source)
    fs.ready = ready
    name = f"csfs:{source or home}".replace(",", "_")
    # noatime: a readdir would otherwise invalidate the directory's cached attributes
    opts: dict[str, Any] = {"fsname": name, "subtype": "csfs", "use_ino": True, "noatime": True,
                               "attr_timeout": 60, "entry_timeout": 60}
    if plain:
        # nothing to write (no control/): a read-only superblock, so the kernel keeps a file's
        # cached attributes after a read (on a writable one every read invalidates the
        # atime and the next stat, e.g. rsync's quick check, asks this process again)
        opts["ro"] = True
    if allow_other:
        opts.update(allow_other=True, default_permissions=True)
    opts.update(fuse_options(options))
    fs.max_read = int(opts.setdefault("max_read", fs.max_read))
    fs.read_only = bool(opts.get("ro"))
    try:
        fuse_class()(fs, mountpoint, foreground=True, raw_fi=True, **opts)
    except RuntimeError as e:   # the binding's fuse_main() status
        code = e.args[0] if e.args and isinstance(e.args[0], int) else None
        if code == FUSE_LOOP_ENDED and find_mount(mountpoint, FSTYPE) is None:
            return   # SIGINT/SIGTERM/SIGHUP: libfuse left its loop and unmounted; a clean stop
        reason = FUSE_MAIN_ERRORS.get(code, f"libfuse error {code}") if code is not None else str(e)
        raise CsfsError(f"mount failed: {reason}") from None


# fuse_main()'s status (libfuse3 helper.c); FUSE's own message is printed before it
FUSE_LOOP_ENDED = 8
FUSE_MAIN_ERRORS = {1: "bad FUSE options (FUSE's message is above, or in the log)",
                    2: "no mountpoint", 3: "FUSE refused the options (its message is above, or in the log)",
                    4: "the kernel refused the mount (see the message above, or in the log)",
                    8: "the FUSE session ended with an error"}
# fstab/mount(8) options that are for mount itself, not for FUSE; `home` and `nonempty` are csfs's
MOUNT_ONLY = {"defaults", "_netdev", "auto", "noauto", "nofail", "user", "users", "nouser", "owner", "group",
              "home", "nonempty"}


def fuse_options(options: dict[str, object]) -> dict[str, object]:
    """The options to hand to libfuse: fstab-only and csfs-only ones dropped, and on libfuse3 a
    thread limit (else libfuse 3.14 logs `Ignoring invalid max threads value 4294967295`)."""
    from . import fusecompat

    out = {k: v for k, v in options.items()
           if k not in MOUNT_ONLY and not k.startswith("x-") and k != "comment"}
    if fusecompat.FUSE_MAJOR >= 3:
        out.setdefault("max_idle_threads", out.get("max_threads", 10))
    elif options.get("nonempty"):
        out["nonempty"] = True    # libfuse2 refuses a non-empty mountpoint itself without it
    return out


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}   # libfuse ends its loop on these


def _tune_malloc(n: int = 2, trim_every: float = 30.0) -> None:
    """glibc gives each of libfuse's threads its own malloc arena; two keep RSS small. And
    every `trim_every` seconds freed heap goes back to the system: libfuse frees a node when
    the kernel forgets its entry, which glibc would otherwise keep (the large demo's mount
    after a whole walk, once the kernel forgot it: 181 MiB, 123 MiB trimmed)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-8, n)   # M_ARENA_MAX
        trim = libc.malloc_trim
    except (OSError, AttributeError):   # not glibc
        return

    def trimming() -> None:
        # libfuse's SIGINT/SIGTERM/SIGHUP handler must run on the thread waiting in its
        # loop: run on this one, it ends the session without waking that wait (a hang)
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        while True:
            time.sleep(trim_every)
            trim(0)           # a ctypes call: the GIL is released meanwhile
    threading.Thread(target=trimming, name="csfs-heap-trim", daemon=True).start()


def parse_options(text: str | None) -> dict[str, object]:
    """'-o a=1,b' → {'a': '1', 'b': True}."""
    out: dict[str, object] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if item:
            key, eq, value = item.partition("=")
            out[key] = value if eq else True
    return out


def background(mountpoint: str, log_path: Path, timeout: float = READY_TIMEOUT) -> Ready | int:
    """Fork the mount server. In the child (a new session, its output to `log_path`) this
    returns a `Ready` to hand to `serve`; in the parent it returns the child's pid once the
    mount is ready, or raises why it failed. Forking after the checks saves the server a
    second interpreter start and the CLI's imports."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = log_path.stat().st_size if log_path.exists() else 0
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setsid()
        log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        for fd, to in ((null, 0), (log, 1), (log, 2)):
            os.dup2(fd, to)
        os.close(log)
        os.close(null)
        return Ready(w)
    os.close(w)
    try:
        readable, _, _ = select.select([r], [], [], timeout)
        said = os.read(r, 1) if readable else None
    finally:
        os.close(r)
    if said == b"1":
        return pid
    if said is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise CsfsError(f"mount did not become ready within {timeout:.0f} s (log: {log_path})")
    _, status = os.waitpid(pid, 0)     # the server ended before the mount was ready
    why = _failure(log_path, start) or f"mount failed: exit status {os.waitstatus_to_exitcode(status)}"
    raise CsfsError(f"{why} (log: {log_path})")


class Ready:
    """Tells the parent of a background mount that it is ready (or, closed unsaid, that it
    failed): called once the kernel's INIT is answered."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def __call__(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.write(fd, b"1")
            finally:
                os.close(fd)


def _failure(path: Path, start: int) -> str:
    """Why the mount started at offset `start` of its log failed: FUSE's own message
    (`fuse: unknown option(s): ...`) when it printed one, else the server's last line."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    fuse = [ln for ln in lines if ln.startswith(("fuse: ", "fusermount"))]
    if fuse:
        return "mount failed: " + fuse[-1].removeprefix("fuse: ").removeprefix("mount failed: ")
    return lines[-1].removeprefix("csfs: ") if lines else ""


def unmount(mountpoint: str) -> str:
    """Unmount a csfs mount, including a stale one whose process died. Returns what was done."""
    mountpoint = os.path.abspath(mountpoint)
    m = find_mount(mountpoint)
    if m is None:
        raise NotFoundError(f"{mountpoint}: not mounted")
    if not m.fstype.startswith("fuse"):
        raise RefusedError(f"{mountpoint}: not a FUSE mount ({m.fstype}); refusing to unmount it")
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    stale = probe(mountpoint) in ("stale", "unresponsive")
    cmds = [[tool, "-u", mountpoint]] if tool else []
    if os.geteuid() == 0:
        cmds.append(["umount", mountpoint])
    if stale and tool:
        cmds.append([tool, "-u", "-z", mountpoint])
    err = ""
    for cmd in cmds:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode == 0 and find_mount(mountpoint) is None:
            return "unmounted stale mount" if stale else "unmounted"
        lines = (r.stderr or r.stdout).strip().splitlines()
        err = lines[-1] if lines else ""
    if "busy" in err.lower():
        raise RefusedError(f"{mountpoint}: busy (a process has files open there or its cwd inside); "
                           f"close them and retry")
    raise CsfsError(f"{mountpoint}: could not unmount: {err or 'unknown error'}")
