"""The gateway's settings (``GatewayConfig``), set like a node's: ``gateway.json`` in its folder,
then ``syft_kernel_gateway_config.json`` (``{"GatewayConfig": {...}}``), then the command line
(``--GatewayConfig.name=value``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from traitlets import Bool, Float, Int, Unicode
from traitlets.config import Config, Configurable

from syft_kernel.core.settings import describe_settings, load_settings

CONFIG_FILE = "syft_kernel_gateway_config.json"


class GatewayConfig(Configurable):
    """Where a gateway listens, whom it admits and how long a silent node stays online."""

    host = Unicode("127.0.0.1", help="The address the gateway's TCP socket binds.").tag(config=True)
    port = Int(0, min=0, max=65535, help="The TCP port (0: a free one, written to the connection file).").tag(
        config=True
    )
    public_address = Unicode(
        "",
        help="The tcp://host:port nodes and scientists reach the gateway at, written to its connection file "
        "(default: the address it serves on; set it when serving on 0.0.0.0).",
    ).tag(config=True)
    auto_admit = Bool(False, help="Admit every node that joins, without the operator (for demos).").tag(config=True)
    offline_after_s = Float(30.0, min=0.1, help="A node silent this long (no heartbeat) is shown offline.").tag(
        config=True
    )
    max_skew_s = Float(300.0, min=1.0, help="A registration signed further from now than this is refused.").tag(
        config=True
    )
    max_message_mb = Int(
        2, min=1, help="A bigger message is dropped by libzmq before it is read (nodes publish in smaller chunks)."
    ).tag(config=True)
    queue_per_connection = Int(32, min=1, help="Messages one connection may have waiting (libzmq's RCVHWM).").tag(
        config=True
    )
    max_datasets_per_node = Int(10_000, min=0, help="Datasets one node may list.").tag(config=True)
    max_node_mb = Int(32, min=1, help="MB of listings one node may hold on the gateway.").tag(config=True)
    search_budget_s = Float(0.25, min=0.01, help="A search that would take longer is refused as too broad.").tag(
        config=True
    )
    max_reply_kb = Int(1024, min=64, help="A search's reply stops at this many KB of hits (it says so).").tag(
        config=True
    )
    max_pending_nodes = Int(100, min=1, help="Nodes that may wait for admission at once.").tag(config=True)
    max_accounts_per_node = Int(
        100, min=1, help="Undecided account requests one node may have waiting through the gateway."
    ).tag(config=True)
    max_open_accounts = Int(20, min=1, help="Undecided account requests one key may have open.").tag(config=True)

    @classmethod
    def load(cls, folder: str | Path | None = None, argv: Sequence[str] = (), **overrides: Any) -> GatewayConfig:
        """The settings of the gateway in ``folder``, then ``argv``, then ``overrides`` (None: ignored)."""
        base = Config()
        where = Path(folder) if folder is not None else None
        if where is not None and (where / "gateway.json").exists():
            data = json.loads((where / "gateway.json").read_text())
            for key in ("host", "port", "auto_admit"):
                if data.get(key) is not None:
                    base.GatewayConfig[key] = data[key]
        return load_settings(cls, "gateway", base, where, CONFIG_FILE, argv, overrides)

    def describe(self) -> str:
        """Every setting with its value and help (``syft-kernel gateway config DIR``)."""
        return describe_settings(self)
