"""Make a gateway folder: its database, keys and connection file (what nodes and scientists get)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from syft_kernel.core import codec
from syft_kernel.core.errors import InvalidArgument
from syft_kernel.core.keys import atomic_write, generate_keypair, write_connection_file, write_keypair
from syft_kernel.core.names import check_name

from .db import GatewayDB


def init_gateway(
    folder: str | Path, name: str, host: str = "127.0.0.1", port: int = 5600, auto_admit: bool = False
) -> dict[str, str]:
    """Make a new gateway folder; refuse to overwrite one. Returns the paths made."""
    folder = Path(folder)
    check_name(name, "gateway")
    if (folder / "gateway.db").exists():
        raise InvalidArgument(f"{folder} already holds a gateway; pick another folder")
    folder.mkdir(parents=True, exist_ok=True)
    keys = folder / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    pair = generate_keypair("gateway")
    write_keypair(pair, keys)
    atomic_write(
        folder / "gateway.json",
        json.dumps({"name": name, "host": host, "port": port, "auto_admit": auto_admit}, indent=1).encode(),
    )
    db = GatewayDB(folder / "gateway.db")
    db.set_meta("name", name)
    db.set_meta("created_at", str(time.time()))
    db.close()
    conn = folder / "connection.json"
    write_connection_file(conn, connection_info(name, [f"tcp://{host}:{port}"], pair.public))
    return {"folder": str(folder), "connection": str(conn)}


def connection_info(name: str, addresses: list[str], public_key: str) -> dict[str, object]:
    """A gateway's connection file: like a node's, with ``kind: gateway``."""
    return {
        "kind": "gateway",
        "name": name,
        "addresses": addresses,
        "node_public_key": public_key,
        "protocol_version": codec.PROTOCOL_VERSION,
    }
