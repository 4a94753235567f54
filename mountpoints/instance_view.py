"""The root of an instance mount: one folder per registered project (named by its
directory name) plus `control/` (attach, unarchive)."""
from __future__ import annotations

import stat as S
from pathlib import Path

from .context import Context
from .control import INSTANCE_ACTIONS, Controls
from .nodes import ControlFile, Listing, Node, VirtualDir
from .project_view import ProjectView
from .statinfo import virtual_attrs

SCOPE = "instance"


class InstanceView:
    def __init__(self, ctx: Context, controls: Controls) -> None:
        self.ctx = ctx
        self.controls = controls
        self._views: dict[str, ProjectView] = {}

    def folders(self) -> dict[str, Path]:
        """Folder name → project directory; a clash of names gets the P-uid appended."""
        def compute() -> dict[str, Path]:
            out: dict[str, Path] = {}
            # a directory detached and attached again has two records: show it once
            records = sorted(self.ctx.instance().projects(), key=lambda r: r.state == "detached")
            for rec in records:
                path = Path(rec.path)
                if path in out.values() or not path.is_dir():
                    continue          # shown already, or archived and moved away, or gone
                name = path.name if path.name not in out and path.name != "control" else f"{path.name}-{rec.uid}"
                out[name] = path
            return out
        return self.ctx.obj(("folders",), compute)

    def view(self, name: str) -> ProjectView:
        path = self.folders().get(name)
        if path is None:
            raise FileNotFoundError(2, "No such file or directory")
        v = self._views.get(name)
        if v is None or v.path != path:
            v = self._views[name] = ProjectView(self.ctx, self.controls, path, "/" + name)
        return v

    def views(self) -> list[ProjectView]:
        """The project folders resolved so far."""
        return list(self._views.values())

    def resolve(self, parts: list[str]) -> Node:
        if not parts:
            top = [] if self.ctx.plain else [("control", S.S_IFDIR, self._ino("/control"))]
            return self._dir("/", lambda: top + [(n, S.S_IFDIR, self._ino("/" + n)) for n in self.folders()])
        if parts[0] == "control" and not self.ctx.plain:
            return self._control(parts[1:])
        node = self.view(parts[0]).resolve(parts[1:])
        if len(parts) == 1:       # the folder keeps the real directory's attributes but a stable name inode
            node.attrs["st_ino"] = self._ino("/" + parts[0])
        return node

    def _ino(self, key: str) -> int:
        return self.ctx.inodes.virtual(key)

    def _dir(self, key: str, children: Listing) -> Node:
        attrs = virtual_attrs("dir", 4096, self.ctx.started_ns, self._ino(key), self.ctx.uid, self.ctx.gid)
        return VirtualDir(attrs, children)

    def _control(self, rest: list[str]) -> Node:
        if not rest:
            return self._dir("/control", lambda: [(a, S.S_IFREG, self._ino("/control/" + a))
                                                  for a in INSTANCE_ACTIONS])
        if len(rest) != 1 or rest[0] not in INSTANCE_ACTIONS:
            raise FileNotFoundError(2, "No such file or directory")
        data, mtime = self.controls.outcome(SCOPE, rest[0])
        attrs = virtual_attrs("file", len(data), mtime, self._ino("/control/" + rest[0]),
                              self.ctx.uid, self.ctx.gid, writable=True)
        self.ctx.perms.control(attrs)
        return ControlFile(attrs, (self.controls, SCOPE, rest[0], None))
