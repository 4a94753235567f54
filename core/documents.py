"""The project documents of every CryoSPARC version: job.json, project.json, workspaces.json.

The one place that reads, edits, creates and strips them. Three forms exist:

- "legacy" (<= v3.3): `P<n>/` folders; a job may have no job.json at all (its
  outputs are then read from its `.csg` files, see core.project);
- "v4": `type` and/or `job_type`, `output_result_groups` (each with `contains`;
  `passthrough` False or the name of an input), `output_results` (`num_items` a
  list per version or one int), `input_slot_groups`; `uid_num`, `project_uid_num`;
- "v5": `spec` with `type`, `params`, `inputs`, `outputs` (`outputs[name].results[]`
  with `versions`, `metafiles`, `num_items`), plus `dumped_at`, `last_dumped_version`.

Reading is tolerant where real documents vary (see DESIGN.md §2), strict where
safety needs it: a document written by an unknown (newer) major version, or one
whose names or uid do not fit, is malformed (`DocumentError`), and the caller
reports that job alone. Edits never mutate their input: they return new documents.
"""
from __future__ import annotations

import copy
import datetime as _dt
import email.utils
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import ids
from .errors import FormatError, NotFoundError

KNOWN_MAJORS = (2, 3, 4, 5)
# the iteration number in a metafile name: J6_004_particles.cs, cryosparc_P12_J24_001_particles.cs
VERSION_RE = re.compile(r"(?:^|_)J\d+_(\d+)_")
FINAL_RE = re.compile(r"(?:^|_)J\d+_final_")

# removed from job.json in a job export: links to this project's other jobs, this
# instance's scheduling, and (v5) the instance's dump bookkeeping and sizes
STRIPPED_JOB_KEYS = (
    "queued_to_lane", "resources_allocated", "interactive_hostname", "ui_layouts", "parents", "children",
    "output_result_groups", "output_results",
    # v5 (cryosparc-tools models/job.py): instance-specific fields
    "_id", "dumped_at", "last_dumped_version", "autodump", "job_dir_size", "job_dir_size_last_updated",
    "queued_to_hostname", "queued_to_gpu", "queue_status", "queue_message", "queued_job_hash",
    "queued_by_user_id", "heartbeat_at", "last_scheduled_at", "tokens_acquired_at", "tokens_requested_at",
    "PID_monitor", "PID_main", "PID_workers", "interactive_port", "cluster_job_id", "cluster_job_status",
    "cluster_job_status_code", "cluster_job_monitor_event_id", "cluster_job_monitor_retries",
    "cluster_job_monitor_last_run_at", "cluster_job_submission_script", "cluster_job_custom_vars",
    "last_accessed", "starred_by", "instance_information", "job_sig", "run_as_user",
    "intermediate_results_size_bytes", "intermediate_results_size_last_updated",
    "last_exported_location",
)
# never copied from an imported document into the new job: they describe the source job's place
_NOT_IMPORTED = ("uid", "uid_num", "project_uid", "project_uid_num", "status", "status_num", "created_at",
                 "completed_at", "input_slot_groups", "workspace_uids", "output_result_groups",
                 "output_results", "parents", "children", "job_dir", "spec", "build_errors")

STATUS_NUMS = {s: i for i, s in enumerate(
    ("building", "queued", "launched", "started", "running", "waiting", "completed", "killed", "failed"))}


class DocumentError(ValueError):
    """A document csfs cannot read safely (the message says why)."""


# -- time ------------------------------------------------------------------------------------

def parse_time(v: Any) -> float | None:
    """POSIX seconds of any time a CryoSPARC document holds, None if there is none or it is
    unreadable: {"$date": ms | "ISO" | {"$numberLong": ms}}, epoch ms, ISO-8601 (naive = UTC),
    RFC 1123 ("Mon, 04 Nov 2024 20:29:09 GMT"), or a datetime."""
    d = _datetime(v)
    return None if d is None else d.timestamp()


def iso_time(v: Any) -> str | None:
    """A document time as an ISO string: ISO strings as written, other forms converted
    (UTC, 'Z'); an unreadable string is returned as it is."""
    if isinstance(v, dict):
        v = _unwrap(v)
    if v is None or v == "":
        return None
    if isinstance(v, str):
        if _iso(v) is not None:
            return v
        d = _datetime(v)
        return v if d is None else _z(d)
    d = _datetime(v)
    return None if d is None else _z(d)


