"""The mounts of this machine, as /proc/self/mountinfo lists them."""
from __future__ import annotations

import os
from dataclasses import dataclass

FSTYPE = "fuse.csfs"


@dataclass
class MountInfo:
    mountpoint: str
    source: str
    fstype: str
    devno: str          # "0:52": the bdi name under /sys/class/bdi
    options: str


def _unescape(s: str) -> str:
    """Undo mountinfo's octal escapes (\\040 for a space, ...)."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse(line: str) -> MountInfo | None:
    """One line of mountinfo (None when it is not one)."""
    left, _, right = line.rstrip("\n").partition(" - ")
    fields, rfields = left.split(" "), right.split(" ")
    if len(fields) < 6 or len(rfields) < 2:
        return None
    return MountInfo(_unescape(fields[4]), _unescape(rfields[1]), rfields[0], fields[2], fields[5])


def mounts(fstype: str | None = FSTYPE) -> list[MountInfo]:
    """Mounts from /proc/self/mountinfo (csfs ones by default)."""
    with open("/proc/self/mountinfo") as f:
        found = [parse(line) for line in f]
    return [m for m in found if m is not None and (fstype is None or m.fstype == fstype)]


def find_mount(mountpoint: str | os.PathLike[str], fstype: str | None = None) -> MountInfo | None:
    """The (last, i.e. topmost) mount at `mountpoint`, if any."""
    target = os.path.abspath(mountpoint)
    found = [m for m in mounts(fstype) if m.mountpoint == target]
    return found[-1] if found else None
