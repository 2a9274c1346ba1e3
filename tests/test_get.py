"""get(): the owner always may; a scientist only for values with no private lineage."""

from __future__ import annotations

import pandas as pd
import pytest

import syft_kernel as sk
from syft_kernel.pointer import remote_op

# Its tests only read from the node, or write under names of their own: they share one
# (syft_shared_node, syft_kernel/pytest_plugin.py); the ones marked syft_own_node need a fresh one.
pytestmark = pytest.mark.syft_shared_node


def test_a_scientist_is_refused_private_values_with_a_way_to_ask(scientist: sk.Client) -> None:
    births = scientist.datasets["birth-records-feb"]["births"]
    total = births["weight"].sum()
    with pytest.raises(sk.PermissionDenied) as err:
        total.get()
    assert "request(reason=" in str(err.value) and "birth-records-feb/births" in str(err.value)
    assert err.value.request_hint.startswith("ptr.request")
    assert err.value.data["lineage"] == ["birth-records-feb/births"]
    with pytest.raises(sk.PermissionDenied):
        births.get()  # the asset itself, too


def test_private_values_in_python_control_flow_explain_themselves(scientist: sk.Client) -> None:
    births = scientist.datasets["birth-records-feb"]["births"]
    total = births["weight"].sum()
    for attempt in (lambda: bool(total > 0), lambda: float(total), lambda: int(total), lambda: list(births["weight"])):
        with pytest.raises(sk.PermissionDenied, match="lives on hospital"):
            attempt()
    assert len(births) == 500  # the asset's row count is public metadata


def test_the_owner_can_always_get(published: sk.Client, births_df: pd.DataFrame) -> None:
    births = published.datasets["birth-records-feb"]["births"]
    assert births["weight"].sum().get() == pytest.approx(births_df["weight"].sum())
    assert float(births["weight"].mean()) == pytest.approx(births_df["weight"].mean())
    entries = published.audit
    assert any(e["action"] == "get" and e["user"] == "owner" for e in entries)


def test_values_without_private_lineage_are_readable(scientist: sk.Client) -> None:
    # an op over literals only derives from no private asset
    ptr = remote_op(scientist, "function", "numpy.linspace", (0.0, 1.0, 5), {})
    assert not ptr.private and ptr.shape == (5,)
    assert list(ptr.get()) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert list((ptr * 2).get()) == [0.0, 0.5, 1.0, 1.5, 2.0]


@pytest.mark.syft_own_node  # reads the first refusal in the audit log
def test_refusals_are_audited(scientist: sk.Client, published: sk.Client) -> None:
    births = scientist.datasets["birth-records-feb"]["births"]
    with pytest.raises(sk.PermissionDenied):
        births["weight"].mean().get()
    denied = [e for e in published.audit if e["action"] == "get.denied"]
    assert denied and denied[0]["user"] == "alice"


def test_objects_are_private_to_their_maker(scientist: sk.Client, syft_node, make_user) -> None:  # type: ignore[no-untyped-def]
    ptr = remote_op(scientist, "function", "numpy.linspace", (0.0, 1.0, 3), {})
    with sk.login(syft_node.connection_file, key=make_user("bob")) as bob:
        with pytest.raises(sk.NotFound, match="not yours"):
            bob.call("get", {"id": ptr.id})
        with pytest.raises(sk.NotFound):
            bob.call("run", {"ops": [{"kind": "op", "name": "add", "args": [{"~": "ref", "id": ptr.id}, 1]}]})
