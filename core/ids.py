"""CryoSPARC's uids: projects P<n>, jobs J<n>, workspaces W<n>, Live sessions S<n>.

The one place their form is known. Folders are named by uids: a job's `J12/`, a legacy
project's `P12/`, a Live session's `S3/`. Uids are exact (`J12`, never `j12` or
`J12\\n`); only a project reference typed by a user may be lower case or padded.
"""
from __future__ import annotations

import re

_UID = re.compile(r"([A-Z])([0-9]+)")


def number(uid: str, kind: str | None = None) -> int | None:
    """12 for "J12" (or any one-letter uid; only of `kind`, e.g. "J", when given), else None."""
    m = _UID.fullmatch(uid) if isinstance(uid, str) else None
    if m is None or (kind is not None and m.group(1) != kind):
        return None
    return int(m.group(2))


def job_num(uid: str) -> int | None:
    """12 for "J12", else None."""
    return number(uid, "J")


def is_job(uid: str) -> bool:
    return job_num(uid) is not None


def is_project(uid: str) -> bool:
    return number(uid, "P") is not None


def project_num(ref: str) -> int | None:
    """A project uid as users type it: "P3", "p3" or " P3 " -> 3; anything else -> None."""
    return number(ref.strip().upper(), "P") if isinstance(ref, str) else None


def sort_key(uid: str) -> tuple[str, int]:
    """Uids in CryoSPARC's order: J2 before J10 (other strings by name)."""
    n = number(uid)
    return (uid[0], n) if n is not None else (uid, 0)
