"""The demo's documents in each CryoSPARC version's real shape (job.json, project.json, workspaces.json).

Shapes follow cryosparc-tools' published models and test documents:
- legacy (<= v3.3): no project.json; old jobs have no job.json at all (their
  outputs are read from the `.csg` files), newer ones a v3 job.json with
  `job_type` and `{"$date": <ms>}` dates.
- v4 (<= v4.7): `output_result_groups` (with `contains`, `passthrough` False or
  an input name) and `output_results`; mixed across jobs as real projects are:
  `type` and/or `job_type`, `{"$date": <ms>}` or `{"$date": "ISO"}`, `num_items`
  per version or one int, a job without `output_result_groups`.
- v5: `spec` (`type`, `params`, `inputs`, `outputs`), ISO dates, `dumped_at`,
  `last_dumped_version`, `uid_num`/`project_uid_num`, `status_num`.
"""
from __future__ import annotations

import datetime as _dt
import email.utils
from typing import TYPE_CHECKING, Any

from .documents import STATUS_NUMS

if TYPE_CHECKING:
    from .demo import _Demo, _Job

FLAVOURS = ("legacy", "v4", "v5")
VERSIONS = {"legacy": "v3.3.2", "v4": "v4.7.1", "v5": "v5.0.0"}
PROJECT_UIDS = {"legacy": "P12", "v4": "P1", "v5": "P3"}
ORIGINAL_DIR = "/data/cryosparc_projects"   # where the project was first created (it has moved since)
# v4 variants, spread over the jobs as a real project mixes them
V4_BOTH_TYPE_KEYS = {1, 2, 3}          # `type` and `job_type`
V4_JOB_TYPE_ONLY = {4, 5, 6}           # `job_type` only (cryosparc-tools' JobDocument)
V4_MS_DATES = {1, 2, 3, 4, 5}          # {"$date": <ms>} (older); the others {"$date": "ISO"} but:
V4_RFC1123_DATES = {10}                # "Mon, 04 Nov 2024 20:29:09 GMT", as CryoSPARC's API returns times
V4_INT_NUM_ITEMS = {4, 7}              # output_results[].num_items as one int (the v4 spec's type)
V4_NO_GROUPS = {7}                     # no output_result_groups (as cryosparc-tools' test job)
LEGACY_NO_JOB_JSON = {1, 2, 3, 4, 5}   # predate job.json: outputs only in their .csg files