def now_iso() -> str:
    """Now, as csfs writes times into documents and locks (UTC, seconds: 2024-03-04T09:00:00+00:00)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def file_stamp() -> str:
    """Now, for a file name: 20240304T090000Z (UTC)."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _z(d: _dt.datetime) -> str:
    return d.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")


def _unwrap(doc: dict) -> Any:
    v = doc.get("$date", doc.get("$numberLong"))
    if isinstance(v, dict):
        v = v.get("$numberLong")
        try:
            v = int(v) if v is not None else None
        except (TypeError, ValueError):
            return None
    return v


def _iso(s: str) -> _dt.datetime | None:
    try:
        return _dt.datetime.fromisoformat(s.strip().replace("Z", "+00:00"))
    except ValueError:
        return None


def _datetime(v: Any) -> _dt.datetime | None:
    if isinstance(v, dict):
        v = _unwrap(v)
    if v is None or v == "" or isinstance(v, bool):
        return None
    d: _dt.datetime | None
    if isinstance(v, _dt.datetime):
        d = v
    elif isinstance(v, (int, float)):
        try:
            return _dt.datetime.fromtimestamp(v / 1000, _dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(v, str):
        d = _iso(v)
        if d is None:
            try:
                d = email.utils.parsedate_to_datetime(v)
            except (TypeError, ValueError, IndexError):
                return None
    else:
        return None
    return d.replace(tzinfo=_dt.UTC) if d.tzinfo is None else d


# -- the read model ------------------------------------------------------------------------

@dataclass
class OutputResult:
    """One result slot of an output group (`particle.blob`) with its versions."""

    name: str
    type: str
    group_name: str
    versions: list[int]
    metafiles: list[str]
    num_items: list[int]
    passthrough: bool = False

    @property
    def final_metafile(self) -> str | None:
        """The metafile CryoSPARC uses: the first for a passthrough result, else the last."""
        if not self.metafiles:
            return None
        return self.metafiles[0] if self.passthrough else self.metafiles[-1]

    @property
    def final_version(self) -> int | None:
        if not self.versions:
            return None
        return self.versions[0] if self.passthrough else self.versions[-1]

    def metafile(self, version: int | str) -> str:
        """The metafile of `version` (an int, or "F" for the final one)."""
        if version == "F":
            mf = self.final_metafile
            if mf is None:
                raise NotFoundError(f"result {self.group_name}.{self.name} has no versions")
            return mf
        try:
            return self.metafiles[self.versions.index(int(version))]
        except (ValueError, IndexError):
            raise NotFoundError(f"result {self.group_name}.{self.name} has no version {version}; "
                                f"versions: {self.versions}") from None


@dataclass
class OutputGroup:
    """An output group of a job (`particles`, `volume`, …) and its results.

    `passthrough` is the input it passes through (v4 and v5 name it), "" if none."""

    name: str
    type: str
    title: str = ""
    description: str = ""
    num_items: int = 0
    passthrough: str = ""
    results: list[OutputResult] = field(default_factory=list)

    def result(self, name: str) -> OutputResult:
        for r in self.results:
            if r.name == name:
                return r
        raise NotFoundError(f"output group {self.name} has no result {name!r}")

    @property
    def metafiles(self) -> list[str]:
        """Every metafile of every version of every result, deduplicated, order kept."""
        return list(dict.fromkeys(m for r in self.results for m in r.metafiles))


@dataclass
class InputRef:
    """One consumed result: which job/group/result and which version (int or "F")."""

    job_uid: str
    group_name: str
    result_name: str
    version: int | str = "F"
    input_name: str = ""
    slot_name: str = ""


@dataclass
class JobInfo:
    """What a job document says, whatever its form."""

    form: str  # "v4" | "v5"
    type: str
    title: str
    status: str
    created_at: str | None
    completed_at: str | None
    groups: list[OutputGroup]
    inputs: list[InputRef]


def job_form(doc: Mapping[str, Any]) -> str:
    """"v5" for a document with a `spec` object, else "v4"; DocumentError for an unknown version."""
    major = major_version(doc.get("last_dumped_version") or doc.get("version"))
    if major is not None and major not in KNOWN_MAJORS:
        raise DocumentError(f"written by CryoSPARC v{major}, a version csfs does not know; "
                            "refusing to read or change it")
    spec = doc.get("spec")
    if spec is not None and not isinstance(spec, dict):
        raise DocumentError(f"its spec is a {type(spec).__name__}, not an object")
    return "v5" if isinstance(spec, dict) else "v4"


def major_version(v: Any) -> int | None:
    m = re.match(r"^v?(\d+)\.", v) if isinstance(v, str) else None
    return int(m.group(1)) if m else None


def job_type(doc: Mapping[str, Any]) -> str:
    """The job type: v4 `type` or `job_type`, v5 `spec.type` ("" if none is a string)."""
    spec = doc.get("spec")
    for v in (doc.get("type"), spec.get("type") if isinstance(spec, dict) else None, doc.get("job_type")):
        if isinstance(v, str) and v:
            return v
    return ""


def read_job(doc: Any, uid: str) -> JobInfo:
    """Parse a job document; DocumentError (or KeyError/TypeError/ValueError) if malformed."""
    if not isinstance(doc, dict):
        raise DocumentError("job.json is not a JSON object")
    got = doc.get("uid", uid)
    if got != uid:
        raise DocumentError(f"its uid is {got!r} but the folder is {uid}")
    form = job_form(doc)
    spec = doc.get("spec") or {}
    if form == "v5":
        groups = _v5_groups(_obj(spec.get("outputs"), "spec.outputs"))
        inputs = _v5_inputs(_obj(spec.get("inputs"), "spec.inputs"))
    else:
        groups = _v4_groups(_list(doc.get("output_result_groups"), "output_result_groups"),
                            _list(doc.get("output_results"), "output_results"))
        inputs = _v4_inputs(_list(doc.get("input_slot_groups"), "input_slot_groups"))
    return JobInfo(form, job_type(doc), _str(doc.get("title")), _str(doc.get("status")),
                   iso_time(doc.get("created_at")), iso_time(doc.get("completed_at")), groups, inputs)


def _str(v: Any) -> str:
    return v if isinstance(v, str) else "" if v is None else str(v)


def _obj(v: Any, what: str) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise DocumentError(f"{what} is a {type(v).__name__}, not an object")
    return v


def _dict(v: Any) -> dict:
    """v when it is a dict, else an empty one (an optional sub-document)."""
    return v if isinstance(v, dict) else {}


def _list(v: Any, what: str) -> list:
    if v is None:
        return []
    if not isinstance(v, list):
        raise DocumentError(f"{what} is a {type(v).__name__}, not a list")
    return v


def _name(v: Any, what: str) -> str:
    """A group or result name: a non-empty string (it becomes file names and field prefixes)."""
    if not isinstance(v, str) or not v:
        raise DocumentError(f"{what} name {v!r} is not a non-empty string")
    return v


def _passthrough(v: Any) -> str:
    """A group's passthrough: an input name (v4.4+, v5), True (older), or False/None."""
    if isinstance(v, str):
        return v
    return "input" if v is True else ""


def _num_items(v: Any, n: int) -> list[int]:
    """num_items per version: a list, or one int (cryosparc-tools' v4 spec) for every version."""
    if v is None:
        return []
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return [int(v)] * max(n, 1)
    return [int(x) for x in _list(v, "num_items")]


def _group(name: str, g: Mapping[str, Any]) -> OutputGroup:
    n = g.get("num_items")
    return OutputGroup(name=name, type=_str(g.get("type")), title=_str(g.get("title")),
                       description=_str(g.get("description")),
                       num_items=int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else 0,
                       passthrough=_passthrough(g.get("passthrough")))


def _v4_groups(group_docs: list, result_docs: list) -> list[OutputGroup]:
    groups: dict[str, OutputGroup] = {}
    for g in group_docs:
        name = _name(_obj(g, "output group").get("name"), "output group")
        groups[name] = _group(name, g)
    for r in result_docs:
        gname = _name(_obj(r, "output result").get("group_name"), "output result's group")
        if gname not in groups:  # no output_result_groups: the groups follow from the results
            groups[gname] = OutputGroup(name=gname, type=_str(r.get("type")).split(".")[0], title=gname)
        g = groups[gname]
        g.results.append(_result(r.get("name"), _str(r.get("type")), gname, r))
        g.num_items = g.num_items or max(g.results[-1].num_items or [0])
    return list(groups.values())


def _v5_groups(outputs: dict) -> list[OutputGroup]:
    groups = []
    for name, o in outputs.items():
        _name(name, "output group")
        g = _group(name, _obj(o, f"spec.outputs.{name}"))
        for r in _list(o.get("results"), f"spec.outputs.{name}.results"):
            r = _obj(r, "output result")
            rname = r.get("name")
            g.results.append(_result(rname, f"{g.type}.{r.get('dtype') or rname}", name, r))
        groups.append(g)
    return groups


def _result(name: Any, type: str, group_name: str, r: Mapping[str, Any]) -> OutputResult:
    _name(name, f"output result of {group_name}")
    versions = [int(v) for v in _list(r.get("versions"), "versions")]
    metafiles = [_metafile(m) for m in _list(r.get("metafiles"), "metafiles")]
    if len(metafiles) != len(versions):
        raise DocumentError(f"result {group_name}.{name} has {len(versions)} versions "
                            f"but {len(metafiles)} metafiles")
    return OutputResult(name=name, type=type, group_name=group_name, versions=versions,
                        metafiles=metafiles, num_items=_num_items(r.get("num_items"), len(versions)),
                        passthrough=bool(r.get("passthrough", False)))


def _metafile(m: Any) -> str:
    """A metafile path: relative to the project and staying inside it (csfs reads and deletes
    metafiles by these paths, so one that leaves the project makes the document unusable)."""
    if not isinstance(m, str) or not m or "\0" in m:
        raise DocumentError(f"metafile {m!r} is not a path")
    norm = posixpath.normpath(m)
    if norm == ".." or norm.startswith(("/", "../")):
        raise DocumentError(f"metafile {m!r} leaves the project directory")
    return m


def _version(v: Any) -> int | str:
    return "F" if v in (None, "F") else int(v)


def _v4_inputs(slot_groups: list) -> list[InputRef]:
    refs = []
    for ig in slot_groups:
        ig = _obj(ig, "input slot group")
        for conn in _list(ig.get("connections"), "connections"):
            conn = _obj(conn, "connection")
            for s in _list(conn.get("slots"), "connection slots"):
                refs.append(_input_ref(_obj(s, "connection slot"), conn, _str(ig.get("name")),
                                       group="group_name", result="result_name", slot="slot_name"))
    return refs


def _v5_inputs(inputs: dict) -> list[InputRef]:
    refs = []
    for iname, inp in inputs.items():
        for conn in _list(_obj(inp, f"spec.inputs.{iname}").get("connections"), "connections"):
            conn = _obj(conn, "connection")
            for r in _list(conn.get("results"), "connection results"):
                refs.append(_input_ref(_obj(r, "connection result"), conn, str(iname),
                                       group="output", result="result", slot="name"))
    return refs


def _input_ref(s: Mapping[str, Any], conn: Mapping[str, Any], input_name: str, *,
               group: str, result: str, slot: str) -> InputRef:
    """One consumed result; v4 and v5 name the same facts with other keys (`group`,
    `result`, `slot`); job uid and group may be given once for the whole connection."""
    return InputRef(job_uid=_str(s.get("job_uid", conn.get("job_uid"))),
                    group_name=_str(s.get(group, conn.get(group))),
                    result_name=_str(s[result]), version=_version(s.get("version")),
                    input_name=input_name, slot_name=_str(s.get(slot)))


def metafile_version(name: str, final: int | None = None) -> int | None:
    """The version a metafile's name gives: `J6_004_…` -> 4, `J6_final_…` -> `final`."""
    m = VERSION_RE.search(name)
    if m:
        return int(m.group(1))
    return final if FINAL_RE.search(name) else None


# -- workspaces.json and project.json -------------------------------------------------------

def read_workspaces(doc: Any) -> list[dict]:
    """workspaces.json (a list, or a dict keyed by uid) as a list; DocumentError if neither."""
    if isinstance(doc, dict):
        doc = [dict(v, uid=v.get("uid", k)) if isinstance(v, dict) else {"uid": k} for k, v in doc.items()]
    if not isinstance(doc, list) or not all(isinstance(w, dict) for w in doc):
        raise DocumentError("workspaces.json is not a list of workspaces")
    return doc


def workspace_rows(workspaces: Any) -> list[tuple[str, str]]:
    """(uid, title) of each workspace in a workspaces.json document (list or dict form)."""
    items = workspaces.values() if isinstance(workspaces, dict) else workspaces or []
    return [(str(w.get("uid")), str(w.get("title") or "")) for w in items
            if isinstance(w, dict) and w.get("uid")]


def uid_num(uid: str) -> int | None:
    """12 for "P12" or "J12"."""
    return ids.number(uid)


def _with_project(doc: dict, uid: str) -> dict:
    out = {**doc, "project_uid": uid}
    if "project_uid_num" in doc or "uid_num" in doc:
        out["project_uid_num"] = uid_num(uid)
    return out


def renumber_project(doc: Mapping[str, Any], uid: str, path: str) -> dict:
    """project.json naming the project `uid` at `path` (uid, uid_num, project_dir)."""
    return {**doc, "uid": uid, "uid_num": uid_num(uid), "project_dir": path}


def renumber_workspaces(doc: Any, uid: str) -> Any:
    """workspaces.json with every workspace's project fields naming `uid` (same list/dict form)."""
    if isinstance(doc, dict):
        return {k: _with_project(w, uid) if isinstance(w, dict) else w for k, w in doc.items()}
    return [_with_project(w, uid) if isinstance(w, dict) else w for w in doc or []]


def renumber_job(doc: Mapping[str, Any], uid: str) -> dict:
    """A job document naming the project `uid` (project_uid, project_uid_num)."""
    return _with_project(dict(doc), uid)


def needs_renumber(doc: Mapping[str, Any], uid: str) -> bool:
    return renumber_job(doc, uid) != doc


# -- edits -----------------------------------------------------------------------------------

def drop_versions(doc: Mapping[str, Any], cleared: Mapping[str, list[int]]) -> dict:
    """The job document without the cleared versions ("group.result" -> versions) in its
    result lists (v4 and v5 forms; an int num_items stays as it is)."""
    out = copy.deepcopy(dict(doc))

    def prune(r: dict, versions: list[int]) -> None:
        n = len(r.get("versions") or [])
        keep = [i for i, v in enumerate(r.get("versions") or []) if int(v) not in versions]
        for key in ("versions", "metafiles", "num_items"):
            if isinstance(r.get(key), list) and len(r[key]) == n:
                r[key] = [r[key][i] for i in keep]
    results = [(r.get("group_name"), r) for r in out.get("output_results") or [] if isinstance(r, dict)]
    spec_outputs = (out.get("spec") or {}).get("outputs") or {}
    results += [(gname, r) for gname, o in spec_outputs.items() for r in o.get("results") or []]
    for gname, r in results:
        versions = cleared.get(f"{gname}.{r.get('name')}")
        if versions:
            prune(r, versions)
    return out


def set_status(doc: Mapping[str, Any], status: str, when: str) -> dict:
    """The document with `status` (and `<status>_at`, and v5's `status_num` when present)."""
    out = {**doc, "status": status, f"{status}_at": when}
    if "status_num" in doc:
        out["status_num"] = STATUS_NUMS.get(status, doc["status_num"])
    return out


def exported_job_doc(doc: Mapping[str, Any]) -> dict:
    """job.json as a job export holds it: without what ties it to this instance and project
    (STRIPPED_JOB_KEYS) and, in v5, without the outputs' results (the group folders hold them)."""
    out = {k: v for k, v in doc.items() if k not in STRIPPED_JOB_KEYS}
    spec = doc.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("outputs"), dict):
        out["spec"] = {**spec, "outputs": {
            n: {k: v for k, v in o.items() if k not in ("results", "num_items")} if isinstance(o, dict) else o
            for n, o in spec["outputs"].items()}}
    return out


