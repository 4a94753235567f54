"""The FUSE operations: resolve a path to a Node (views), then serve it.

Read-only everywhere except control files (EROFS). Real data is read with os.pread on
an fd kept per open handle; immutable data (completed jobs, exports) keeps its page
cache across opens; control and size files use direct I/O so a read always shows the
current text. Extended attributes answer ENOSYS so the kernel stops asking.
"""
from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import stat as S
from collections.abc import Callable
from pathlib import Path
from typing import Any

from csfs.core.errors import CsfsError

from . import generated, native
from .changes import Changes
from .context import Context
from .control import Controls
from .fusecompat import (
    FUSE_MAJOR,
    FUSE_MINOR,
    LSEEK,
    NOFLUSH,
    READ_BUF,
    FuseOSError,
    Operations,
    fuse_get_context,
)
from .handles import Handle
from .instance_view import InstanceView
from .kcache import KernelCache
from .native import binding, dircache, readahead, zerocopy
from .nodes import Node, RealDir
from .pagecache import PageCache
from .project_view import VIRTUAL_TOP, ProjectView

log = logging.getLogger("csfs.mount")

ENTRY_TIMEOUT = 60.0
# Entries the kernel may hold before it is asked to forget them all (kcache.forget_tree):
# libfuse keeps a node of ~270 bytes for each, so this bounds the mount's memory however
# much is walked (an instance of several large projects is millions of paths): ~540 MB at
# 2,000,000, so a project of a million files still walks warm a second time.
MAX_ENTRIES = int(os.environ.get("CSFS_MOUNT_MAX_ENTRIES", 2_000_000))
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


# The largest read request: 1 MiB less 4 pages, so that libfuse can splice a whole reply
# through a pipe of the default maximum size (1 MiB; growing it needs CAP_SYS_RESOURCE).
# Bigger replies fall back to a copy through a malloc'd buffer.
MAX_READ = 1024 * 1024 - 4 * 4096


