"""Printing benchmark figures: one line about the machine, then a table with verdicts."""

import os
import platform
from importlib.metadata import version


def machine() -> str:
    """What the figures were measured on."""
    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, torch {version('torch')}")


def print_table(rows: list[tuple]) -> None:
    """A plain table: figure, value, target, verdict (None: no target)."""
    width = max(len(r[0]) for r in rows)
    for name, value, target, ok in rows:
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{name:<{width}}  {value:>16}  {target:<10} {verdict}", flush=True)
