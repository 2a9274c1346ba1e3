"""`syft-kernel node init / serve` and `keygen`: folders, keys, connection files, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import syft_kernel as sk
from syft_kernel import start_node
from syft_kernel.core.keys import (
    generate_keypair,
    read_connection_file,
    read_keypair,
    write_keypair,
)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syft_kernel.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_init_creates_database_keys_and_connection_file(tmp_path: Path) -> None:
    result = cli("node", "init", str(tmp_path / "h"), "--name", "hospital", "--port", "6001")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "h"
    assert (folder / "node.db").is_file()
    node_key = read_keypair(folder / "keys" / "node.key")
    owner_key = read_keypair(folder / "keys" / "owner.key")
    assert node_key.secret and owner_key.secret and node_key.public != owner_key.public
    assert stat.S_IMODE(os.stat(folder / "keys" / "owner.key").st_mode) == 0o600
    conn = read_connection_file(folder / "connection.json")
    assert conn["name"] == "hospital"
    assert conn["addresses"] == ["tcp://127.0.0.1:6001"]
    assert conn["node_public_key"] == node_key.public
    assert "secret" not in json.dumps(conn)


def test_init_refuses_an_existing_node(tmp_path: Path) -> None:
    assert cli("node", "init", str(tmp_path / "h"), "--name", "hospital").returncode == 0
    again = cli("node", "init", str(tmp_path / "h"), "--name", "hospital")
    assert again.returncode == 2
    assert "already holds a node" in again.stderr


def test_init_refuses_a_path_like_name(tmp_path: Path) -> None:
    result = cli("node", "init", str(tmp_path / "h"), "--name", "../../etc")
    assert result.returncode == 2
    assert "not allowed" in result.stderr


def test_keygen_writes_secret_and_public_halves(tmp_path: Path) -> None:
    result = cli("keygen", "alice", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    pair = read_keypair(tmp_path / "alice.key")
    pub = read_keypair(tmp_path / "alice.pub")
    assert pair.name == "alice" and pair.secret and pub.secret is None
    assert pub.public == pair.public
    assert stat.S_IMODE(os.stat(tmp_path / "alice.key").st_mode) == 0o600


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_shuts_down_cleanly_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    node = start_node(tmp_path / "h", name="hospital")
    with node.login() as owner:
        assert owner.node_name == "hospital" and owner.role == "owner"
    node.proc.send_signal(sig)
    assert node.proc.wait(15) == 0
    log = node.log()
    assert "serving on" in log and f"received {sig.name}" in log and "stopped" in log
    assert not (tmp_path / "h" / "node.ipc").exists()


def test_serve_rewrites_the_connection_file_with_the_real_port(tmp_path: Path) -> None:
    node = start_node(tmp_path / "h", name="hospital", port=0)
    try:
        addresses = node.connection["addresses"]
        tcp = [a for a in addresses if a.startswith("tcp://")]
        assert tcp and not tcp[0].endswith(":0")
        assert any(a.startswith("ipc://") for a in addresses)
        with node.login(transport="tcp") as owner:
            assert owner.address == tcp[0]
    finally:
        node.stop()


def test_restart_keeps_users_and_datasets(tmp_path: Path, births_df) -> None:  # type: ignore[no-untyped-def]
    node = start_node(tmp_path / "h", name="hospital")
    with node.login() as owner:
        owner.datasets.upload("births", assets={"births": births_df})
    node.kill()  # a crash, not a clean stop
    node = start_node(tmp_path / "h", name="hospital")
    try:
        with node.login() as owner:
            assert list(owner.datasets) == ["births"]
            got = owner.datasets["births"]["births"].get()
            assert got.equals(births_df)
    finally:
        node.stop()


def test_node_settings_come_from_the_folder_and_the_command_line(tmp_path: Path) -> None:
    """``NodeConfig``: node.json's limits, then syft_kernel_node_config.json, then the command
    line; the running node keeps the result, and a bad setting is refused with its name."""
    from syft_kernel.node.config import NodeConfig

    folder = tmp_path / "h"
    node = sk.start_node(folder, name="h")
    node.stop()
    config = json.loads((folder / "node.json").read_text())
    config["limits"] = {"max_pending_requests": 5, "quota_mb": 64}
    (folder / "node.json").write_text(json.dumps(config))
    (folder / "syft_kernel_node_config.json").write_text(json.dumps({"NodeConfig": {"max_pending_requests": 3}}))
    loaded = NodeConfig.load(folder, ["--NodeConfig.max_pending_requests=1"])
    assert (loaded.max_pending_requests, loaded.quota_mb) == (1, 64)
    assert NodeConfig.load(folder).max_pending_requests == 3
    with pytest.raises(sk.InvalidArgument, match="unknown node settings bogus"):
        NodeConfig.load(folder, ["--NodeConfig.bogus=1"])
    with pytest.raises(sk.InvalidArgument, match="quota_mb"):
        NodeConfig.load(folder, ["--NodeConfig.quota_mb=-5"])
    node = sk.start_node(folder, name="h", settings={"max_pending_requests": 1})
    try:
        with node.login() as owner:
            owner.datasets.upload("d", assets={"x": np.arange(10.0)})
            x = owner.datasets["d"]["x"]
            key, pub = write_keypair(generate_keypair("ann"), tmp_path / "users")
            owner.users.add("ann", public_key=pub)
        with sk.login(node.connection_file, key=key) as ann:
            y = ann.datasets["d"]["x"]
            y.sum().request(reason="one")
            with pytest.raises(sk.QuotaExceeded, match="waiting for a decision"):
                y.mean().request(reason="two")
        del x
    finally:
        node.stop()
    out = subprocess.run(
        [sys.executable, "-m", "syft_kernel.cli", "node", "config", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--NodeConfig.max_pending_requests=3" in out and "Undecided requests one user may have filed" in out