# -- new documents ---------------------------------------------------------------------------

@dataclass
class NewGroup:
    """An output group csfs writes into a new job: one metafile (version 0) for all its slots."""

    name: str
    type: str
    title: str
    description: str
    num_items: int
    slots: dict[str, str]  # slot -> result type
    metafile: str          # project-relative


def new_job_doc(form: str, uid: str, project_uid: str, type: str, title: str, created_at: str,
                workspace_uids: list[str], extra: Mapping[str, Any] | None = None) -> dict:
    """A job document as CryoSPARC of `form` ("legacy", "v4", "v5") writes one, status building."""
    doc: dict[str, Any] = {
        "uid": uid, "uid_num": uid_num(uid), "project_uid": project_uid, "project_uid_num": uid_num(project_uid),
        "title": title, "description": "", "status": "building", "created_at": created_at,
        "completed_at": None, "workspace_uids": workspace_uids, "job_dir": uid, "parents": [], "children": [],
    }
    if form == "v5":
        doc.update(spec={"type": type, "params": {}, "inputs": {}, "outputs": {}},
                   status_num=STATUS_NUMS["building"], build_errors=[])
    else:
        doc.update(type=type, job_type=type, input_slot_groups=[], output_result_groups=[],
                   output_results=[], params_spec={})
    for k, v in (extra or {}).items():
        if k == "spec" and isinstance(v, dict) and "spec" in doc:
            doc["spec"] = {**doc["spec"], **v}
        elif k != "spec":
            doc[k] = v
    return doc


