"""The node's limits: what one message, one user and the whole node may use.

Set by the owner in ``node.json`` under ``"limits"`` (e.g. ``{"limits": {"quota_mb": 8192}}``);
anything not given keeps its default. Every limit is refused with a ``QuotaExceeded`` that names
it, so a user who meets one knows what to change, and the node keeps serving everyone else.
"""

from __future__ import annotations

import dataclasses
import os
import resource
from dataclasses import dataclass
from typing import Any

from syft_kernel.core.errors import InvalidArgument


def _ram_mb() -> int:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)


@dataclass(frozen=True)
class Limits:
    workers: int = 8  # handlers that may run at once
    per_user: int = 2  # of them, how many one user may hold
    per_connection: int = 128  # messages one connection may have waiting
    max_queued_mb: int = 512  # bytes of messages one user may have waiting, on all connections
    max_message_mb: int = 4096  # a bigger message is dropped by libzmq before it is read
    memory_mb: int = 0  # the node process's address space; 0: three quarters of the RAM
    quota_mb: int = 4096  # bytes of results one user may hold
    max_objects: int = 100_000  # results one user may hold
    max_pending_requests: int = 1000  # undecided requests one user may have filed
    plan_timeout_s: float = 300.0  # a plan stops between ops once it has run this long
    max_columns: int = 10_000  # columns of a frame result

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Limits:
        given = config.get("limits") or {}
        names = {f.name: f.type for f in dataclasses.fields(cls)}
        if not isinstance(given, dict) or not all(k in names for k in given):
            raise InvalidArgument(f"node.json limits are a map of {', '.join(names)}")
        for k, v in given.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise InvalidArgument(f"node.json limit {k} is a non-negative number")
        return cls(**{k: (float(v) if names[k] == "float" else int(v)) for k, v in given.items()})

    @property
    def memory_bytes(self) -> int:
        return (self.memory_mb or _ram_mb() * 3 // 4) * 2**20


def limit_address_space(limits: Limits) -> int:
    """Cap this process's address space, so an allocation that would exhaust the machine fails
    with a MemoryError the node reports, instead of the kernel killing the node. Children (the
    code-request sandbox) set their own, lower limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = limits.memory_bytes
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    return want