def iso(d: _dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as pydantic (v5) and newer v4 exports write it."""
    return None if d is None else d.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")


def rfc1123(d: _dt.datetime | None) -> str | None:
    """RFC 1123 (`Mon, 04 Mar 2024 19:00:00 GMT`), whatever the locale."""
    return None if d is None else email.utils.format_datetime(d.astimezone(_dt.UTC), usegmt=True)


def mongo_date(d: _dt.datetime | None, ms: bool) -> dict | None:
    """A time as mongo's JSON export writes it: {"$date": <ms int>} (older) or {"$date": "ISO"}."""
    if d is None:
        return None
    if ms:
        return {"$date": int(round(d.timestamp() * 1000))}
    return {"$date": d.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}


def project_dir_name(flavour: str) -> str:
    return PROJECT_UIDS["legacy"] if flavour == "legacy" else "CS-csfs-demo"


def metafile_name(flavour: str, name: str) -> str:
    """A job file name (`J6_004_particles.cs`) as the version names it (`cryosparc_P12_J6_…` in legacy)."""
    return f"cryosparc_{PROJECT_UIDS['legacy']}_{name}" if flavour == "legacy" else name


def has_job_json(flavour: str, num: int) -> bool:
    return not (flavour == "legacy" and num in LEGACY_NO_JOB_JSON)


# -- jobs --------------------------------------------------------------------------------------

def _times(job: _Job) -> dict[str, Any]:
    def later(hours: float) -> _dt.datetime:
        return job.created + _dt.timedelta(hours=hours)

    running, failed = job.status == "running", job.status == "failed"
    end = None if running else job.finished
    return {"created_at": job.created, "queued_at": later(0.05), "launched_at": later(0.08),
            "started_at": later(0.1), "running_at": later(0.1),
            "completed_at": None if running or failed else end, "failed_at": end if failed else None,
            "killed_at": None}


def _group_passthrough(job: _Job, g: dict) -> str | bool:
    """False for a new output, else the name of the input whose slots it forwards (v4 and v5)."""
    if not any(r["passthrough"] for r in job.results if r["group_name"] == g["name"]):
        return False
    return next((sg["name"] for sg in job.slot_groups if sg["type"] == g["type"]), False)


def _slot_groups(job: _Job) -> list[dict]:
    """Input slot groups as v4/v5 record them: each connection also lists the source group's results
    the job did not ask for, passed through at the final version with `slot_name` None."""
    by_uid = {j.uid: j for j in job.demo.jobs}
    out = []
    for sg in job.slot_groups:
        conns = []
        for c in sg["connections"]:
            asked = {s["result_name"] for s in c["slots"]}
            extra = [{"slot_name": None, "job_uid": c["job_uid"], "group_name": c["group_name"],
                      "result_name": r["name"], "result_type": r["type"], "version": "F"}
                     for r in by_uid[c["job_uid"]].results
                     if r["group_name"] == c["group_name"] and r["name"] not in asked]
            conns.append(dict(c, slots=c["slots"] + extra))
        out.append(dict(sg, connections=conns))
    return out


def _parents(job: _Job) -> list[str]:
    return list(dict.fromkeys(c["job_uid"] for g in job.slot_groups for c in g["connections"]))


def job_doc(flavour: str, job: _Job, children: list[str]) -> dict | None:
    """job.json for `job` in `flavour`'s shape (None: the job has no job.json)."""
    if not has_job_json(flavour, job.num):
        return None
    return _v5_job(job, children) if flavour == "v5" else _v4_job(flavour, job, children)


def _v4_job(flavour: str, job: _Job, children: list[str]) -> dict:
    """v4 (and v3: the same keys, `job_type` and ms dates) job.json."""
    puid = job.demo.project_uid
    legacy = flavour == "legacy"
    n = job.num
    ms = legacy or n in V4_MS_DATES
    doc: dict[str, Any] = {"uid": job.uid, "uid_num": n, "project_uid": puid, "project_uid_num": int(puid[1:])}
    if legacy or n in V4_JOB_TYPE_ONLY:
        doc["job_type"] = job.type
    elif n in V4_BOTH_TYPE_KEYS:
        doc["type"] = doc["job_type"] = job.type
    else:
        doc["type"] = job.type
    results = []
    for r in job.results:
        r = dict(r)
        if not legacy and n in V4_INT_NUM_ITEMS:
            r["num_items"] = r["num_items"][-1] if r["num_items"] else 0
        results.append(r)
    groups = [dict(g, passthrough=_group_passthrough(job, g),
                   contains=[{k: r[k] for k in ("uid", "type", "group_name", "name", "passthrough")}
                             for r in job.results if r["group_name"] == g["name"]])
              for g in job.groups]
    doc |= {
        "title": job.title, "description": "", "status": job.status, "version": job.demo.cs_version,
        **{k: rfc1123(v) if not legacy and n in V4_RFC1123_DATES else mongo_date(v, ms)
           for k, v in _times(job).items()},
        "workspace_uids": ["W1"], "job_dir": job.uid, "parents": _parents(job), "children": children,
        "input_slot_groups": job.slot_groups if legacy else _slot_groups(job),
        "output_result_groups": groups, "output_results": results,
        "params_spec": job.demo.params.get(job.type, {}),
        "queued_to_lane": "default", "interactive_hostname": "",
        "resources_allocated": {"lane": "default", "hostname": "gpu01", "slots": {"GPU": [0]}},
        "ui_layouts": {}, "errors_run": _errors(job), "deleted": False, "is_experiment": False,
        "synthetic": True,
    }
    if not legacy and n in V4_NO_GROUPS:
        del doc["output_result_groups"]
    return doc


def _errors(job: _Job) -> list[dict]:
    return [{"message": "CUDA out of memory", "warning": False}] if job.status == "failed" else []


def _v5_job(job: _Job, children: list[str]) -> dict:
    puid = job.demo.project_uid
    dumped = job.demo.dumped_at
    return {
        "_id": job.demo.object_id(), "updated_at": iso(job.finished), "created_at": iso(job.created),
        "dumped_at": iso(dumped), "last_dumped_version": job.demo.cs_version, "autodump": False,
        "uid": job.uid, "uid_num": job.num, "project_uid": puid, "project_uid_num": int(puid[1:]),
        "workspace_uids": ["W1"], "spec": _v5_spec(job), "job_dir": job.uid, "job_dir_size": 0,
        "job_dir_size_last_updated": iso(dumped), "title": job.title, "description": "",
        "status": job.status, "status_num": STATUS_NUMS[job.status],
        **{k: iso(v) for k, v in _times(job).items()},
        "version_created": job.demo.cs_version, "version": job.demo.cs_version, "priority": 0,
        "deleted": False, "deleting": False, "parents": _parents(job), "children": children,
        "resources_allocated": {"lane": "default", "lane_type": "node", "hostname": "gpu01",
                                "slots": {"CPU": [0, 1], "GPU": [0], "RAM": [0]}, "fixed": {"SSD": False},
                                "licenses_acquired": 1},
        "queued_to_lane": "default", "queued_to_hostname": "gpu01", "queued_to_gpu": [0],
        "errors_run": _errors(job), "interactive_port": None, "ui_tile_images": [],
        "is_experiment": False, "instance_information": {"platform_node": "gpu01"},
        "build_errors": [], "tags": [], "starred_by": [], "synthetic": True,
    }


def _dtype(result_type: str) -> str:
    return result_type.split(".", 1)[-1]


def _v5_spec(job: _Job) -> dict:
    inputs = {}
    for sg in _slot_groups(job):
        inputs[sg["name"]] = {
            "type": sg["type"], "title": sg["title"], "description": sg["description"],
            "slots": [{"name": s["name"], "dtype": _dtype(s["type"]), "required": not s["optional"]}
                      for s in sg["slots"]],
            "count_min": sg["count_min"], "count_max": sg["count_max"], "repeat_allowed": sg["repeat_allowed"],
            "connections": [{"job_uid": c["job_uid"], "output": c["group_name"], "results": [
                {"name": s["slot_name"], "dtype": _dtype(s["result_type"]), "job_uid": s["job_uid"],
                 "output": s["group_name"], "result": s["result_name"], "version": s["version"]}
                for s in c["slots"]]} for c in sg["connections"]]}
    outputs = {}
    for g in job.groups:
        res = [r for r in job.results if r["group_name"] == g["name"]]
        outputs[g["name"]] = {
            "type": g["type"], "title": g["title"], "description": g["description"],
            "slots": [{"name": r["name"], "dtype": _dtype(r["type"])} for r in res],
            "passthrough": _group_passthrough(job, g) or None,
            "results": [{"name": r["name"], "dtype": _dtype(r["type"]), "versions": r["versions"],
                         "metafiles": r["metafiles"], "num_items": r["num_items"],
                         "passthrough": r["passthrough"]} for r in res],
            "num_items": g["num_items"], "image": None, "summary": {}, "latest_summary_stats": {}}
    params = {k: v["value"] for k, v in job.demo.params.get(job.type, {}).items()}
    return {"type": job.type, "params": params, "inputs": inputs, "outputs": outputs,
            "ui_tile_width": 1, "ui_tile_height": 1, "resource_spec": {"cpu": 2, "gpu": 1, "ram": 1, "ssd": False}}


# -- project files -----------------------------------------------------------------------------

def project_files(flavour: str, demo: _Demo, title: str, description: str,
                  base: _dt.datetime) -> dict[str, Any]:
    """Root files of the project: name -> JSON document (legacy: none)."""
    if flavour == "legacy":
        return {}
    puid, jobs = demo.project_uid, demo.jobs
    project_dir = f"{ORIGINAL_DIR}/{project_dir_name(flavour)}"
    if flavour == "v5":
        dumped = iso(demo.dumped_at)
        project = {
            "_id": demo.object_id(), "updated_at": dumped, "created_at": iso(base), "dumped_at": dumped,
            "last_dumped_version": demo.cs_version, "autodump": False, "uid": puid, "uid_num": int(puid[1:]),
            "project_dir": project_dir, "owner_user_id": "csfs-demo", "title": title,
            "description": description, "project_params_pdef": {}, "queue_paused": False, "deleted": False,
            "deleting": False, "users_with_access": ["csfs-demo"], "size": 0, "size_last_updated": dumped,
            "last_accessed": {"name": "demo", "accessed_at": dumped}, "archived": False, "detached": True,
            "generate_intermediate_results_settings": {"class_2D_new": True, "class_3D": False,
                                                       "var_3D_disp": False},
            "created_at_version": demo.cs_version, "last_detached_version": demo.cs_version,
            "tags": [], "starred_by": [], "synthetic": True,
        }
        workspace: dict[str, Any] = {
            "_id": demo.object_id(), "updated_at": dumped, "created_at": iso(base), "dumped_at": dumped,
            "last_dumped_version": demo.cs_version, "autodump": False, "uid": "W1", "uid_num": 1,
            "project_uid": puid, "project_uid_num": int(puid[1:]), "created_by_user_id": "csfs-demo",
            "title": "Demo workspace", "description": "", "tags": [], "starred_by": [], "deleted": False,
            "deleting": False, "workspace_stats": {"job_count": len(jobs)}, "workspace_type": "base",
            "groups": []}
        return {"project.json": project, "workspaces.json": [workspace]}
    created = mongo_date(base, ms=False)
    project = {
        "uid": puid, "uid_num": int(puid[1:]), "title": title, "description": description,
        "project_dir": project_dir, "synthetic": True, "created_at": created, "archived": False,
        "detached": True, "owner_user_id": "csfs-demo", "version": demo.cs_version,
        "generate_intermediate_results_settings": {"class2D": True, "refinement": True},
        "workspaces_details": [], "project_params_pdef": {},
    }
    workspaces = [{"uid": "W1", "uid_num": 1, "project_uid": puid, "project_uid_num": int(puid[1:]),
                   "title": "Demo workspace", "description": "", "created_at": created,
                   "workspace_type": "base", "jobs": [j.uid for j in jobs]},
                  {"uid": "S1", "uid_num": 1, "project_uid": puid, "project_uid_num": int(puid[1:]),
                   "session_uid": "S1", "session_dir": "S1", "title": "Live session", "description": "",
                   "created_at": created, "workspace_type": "live", "jobs": []}]
    manifest = {"project_uid": puid, "jobs": [{"uid": j.uid, "type": j.type, "status": j.status} for j in jobs]}
    return {"project.json": project, "workspaces.json": workspaces, "job_manifest.json": manifest}
