"""The node's settings (``NodeConfig``): where it listens and what one message, one user and the
whole node may use.

Set them the way Jupyter's are (traitlets), later sources winning:

1. ``node.json`` in the node folder: ``host``, ``port`` and, under ``"limits"``, any limit
   (``{"limits": {"quota_mb": 8192}}``), as ``node init`` writes it;
2. ``syft_kernel_node_config.json`` in the node folder: ``{"NodeConfig": {"quota_mb": 8192}}``;
3. the command line: ``syft-kernel node serve DIR --NodeConfig.quota_mb=8192``.

Every limit is refused with a ``QuotaExceeded`` that names it, so a user who meets one knows
what to change, and the node keeps serving everyone else. ``syft-kernel node config`` lists them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from traitlets import Bool, Float, Int, Unicode
from traitlets.config import Config, Configurable

from syft_kernel.core.errors import InvalidArgument
from syft_kernel.core.settings import describe_settings, load_settings

CONFIG_FILE = "syft_kernel_node_config.json"


def _ram_mb() -> int:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)


class NodeConfig(Configurable):
    """Where a data node listens and the limits it keeps (see the module's docstring)."""

    host = Unicode("127.0.0.1", help="The address the node's TCP socket binds.").tag(config=True)
    port = Int(0, min=0, max=65535, help="The TCP port (0: a free one, written to the connection file).").tag(
        config=True
    )
    ipc = Bool(True, help="Also listen on an ipc:// socket in the node folder for clients on this host.").tag(
        config=True
    )

    public_address = Unicode(
        "",
        help="The tcp://host:port others reach this node at, as a gateway lists it (default: the address it serves on).",
    ).tag(config=True)
    heartbeat_s = Float(10.0, min=0.05, help="How often a node on a network tells its gateway it is alive (s).").tag(
        config=True
    )

    workers = Int(8, min=1, help="Handlers that may run at once.").tag(config=True)
    per_user = Int(2, min=1, help="Of the workers, how many one user may hold.").tag(config=True)
    per_connection = Int(128, min=1, help="Messages one connection may have waiting.").tag(config=True)
    max_queued_mb = Int(512, min=0, help="MB of messages one user may have waiting, on all connections.").tag(
        config=True
    )
    max_message_mb = Int(4096, min=1, help="A bigger message is dropped by libzmq before it is read.").tag(config=True)
    memory_mb = Int(0, min=0, help="The node process's address space in MB (0: three quarters of the RAM).").tag(
        config=True
    )
    quota_mb = Int(4096, min=0, help="MB of results one user may hold on the node.").tag(config=True)
    max_objects = Int(100_000, min=0, help="Results one user may hold on the node.").tag(config=True)
    max_pending_requests = Int(1000, min=0, help="Undecided requests one user may have filed.").tag(config=True)
    plan_timeout_s = Float(300.0, min=0.0, help="A plan stops between ops once it has run this long (s).").tag(
        config=True
    )
    max_columns = Int(10_000, min=1, help="Columns of a frame result.").tag(config=True)

    fl_round_timeout_s = Float(
        600.0, min=1.0, help="A federated round (or evaluation) on this node is stopped after this long (s)."
    ).tag(config=True)
    fl_memory_mb = Int(4096, min=64, help="MB a federated job's trainer may allocate beyond its runtime.").tag(
        config=True
    )
    fl_threads = Int(1, min=1, help="CPU threads a federated job's trainer may use.").tag(config=True)
    fl_max_parameters = Int(
        100_000_000, min=1, help="The largest model (trainable numbers) a federated job may train here."
    ).tag(config=True)
    fl_max_trainers = Int(4, min=1, help="Federated jobs whose trainers may be alive at once.").tag(config=True)
    fl_idle_s = Float(
        600.0, min=1.0, help="A federated job's trainer that has had nothing to do this long is ended (s)."
    ).tag(config=True)

    LIMITS = (
        "workers",
        "per_user",
        "per_connection",
        "max_queued_mb",
        "max_message_mb",
        "memory_mb",
        "quota_mb",
        "max_objects",
        "max_pending_requests",
        "plan_timeout_s",
        "max_columns",
        "fl_round_timeout_s",
        "fl_memory_mb",
        "fl_threads",
        "fl_max_parameters",
        "fl_max_trainers",
        "fl_idle_s",
    )

    @property
    def memory_bytes(self) -> int:
        return (self.memory_mb or _ram_mb() * 3 // 4) * 2**20

    @classmethod
    def load(cls, folder: str | Path | None = None, argv: Sequence[str] = (), **overrides: Any) -> NodeConfig:
        """The settings of the node in ``folder``: its files, then ``argv`` (``--NodeConfig.x=v``),
        then keyword ``overrides`` (``None`` values are ignored)."""
        where = Path(folder) if folder is not None else None
        base = _from_node_json(where / "node.json") if where is not None else Config()
        return load_settings(cls, "node", base, where, CONFIG_FILE, argv, overrides)

    def describe(self) -> str:
        """Every setting with its value and help (what ``syft-kernel node config DIR`` prints)."""
        return describe_settings(self)


def _from_node_json(path: Path) -> Config:
    """``host``, ``port`` and ``limits`` of ``node.json`` (the format ``node init`` writes)."""
    config = Config()
    if not path.exists():
        return config
    data = json.loads(path.read_text())
    for key in ("host", "port"):
        if data.get(key) is not None:
            config.NodeConfig[key] = data[key]
    given = data.get("limits") or {}
    if not isinstance(given, dict) or not all(k in NodeConfig.LIMITS for k in given):
        raise InvalidArgument(f"node.json limits are a map of {', '.join(NodeConfig.LIMITS)}")
    for k, v in given.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise InvalidArgument(f"node.json limit {k} is a non-negative number")
        config.NodeConfig[k] = float(v) if k.endswith("_s") else int(v)
    return config
