"""The FUSE operations: resolve a path to a Node (views), then serve it.

Read-only everywhere except control files (EROFS). Real data is read with os.pread on
an fd kept per open handle; immutable data (completed jobs, exports) keeps its page
cache across opens; control and size files use direct I/O so a read always shows the
current text. Extended attributes answer ENOSYS so the kernel stops asking.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import itertools
import logging
import os
import stat as S
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable

from csfs.core.errors import CsfsError

from .context import Context
from .control import Controls, Pending
from .fusecompat import FUSE_MAJOR, FUSE_MINOR, LSEEK, NOFLUSH, READ_BUF, FuseOSError, Operations, fuse_get_context
from . import dircache, generated, watch, zerocopy
from .kcache import KernelCache
from .instance_view import InstanceView
from .nodes import Node
from .project_view import VIRTUAL_TOP, ProjectView

log = logging.getLogger("csfs.mount")

ENTRY_TIMEOUT = 60.0
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT


def _errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn core errors into their errno; keep OSErrors; anything else is EIO, logged."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CsfsError as e:
            raise FuseOSError(e.errno) from None
        except OSError:
            raise
        except Exception:
            log.exception("%s%r failed", fn.__name__, args[1:2])
            raise FuseOSError(errno.EIO) from None
    return wrapper


def _erofs(*_: Any, **__: Any) -> int:
    raise FuseOSError(errno.EROFS)


PREFETCH = 16 * 1024 * 1024
# The largest read request: 1 MiB less 4 pages, so that libfuse can splice a whole reply
# through a pipe of the default maximum size (1 MiB; growing it needs CAP_SYS_RESOURCE).
# Bigger replies fall back to a copy through a malloc'd buffer.
MAX_READ = 1024 * 1024 - 4 * 4096


class _Handle:
    __slots__ = ("fd", "data", "node", "ahead", "keep", "sparse", "size", "version", "pending")

    def __init__(self, fd: int = -1, data: bytes | None = None, node: Node | None = None) -> None:
        self.fd, self.data, self.node = fd, data, node
        self.pending: Pending | None = None   # a control file opened for writing
        self.ahead = 0   # prefetch requested up to here
        self.keep = False   # the kernel keeps this file's pages (keep_cache)
        self.sparse = False  # the source has holes: serve them as zeros without reading
        self.size = 0
        self.version: tuple | None = None   # counted in CsfsFS._versions while open

    def prefetch(self, offset: int, size: int, drop_behind: bool) -> None:
        """Keep the disk busy ahead of the reader: the kernel sends our reads out of order
        (several threads), which defeats the source file's own read-ahead. With
        `drop_behind` (the kernel keeps its own copy of immutable data), also release the
        source's pages well behind the reader, so big reads are not cached twice."""
        end = offset + size
        if end + PREFETCH // 2 > self.ahead:
            start = max(end, self.ahead)
            self.ahead = start + PREFETCH
            os.posix_fadvise(self.fd, start, PREFETCH, os.POSIX_FADV_WILLNEED)
            if drop_behind and offset > 2 * PREFETCH:
                os.posix_fadvise(self.fd, offset - 2 * PREFETCH, PREFETCH, os.POSIX_FADV_DONTNEED)


