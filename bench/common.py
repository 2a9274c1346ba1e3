"""Helpers the benchmark scripts share: the machine line, the PASS / MISS verdict, the node
folder's file system and stopping a node with its log tail if it ended badly."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_machine(versions: str) -> None:
    """Print the machine (CPUs, platform, load) and Python plus ``versions``, so runs compare."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs ({affinity} usable), {platform.platform()}, load avg {load}")
    print(f"python {sys.version.split()[0]} ({platform.python_implementation()}); {versions}")


def filesystem(path: Path) -> str:
    """The file system type under ``path`` (commits fsync there, so it sets request latency)."""
    try:
        return (
            subprocess.run(["df", "-T", str(path)], capture_output=True, text=True, timeout=10)
            .stdout.splitlines()[-1]
            .split()[1]
        )
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def stop_node(node: Any) -> None:
    """Stop a benchmark's node; show its log tail if it did not exit cleanly."""
    code = node.stop()
    if code != 0:
        print(f"warning: the node exited with code {code}; log tail:\n{node.log()[-2000:]}")
