"""Untrusted-export suite: an export from another lab is read only inside its own folder.

Each case takes a real export (consolidated, then resolved with links followed, as
`cp -rL` gives it to another lab), tampers with it as an attacker would, and imports it:
the import is refused with one clean error (nothing created in the project, no outside
bytes copied in), or succeeds without reading anything outside the export.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from csfs.core import consolidate, csfile, csg, imports, verify
from csfs.core.errors import CsfsError, FormatError
from csfs.core.project import Project

from test_imports import two  # noqa: F401  (project A attached in instance A, empty project B in B)

SECRET = b"-----BEGIN PRIVATE KEY----- not for the project\n"


@pytest.fixture
def lab(two, tmp_path):  # noqa: F811 (the fixture imported above)
    """(instance B, project uid B, project dir B, incoming group export, incoming job export, secret file)."""
    inst_a, puid_a, _, inst_b, puid_b, path_b = two
    incoming = tmp_path / "incoming"
    group = incoming / "J5_particles"
    shutil.copytree(consolidate.export_group(inst_a, puid_a, "J5", "particles"), group, symlinks=False)
    job = incoming / "J8_homo_refine"
    shutil.copytree(consolidate.export_job(inst_a, puid_a, "J8"), job, symlinks=False)
    secret = tmp_path / "private" / "id_rsa"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    return inst_b, puid_b, path_b, group, job, secret


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _no_secret_inside(project: Path) -> None:
    for p in project.rglob("*"):
        if p.is_file() and not p.is_symlink():
            assert SECRET not in p.read_bytes(), p
        if p.is_symlink():
            assert "private" not in os.readlink(p), p


def _refused(call, project: Path, match: str) -> None:
    before = _tree(project)
    with pytest.raises(CsfsError, match=match):
        call()
    assert _tree(project) == before
    _no_secret_inside(project)


def _data_file(group: Path) -> Path:
    return sorted(p for p in (group / "J5").rglob("*") if p.is_file())[0]


@pytest.mark.parametrize("copy", [False, True])
def test_data_link_to_an_outside_file(lab, copy):
    inst, puid, proj, group, _, secret = lab
    data = _data_file(group)
    data.unlink()
    data.symlink_to(secret)
    csg_path = group / "J5_particles_exported.csg"
    _refused(lambda: imports.import_group(inst, puid, csg_path, copy=copy), proj, "outside the export")
    # the user names the location: then it is allowed
    juid = imports.import_group(inst, puid, csg_path, copy=copy, allow_from=[secret.parent])
    assert juid in Project.open(proj).jobs


@pytest.mark.parametrize("copy", [False, True])
def test_relative_link_climbing_out(lab, copy):
    inst, puid, proj, group, _, secret = lab
    data = _data_file(group)
    data.unlink()
    data.symlink_to(os.path.relpath(secret, data.parent))
    _refused(lambda: imports.import_group(inst, puid, group / "J5_particles_exported.csg", copy=copy),
             proj, "outside the export")


def test_events_bson_link_out(lab):
    inst, puid, proj, _, job, secret = lab
    (job / "events.bson").unlink()
    (job / "events.bson").symlink_to(secret)
    _refused(lambda: imports.import_job(inst, puid, job), proj, "events")


def test_gridfs_data_link_out(lab):
    inst, puid, proj, _, job, secret = lab
    shutil.rmtree(job / "gridfs_data")
    (job / "gridfs_data").symlink_to(secret.parent, target_is_directory=True)
    _refused(lambda: imports.import_job(inst, puid, job), proj, "gridfs_data")


def test_file_link_out_inside_gridfs_data(lab):
    inst, puid, proj, _, job, secret = lab
    (job / "gridfs_data" / "img.png").symlink_to(secret)
    _refused(lambda: imports.import_job(inst, puid, job), proj, "outside the export")


def test_gridfs_symlink_loop_is_not_followed(lab):
    inst, puid, proj, _, job, _ = lab
    (job / "gridfs_data" / "a").symlink_to(".")
    (job / "gridfs_data" / "img.png").write_bytes(b"png")
    juid = imports.import_job(inst, puid, job)
    copied = proj / juid / "gridfs_data"
    assert (copied / "img.png").read_bytes() == b"png" and not (copied / "a").exists()


def test_job_json_link_out(lab):
    inst, puid, proj, _, job, secret = lab
    (job / "job.json").rename(secret.parent / "job.json")
    (job / "job.json").symlink_to(secret.parent / "job.json")
    _refused(lambda: imports.import_job(inst, puid, job), proj, "outside the export")


def test_csg_metafile_symlink_out(lab, tmp_path):
    """The .csg names `>x.cs`, a link to a .cs outside its folder: the path looks inside."""
    inst, puid, proj, group, _, _ = lab
    outside = tmp_path / "elsewhere.cs"
    shutil.move(group / "J5_particles_exported.cs", outside)
    (group / "J5_particles_exported.cs").symlink_to(outside)
    with pytest.raises(FormatError, match="outside"):
        csg.load(group / "J5_particles_exported.csg")
    _refused(lambda: imports.import_group(inst, puid, group / "J5_particles_exported.csg"), proj, "outside")


@pytest.mark.parametrize("metafile", ["/etc/passwd", ">../../etc/x.cs", ">sub/../../x.cs", "../x.cs"])
def test_csg_metafile_absolute_or_dotdot(lab, metafile):
    inst, puid, proj, group, _, _ = lab
    c = csg.load(group / "J5_particles_exported.csg")
    for r in c.results.values():
        r["metafile"] = metafile
    (group / "J5_particles_exported.csg").write_bytes(csg.dumps(c))
    _refused(lambda: imports.import_group(inst, puid, group / "J5_particles_exported.csg"), proj, "outside")


def _set_path_column(cs_path: Path, value: bytes) -> None:
    arr = np.array(csfile.load(cs_path))
    name = csfile.path_fields(arr)[0]
    descr = [(n, f"|S{len(value) + 1}") if n == name else
             ((n, arr.dtype[n].base.str, arr.dtype[n].shape) if arr.dtype[n].shape else (n, arr.dtype[n].str))
             for n in arr.dtype.names]
    out = np.zeros(len(arr), dtype=descr)
    for n in arr.dtype.names:
        out[n] = value if n == name else arr[n]
    csfile.save(cs_path, out)


@pytest.mark.parametrize("value", [b"/etc/passwd", b">../../private/id_rsa", b">J5/../../private/id_rsa",
                                   b"../private/id_rsa", b">/etc/passwd"])
@pytest.mark.parametrize("copy", [False, True])
def test_cs_path_column_absolute_or_dotdot(lab, value, copy):
    inst, puid, proj, group, _, _ = lab
    _set_path_column(group / "J5_particles_exported.cs", value)
    _refused(lambda: imports.import_group(inst, puid, group / "J5_particles_exported.csg", copy=copy),
             proj, "outside")


@pytest.mark.parametrize("kind", ["fifo", "device", "loop", "self"])
@pytest.mark.parametrize("copy", [False, True])
def test_special_data_files(lab, kind, copy):
    inst, puid, proj, group, _, _ = lab
    data = _data_file(group)
    data.unlink()
    if kind == "fifo":
        os.mkfifo(data)
    elif kind == "device":
        data.symlink_to("/dev/zero")
    elif kind == "loop":
        data.symlink_to(data.name + ".b")
        (data.parent / (data.name + ".b")).symlink_to(data.name)
    else:
        data.symlink_to(data.name)
    _refused(lambda: imports.import_group(inst, puid, group / "J5_particles_exported.csg", copy=copy),
             proj, "regular file|outside|missing")


def test_special_events_bson(lab):
    inst, puid, proj, _, job, _ = lab
    (job / "events.bson").unlink()
    os.mkfifo(job / "events.bson")
    _refused(lambda: imports.import_job(inst, puid, job), proj, "FIFO")


def test_hard_link_to_an_outside_file(lab):
    """--copy would copy the bytes in under the project's permissions: refused. A linked import
    only points at the file, whose own permissions still apply: allowed."""
    inst, puid, proj, group, _, secret = lab
    data = _data_file(group)
    data.unlink()
    os.link(secret, data)
    _refused(lambda: imports.import_group(inst, puid, group / "J5_particles_exported.csg", copy=True),
             proj, "hard-linked")
    juid = imports.import_group(inst, puid, group / "J5_particles_exported.csg")
    linked = [p for p in (proj / juid).rglob("*") if p.is_symlink()]
    assert linked and all(not p.resolve().samefile(secret) or (p.stat().st_mode & 0o077) == 0 for p in linked)


def test_hard_links_within_the_export_are_fine(lab):
    inst, puid, proj, group, _, _ = lab
    a, b = sorted(p for p in (group / "J5").rglob("*") if p.is_file())[:2]
    b.unlink()
    os.link(a, b)
    assert imports.import_group(inst, puid, group / "J5_particles_exported.csg", copy=True)


@pytest.mark.parametrize("name", [b"with\nnewline.mrc", b"latin1-\xe9\xff.mrc", b" lead space.mrc"])
@pytest.mark.parametrize("copy", [False, True])
def test_odd_file_names(lab, name, copy):
    inst, puid, proj, group, _, _ = lab
    data = _data_file(group)
    new = os.path.join(os.fsencode(data.parent), name)
    os.rename(data, new)
    arr = np.array(csfile.load(group / "J5_particles_exported.cs"))
    field = csfile.path_fields(arr)[0]
    old = (b">" + os.fsencode(data.relative_to(group)))
    value = b">" + os.path.relpath(new, os.fsencode(group))
    width = max(arr.dtype[field].itemsize, len(value) + 1)
    descr = [(n, f"|S{width}") if n == field else
             ((n, arr.dtype[n].base.str, arr.dtype[n].shape) if arr.dtype[n].shape else (n, arr.dtype[n].str))
             for n in arr.dtype.names]
    out = np.zeros(len(arr), dtype=descr)
    for n in arr.dtype.names:
        out[n] = arr[n]
    out[field] = np.where(arr[field] == old, value, arr[field])
    csfile.save(group / "J5_particles_exported.cs", out)
    juid = imports.import_group(inst, puid, group / "J5_particles_exported.csg", copy=copy)
    imported = [p for p in (proj / juid / "imported").rglob("*") if os.fsencode(p.name) == name]
    assert imported and imported[0].read_bytes() == Path(os.fsdecode(new)).read_bytes()
    assert verify.verify(Project.open(proj)) == []


def test_cli_refusal_is_one_line(lab, csfs):
    inst, puid, proj, group, _, secret = lab
    data = _data_file(group)
    data.unlink()
    data.symlink_to(secret)
    r = csfs("group", "import", puid, group / "J5_particles_exported.csg", "--copy", home=inst.home)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "outside the export" in r.stderr and "--allow-from" in r.stderr
    _no_secret_inside(proj)
    r = csfs("group", "import", puid, group / "J5_particles_exported.csg", "--allow-from", secret.parent,
             home=inst.home)
    assert r.returncode == 0, r.stderr