def with_outputs(doc: Mapping[str, Any], groups: Iterable[NewGroup]) -> dict:
    """The job document with `groups` as its outputs, in the document's own form."""
    out = dict(doc)
    juid = str(doc.get("uid"))
    groups = list(groups)
    if job_form(doc) == "v5":
        spec = dict(out.get("spec") or {})
        spec["outputs"] = {g.name: {
            "type": g.type, "title": g.title, "description": g.description,
            "slots": [{"name": s, "dtype": t.split(".", 1)[-1]} for s, t in g.slots.items()],
            "passthrough": None, "num_items": g.num_items,
            "results": [{"name": s, "dtype": t.split(".", 1)[-1], "versions": [0], "metafiles": [g.metafile],
                         "num_items": [g.num_items], "passthrough": False} for s, t in g.slots.items()],
        } for g in groups}
        out["spec"] = spec
        return out
    gdocs: list[dict] = []
    rdocs: list[dict] = []
    for gi, g in enumerate(groups, 1):
        contains = []
        for s, t in g.slots.items():
            ruid = f"{juid}-R{len(rdocs) + 1}"
            contains.append({"uid": ruid, "type": t, "group_name": g.name, "name": s, "passthrough": False})
            rdocs.append({"uid": ruid, "type": t, "group_name": g.name, "name": s, "title": s,
                          "description": "", "versions": [0], "metafiles": [g.metafile],
                          "num_items": [g.num_items], "passthrough": False})
        gdocs.append({"uid": f"{juid}-G{gi}", "type": g.type, "name": g.name, "title": g.title,
                      "description": g.description, "contains": contains, "passthrough": False,
                      "num_items": g.num_items})
    out.update(output_result_groups=gdocs, output_results=rdocs)
    return out


