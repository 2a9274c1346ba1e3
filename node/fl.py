"""Federated jobs' trainers: one sandboxed child per approved training request, kept between rounds.

A trainer (``trainer.py``) is started in the code-request sandbox (bubblewrap, seccomp, no
network, its own user) when a job is approved or first called, is given the job's graph, plan
and data once, and then answers each round's ``fit`` and ``evaluate`` on its pipe. Calls run on
this module's threads, never on the node's message loop: a handler hands a call over and its
reply is sent when the call is done (``handlers.Later``). Each call has a wall-clock limit (the
trainer is killed past it and started afresh for the next call), and the trainer has memory,
CPU and thread limits. A trainer idle for ``fl_idle_s`` is ended, and so is one whose job is
stopped, finished or gone.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syft_kernel.core import fl_train
from syft_kernel.core.errors import QuotaExceeded, SyftError

from . import sandbox
from .jobs import Sandbox, SandboxUnavailable, new_sandbox

if TYPE_CHECKING:
    from .state import DataNode

log = logging.getLogger("syft_kernel.node.fl")
MODULE = "syft_kernel.node.trainer"


@dataclass
class CallResult:
    ok: bool
    metrics: dict[str, float]
    weights: bytes = b""
    error: str = ""  # for the scientist: what kind of failure, never a library's text
    detail: str = ""  # for the owner's audit log


class Trainer:
    """One job's sandboxed trainer process, its pipe and the limits of its calls."""

    def __init__(self, node: DataNode, request_id: str, spec: dict[str, Any], limits: dict[str, float]) -> None:
        self.node = node
        self.request_id = request_id
        self.spec = spec  # graph, plan, data and evaluate ids, as filed
        self.limits = limits
        self.lock = threading.Lock()  # one call at a time
        self.sb: Sandbox | None = None
        self.last_used = time.monotonic()
        self.expired = False
        self.closed = False

    # ---- the child
    def _data(self, obj_id: str) -> tuple[Any, Any]:
        value = self.node.store.get(obj_id, "", is_owner=True).value
        return fl_train.arrays(value, self.spec["plan"])

    def _start(self) -> None:
        sb = new_sandbox(self.node.folder.resolve(), True, cold=True, module=MODULE)
        self.sb = sb
        sb.ready()
        cfg = self.node.limits
        setup = {
            "graph": self.spec["graph"],
            "plan": self.spec["plan"],
            "threads": cfg.fl_threads,
            "max_parameters": cfg.fl_max_parameters,
            "evaluate": self.spec.get("evaluate") is not None,
            "limits": {
                # CPU for the trainer's life: every call may use its wall-clock limit on each thread
                "timeout": self.limits["timeout"] * cfg.fl_threads * (2 * self.spec["plan"]["rounds"] + 4),
                "memory_mb": self.limits["memory_mb"],
                "output_mb": 1,
            },
        }
        arrays = [*self._data(self.spec["data"])]
        if self.spec.get("evaluate") is not None:
            arrays += self._data(self.spec["evaluate"])
        timer = threading.Timer(self.limits["timeout"], self._expire)
        timer.start()
        try:
            sandbox.send_json(sb.proc.stdin, setup)
            for a in arrays:
                sandbox.send_value(sb.proc.stdin, a)
            reply = sandbox.recv_json(sb.proc.stdout)
        finally:
            timer.cancel()
        if not reply.get("ready"):
            raise SandboxUnavailable("the trainer did not start")

    def _expire(self) -> None:
        self.expired = True
        if self.sb is not None:
            self.sb.kill()

    def prestart(self) -> None:
        """Start the child now (its torch import and self-check), so the first round starts at once."""
        with self.lock:
            if self.sb is None and not self.closed:
                try:
                    self._start()
                except Exception as e:
                    log.info("trainer for %s not started ahead: %s", self.request_id, e)
                    self._drop()

    def _drop(self) -> None:
        if self.sb is not None:
            self.sb.close()
            self.sb = None

    def _why_ended(self, during: str) -> CallResult:
        sb = self.sb
        code = sb.proc.poll() if sb is not None and sb.proc is not None else None
        lines = sb.stderr_lines() if sb is not None else []
        self._drop()
        if self.closed:
            return CallResult(False, {}, error=f"the job was stopped during {during}")
        if self.expired:
            self.expired = False
            return CallResult(
                False, {}, error=f"{during} ran longer than its {self.limits['timeout']:g} s limit and was stopped"
            )
        if code == sandbox.EXIT_MEMORY or code == 137:
            return CallResult(
                False,
                {},
                error=f"{during} ran out of its {self.limits['memory_mb']:g} MB memory limit",
                detail="\n".join(lines[-5:]),
            )
        return CallResult(
            False,
            {},
            error=f"the trainer ended during {during} (exit code {code}); the owner's audit log has its last output",
            detail="\n".join(lines[-20:])[-4000:],
        )

    def call(self, kind: str, round_: int, weights: bytes) -> CallResult:
        """One ``fit`` or ``evaluate`` in the child (started first if it is not running)."""
        during = f"round {round_}'s training" if kind == "fit" else f"round {round_}'s evaluation"
        with self.lock:
            self.last_used = time.monotonic()
            if self.closed:
                return CallResult(False, {}, error="the job was stopped")
            try:
                if self.sb is None or not self.sb.alive():
                    self._drop()
                    self._start()
            except SandboxUnavailable as e:
                self._drop()
                return CallResult(False, {}, error=str(e))
            except (OSError, EOFError, ValueError, KeyError):
                return self._why_ended(f"the trainer's start for {during}")
            sb = self.sb
            assert sb is not None
            timer = threading.Timer(self.limits["timeout"], self._expire)
            timer.start()
            try:
                sandbox.send_json(sb.proc.stdin, {"cmd": kind, "round": round_, "size": len(weights)})
                sb.proc.stdin.write(weights)
                sb.proc.stdin.flush()
                reply = sandbox.recv_json(sb.proc.stdout)
                out = bytes(sandbox.read_exact(sb.proc.stdout, int(reply["size"]))) if reply.get("ok") else b""
            except (OSError, EOFError, ValueError, KeyError, TypeError):
                return self._why_ended(during)
            finally:
                timer.cancel()
                self.last_used = time.monotonic()
            if self.expired:
                return self._why_ended(during)
            if not reply.get("ok"):
                kind_name = str(reply.get("error", "an error"))[:100]
                return CallResult(
                    False,
                    {},
                    error=(
                        f"{during} raised {kind_name}; its message could describe private data, so only the "
                        "data owner's audit log has it (they can tell you what went wrong)"
                    ),
                    detail=str(reply.get("detail", ""))[:4000],
                )
            metrics = reply.get("metrics")
            if not isinstance(metrics, dict):
                return self._why_ended(during)
            return CallResult(True, {str(k): float(v) for k, v in metrics.items()}, out)

    def close(self) -> None:
        self.closed = True
        if self.sb is not None:
            self.sb.kill()
        with self.lock:
            self._drop()


