"""(commands added by their owners)"""
from __future__ import annotations


def register(sub, common) -> None:
    pass
