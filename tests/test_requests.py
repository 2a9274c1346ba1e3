"""Data requests: file, review, approve / deny, wait woken by the node, and the refusals around them."""

from __future__ import annotations

import threading
import time

import msgpack
import pytest

import syft_kernel as sk

# Its tests only read from the node, or write under names of their own: they share one
# (syft_shared_node, syft_kernel/pytest_plugin.py); the ones marked syft_own_node need a fresh one.
pytestmark = pytest.mark.syft_shared_node


@pytest.fixture
def mean_weight(scientist: sk.Client) -> sk.Pointer:
    births = scientist.datasets["birth-records-feb"]["births"]
    return births["weight"].sum() / births["weight"].count()


@pytest.mark.syft_own_node  # lists every pending request
def test_request_approve_then_get(mean_weight: sk.Pointer, published: sk.Client, births_df) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(sk.PermissionDenied):
        mean_weight.get()
    req = mean_weight.request(reason="mean weight for the study")
    assert req.status == "pending" and req.requester == "alice" and req.kind == "object"
    # the owner sees who asks, for what, how it was computed and how big it is
    queued = published.requests.pending
    assert [r.id for r in queued] == [req.id]
    seen = queued[0]
    assert seen.reason == "mean weight for the study" and seen.size and seen.size > 0
    assert seen.plan == [
        "v1 = asset('birth-records-feb/births')['weight']",
        "v2 = v1.sum()",
        "v3 = asset('birth-records-feb/births')['weight']",
        "v4 = v3.count()",
        "v5 = v2 / v4",
    ]
    seen.approve(comment="fine for the study")
    assert req.wait(timeout=10).status == "approved"
    assert req.comment == "fine for the study"
    assert [a["owner"] for a in req.approvals] == ["owner"]
    assert mean_weight.get() == pytest.approx(births_df["weight"].mean())


def test_wait_is_woken_by_the_node(mean_weight: sk.Pointer, published: sk.Client) -> None:
    req = mean_weight.request(reason="r")
    decided_at: list[float] = []

    def approve() -> None:
        time.sleep(0.5)
        published.requests[req.id].approve("ok")
        decided_at.append(time.monotonic())

    t = threading.Thread(target=approve)
    before = mean_weight.client.round_trips
    t.start()
    req.wait(timeout=20)
    woke = time.monotonic()
    t.join()
    assert req.status == "approved"
    assert woke - decided_at[0] < 0.5  # pushed, not found by a slow poll
    assert mean_weight.client.round_trips - before == 1  # one look before sleeping; the event carries the rest


def test_approval_covers_only_that_object(mean_weight: sk.Pointer, published: sk.Client, scientist: sk.Client) -> None:
    other = scientist.datasets["birth-records-feb"]["births"]["height"].mean()
    published.requests[mean_weight.request(reason="r").id].approve()
    assert mean_weight.get() > 0
    with pytest.raises(sk.PermissionDenied):
        other.get()


def test_deny_with_a_comment(mean_weight: sk.Pointer, published: sk.Client) -> None:
    req = mean_weight.request(reason="r")
    published.requests[req.id].deny(reason="too few births per group")
    with pytest.raises(sk.PermissionDenied, match="too few births per group"):
        req.wait(timeout=10)
    assert req.status == "denied"
    with pytest.raises(sk.PermissionDenied):
        mean_weight.get()


@pytest.mark.syft_own_node  # lists every request
def test_filters_and_a_scientist_sees_only_their_own(
    mean_weight: sk.Pointer, published: sk.Client, syft_node, make_user
) -> None:  # type: ignore[no-untyped-def]
    a = mean_weight.request(reason="first")
    with sk.login(syft_node.connection_file, key=make_user("bob")) as bob:
        b = (bob.datasets["birth-records-feb"]["births"]["weight"].max()).request(reason="second")
        published.requests[b.id].deny("no")
        assert [r.id for r in bob.requests] == [b.id]
        with pytest.raises(sk.NotFound):
            bob.requests[a.id]
    assert {r.id for r in published.requests.list()} == {a.id, b.id}
    assert [r.id for r in published.requests.filter(status="denied")] == [b.id]
    assert [r.id for r in published.requests.filter(requester="alice")] == [a.id]
    assert "first" in repr(published.requests)


