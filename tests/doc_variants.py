"""Project documents shaped like each real CryoSPARC version, made from the v4 demo.

The shapes follow cryosparc-tools' public models (models/job.py, job_spec.py,
project.py, workspace.py at v5; cryosparc/spec.py at v4.x): v5 keeps the job type
and everything about inputs and outputs in `spec`, writes plain ISO dates and dump
bookkeeping; v4.x variants type `num_items` as an int, may omit
`output_result_groups`, name the passed-through input in a group's `passthrough`;
legacy (<= v3.3) projects are `P<n>/` folders whose jobs may have no job.json.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

V5_VERSION = "v5.0.1"


def edit_json(path: Path, fn: Callable[[Any], Any]) -> None:
    path.write_text(json.dumps(fn(json.loads(path.read_text())), indent=2))


def _plain_date(v: Any) -> Any:
    return v["$date"] if isinstance(v, dict) and "$date" in v else v


def v5_job(doc: dict) -> dict:
    """A v4 job document rewritten as CryoSPARC v5 dumps it."""
    groups = {g["name"]: g for g in doc.get("output_result_groups") or []}
    outputs: dict[str, dict] = {}
    for r in [{"group_name": name, "type": g["type"] + "."} for name, g in groups.items()] + \
            (doc.get("output_results") or []):
        g = groups.get(r["group_name"], {})
        o = outputs.setdefault(r["group_name"], {
            "type": g.get("type", r["type"].split(".")[0]), "title": g.get("title", r["group_name"]),
            "description": "", "slots": [], "passthrough": None, "num_items": g.get("num_items", 0),
            "results": [], "image": None, "summary": {}, "latest_summary_stats": {}})
        if "name" not in r:
            continue
        dtype = r["type"].split(".", 1)[1]
        o["slots"].append({"name": r["name"], "dtype": dtype})
        o["results"].append({"name": r["name"], "dtype": dtype, "versions": r["versions"],
                             "metafiles": r["metafiles"], "num_items": r["num_items"],
                             "passthrough": r["passthrough"]})
    inputs = {}
    for ig in doc.get("input_slot_groups") or []:
        inputs[ig["name"]] = {
            "type": ig["type"], "title": ig.get("title", ig["name"]), "description": "",
            "slots": [{"name": s["name"], "dtype": s["type"].split(".", 1)[-1], "required": True}
                      for s in ig.get("slots") or []],
            "count_min": 1, "count_max": "inf", "repeat_allowed": False,
            "connections": [{"job_uid": c["job_uid"], "output": c["group_name"], "results": [
                {"name": s["slot_name"], "dtype": s["result_type"].split(".", 1)[-1], "job_uid": s["job_uid"],
                 "output": s["group_name"], "result": s["result_name"], "version": s["version"]}
                for s in c["slots"]]} for c in ig.get("connections") or []]}
    out = {k: _plain_date(v) for k, v in doc.items()
           if k not in ("type", "job_type", "input_slot_groups", "output_result_groups", "output_results",
                        "params_spec", "interactive_hostname", "ui_layouts")}
    num = int(doc["uid"][1:])
    out.update({
        "_id": f"{num:024x}", "dumped_at": "2025-06-01T12:00:00.000Z", "last_dumped_version": V5_VERSION,
        "autodump": False, "uid_num": num, "project_uid_num": int(doc["project_uid"][1:]),
        "status_num": 6, "build_errors": [], "job_dir_size": 0,
        "job_dir_size_last_updated": "2025-06-01T12:00:00.000Z", "version": V5_VERSION,
        "spec": {"type": doc["type"], "params": {k: v.get("value") for k, v in (doc.get("params_spec") or {}).items()},
                 "inputs": inputs, "outputs": outputs, "ui_tile_width": 1, "ui_tile_height": 1,
                 "resource_spec": {"cpu": 1, "gpu": 0, "ram": 1, "ssd": False}},
    })
    return out


def make_v5(project: Path) -> Path:
    """Rewrite a demo project's documents as CryoSPARC v5 writes them."""
    for jj in sorted(project.glob("J*/job.json")):
        edit_json(jj, v5_job)

    def proj(d: dict) -> dict:
        d = {k: _plain_date(v) for k, v in d.items()}
        d.update(uid_num=int(d["uid"][1:]), project_dir=str(project), dumped_at="2025-06-01T12:00:00.000Z",
                 last_dumped_version=V5_VERSION, created_at_version=V5_VERSION, autodump=False)
        return d
    edit_json(project / "project.json", proj)
    edit_json(project / "workspaces.json", lambda ws: [
        {**{k: _plain_date(v) for k, v in w.items()}, "dumped_at": "2025-06-01T12:00:00.000Z",
         "last_dumped_version": V5_VERSION} for w in ws])
    return project


def make_legacy(project: Path, num: int = 12) -> Path:
    """A <= v3.3 project: `P<num>/`, no project.json or workspaces.json, and J5 (whose particles
    every later job consumes) without job.json: its outputs are known from its .csg files only."""
    legacy = project.rename(project.parent / f"P{num}")
    (legacy / "project.json").unlink()
    (legacy / "workspaces.json").unlink()
    (legacy / "J5" / "job.json").unlink()
    return legacy


def make_numbered(project: Path, num: int = 12, old_dir: str = "/old/place/CS-csfs-demo") -> Path:
    """A v4.4+ project exported by instance project P<num>: every document names it by uid
    and by number (uid_num, project_uid_num), and project.json names its old place."""
    edit_json(project / "project.json",
              lambda d: {**d, "uid": f"P{num}", "uid_num": num, "project_dir": old_dir})
    edit_json(project / "workspaces.json",
              lambda ws: [{**w, "project_uid": f"P{num}", "project_uid_num": num} for w in ws])
    for jj in sorted(project.glob("J*/job.json")):
        edit_json(jj, lambda d: {**d, "project_uid": f"P{num}", "project_uid_num": num,
                                 "uid_num": int(d["uid"][1:]), "job_type": d["type"]})
    return project