class CsfsFS(Operations):
    """An instance (source None) or one project directory, served read-only with virtual parts."""

    use_ns = True
    max_read = MAX_READ
    dircache = False   # listings cached by the kernel (dircache.install worked)

    def __init__(self, ctx: Context, project: Path | None) -> None:
        self.ctx = ctx
        self.controls = Controls(ctx)
        self.root: InstanceView | ProjectView
        if project is None:
            self.root = InstanceView(ctx, self.controls)
            self.base = str(ctx.home)
        else:
            self.root = ProjectView(ctx, self.controls, project, "")
            self.base = str(project)
        self.kcache = KernelCache()
        self.controls.after_action = self._after_action
        self._handles: dict[int, _Handle] = {}
        self._next = itertools.count(1)
        # path -> [version, open handles of it, its size, direct_io until (monotonic)]: the
        # version whose pages the kernel may cache for an immutable file (see _cache_mode)
        self._versions: dict[str, list] = {}
        self._vlock = threading.Lock()
        # real path -> until when (monotonic): files changed behind our back lately, whose old
        # attributes the kernel may still hold under another name (an export's copy of them)
        self._replaced: dict[str, float] = {}

    # -- helpers ------------------------------------------------------------------
    def _node(self, path: str) -> Node:
        parts = [p for p in path.split("/") if p]
        return self.root.resolve(parts)

    def _owner_only(self) -> None:
        uid = fuse_get_context()[0]
        if uid != self.ctx.uid:
            raise FuseOSError(errno.EACCES)

    # -- lifecycle ----------------------------------------------------------------
    def init_with_config(self, conn_info: Any, config_3: Any) -> None:
        if conn_info is not None and hasattr(self, "read_buf"):
            # let libfuse splice file pages to the kernel instead of copying them twice
            want = zerocopy.SPLICE_WRITE | zerocopy.SPLICE_MOVE
            conn_info.want |= want & conn_info.capable
        if conn_info is not None and hasattr(conn_info, "max_read"):
            conn_info.max_read = self.max_read   # libfuse3 insists it equals the mount option
        if config_3 is not None:   # libfuse3: these live in the config, not in -o options
            config_3.use_ino = 1
            config_3.attr_timeout = ENTRY_TIMEOUT
            config_3.entry_timeout = ENTRY_TIMEOUT
            config_3.negative_timeout = 0.0
        self.kcache.bind()
        self.dircache = dircache.install(self.kcache.fuse, FUSE_MAJOR, FUSE_MINOR)
        self._start_watching()
        threading.Thread(target=_tune_readahead, args=(self.ctx.mountpoint, 4 * self.max_read // 1024),
                         daemon=True).start()

    def init(self, path: str) -> None:
        """fusepy (libfuse2) calls init(); mfusepy prefers init_with_config()."""
        self.init_with_config(None, None)

    def destroy(self, path: str) -> None:
        if self.ctx.watcher is not None:
            self.ctx.watcher.stop()
            self.ctx.watcher = None
        generated.shutdown()
        for h in list(self._handles.values()):
            if h.fd >= 0:
                os.close(h.fd)
        self._handles.clear()

    # -- metadata -----------------------------------------------------------------
    @_errors
    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        node = self._node(path)
        attrs = node.attrs
        if node.immutable:
            if node.source is None and node.real is None and node.children is None and self.kcache.enabled:
                self.kcache.record(path)    # a generated export file: dropped when its project changes
            v = self._versions.get(path)
            if v is not None and v[1] and v[2] != attrs["st_size"]:
                # still being read in an older version: its size, so no reader is cut short
                attrs = dict(attrs, st_size=v[2], st_blocks=(v[2] + 511) // 512)
        return attrs

    @_errors
    def entries(self, path: str) -> list[tuple[str, int, int]]:
        """(name, file-type bits, inode) of a directory's entries, "." and ".." first."""
        node = self._node(path)
        if node.children is None:
            raise FuseOSError(errno.ENOTDIR)
        ino = node.attrs["st_ino"]
        return [(".", S.S_IFDIR, ino), ("..", S.S_IFDIR, ino)] + node.children()

    def plus_attrs(self, path: str) -> Callable[[str], dict[str, Any] | None] | None:
        """For readdirplus: a function giving a directory entry's full attributes where they
        are cheap (the real tree), so `ls -l`, `du` and rsync need no lookup round trip per
        entry; None for a directory none of whose entries qualify. Virtual entries
        (exports/, sizes/, control/: their attributes may need a plan) and entries that
        vanished meanwhile give None: the kernel looks them up as before."""
        node = self._node(path)
        if getattr(node, "real", None) is None or _in_exports(path, self.root):   # not a real directory
            return None
        base = path.rstrip("/")
        skip = {".", ".."} | (set(VIRTUAL_TOP) if _is_project_top(path, self.root) else set())

        def attrs(name: str) -> dict[str, Any] | None:
            if name in skip:
                return None
            try:
                return self.getattr(f"{base}/{name}")    # type: ignore[no-any-return]
            except OSError:
                return None
        return attrs

    def readdir(self, path: str, fh: Any) -> list[Any]:
        """The binding's generic readdir (libfuse2); CsfsFUSE.readdir_fuse_3 skips the dicts."""
        return [(name, {"st_mode": mode, "st_ino": ino}, 0) for name, mode, ino in self.entries(path)]

    @_errors
    def opendir(self, path: str) -> int:
        """Immutable directories: the kernel keeps their listing (dircache) until a control
        action drops it (kcache), so a second walk lists them without calling us."""
        if self.dircache and self.kcache.enabled:
            node = self._node(path)
            if node.immutable and node.children is not None and dircache.keep_listing():
                self.kcache.record(path)
        return 0

    # no releasedir: libfuse then answers it without calling into Python

    # -- changes behind our back ----------------------------------------------------
    def _start_watching(self) -> None:
        """inotify on the shown project(s) and the instance's registry (mountpoints/watch.py)."""
        try:
            self.ctx.watcher = watch.Watcher(self._changed)
        except OSError as e:
            log.warning("no inotify (%s): changes made outside the mount show after the cache times", e)
            return
        if isinstance(self.root, InstanceView):
            self.ctx.watch(self.ctx.home, recursive=False)
        for view in self._views():
            self.ctx.watch(view.path)

    def _note_replaced(self, paths: Any) -> None:
        now = time.monotonic()
        until = now + ENTRY_TIMEOUT
        with self._vlock:
            if len(self._replaced) > 10_000:
                self._replaced = {p: t for p, t in self._replaced.items() if t > now}
            for p in paths:
                self._replaced[p] = until

    def _views(self) -> list[ProjectView]:
        if isinstance(self.root, ProjectView):
            return [self.root]
        return list(self.root.views())

    def _changed(self, events: list[tuple[str, int]]) -> None:
        """A batch of inotify events: drop what the mount and the kernel cached about those
        paths; a change to a project's structure or metadata (a job's job.json, a metafile,
        a file removed or replaced, anything at the top) drops all of that project's."""
        if any(p == watch.OVERFLOW for p, _ in events):
            self.ctx.invalidate()
            self.kcache.invalidate("")
            return
        home = str(self.ctx.home)
        if any(os.path.dirname(p) == home for p, _ in events):
            self.ctx.forget(base=home)        # the registry: which projects the instance shows
        for view in self._views():
            base = str(view.path)
            hits = [(p, m) for p, m in events if p == base or p.startswith(base + "/")]
            if not hits:
                continue
            deep = any(_structural(base, p, m) for p, m in hits)
            self._note_replaced(p for p, _ in hits)
            paths = {p for p, _ in hits} | {os.path.dirname(p) for p, _ in hits if p != base}
            self.ctx.forget(base if deep else None, paths)
            shown = {view.key + ("/" + os.path.relpath(p, base) if p != base else "") or "/" for p in paths}
            self.kcache.invalidate_paths(sorted(shown), prefixes=[view.key + "/exports"] if deep else [])

    def _after_action(self, project: Path | None) -> None:
        """A control action changed something: drop kernel caches of that project folder."""
        prefix = ""
        if isinstance(self.root, InstanceView) and project is not None:
            prefix = next((f"/{n}" for n, p in self.root.folders().items() if p == project), "")
            self.ctx.invalidate()
        self.kcache.invalidate(prefix if project is not None else "")

    @_errors
    def readlink(self, path: str) -> str:
        node = self._node(path)
        if node.real is None or not S.S_ISLNK(node.attrs["st_mode"]):
            raise FuseOSError(errno.EINVAL)
        return os.readlink(node.real)

    @_errors
    def access(self, path: str, amode: int) -> int:
        node = self._node(path)
        if amode & os.W_OK:
            if node.kind != "control":
                raise FuseOSError(errno.EROFS)
            self._owner_only()
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self.base)
        keys = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree",
                "f_favail", "f_flag", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    # -- data ---------------------------------------------------------------------
    @_errors
    def open(self, path: str, fi: Any) -> int:
        node = self._node(path)
        wants_write = bool(fi.flags & WRITE_FLAGS) or (fi.flags & os.O_ACCMODE) != os.O_RDONLY
        if node.kind == "control":
            if wants_write:
                self._owner_only()
            fi.direct_io = 1
            h = _Handle(node=node)
            if wants_write:
                h.pending = Pending(node.control, bool(fi.flags & os.O_APPEND))
        elif wants_write:
            raise FuseOSError(errno.EROFS)
        elif node.children is not None:
            raise FuseOSError(errno.EISDIR)
        elif node.kind == "real" or node.source is not None or node.source_fn is not None:
            src = node.real or node.source or node.source_fn()   # type: ignore[misc]
            h = _Handle(fd=os.open(src, os.O_RDONLY | os.O_CLOEXEC))
            st = os.fstat(h.fd)
            h.size, h.sparse = st.st_size, st.st_blocks * 512 < st.st_size
            # larger read-ahead below us; none for sparse sources, whose read-ahead would
            # only fill the source's page cache with zeroed holes we never read
            os.posix_fadvise(h.fd, 0, 0, os.POSIX_FADV_RANDOM if h.sparse else os.POSIX_FADV_SEQUENTIAL)
            self._cache_mode(path, node, fi, h, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
            h.keep = bool(fi.keep_cache)
        else:
            data = node.data() if node.data else b""
            h = _Handle(data=data)
            h.size = len(data)
            if node.immutable:
                self._cache_mode(path, node, fi, h, (len(data), zlib.crc32(data)))
            else:
                fi.direct_io = 1   # sizes: always the current text
        if NOFLUSH and h.pending is None:
            fi.noflush = 1   # only control files need flush(): no round trip at close for the rest
        fh = next(self._next)
        self._handles[fh] = h
        fi.fh = fh
        return 0

    def _cache_mode(self, path: str, node: Node, fi: Any, h: _Handle, version: tuple) -> None:
        """How the kernel may cache what this handle serves (each handle serves one version:
        its own fd or bytes). Never a mix of versions in one file:
        - the version the kernel may hold pages of (or the first open): keep_cache for
          immutable files, counted while open;
        - another version while that one is still being read: direct_io (no page cache, no
          size limit), so neither reader sees the other's pages;
        - another version, nobody reading the old one: direct_io too, and the kernel's pages
          and attributes are dropped (libfuse3; libfuse2 cannot, so it stays direct until the
          attribute timeout has passed); the next open starts afresh."""
        if not node.immutable:
            return      # keep_cache 0: the kernel drops this file's pages at every open
        now = time.monotonic()
        src = node.real or node.source
        if src is not None and self._replaced.get(src, 0.0) > now:
            fi.direct_io = 1   # its file changed lately: the kernel may hold its old size
            return
        with self._vlock:
            v = self._versions.get(path)
            if v is None or (v[0] == version and now >= v[3]):
                keep = self._keep(path, node)
                if v is None:
                    if len(self._versions) > MAX_VERSIONS:
                        self._forget_versions()
                    v = self._versions[path] = [version, 0, h.size, 0.0]
                    keep = 0    # pages of an older version may linger: drop them now
                v[1] += 1
                h.version = version
                fi.keep_cache = keep
                return
            fi.direct_io = 1
            if v[1] or v[0] == version:
                return
            del self._versions[path]
            if not self.kcache.enabled:
                self._versions[path] = [version, 0, h.size, now + ENTRY_TIMEOUT]
        self.kcache.invalidate_paths([path], wait=False)

    def _forget_versions(self) -> None:
        """Bound the table: forget files nobody has open (their next open drops their pages)."""
        for p in [p for p, v in self._versions.items() if not v[1]]:
            del self._versions[p]

    def _keep(self, path: str, node: Node) -> int:
        """keep_cache for immutable files, remembered so a control action can drop it.
        Without invalidation only real data files keep their cache (generated ones may change)."""
        if not node.immutable:
            return 0
        if self.kcache.enabled:
            self.kcache.record(path)
            return 1
        return 1 if node.kind == "real" or node.source is not None else 0

    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        h = self._handles.get(fi.fh)
        if h is None:
            raise FuseOSError(errno.EBADF)
        if h.fd >= 0:
            h.prefetch(offset, size, h.keep)
            return os.pread(h.fd, size, offset)
        data = h.data
        if data is None:           # a control file: its current outcome
            data = self.controls.outcome(h.node.control[1], h.node.control[2])[0]
        return data[offset:offset + size]

    def read_buf(self, path: str, bufpp: Any, size: int, offset: int, fi: Any) -> int:
        """Like read(), but real files are read by libfuse itself from our fd (no GIL, no copy)."""
        h = self._handles.get(fi.fh)
        if h is None:
            raise FuseOSError(errno.EBADF)
        if h.fd >= 0:
            if h.sparse:
                want = min(size, max(0, h.size - offset))
                if zerocopy.hole_length(h.fd, offset, size) >= want:
                    # all hole up to the request's end (or EOF): zeros without touching the source
                    zerocopy.hand_over(bufpp, want, zeros=True)
                    return 0
            else:
                h.prefetch(offset, size, h.keep)
            zerocopy.hand_over(bufpp, size, fd=h.fd, pos=offset)
        else:
            zerocopy.hand_over(bufpp, size, data=self.read(path, size, offset, fi))
        return 0

    def lseek(self, path: str, offset: int, whence: int, fi: Any) -> int:
        """SEEK_DATA/SEEK_HOLE (the kernel does the rest): tar -S and cp find a sparse
        file's holes through the mount as they do natively, and skip reading them."""
        h = self._handles.get(fi.fh)
        if h is None:
            raise FuseOSError(errno.EBADF)
        if h.fd >= 0:
            return os.lseek(h.fd, offset, whence)
        size = len(h.data if h.data is not None else self.read(path, 1 << 30, 0, fi))  # control: its outcome
        if offset >= size and whence in (os.SEEK_DATA, os.SEEK_HOLE):
            raise FuseOSError(errno.ENXIO)
        return offset if whence == os.SEEK_DATA else size

    @_errors
    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        """A control file: act on each complete command (control.Pending)."""
        h = self._handles.get(fi.fh)
        if h is None or h.pending is None:
            raise FuseOSError(errno.EROFS)
        self._owner_only()
        return h.pending.write(data, offset)

    @_errors
    def flush(self, path: str, fi: Any) -> int:
        """close(): a control file acts on a last command written without a newline, and
        close() returns its errno. Other files are opened with noflush (libfuse3)."""
        h = self._handles.get(fi.fh)
        if h is not None and h.pending is not None:
            h.pending.flush()
        return 0

    @_errors
    def truncate(self, path: str, length: int, fh: Any = None) -> int:
        if self._node(path).kind != "control":
            raise FuseOSError(errno.EROFS)
        return 0

    # no fsync: libfuse answers ENOSYS and the kernel stops sending it

    def release(self, path: str, fi: Any) -> int:
        h = self._handles.pop(fi.fh, None)
        if h is None:
            return 0
        if h.version is not None:
            with self._vlock:
                v = self._versions.get(path)
                if v is not None and v[0] == h.version and v[1]:
                    v[1] -= 1
        if h.fd >= 0:
            os.close(h.fd)
        if h.pending is not None:
            try:   # no flush came (a binding without it): the outcome file tells the result
                h.pending.flush()
            except Exception:
                pass
        return 0

    # -- everything else is read-only ------------------------------------------------
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        raise FuseOSError(errno.ENOSYS)

    def listxattr(self, path: str) -> list[str]:
        raise FuseOSError(errno.ENOSYS)

    def setxattr(self, *args: Any) -> int:
        raise FuseOSError(errno.ENOSYS)

    def removexattr(self, *args: Any) -> int:
        raise FuseOSError(errno.ENOSYS)

    if not READ_BUF:   # binding without read_buf (fusepy) or unknown struct layout: plain read()
        del read_buf
    if not LSEEK:      # libfuse2: the kernel answers SEEK_DATA/SEEK_HOLE itself (all data)
        del lseek

    create = mkdir = mknod = unlink = rmdir = symlink = rename = link = _erofs  # type: ignore[assignment]
    chmod = chown = utimens = fallocate = _erofs  # type: ignore[assignment]


def _project_parts(path: str, root: InstanceView | ProjectView) -> list[str] | None:
    """The parts of `path` inside its project folder (None: the instance root itself)."""
    parts = [p for p in path.split("/") if p]
    if isinstance(root, InstanceView):
        return parts[1:] if parts else None
    return parts


def _in_exports(path: str, root: InstanceView | ProjectView) -> bool:
    parts = _project_parts(path, root)
    return bool(parts) and parts[0] == "exports"    # type: ignore[index]


def _is_project_top(path: str, root: InstanceView | ProjectView) -> bool:
    return _project_parts(path, root) == []


def _structural(base: str, path: str, mask: int) -> bool:
    """Does this event change what a project's model, exports or sizes are built from?"""
    return (os.path.dirname(path) == base or path == base or bool(mask & watch.STRUCTURAL)
            or path.endswith((".json", ".cs", ".csg")))


MAX_VERSIONS = 200_000
READDIR_PLUS = 1      # libfuse3: readdir flag FUSE_READDIR_PLUS (the kernel asks for attributes)
FILL_DIR_PLUS = 2     # ... and the filler's FUSE_FILL_DIR_PLUS (this entry's stat is complete)
PLUS_ENABLED = os.environ.get("CSFS_READDIRPLUS", "1") != "0"


def _tune_readahead(mountpoint: str, kb: int, wait: float = 10.0) -> None:
    """Raise the mount's read-ahead to `kb` KiB (four max_read requests): libfuse3 then
    sends max_read-sized reads, and a small file needs fewer read-ahead rounds.

    Reads /proc/self/mountinfo only: the FUSE process must never touch its own mount."""
    from .mounting import find_mount

    deadline = time.monotonic() + wait
    settled = None
    while time.monotonic() < deadline:
        m = find_mount(mountpoint)
        if m is not None:
            # the kernel lowers read-ahead when it processes the init reply, which may come
            # after we first see the mount: keep setting it for a short while
            settled = settled or time.monotonic() + 2.0
            path = f"/sys/class/bdi/{m.devno}/read_ahead_kb"
            try:
                with open(path) as f:
                    if f.read().strip() != str(kb):
                        with open(path, "w") as w:
                            w.write(str(kb))
            except OSError:
                return   # not root, or no such bdi: the default still works
            if time.monotonic() > settled:
                return
        time.sleep(0.05)



def fill_stat(st: Any, a: dict[str, Any]) -> None:
    """Set every field of a struct stat that the mount reports from a getattr dict (times in ns)."""
    st.st_mode, st.st_ino, st.st_nlink = a["st_mode"], a["st_ino"], a["st_nlink"]
    st.st_uid, st.st_gid, st.st_rdev = a["st_uid"], a["st_gid"], a.get("st_rdev", 0)
    st.st_size, st.st_blocks, st.st_blksize = a["st_size"], a["st_blocks"], a["st_blksize"]
    st.st_atimespec.tv_sec, st.st_atimespec.tv_nsec = divmod(a["st_atime"], 1_000_000_000)
    st.st_mtimespec.tv_sec, st.st_mtimespec.tv_nsec = divmod(a["st_mtime"], 1_000_000_000)
    st.st_ctimespec.tv_sec, st.st_ctimespec.tv_nsec = divmod(a["st_ctime"], 1_000_000_000)


def fuse_class() -> Any:
    """The binding's FUSE class, plus the lseek callback mfusepy does not wrap itself, a
    leaner readdir, and Python thread states kept across requests."""
    from .fusecompat import FUSE

    pinned = threading.local()
    binding = sys.modules[FUSE.__module__]
    c_stat = binding.c_stat
    listings: dict[str, tuple[list[tuple[str, int, int]], Any]] = {}   # readdirplus walks in progress

    class CsfsFUSE(FUSE):  # type: ignore[misc, valid-type]
        def _wrapper(self, func: Any, *args: Any, **kwargs: Any) -> Any:
            # ctypes creates and destroys a Python thread state around every callback from
            # a libfuse thread (an mmap/munmap pair and more, per request); holding one extra
            # reference per thread keeps it. libfuse keeps its worker threads (<= 10).
            if not getattr(pinned, "done", False):
                ctypes.pythonapi.PyGILState_Ensure()
                pinned.done = True
            return super()._wrapper(func, *args, **kwargs)

        def readdir_fuse_3(self, path: bytes, buf: Any, filler: Any, offset: int, fip: Any,
                           flags: int) -> int:
            # mfusepy's generic loop costs ~3.5 us per entry; this one about half
            st = c_stat()
            enc, errs = self.encoding, self.errors
            if flags & READDIR_PLUS and PLUS_ENABLED:
                return self._readdir_plus(path.decode(enc, errs), buf, filler, offset, st)
            for name, mode, ino in self.operations.entries(path.decode(enc, errs)):
                st.st_mode, st.st_ino = mode, ino
                if filler(buf, name.encode(enc, errs), st, 0, 0):
                    break
            return 0

        def _readdir_plus(self, path: str, buf: Any, filler: Any, offset: int, st: Any) -> int:
            """readdirplus: real entries carry their attributes (CsfsFS.plus_attrs). libfuse
            3.14 drops them when the filler is given offset 0 (its own buffered listing), so
            entries go out with offsets, one kernel request at a time; the listing taken at
            offset 0 is kept for the following requests of the same walk."""
            ops = self.operations
            if offset == 0 or path not in listings:
                if len(listings) > 64:
                    listings.clear()
                listings[path] = (ops.entries(path), ops.plus_attrs(path))
            entries, attrs_of = listings[path]
            enc, errs = self.encoding, self.errors
            for i in range(offset, len(entries)):
                name, mode, ino = entries[i]
                attrs = attrs_of(name) if attrs_of is not None else None
                if attrs is None:
                    ctypes.memset(ctypes.byref(st), 0, ctypes.sizeof(st))
                    st.st_mode, st.st_ino = mode, ino
                else:
                    fill_stat(st, attrs)
                if filler(buf, name.encode(enc, errs), st, i + 1, 0 if attrs is None else FILL_DIR_PLUS):
                    return 0
            listings.pop(path, None)
            return 0

        def getattr_fuse_3(self, path: bytes, buf: Any, fip: Any) -> int:
            # the binding's fgetattr zeroes the struct and copies the dict key by key
            # (getattr/setattr per key): filling the fields directly halves that part
            attrs = self.operations.getattr(path.decode(self.encoding, self.errors))
            fill_stat(buf.contents, attrs)
            return 0

        def lseek(self, path: bytes | None, offset: int, whence: int, fip: Any) -> int:
            decoded = None if path is None else path.decode(self.encoding, self.errors)
            return self.operations.lseek(decoded, offset, whence, fip.contents)

    return CsfsFUSE