def test_requesting_twice_returns_the_same_request(mean_weight: sk.Pointer) -> None:
    assert mean_weight.request(reason="a").id == mean_weight.request(reason="b").id


def test_bad_requests_and_decisions(
    mean_weight: sk.Pointer, scientist: sk.Client, published: sk.Client, syft_node, make_user
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(sk.InvalidArgument, match="say why"):
        mean_weight.request(reason="  ")
    req = mean_weight.request(reason="r")
    # a scientist approving their own request
    with pytest.raises(sk.Unauthorized, match="for data owners"):
        scientist.call("requests.decide", {"id": req.id, "decision": "approve", "nonce": "x" * 32, "signature": "00"})
    # a request for someone else's object
    with sk.login(syft_node.connection_file, key=make_user("bob")) as bob:
        with pytest.raises(sk.NotFound, match="not yours"):
            bob.call("requests.create", {"id": mean_weight.id, "reason": "mine now"})
    # a forged signature (signed by a key that is not the owner's)
    forger = sk.generate_keypair("forger")
    message = msgpack.packb(
        ["syft-kernel decision v1", "hospital", req.id, req.info["content_hash"], "approve", "n" * 32]
    )
    with pytest.raises(sk.PermissionDenied, match="does not verify"):
        published.call(
            "requests.decide",
            {"id": req.id, "decision": "approve", "nonce": "n" * 32, "signature": forger.sign(message)},
        )
    # a signature for another decision does not carry over
    good = published.key.sign(message)
    with pytest.raises(sk.PermissionDenied, match="does not verify"):
        published.call("requests.decide", {"id": req.id, "decision": "deny", "nonce": "n" * 32, "signature": good})
    assert published.requests[req.id].status == "pending"
    published.requests[req.id].approve()
    # approving twice, and denying an approved request
    with pytest.raises(sk.InvalidArgument, match="already approved"):
        published.requests[req.id].approve()
    with pytest.raises(sk.InvalidArgument, match="already approved"):
        published.requests[req.id].deny("changed my mind")
    with pytest.raises(sk.NotFound):
        published.requests["r0000000000000000"].approve()
    assert published.call("hello")[0]["node"] == "hospital"


def test_a_replayed_signature_is_refused(scientist: sk.Client, published: sk.Client) -> None:
    births = scientist.datasets["birth-records-feb"]["births"]
    first = births["weight"].sum().request(reason="a")
    nonce = "r" * 32
    from syft_kernel.core.keys import decision_message

    sig = published.key.sign(decision_message("hospital", first.id, first.info["content_hash"], "approve", nonce))
    published.call("requests.decide", {"id": first.id, "decision": "approve", "nonce": nonce, "signature": sig})
    # the same signed decision sent again, to the same request or another one
    second = births["weight"].max().request(reason="b")
    with pytest.raises(sk.InvalidArgument, match="already approved"):
        published.call("requests.decide", {"id": first.id, "decision": "approve", "nonce": nonce, "signature": sig})
    with pytest.raises(sk.PermissionDenied):
        published.call("requests.decide", {"id": second.id, "decision": "approve", "nonce": nonce, "signature": sig})
    assert published.requests[second.id].status == "pending"


def test_a_released_value_works_in_python_control_flow(mean_weight: sk.Pointer, published: sk.Client) -> None:
    with pytest.raises(sk.PermissionDenied, match="lives on hospital"):
        bool(mean_weight > 3)
    published.requests[mean_weight.request(reason="r").id].approve()
    assert float(mean_weight) > 0 and str(mean_weight).startswith("3.")
