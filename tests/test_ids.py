"""core/ids.py: the one rule for CryoSPARC's uids (P<n>, J<n>, W<n>, S<n>)."""
from __future__ import annotations

from csfs.core import ids


def test_exact_uids():
    assert ids.number("J12") == 12 and ids.number("W3") == 3 and ids.number("S1", "S") == 1
    assert ids.job_num("J7") == 7 and ids.is_job("J007") and ids.is_project("P12")
    for bad in ("j12", "J12\n", " J12", "J", "J1x", "JJ1", "J-1", "", "J１"):   # a fullwidth digit too
        assert ids.job_num(bad) is None, bad
    assert not ids.is_job("P12") and not ids.is_project("J12")
    assert ids.number(None) is None  # type: ignore[arg-type]


def test_typed_project_references():
    assert ids.project_num("P3") == ids.project_num("p3") == ids.project_num(" P3\n") == 3
    assert ids.project_num("P1x") is None and ids.project_num("J1") is None and ids.project_num("/data/P3") is None


def test_cryosparc_order():
    assert sorted(["J10", "J2", "W1", "J1", "other"], key=ids.sort_key) == ["J1", "J2", "J10", "W1", "other"]
