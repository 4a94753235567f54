"""Project document variants the demo flavours do not write, made from a demo project.

`make_numbered` gives a project exported by instance project P<num> (CryoSPARC v4.4+):
every document names it by uid and by number (uid_num, project_uid_num, cryosparc-tools'
models/project.py, job.py, workspace.py) and project.json names its old place.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def edit_json(path: Path, fn: Callable[[Any], Any]) -> None:
    path.write_text(json.dumps(fn(json.loads(path.read_text())), indent=2))


def make_numbered(project: Path, num: int = 12, old_dir: str = "/old/place/CS-csfs-demo") -> Path:
    edit_json(project / "project.json",
              lambda d: {**d, "uid": f"P{num}", "uid_num": num, "project_dir": old_dir})
    edit_json(project / "workspaces.json",
              lambda ws: [{**w, "project_uid": f"P{num}", "project_uid_num": num} for w in ws])
    for jj in sorted(project.glob("J*/job.json")):
        edit_json(jj, lambda d: {**d, "project_uid": f"P{num}", "project_uid_num": num,
                                 "uid_num": int(d["uid"][1:])})
    return project
