"""Creating a node folder: database, the node's CURVE keypair, an owner keypair, connection file."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from syft_kernel.core import codec
from syft_kernel.core.errors import InvalidArgument
from syft_kernel.core.keys import (
    atomic_write,
    generate_keypair,
    write_connection_file,
    write_keypair,
)
from syft_kernel.core.names import check_name

from .db import Database


def init_node(
    folder: str | Path, name: str, host: str = "127.0.0.1", port: int = 5555, owner: str = "owner"
) -> dict[str, str]:
    """Make a new node folder; refuse to overwrite an existing node. Returns the paths made."""
    folder = Path(folder)
    check_name(name, "node")
    check_name(owner, "user")
    if (folder / "node.db").exists():
        raise InvalidArgument(f"{folder} already holds a node; pick another folder")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "assets").mkdir(mode=0o700, exist_ok=True)
    keys = folder / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    node_pair = generate_keypair("node")
    write_keypair(node_pair, keys)
    owner_pair = generate_keypair(owner)
    owner_key, owner_pub = write_keypair(owner_pair, keys)
    atomic_write(folder / "node.json", json.dumps({"name": name, "host": host, "port": port}, indent=1).encode())
    db = Database(folder / "node.db")
    db.set_meta("name", name)
    db.set_meta("created_at", str(time.time()))
    db.add_user(owner, owner_pair.public, "owner", owner_pair.sign_public)
    db.audit(owner, "node.init", name)
    db.close()
    make_private(folder)
    conn = folder / "connection.json"
    write_connection_file(
        conn,
        {
            "name": name,
            "addresses": [f"tcp://{host}:{port}"],
            "node_public_key": node_pair.public,
            "protocol_version": codec.PROTOCOL_VERSION,
        },
    )
    return {"folder": str(folder), "connection": str(conn), "owner_key": str(owner_key), "owner_pub": str(owner_pub)}


# What only the node's own user may read: the database, data, objects, keys, logs, config.
# ``connection.json`` stays readable: it holds only the addresses and the node's public key.
PRIVATE_DIRS = ("assets", "objects", "keys", "jobs")  # jobs/: left by versions before the sandbox
PRIVATE_FILES = ("node.db", "node.db-wal", "node.db-shm", "node.log", "node.json")


def make_private(folder: str | Path) -> None:
    """Set 0700 on the node's data folders and 0600 on every file in them and on its private files
    (also mending folders made before this rule, and files some other tool wrote)."""
    folder = Path(folder)
    for name in PRIVATE_DIRS:
        d = folder / name
        if not d.is_dir():
            continue
        os.chmod(d, 0o700)
        for entry in os.scandir(d):
            if entry.is_file(follow_symlinks=False) and stat.S_IMODE(entry.stat().st_mode) != 0o600:
                os.chmod(entry.path, 0o600)
    for name in PRIVATE_FILES:
        path = folder / name
        if path.is_file():
            os.chmod(path, 0o600)