class FLRunner:
    """The node's trainers, and the threads their calls run on."""

    def __init__(self, node: DataNode) -> None:
        self.node = node
        self.trainers: dict[str, Trainer] = {}
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=max(2, node.limits.fl_max_trainers * 2), thread_name_prefix="fl")
        self._reaper: threading.Thread | None = None
        self._stop = threading.Event()

    def trainer(self, request_id: str, spec: dict[str, Any], limits: dict[str, float]) -> Trainer:
        with self._lock:
            t = self.trainers.get(request_id)
            if t is not None:
                return t
            alive = [x for x in self.trainers.values() if x.sb is not None or x.lock.locked()]  # or starting
            if len(alive) >= self.node.limits.fl_max_trainers:
                free = [x for x in alive if not x.lock.locked()]
                if not free:
                    raise QuotaExceeded(
                        f"{len(alive)} federated jobs are training on this node now (at most "
                        f"{self.node.limits.fl_max_trainers}): try this round again shortly",
                        limit="fl_max_trainers",
                    )
                idle = min(free, key=lambda x: x.last_used)  # the longest idle one makes room
                self.trainers.pop(idle.request_id, None)
                idle.close()
            t = self.trainers[request_id] = Trainer(self.node, request_id, spec, limits)
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="fl-reaper", daemon=True)
                self._reaper.start()
            return t

    def submit(self, trainer: Trainer, kind: str, round_: int, weights: bytes, done: Any) -> Future[Any]:
        """Run one call on a pool thread; ``done(result)`` makes the reply (or raises its error)."""

        def work() -> Any:
            try:
                result = trainer.call(kind, round_, weights)
            except SyftError as e:  # our own refusal (e.g. the data no longer fits the plan)
                result = CallResult(False, {}, error=e.message)
            except Exception as e:  # never lose a round: it ends as a failure with the reason
                log.exception("federated call %s %s %d failed", trainer.request_id, kind, round_)
                result = CallResult(False, {}, error=f"the node could not run {kind} ({type(e).__name__})")
            return done(result)

        return self.pool.submit(work)

    def prestart(self, request_id: str, spec: dict[str, Any], limits: dict[str, float]) -> None:
        try:
            t = self.trainer(request_id, spec, limits)
        except QuotaExceeded:
            return
        self.pool.submit(t.prestart)

    def stop(self, request_id: str) -> None:
        with self._lock:
            t = self.trainers.pop(request_id, None)
        if t is not None:
            t.close()

    def _reap(self) -> None:
        while not self._stop.wait(min(5.0, self.node.limits.fl_idle_s / 2)):
            now = time.monotonic()
            with self._lock:
                idle = [
                    t
                    for t in self.trainers.values()
                    if not t.lock.locked() and now - t.last_used > self.node.limits.fl_idle_s
                ]
                for t in idle:
                    self.trainers.pop(t.request_id, None)
            for t in idle:
                log.info("ending the idle trainer of %s", t.request_id)
                t.close()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            trainers, self.trainers = list(self.trainers.values()), {}
        for t in trainers:
            t.close()
        self.pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["CallResult", "FLRunner", "Trainer"]
