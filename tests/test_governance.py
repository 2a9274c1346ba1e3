"""Multi-owner governance with real keys: Consensus and Threshold(2 of 3); signed approvals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import syft_kernel as sk
from syft_kernel.core.keys import read_keypair, verify_signature


@pytest.fixture
def owners(syft_node, owner: sk.Client, make_user) -> Iterator[dict[str, sk.Client]]:  # type: ignore[no-untyped-def]
    clients = {"owner": owner}
    for name in ("carol", "dave"):
        clients[name] = sk.login(syft_node.connection_file, key=make_user(name, role="owner"))
    yield clients
    for name in ("carol", "dave"):
        clients[name].close()


def _publish(owner: sk.Client, births_df, policy) -> None:  # type: ignore[no-untyped-def]
    owner.datasets.upload("shared", assets={"births": births_df}, owners=["owner", "carol", "dave"], policy=policy)


def _ask(syft_node, make_user) -> tuple[sk.Client, sk.Pointer, sk.Request]:  # type: ignore[no-untyped-def]
    ds = sk.login(syft_node.connection_file, key=make_user("alice"))
    ptr = ds.datasets["shared"]["births"]["weight"].mean()
    return ds, ptr, ptr.request(reason="study")


def test_threshold_two_of_three(syft_node, owners, make_user, births_df, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _publish(owners["owner"], births_df, sk.Threshold(2))
    ds, ptr, req = _ask(syft_node, make_user)
    r = owners["carol"].requests[req.id].approve("ok from carol")
    assert r.status == "pending"
    assert r.progress[0]["approvals"] == 1 and r.progress[0]["needed"] == 2
    with pytest.raises(sk.PermissionDenied):
        ptr.get()
    owners["dave"].requests[req.id].deny("not convinced")  # one denial: 2 of 3 still reachable
    assert owners["owner"].requests[req.id].status == "pending"
    owners["owner"].requests[req.id].approve("ok")
    assert req.wait(timeout=10).status == "approved"
    assert ptr.get() == pytest.approx(births_df["weight"].mean())
    # every decision is signed with its owner's key, and the signature checks out
    from syft_kernel.core.keys import decision_message

    req.refresh()
    assert {(a["owner"], a["decision"]) for a in req.approvals} == {
        ("carol", "approve"),
        ("dave", "deny"),
        ("owner", "approve"),
    }
    assert all(len(a["signature"]) == 128 for a in req.approvals)
    carol = read_keypair(tmp_path / "users" / "carol.pub").sign_public
    sig = next(a["signature"] for a in req.approvals if a["owner"] == "carol")
    assert carol and not verify_signature(carol, decision_message("hospital", req.id, "other", "approve", "x"), sig)
    ds.close()


def test_threshold_denied_once_unreachable(syft_node, owners, make_user, births_df) -> None:  # type: ignore[no-untyped-def]
    _publish(owners["owner"], births_df, sk.Threshold(2))
    ds, ptr, req = _ask(syft_node, make_user)
    owners["carol"].requests[req.id].deny("no")
    assert owners["dave"].requests[req.id].deny("no either").status == "denied"
    with pytest.raises(sk.PermissionDenied, match="no either"):
        req.wait(timeout=10)
    ds.close()


def test_consensus_needs_everyone(syft_node, owners, make_user, births_df) -> None:  # type: ignore[no-untyped-def]
    _publish(owners["owner"], births_df, sk.Consensus())
    ds, ptr, req = _ask(syft_node, make_user)
    owners["owner"].requests[req.id].approve()
    owners["carol"].requests[req.id].approve()
    assert owners["dave"].requests[req.id].status == "pending"
    owners["dave"].requests[req.id].approve()
    assert req.wait(timeout=10).status == "approved"
    assert ptr.get() > 0
    ds.close()


def test_consensus_one_denial_denies(syft_node, owners, make_user, births_df) -> None:  # type: ignore[no-untyped-def]
    _publish(owners["owner"], births_df, sk.Consensus())
    ds, ptr, req = _ask(syft_node, make_user)
    owners["owner"].requests[req.id].approve()
    assert owners["carol"].requests[req.id].deny("identifiable").status == "denied"
    with pytest.raises(sk.InvalidArgument, match="already denied"):
        owners["dave"].requests[req.id].approve()
    ds.close()


def test_only_the_datasets_owners_decide(syft_node, owner: sk.Client, make_user, births_df) -> None:  # type: ignore[no-untyped-def]
    owner.datasets.upload("mine", assets={"births": births_df})  # default: the uploader decides alone
    with sk.login(syft_node.connection_file, key=make_user("erin", role="owner")) as erin:
        ds = sk.login(syft_node.connection_file, key=make_user("alice"))
        req = ds.datasets["mine"]["births"]["weight"].sum().request(reason="r")
        with pytest.raises(sk.Unauthorized, match="not an owner of the data"):
            erin.requests[req.id].approve()
        owner.requests[req.id].approve()
        assert req.wait(timeout=10).status == "approved"
        ds.close()


def test_bad_policies_are_refused(owners, births_df) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(sk.InvalidArgument, match="k <= 3"):
        owners["owner"].datasets.upload(
            "x", assets={"b": births_df}, owners=["owner", "carol", "dave"], policy=sk.Threshold(4)
        )
    with pytest.raises(sk.InvalidArgument, match=r"'nobody' is not a data owner .*users\.add\(NAME, role='owner'"):
        owners["owner"].datasets.upload("x", assets={"b": births_df}, owners=["owner", "nobody"])
    with pytest.raises(
        sk.InvalidArgument, match="'eve', 'nobody' are not data owners .*its owners: carol, dave, owner"
    ):
        owners["owner"].datasets.upload("x", assets={"b": births_df}, owners=["owner", "nobody", "eve"])
    assert "x" not in owners["owner"].datasets
