"""Authentication (CURVE keys checked by the ZAP handler) and authorization by role."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import syft_kernel as sk
from syft_kernel.core.keys import generate_keypair, write_keypair

# Its tests only read from the node, or write under names of their own: they share one
# (syft_shared_node, syft_kernel/pytest_plugin.py); the ones marked syft_own_node need a fresh one.
pytestmark = pytest.mark.syft_shared_node


def test_an_unknown_key_cannot_connect(syft_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key, _ = write_keypair(generate_keypair("mallory"), tmp_path)
    started = time.monotonic()
    with pytest.raises(sk.AuthenticationError, match="refused the key"):
        sk.login(syft_node.connection_file, key=key, timeout=20)
    assert time.monotonic() - started < 10  # reported from the handshake, not a timeout
    assert "unknown key" in syft_node.log()


def test_a_wrong_node_key_in_the_connection_file_is_refused(syft_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    conn = json.loads(syft_node.connection_file.read_text())
    conn["node_public_key"] = generate_keypair("impostor").public
    with pytest.raises((sk.AuthenticationError, sk.NodeUnavailable)):
        sk.login(conn, key=syft_node.owner_key, timeout=3)


def test_a_public_key_file_cannot_log_in(syft_node) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(sk.AuthenticationError, match="only a public key"):
        sk.login(syft_node.connection_file, key=syft_node.folder / "keys" / "owner.pub")


def test_a_scientist_cannot_do_owner_actions(scientist: sk.Client, births_df) -> None:  # type: ignore[no-untyped-def]
    assert scientist.role == "data_scientist"
    with pytest.raises(sk.Unauthorized, match="for data owners"):
        scientist.users.add("bob", public_key=generate_keypair("bob").public)
    with pytest.raises(sk.Unauthorized):
        scientist.users.list()
    with pytest.raises(sk.Unauthorized):
        scientist.datasets.upload("mine", assets={"x": births_df})
    with pytest.raises(sk.Unauthorized):
        scientist.datasets.delete("birth-records-feb")
    with pytest.raises(sk.Unauthorized):
        scientist.audit  # noqa: B018
    # and the node keeps serving the scientist for what they may do
    assert "birth-records-feb" in scientist.datasets


@pytest.mark.syft_own_node  # removes a user
def test_a_removed_user_is_cut_off(syft_node, make_user, owner: sk.Client) -> None:  # type: ignore[no-untyped-def]
    key = make_user("bob")
    bob = sk.login(syft_node.connection_file, key=key)
    assert list(bob.datasets) == []
    owner.users.remove("bob")
    with pytest.raises(sk.Unauthorized, match="no longer registered"):
        bob.datasets.search()
    bob.close()
    with pytest.raises(sk.AuthenticationError):
        sk.login(syft_node.connection_file, key=key, timeout=10)


@pytest.mark.syft_own_node  # lists every user
def test_users_add_checks_its_arguments(owner: sk.Client) -> None:
    with pytest.raises(sk.InvalidArgument, match="role"):
        owner.users.add("carol", role="admin", public_key=generate_keypair("c").public)
    with pytest.raises(sk.InvalidArgument, match="public key"):
        owner.users.add("carol", public_key="not-a-key")
    with pytest.raises(sk.InvalidArgument, match="not allowed"):
        owner.users.add("../carol", public_key=generate_keypair("c").public)
    with pytest.raises(sk.InvalidArgument, match="another user"):
        owner.users.add("carol", public_key=owner.key.public)
    with pytest.raises(sk.InvalidArgument, match="signing key"):
        owner.users.add("carol", role="owner", public_key=generate_keypair("c").public)
    owner.users.add("carol", role="owner", public_key=generate_keypair("c"))
    assert {u["name"]: u["role"] for u in owner.users.list()} == {"owner": "owner", "carol": "owner"}
    with pytest.raises(sk.InvalidArgument, match="exists already"):
        owner.users.add("carol", public_key=generate_keypair("c2").public)
