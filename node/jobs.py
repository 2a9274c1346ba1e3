"""Running approved code requests: one child process per run, with time and memory limits.

The node's own process never runs submitted code. Inputs and output travel as wire-format files
in a private job folder; a run that crashes, hangs or runs out of memory ends as a clear failure.
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syft_kernel.errors import InvalidArgument

from .executor import Value, check_result, type_key
from .objfile import read_value, write_value

log = logging.getLogger("syft_kernel.node.jobs")

DEFAULT_LIMITS = {"timeout": 60.0, "memory_mb": 4096, "output_mb": 1024}


@dataclass
class JobOutcome:
    ok: bool
    value: Value | None = None
    error: str = ""


def check_limits(limits: Any) -> dict[str, float]:
    """Merge the owner's limits with the defaults; refuse nonsense."""
    out: dict[str, float] = dict(DEFAULT_LIMITS)
    if limits:
        if not isinstance(limits, dict):
            raise InvalidArgument("limits are a map")
        for k, v in limits.items():
            if k not in DEFAULT_LIMITS or not isinstance(v, (int, float)) or not 0 < v <= 10**6:
                raise InvalidArgument(f"limit {k!r} must be one of {', '.join(DEFAULT_LIMITS)} with a positive value")
            out[k] = float(v)
    return out


def _limit(memory_mb: float, cpu_s: float, output_mb: float) -> Callable[[], None]:
    def apply() -> None:
        mem = int(memory_mb * 1024 * 1024)
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        cpu = int(cpu_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        out = int(output_mb * 1024 * 1024)
        resource.setrlimit(resource.RLIMIT_FSIZE, (out, out))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_job(work_root: Path, request_id: str, source: str, fn_name: str, inputs: dict[str, Value],
            limits: dict[str, float]) -> JobOutcome:
    """Run one approved function in a child process; return its output with its inputs' lineage."""
    folder = Path(tempfile.mkdtemp(dir=work_root, prefix=f"job-{request_id}-"))
    try:
        names = list(inputs)
        for i, name in enumerate(names):
            write_value(folder / f"input-{i}.bin", inputs[name].value)
        spec = {"request_id": request_id, "source": source, "fn_name": fn_name, "inputs": names,
                "uses_torch": any(type_key(v.value) == "Tensor" for v in inputs.values())}
        (folder / "job.json").write_text(json.dumps(spec))
        cmd = [sys.executable, "-I", "-m", "syft_kernel.node.sandbox", str(folder)]
        env = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "HOME": str(folder)}
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=_limit(limits["memory_mb"], limits["timeout"], limits["output_mb"]))
        try:
            _, err = proc.communicate(timeout=limits["timeout"])
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return JobOutcome(False, error=f"the code ran longer than its {limits['timeout']:g} s limit and was stopped")
        text = err.decode(errors="replace").strip()[-2000:]
        if proc.returncode != 0:
            if proc.returncode < 0:
                why = {9: "killed (time or memory limit)", 24: "CPU time limit", 25: "output size limit",
                       11: "crashed (segmentation fault)"}.get(-proc.returncode, f"signal {-proc.returncode}")
                return JobOutcome(False, error=f"the code's process ended: {why}")
            if proc.returncode == 3:
                return JobOutcome(False, error=f"the code ran out of its {limits['memory_mb']:g} MB memory limit")
            return JobOutcome(False, error=text.splitlines()[-1] if text else f"exit code {proc.returncode}")
        try:
            value = read_value(folder / "output.bin")
            check_result(value, f"{fn_name}()")
        except Exception as e:
            return JobOutcome(False, error=f"the code's result could not be read: {e}")
        lineage = frozenset().union(*(v.lineage for v in inputs.values())) if inputs else frozenset()
        return JobOutcome(True, Value(value, lineage, None))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class JobRunner:
    """Runs jobs on background threads so the node keeps serving while code runs."""

    def __init__(self, work_root: Path, on_done: Callable[[str, JobOutcome], None]) -> None:
        self.work_root = work_root
        self.work_root.mkdir(exist_ok=True)
        self.on_done = on_done
        self.threads: dict[str, threading.Thread] = {}

    def start(self, request_id: str, source: str, fn_name: str, inputs: dict[str, Value],
              limits: dict[str, float]) -> None:
        def work() -> None:
            try:
                outcome = run_job(self.work_root, request_id, source, fn_name, inputs, limits)
            except Exception as e:  # never lose a run: it ends as a failure with the reason
                log.exception("job %s failed to run", request_id)
                outcome = JobOutcome(False, error=f"the node could not run the code: {e}")
            self.on_done(request_id, outcome)

        t = threading.Thread(target=work, name=f"job-{request_id}", daemon=True)
        self.threads[request_id] = t
        t.start()
