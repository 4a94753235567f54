"""Permissions of the mount's own entries: never more than their sources grant.

With `--allow-other` the kernel checks every access against the mode, owner and group
we report (default_permissions), so a virtual entry must not open what its owner closed:

- a data file under exports/ keeps its source's mode and owner;
- a generated file (stripped job.json, joined .cs, .csg) takes the owner of its first
  source and is no more readable than the least readable of its sources;
- a virtual folder (an export, and each folder in it) is no more open than its job folder;
- sizes/<J> is readable only by who may list J; sizes/total only by who may list them all;
- control files are the mounting user's alone (their outcomes name paths and jobs).

With `--allow-other`, each source also counts the folders on its real path (a file in a
closed folder is closed), and so does the project folder itself at the top of the mount.

Owners can differ between sources, so the bits a class of callers gets are the ones every
possible caller of that class is sure to get from every source (`granted`): exact when
the sources share owner and group, and on the safe side otherwise.
"""
from __future__ import annotations

import os
import stat as S
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .statinfo import T_GID, T_MODE, T_UID, compact

if TYPE_CHECKING:
    from .context import Context

R, X = 4, 1
AS_IS = 0          # the entry's bits are at most the source's
TRAVERSE = X       # the entry needs the source folder to be traversable
LIST = R | X       # ... readable and traversable (a listing, a size)
CONTROL_PERM = 0o600


def granted(st: tuple, uid: int, gid: int) -> tuple[int, int, int]:
    """The rwx bits source `st` surely grants each class of callers of an entry owned by
    uid:gid: (its owner, members of its group, everyone else)."""
    mode, suid, sgid = st[T_MODE], st[T_UID], st[T_GID]
    so, sg, sx = (mode >> 6) & 7, (mode >> 3) & 7, mode & 7
    owner = so if suid == uid else sg & sx                     # may or may not be in sgid
    not_owner = so if suid != uid else 7                       # a caller may own the source
    group = not_owner & (sg if sgid == gid else sg & sx)
    other = not_owner & (sg if sgid != gid else 7) & sx
    return owner, group, other


def limit(perm: int, uid: int, gid: int, sources: Iterable[tuple[tuple, int]]) -> int:
    """`perm` less what any (source stat, need) withholds; need AS_IS keeps at most the
    source's own bits, TRAVERSE/LIST keep a class's bits only if the source grants those."""
    bits = [(perm >> 6) & 7, (perm >> 3) & 7, perm & 7]
    for st, need in sources:
        got = granted(st, uid, gid)
        for i in range(3):
            bits[i] &= got[i] if need == AS_IS else (7 if got[i] & need == need else 0)
    return (perm & ~0o777) | (bits[0] << 6) | (bits[1] << 3) | bits[2]


class Perms:
    """The permission rules of one mount (ctx.allow_other adds the folders on real paths)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _stat(self, path: str) -> tuple | None:
        def compute() -> tuple | None:
            try:
                return compact(os.stat(path))
            except (OSError, ValueError):
                return None
        return self.ctx.cached(("perm-stat", path), compute, True)

    def _folders(self, path: str) -> list[tuple]:
        """Stats of the folders on the real path to `path` (symlinks resolved), "/" first."""
        def compute() -> list[tuple]:
            out, parent = [], os.path.dirname(os.path.realpath(path))
            while True:
                st = self._stat(parent)
                out.append(st if st is not None else (S.S_IFDIR, 0, 0, 0))   # gone: closed to all
                up = os.path.dirname(parent)
                if up == parent:
                    return out[::-1]
                parent = up
        return self.ctx.cached(("perm-folders", path), compute, True)

    def derived(self, perm: int, paths: Sequence[tuple[str, int]]) -> tuple[int, int, int]:
        """(perm, uid, gid) of an entry made from `paths` ((path, need) pairs; the first
        that exists gives the owner). Without any source: the mounting user's, closed to
        everyone else."""
        stats = [(st, need) for st, need in ((self._stat(p), need) for p, need in paths) if st is not None]
        if not stats:
            return perm & 0o700, self.ctx.uid, self.ctx.gid
        if self.ctx.allow_other:
            stats += [(f, TRAVERSE) for p, _ in paths for f in self._folders(p)]
        uid, gid = stats[0][0][T_UID], stats[0][0][T_GID]
        return limit(perm, uid, gid, stats), uid, gid

    def apply(self, attrs: dict[str, Any], perm: int, paths: Sequence[tuple[str, int]]) -> dict[str, Any]:
        """`attrs` of a virtual entry with the mode and owner `derived` gives."""
        perm, attrs["st_uid"], attrs["st_gid"] = self.derived(perm, paths)
        attrs["st_mode"] = S.S_IFMT(attrs["st_mode"]) | perm
        return attrs

    def on_real_path(self, attrs: dict[str, Any], path: str) -> dict[str, Any]:
        """A source file's (or the project folder's) own attrs, less what the folders on
        its real path withhold (only with --allow-other)."""
        if self.ctx.allow_other:
            mode = limit(attrs["st_mode"], attrs["st_uid"], attrs["st_gid"],
                         [(f, TRAVERSE) for f in self._folders(path)])
            if mode != attrs["st_mode"]:
                attrs = dict(attrs, st_mode=mode)
        return attrs

    def control(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["st_mode"] = S.S_IFMT(attrs["st_mode"]) | CONTROL_PERM
        return attrs