def imported_job_extra(src: Mapping[str, Any], form: str) -> dict:
    """What a new job of `form` keeps of an exported job's document `src` (any form): its
    description, parameters and history, never its uids, place, connections or outputs."""
    if not isinstance(src, dict) or not job_type(src):
        raise FormatError("not a CryoSPARC job document (no type, job_type or spec.type)")
    try:
        job_form(src)
    except DocumentError as e:
        raise FormatError(str(e)) from None
    keep = {k: v for k, v in src.items() if k not in _NOT_IMPORTED and k not in STRIPPED_JOB_KEYS
            and k not in ("type", "job_type", "params_spec")}
    spec = _dict(src.get("spec"))
    params_v4 = _dict(src.get("params_spec"))
    params_v5 = _dict(spec.get("params"))
    if form == "v5":
        keep["spec"] = {"params": params_v5 or {k: v.get("value") for k, v in params_v4.items()
                                                if isinstance(v, dict) and "value" in v}}
        for k in ("ui_tile_width", "ui_tile_height", "resource_spec"):
            if k in spec:
                keep["spec"][k] = spec[k]
    else:
        keep["params_spec"] = params_v4 or {k: {"value": v} for k, v in params_v5.items()}
    return keep


def params_doc(form: str, params: Mapping[str, Any]) -> dict:
    """Job parameters as a document of `form` holds them (v4 `params_spec`, v5 `spec.params`)."""
    if form == "v5":
        return {"spec": {"params": dict(params)}}
    return {"params_spec": {k: {"value": v} for k, v in params.items()}}
