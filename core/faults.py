"""Test-only fault injection: die with SIGKILL at a named point.

Set CSFS_FAULT=<name> (or <name>:<n> to die at the n-th hit) in a child process;
crash-safety tests then check that nothing on disk is half-written or lost.
Costs one dict lookup per point when unset.
"""
from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get("CSFS_FAULT")
    if not spec:
        return
    want, _, nth = spec.partition(":")
    if want != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
