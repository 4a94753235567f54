"""An output group's dataset as one numpy array: its results' final versions joined by uid.

The same join as a group export (core.exportplan), with `*/path` values relative to the
project directory, as CryoSPARC itself stores them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import exportplan

if TYPE_CHECKING:
    from .project import Project


def group_dataset(project: Project, juid: str, group: str) -> np.ndarray:
    """The joined dataset of output `group` of job `juid` (NotFoundError if either is unknown)."""
    job = project.job(juid)
    g = exportplan._find_group(job, group)
    data = exportplan.group_data(project, g)
    arr = exportplan.build_group_dataset(project, data)
    for name in data.path_maps:   # '>J5/extract/x.mrc' (relative to the export) -> 'J5/extract/x.mrc'
        col = arr[name]
        arr[name] = np.char.lstrip(col, b">") if col.size else col
    return arr
