"""Helpers the benchmark scripts share: the machine line and the PASS / MISS verdict."""

from __future__ import annotations

import os
import platform
import sys


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_machine(versions: str) -> None:
    """Print the machine (CPUs, platform, load) and Python plus ``versions``, so runs compare."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs ({affinity} usable), {platform.platform()}, "
          f"load avg {load}")
    print(f"python {sys.version.split()[0]} ({platform.python_implementation()}); {versions}")
