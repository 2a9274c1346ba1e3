"""Shared fixtures: real nodes (from the syft_kernel pytest plugin), logged-in clients, data."""

from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("PYTHONHASHSEED", "0")

# Kernels, Lab, the demo and the notebooks write Jupyter and IPython state (kernelspecs, config,
# connection files, history) to these folders: one temporary set per test process, never the
# developer's ~/.jupyter, ~/.local/share/jupyter or ~/.ipython.
_JUPYTER_TMP = tempfile.mkdtemp(prefix="syft-tests-jupyter-")
atexit.register(shutil.rmtree, _JUPYTER_TMP, ignore_errors=True)
for _var, _sub in (
    ("JUPYTER_DATA_DIR", "data"),
    ("JUPYTER_CONFIG_DIR", "config"),
    ("JUPYTER_RUNTIME_DIR", "runtime"),
    ("IPYTHONDIR", "ipython"),
):
    os.environ[_var] = os.path.join(_JUPYTER_TMP, _sub)
random.seed(0)
np.random.seed(0)

from syft_kernel import Client, login  # noqa: E402
from syft_kernel.launcher import NodeProcess  # noqa: E402
from syft_kernel.sample_data import birth_records  # noqa: E402


@pytest.fixture
def births_df() -> pd.DataFrame:
    return birth_records(month=2, rows=500)


@pytest.fixture
def owner(syft_node: NodeProcess) -> Iterator[Client]:
    with syft_node.login() as client:
        yield client


@pytest.fixture
def published(owner: Client, births_df: pd.DataFrame, syft_node_memo: dict) -> Client:  # type: ignore[type-arg]
    """The owner after publishing February births plus an array and a tensor asset (once, on a
    node shared by the module's tests: see ``syft_shared_node`` in syft_kernel/pytest_plugin.py)."""
    import torch

    if syft_node_memo.get("published"):
        return owner
    syft_node_memo["published"] = True
    owner.datasets.upload(
        "birth-records-feb",
        assets={
            "births": births_df,
            "matrix": np.arange(12, dtype=np.float64).reshape(3, 4),
            "tensor": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        },
        description="Monthly birth records",
        tags=["#February", "#birth-records"],
        subject_column="mother_id",
    )
    return owner


@pytest.fixture
def scientist(syft_node: NodeProcess, make_user, published: Client) -> Iterator[Client]:  # type: ignore[no-untyped-def]
    key = make_user("alice")
    with login(syft_node.connection_file, key=key) as client:
        yield client


class RawSocket:
    """A DEALER with a registered user's CURVE keys, for sending hand-made (bad) messages."""

    def __init__(self, connection: dict, key) -> None:  # type: ignore[no-untyped-def, type-arg]
        import zmq

        from syft_kernel.core.keys import KeyPair, read_keypair

        pair = key if isinstance(key, KeyPair) else read_keypair(key)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.curve_serverkey = connection["node_public_key"].encode()
        self.sock.curve_publickey = pair.public.encode()
        self.sock.curve_secretkey = pair.secret.encode()
        self.sock.linger = 0
        self.sock.connect(next(a for a in connection["addresses"] if a.startswith("tcp://")))

    def ask(self, frames: list, timeout: float = 20.0):  # type: ignore[no-untyped-def, type-arg]
        """Send frames; return the reply's (header, body, buffers)."""
        import msgpack

        self.sock.send_multipart(frames)
        assert self.sock.poll(timeout * 1000), "the node did not reply"
        reply = self.sock.recv_multipart()
        return msgpack.unpackb(reply[0]), msgpack.unpackb(reply[1]), reply[2:]

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture
def raw(syft_node: NodeProcess) -> Iterator[RawSocket]:
    """A raw socket logged in as the owner (a valid key: the node must read what it sends)."""
    sock = RawSocket(syft_node.connection, syft_node.owner_key)
    yield sock
    sock.close()
