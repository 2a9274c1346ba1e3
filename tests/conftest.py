"""Shared fixtures: real nodes (from the syft_kernel pytest plugin), logged-in clients, data."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("PYTHONHASHSEED", "0")
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
def published(owner: Client, births_df: pd.DataFrame) -> Client:
    """The owner after publishing February births plus an array and a tensor asset."""
    import torch

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
