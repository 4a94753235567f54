"""What the mount drops from its caches and the kernel's when a project changes: behind
its back (inotify, mountpoints/watch.py) or through a control action."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from . import watch
from .context import Context
from .instance_view import InstanceView
from .kcache import KernelCache
from .pagecache import PageCache
from .project_view import ProjectView

log = logging.getLogger("csfs.mount")


class Changes:
    def __init__(self, ctx: Context, root: InstanceView | ProjectView, kcache: KernelCache,
                 pages: PageCache) -> None:
        self.ctx, self.root, self.kcache, self.pages = ctx, root, kcache, pages

    def start(self) -> None:
        """inotify on the shown project(s) and the instance's registry (mountpoints/watch.py)."""
        try:
            self.ctx.watcher = watch.Watcher(self.changed)
        except OSError as e:
            log.warning("no inotify (%s): changes made outside the mount show after the cache times", e)
            return
        if isinstance(self.root, InstanceView):
            self.ctx.watch(self.ctx.home, recursive=False)
        for view in self._views():
            self.ctx.watch(view.path)

    def stop(self) -> None:
        if self.ctx.watcher is not None:
            self.ctx.watcher.stop()
            self.ctx.watcher = None

    def _views(self) -> list[ProjectView]:
        if isinstance(self.root, ProjectView):
            return [self.root]
        return list(self.root.views())

    def changed(self, events: list[tuple[str, int]]) -> None:
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
            self.pages.note_replaced(p for p, _ in hits)
            paths = {p for p, _ in hits} | {os.path.dirname(p) for p, _ in hits if p != base}
            self.ctx.forget(base if deep else None, paths)
            shown = {view.key + ("/" + os.path.relpath(p, base) if p != base else "") or "/" for p in paths}
            self.kcache.invalidate_paths(sorted(shown), prefixes=[view.key + "/exports"] if deep else [])

    def after_action(self, project: Path | None) -> None:
        """A control action changed something: drop kernel caches of that project folder."""
        prefix = ""
        if isinstance(self.root, InstanceView) and project is not None:
            prefix = next((f"/{n}" for n, p in self.root.folders().items() if p == project), "")
            self.ctx.invalidate()
        self.kcache.invalidate(prefix if project is not None else "")


def _structural(base: str, path: str, mask: int) -> bool:
    """Does this event change what a project's model, exports or sizes are built from?"""
    return (os.path.dirname(path) == base or path == base or bool(mask & watch.STRUCTURAL)
            or path.endswith((".json", ".cs", ".csg")))
