"""pytest fixtures for testing against real, throwaway data nodes (``pytest11`` plugin).

``syft_node`` serves a fresh node from a temporary folder on a free loopback port and stops it
at teardown; ``make_user`` registers a data scientist and returns their key file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .core.keys import generate_keypair, write_keypair
from .launcher import NodeProcess, start_node


@pytest.fixture
def syft_node(tmp_path: Path) -> Iterator[NodeProcess]:
    """A running node named ``hospital`` in a temporary folder."""
    node = start_node(tmp_path / "hospital", name="hospital")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def make_user(syft_node: NodeProcess, tmp_path: Path) -> Callable[..., Path]:
    """``make_user("alice")`` adds a data scientist (or ``role="owner"``) and returns their key file."""

    def make(name: str, role: str = "data_scientist") -> Path:
        key, pub = write_keypair(generate_keypair(name), tmp_path / "users")
        with syft_node.login() as owner:
            owner.users.add(name, role=role, public_key=pub)
        return key

    return make
