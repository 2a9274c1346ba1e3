"""The node process's own memory cap (its settings are ``NodeConfig`` in ``config.py``)."""

from __future__ import annotations

import resource

from .config import NodeConfig


def limit_address_space(config: NodeConfig) -> int:
    """Cap this process's address space, so an allocation that would exhaust the machine fails
    with a MemoryError the node reports, instead of the kernel killing the node. Children (the
    code-request sandbox) set their own, lower limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = config.memory_bytes
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    return want
