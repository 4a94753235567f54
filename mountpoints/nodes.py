"""What a mount path resolves to: one small class per kind of entry.

Every node holds its stat dict (`attrs`, statinfo.py) and answers for itself: children()
for directories, open() (a handles.Handle serving its bytes) for files, readlink() for
symlinks. The views (project_view.py, instance_view.py) build them; fs.py serves them
without asking which kind it has.
"""
from __future__ import annotations

import errno
import os
import stat as S
from collections.abc import Callable
from typing import Any

from .control import Target
from .handles import BytesHandle, ControlHandle, DirectBytesHandle, FileHandle, Handle

Entry = tuple[str, int, int]   # a directory entry: (name, file-type bits, inode)
Listing = Callable[[], list[Entry]]


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class Node:
    """One resolved path. `immutable`: the kernel may keep its pages and listing."""

    __slots__ = ("attrs", "immutable")
    is_dir = False
    writable = False      # its owner may write it (control files only)
    regenerated = False   # built by the mount from its project (an export's generated file)
    origin: str | None = None   # the source file whose bytes it shows, if any

    def __init__(self, attrs: dict[str, Any], immutable: bool = False) -> None:
        self.attrs = attrs
        self.immutable = immutable

    def children(self) -> list[Entry]:
        raise _oserror(errno.ENOTDIR)

    def open(self, write: bool, append: bool) -> Handle:
        """A handle serving the bytes (write: opened for writing; fs.py checks `writable`)."""
        raise _oserror(errno.EISDIR)

    def readlink(self) -> str:
        raise _oserror(errno.EINVAL)


class _Dir(Node):
    __slots__ = ("_children", "child_maker")
    is_dir = True

    def __init__(self, attrs: dict[str, Any], children: Listing, immutable: bool = False,
                 child_maker: Callable[[], Callable[[str], Node]] | None = None) -> None:
        super().__init__(attrs, immutable)
        self._children = children
        # gives a function from a child's name to its node, cheaper per child than resolving
        # its path (readdirplus of a big export folder); None: resolve the path
        self.child_maker = child_maker

    def children(self) -> list[Entry]:
        return self._children()


class VirtualDir(_Dir):
    """A directory of the mount's own (exports/, sizes/, control/, an export's folders)."""

    __slots__ = ()


class RealDir(_Dir):
    """A directory of the project tree; its listing may merge in virtual entries."""

    __slots__ = ("real",)

    def __init__(self, attrs: dict[str, Any], real: str, children: Listing, immutable: bool = False,
                 child_maker: Callable[[], Callable[[str], Node]] | None = None) -> None:
        super().__init__(attrs, children, immutable, child_maker)
        self.real = real


class _SourceBacked(Node):
    """A file whose bytes are those of the file `origin` on disk."""

    __slots__ = ("origin",)
    origin: str

    def __init__(self, attrs: dict[str, Any], origin: str, immutable: bool = False) -> None:
        super().__init__(attrs, immutable)
        self.origin = origin

    def open(self, write: bool, append: bool) -> Handle:
        return FileHandle(self.origin)


class RealFile(_SourceBacked):
    """Any other entry of the project tree (file, symlink, FIFO, ...), passed through."""

    __slots__ = ()

    def readlink(self) -> str:
        if not S.S_ISLNK(self.attrs["st_mode"]):
            return super().readlink()
        return os.readlink(self.origin)


class PlanFile(_SourceBacked):
    """An export's copy of a project file: served from that source file."""

    __slots__ = ()

    def __init__(self, attrs: dict[str, Any], source: str) -> None:
        super().__init__(attrs, source, immutable=True)


class _Generated(Node):
    """A file the mount builds from its project; dropped from the kernel when that changes."""

    __slots__ = ()
    regenerated = True

    def __init__(self, attrs: dict[str, Any]) -> None:
        super().__init__(attrs, immutable=True)


class GeneratedFile(_Generated):
    """An export's generated file (job.json, a rewritten .cs or .csg): `make()` gives its
    bytes at each open (made on demand: listing an export never builds one)."""

    __slots__ = ("make",)

    def __init__(self, attrs: dict[str, Any], make: Callable[[], bytes]) -> None:
        super().__init__(attrs)
        self.make = make

    def open(self, write: bool, append: bool) -> Handle:
        return BytesHandle(self.make())


class StagedFile(_Generated):
    """A generated file too big for memory: `stage()` writes it to the instance's cache
    once (on first open) and returns its path, which is then served like a source file."""

    __slots__ = ("stage",)

    def __init__(self, attrs: dict[str, Any], stage: Callable[[], str]) -> None:
        super().__init__(attrs)
        self.stage = stage

    def open(self, write: bool, append: bool) -> Handle:
        return FileHandle(self.stage())


class SizeFile(Node):
    """A sizes/ file: its text as of this lookup, never cached by the kernel."""

    __slots__ = ("data",)

    def __init__(self, attrs: dict[str, Any], data: bytes) -> None:
        super().__init__(attrs)
        self.data = data

    def open(self, write: bool, append: bool) -> Handle:
        return DirectBytesHandle(self.data)


class ControlFile(Node):
    """A control/ file: reading shows the last outcome, writing a command acts."""

    __slots__ = ("target",)
    writable = True

    def __init__(self, attrs: dict[str, Any], target: Target) -> None:
        super().__init__(attrs)
        self.target = target

    def open(self, write: bool, append: bool) -> Handle:
        return ControlHandle(self.target, write, append)
