"""The node's work queue on its own: order per connection, caps per user, bytes waiting."""

from __future__ import annotations

from syft_kernel.node.workqueue import WorkQueue


def test_a_connection_runs_in_order_and_one_at_a_time() -> None:
    q = WorkQueue(workers=8, per_user=2, per_connection=10)
    for i in range(3):
        assert q.add(b"c1", "alice", f"m{i}")
    assert q.take() == (b"c1", "alice", "m0")
    assert q.take() is None  # m1 waits for m0's reply
    q.done(b"c1", "alice")
    assert q.take() == (b"c1", "alice", "m1")


def test_one_user_holds_at_most_per_user_workers_and_others_go_ahead() -> None:
    q = WorkQueue(workers=8, per_user=2, per_connection=10)
    for c in (b"a1", b"a2", b"a3"):
        q.add(c, "alice", "slow")
    q.add(b"b1", "bob", "hello")
    taken = [q.take(), q.take(), q.take()]
    assert [t[1] for t in taken if t] == ["alice", "alice", "bob"]  # alice's third waits, bob runs
    assert q.take() is None
    q.done(b"a1", "alice")
    assert q.take() == (b"a3", "alice", "slow")


def test_workers_cap_and_floods_are_refused() -> None:
    q = WorkQueue(workers=1, per_user=5, per_connection=2)
    assert q.add(b"c", "u", 1) and q.add(b"c", "u", 2)
    assert not q.add(b"c", "u", 3)  # two waiting on this connection already
    q.add(b"d", "v", 1)
    assert q.take() == (b"c", "u", 1)
    assert q.take() is None  # the one worker is busy


def test_bytes_waiting_per_user_across_connections() -> None:
    q = WorkQueue(workers=8, per_user=2, per_connection=100, per_user_bytes=10)
    assert q.add(b"c1", "eve", "big", size=50)  # one message of any size may always wait
    assert not q.add(b"c2", "eve", "more", size=1)  # but nothing more, on any connection
    assert q.add(b"c3", "bob", "hello", size=5)  # other users are not affected
    assert q.take() == (b"c1", "eve", "big")
    assert q.add(b"c2", "eve", "more", size=5)  # taken: its bytes no longer wait
