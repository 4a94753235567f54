"""core.csg: reading/writing .csg YAML, '>' resolution, refusing escapes."""
from __future__ import annotations

import datetime

import pytest
from csfs.core import csg
from csfs.core.errors import FormatError, NotFoundError

# The shape of a .csg CryoSPARC writes next to an exported group.
EXPORTED = """\
created: 2023-01-11 19:26:54.312563
group:
  description: All particles that were processed.
  name: particles
  title: Particles accepted
  type: particle
results:
  alignments2D:
    metafile: '>J2_particles_exported.cs'
    num_items: 22
    type: particle.alignments2D
  blob:
    metafile: '>J2_particles_exported.cs'
    num_items: 22
    type: particle.blob
  ctf:
    metafile: '>J2_particles_exported.cs'
    num_items: 22
    type: particle.ctf
version: v4.1.1
"""


def write(tmp_path, text: str, name: str = "J2_particles_exported.csg"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_real_shape(tmp_path):
    path = write(tmp_path, EXPORTED)
    g = csg.load(path)
    assert g.created == datetime.datetime(2023, 1, 11, 19, 26, 54, 312563)
    assert g.group["name"] == "particles" and g.group["type"] == "particle"
    assert list(g.results) == ["alignments2D", "blob", "ctf"]
    assert g.results["blob"] == {"metafile": ">J2_particles_exported.cs", "num_items": 22, "type": "particle.blob"}
    assert g.version == "v4.1.1"
    assert g.metafiles() == [">J2_particles_exported.cs"]      # shared by three slots
    assert csg.resolve_metafile(path, g.metafiles()[0]) == tmp_path / "J2_particles_exported.cs"


def test_dumps_round_trips_byte_for_byte(tmp_path):
    g = csg.load(write(tmp_path, EXPORTED))
    assert csg.dumps(g).decode() == EXPORTED
    csg.save(tmp_path / "copy.csg", g)
    assert csg.load(tmp_path / "copy.csg") == g
    assert sorted(p.name for p in tmp_path.iterdir()) == ["J2_particles_exported.csg", "copy.csg"]


def test_build_and_save_new(tmp_path):
    g = csg.Csg(created=datetime.datetime(2024, 5, 1, 12, 0), version="v4.6.0",
                group={"name": "volume", "title": "Volume", "type": "volume", "description": ""},
                results={"map": {"metafile": ">J5_volume.cs", "num_items": 1, "type": "volume.map"}})
    csg.save(tmp_path / "J5_volume.csg", g)
    assert "metafile: '>J5_volume.cs'" in (tmp_path / "J5_volume.csg").read_text()
    assert csg.load(tmp_path / "J5_volume.csg") == g


@pytest.mark.parametrize("meta,expected", [(">sub/x.cs", "sub/x.cs"), (">./a/../x.cs", "x.cs"), ("x.cs", "x.cs")])
def test_resolve_inside(tmp_path, meta, expected):
    assert csg.resolve_metafile(tmp_path / "g.csg", meta) == tmp_path / expected


@pytest.mark.parametrize("meta", [">../x.cs", ">sub/../../x.cs", "/etc/passwd", ">/etc/passwd", "../J1/x.cs", ">."])
def test_escapes_refused(tmp_path, meta):
    with pytest.raises(FormatError, match="outside the .csg's folder"):
        csg.resolve_metafile(tmp_path / "g.csg", meta)
    path = write(tmp_path, EXPORTED.replace("'>J2_particles_exported.cs'", repr(meta), 1))
    with pytest.raises(FormatError, match="outside"):
        csg.load(path)
    if meta != ">.":
        assert csg.load(path, allow_outside=True).results["alignments2D"]["metafile"] == meta


def test_allow_outside_resolves(tmp_path):
    assert csg.resolve_metafile(tmp_path / "a" / "g.csg", ">../x.cs", allow_outside=True) == tmp_path / "x.cs"
    assert str(csg.resolve_metafile(tmp_path / "g.csg", "/data/x.cs", allow_outside=True)) == "/data/x.cs"


@pytest.mark.parametrize("text,msg", [
    ("group: [unclosed\n", "not valid YAML at line"),
    ("- a list\n", "expected a YAML mapping"),
    ("results: {}\n", "no 'group'"),
    ("group: {name: particles}\n", "no 'results'"),
    ("group: {name: p}\nresults: {blob: {num_items: 3}}\n", "needs a 'metafile'"),
    ("group: {name: p}\nresults: {blob: {metafile: '>x.cs', num_items: many}}\n", "integer 'num_items'"),
])
def test_malformed(tmp_path, text, msg):
    with pytest.raises(FormatError, match=msg):
        csg.load(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(NotFoundError):
        csg.load(tmp_path / "none.csg")