class CsfsFS(Operations):
    """An instance (source None) or one project directory, served read-only with virtual parts."""

    use_ns = True
    max_read = MAX_READ
    dircache = False   # listings cached by the kernel (dircache.install worked)
    read_only = False  # a read-only superblock (--plain, -o ro): reads leave attributes valid
    ready: Callable[[], None] | None = None   # called once the mount answers (mounting.serve)

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
        self.pages = PageCache(self.kcache, ENTRY_TIMEOUT)
        self.changes = Changes(ctx, self.root, self.kcache, self.pages)
        self.controls.after_action = self.changes.after_action
        self._handles: dict[int, Handle] = {}
        self._next = itertools.count(1)
        self._relist: set[str] = set()   # cached listings whose entries' attributes went stale
        self.handed = 0                  # entries handed to the kernel since it last forgot them

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
        if conn_info is not None and READ_BUF:
            zerocopy.want_splice(conn_info)
        if conn_info is not None and hasattr(conn_info, "max_read"):
            conn_info.max_read = self.max_read   # libfuse3 insists it equals the mount option
        if config_3 is not None:   # libfuse3: these live in the config, not in -o options
            config_3.use_ino = 1
            config_3.attr_timeout = ENTRY_TIMEOUT
            config_3.entry_timeout = ENTRY_TIMEOUT
            config_3.negative_timeout = 0.0
        self.kcache.bind()
        self.dircache = dircache.install(self.kcache.session, FUSE_MAJOR, FUSE_MINOR)
        self.changes.start()
        readahead.tune(self.ctx.mountpoint, 4 * self.max_read // 1024)
        native.report(self.ctx.mountpoint)
        if self.ready is not None:
            self.ready()

    def init(self, path: str) -> None:
        """fusepy (libfuse2) calls init(); mfusepy prefers init_with_config()."""
        self.init_with_config(None, None)

    def destroy(self, path: str) -> None:
        self.changes.stop()
        generated.shutdown()
        native.clear_state(self.ctx.mountpoint)
        for h in list(self._handles.values()):
            h.close()
        self._handles.clear()

    # -- metadata -----------------------------------------------------------------
    def _over_budget(self) -> None:
        """More than MAX_ENTRIES attributes handed to the kernel (lookups, readdirplus; a
        refresh counts too, so a little early): ask it to forget every entry it holds (not
        again before as many more, even when it cannot)."""
        handed, self.handed = self.handed, 0
        try:
            names = [e[0] for e in self.entries("/")[2:]]
        except OSError:
            return
        if self.kcache.forget_tree(names):
            log.warning("the kernel held up to %d entries (CSFS_MOUNT_MAX_ENTRIES): asked it to forget them",
                        handed)

    @_errors
    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        return self._shown(path, self._node(path))

    @_errors
    def _child_attrs(self, path: str, child: Callable[[str], Node], name: str) -> dict[str, Any]:
        """getattr of `path`, whose node is `child(name)` (a _Dir's child_maker)."""
        return self._shown(path, child(name))

    def _shown(self, path: str, node: Node) -> dict[str, Any]:
        """The attributes handed to the kernel for `node` at `path` (counted: MAX_ENTRIES)."""
        self.handed += 1
        if self.handed >= MAX_ENTRIES:
            self._over_budget()
        attrs = node.attrs
        if node.immutable:
            if node.regenerated and self.kcache.enabled:
                self.kcache.record(path)    # a generated export file: dropped when its project changes
            size = self.pages.shown_size(path, attrs["st_size"])
            if size != attrs["st_size"]:
                attrs = dict(attrs, st_size=size, st_blocks=(size + 511) // 512)
        return attrs

    @_errors
    def entries(self, path: str) -> list[tuple[str, int, int]]:
        """(name, file-type bits, inode) of a directory's entries, "." and ".." first."""
        node = self._node(path)
        ino = node.attrs["st_ino"]
        return [(".", S.S_IFDIR, ino), ("..", S.S_IFDIR, ino)] + node.children()

    def plus_attrs(self, path: str) -> Callable[[str], dict[str, Any] | None] | None:
        """For readdirplus: a function giving a directory entry's full attributes where they
        are cheap (the real tree), so `ls -l`, `du` and rsync need no lookup round trip per
        entry; None for a directory none of whose entries qualify. Entries under exports/
        qualify too (listing an export already loaded its index, which holds their sizes);
        sizes/ and control/ (computed or writable) and entries that vanished meanwhile give
        None: the kernel looks them up as before."""
        node = self._node(path)
        if not (isinstance(node, RealDir) or _in_exports(path, self.root)):
            return None
        base = path.rstrip("/")
        skip = {".", ".."} | (set(VIRTUAL_TOP) if _is_project_top(path, self.root) else set())
        make = getattr(node, "child_maker", None)
        try:
            child = make() if make is not None else None
        except (OSError, CsfsError):
            child = None

        def attrs(name: str) -> dict[str, Any] | None:
            if name in skip:
                return None
            try:
                if child is not None:
                    return self._child_attrs(f"{base}/{name}", child, name)
                return self.getattr(f"{base}/{name}")
            except OSError:
                return None
        return attrs

    def readdir(self, path: str, fh: Any) -> list[Any]:
        """The binding's generic readdir (libfuse2); CsfsFUSE.readdir_fuse_3 skips the dicts."""
        return [(name, {"st_mode": mode, "st_ino": ino}, 0) for name, mode, ino in self.entries(path)]

    @_errors
    def opendir(self, path: str) -> int:
        """Immutable directories: the kernel keeps their listing (dircache) until a control
        action drops it (kcache), so a second walk lists them without calling us.

        Except once after a file in it was read through us: the kernel then marks that
        file's atime stale (on a writable superblock), and the next `lstat` would be a GETATTR
        round trip per file (rsync's second pass). Opening the directory without keeping
        its listing makes the kernel list it again with readdirplus, which refreshes every
        entry's attributes in one request, and cache that new listing."""
        if self.dircache and self.kcache.enabled:
            node = self._node(path)
            afresh = path in self._relist
            self._relist.discard(path)
            if node.immutable and node.is_dir and dircache.keep_listing(afresh):
                self.kcache.record(path)
        return 0

    def _note_read(self, path: str, h: Handle) -> None:
        """The first read of a handle that reached us: its directory is listed afresh (opendir)."""
        h.read_once = True
        if self.dircache and not self.read_only and path:
            if len(self._relist) >= 4096:   # bounded: a forgotten one only costs GETATTRs
                self._relist.clear()
            self._relist.add(path.rpartition("/")[0] or "/")

    # no releasedir: libfuse then answers it without calling into Python

    @_errors
    def readlink(self, path: str) -> str:
        return self._node(path).readlink()

    @_errors
    def access(self, path: str, amode: int) -> int:
        node = self._node(path)
        if amode & os.W_OK:
            self._may_write(node)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self.base)
        keys = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree",
                "f_favail", "f_flag", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    # -- data ---------------------------------------------------------------------
    def _may_write(self, node: Node) -> None:
        """Only control files may be written, and only by the mount's owner."""
        if not node.writable:
            raise FuseOSError(errno.EROFS)
        self._owner_only()

    @_errors
    def open(self, path: str, fi: Any) -> int:
        node = self._node(path)
        wants_write = bool(fi.flags & WRITE_FLAGS) or (fi.flags & os.O_ACCMODE) != os.O_RDONLY
        if wants_write:
            self._may_write(node)
        h = node.open(wants_write, bool(fi.flags & os.O_APPEND))
        if h.direct:
            fi.direct_io = 1   # control and size files: always the current text
        elif node.immutable:
            self.pages.choose(path, node, fi, h)
        h.keep = bool(fi.keep_cache)
        if NOFLUSH and not h.writable:
            fi.noflush = 1   # only control files need flush(): no round trip at close for the rest
        fh = next(self._next)
        self._handles[fh] = h
        fi.fh = fh
        return 0

    def _handle(self, fi: Any) -> Handle:
        h = self._handles.get(fi.fh)
        if h is None:
            raise FuseOSError(errno.EBADF)
        return h

    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        h = self._handle(fi)
        if not h.read_once:
            self._note_read(path, h)
        return h.read(size, offset)

    def read_buf(self, path: str, bufpp: Any, size: int, offset: int, fi: Any) -> int:
        """Like read(), but real files are read by libfuse itself from our fd (no GIL, no copy)."""
        h = self._handle(fi)
        if not h.read_once:
            self._note_read(path, h)
        h.read_buf(bufpp, size, offset)
        return 0

    def lseek(self, path: str, offset: int, whence: int, fi: Any) -> int:
        """SEEK_DATA/SEEK_HOLE (the kernel does the rest): tar -S and cp find a sparse
        file's holes through the mount as they do natively, and skip reading them."""
        return self._handle(fi).lseek(offset, whence)

    @_errors
    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        """A control file: act on each complete command (control.Pending)."""
        h = self._handles.get(fi.fh)
        if h is None or not h.writable:
            raise FuseOSError(errno.EROFS)
        self._owner_only()
        return h.write(data, offset)

    @_errors
    def flush(self, path: str, fi: Any) -> int:
        """close(): a control file acts on a last command written without a newline, and
        close() returns its errno. Other files are opened with noflush (libfuse3)."""
        h = self._handles.get(fi.fh)
        if h is not None:
            h.flush()
        return 0

    @_errors
    def truncate(self, path: str, length: int, fh: Any = None) -> int:
        if not self._node(path).writable:
            raise FuseOSError(errno.EROFS)
        return 0

    # no fsync: libfuse answers ENOSYS and the kernel stops sending it

    def release(self, path: str, fi: Any) -> int:
        h = self._handles.pop(fi.fh, None)
        if h is None:
            return 0
        self.pages.release(path, h)
        h.close()
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

    create = mkdir = mknod = unlink = rmdir = symlink = rename = link = _erofs
    chmod = chown = utimens = fallocate = _erofs


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


def fuse_class() -> Any:
    """The binding's FUSE class with the binding tricks that are on (native.binding), plus
    the lseek callback mfusepy does not wrap itself."""
    from .fusecompat import FUSE

    class CsfsFUSE(binding.tuned(FUSE, FUSE_MAJOR)):  # type: ignore[misc]  # a base class made at run time
        def lseek(self, path: bytes | None, offset: int, whence: int, fip: Any) -> int:
            decoded = None if path is None else path.decode(self.encoding, self.errors)
            return int(self.operations.lseek(decoded, offset, whence, fip.contents))

    return CsfsFUSE
