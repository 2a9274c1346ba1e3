"""The wire: bad messages get clear error replies and the node keeps serving; many clients at once;
bulk data over TCP and ipc://."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pandas as pd
import pytest

import syft_kernel as sk
from syft_kernel.core import codec

# Its tests only read from the node, or write under names of their own: they share one
# (syft_shared_node, syft_kernel/pytest_plugin.py); the ones marked syft_own_node need a fresh one.
pytestmark = pytest.mark.syft_shared_node

OK_HEADER = msgpack.packb({"v": 1, "id": 1, "type": "hello"})


@pytest.mark.parametrize(
    "frames, match",
    [
        ([b"only-a-header"], "header and a body"),
        ([b"\xc1\xc1\xc1", b"\x80"], "header is not valid msgpack"),
        ([msgpack.packb([1, 2]), b"\x80"], "must be a msgpack map"),
        ([msgpack.packb({"v": 99, "id": 1, "type": "hello"}), b"\x80"], "protocol version 99"),
        ([msgpack.packb({"v": 1, "id": 1}), b"\x80"], "no message type"),
        ([msgpack.packb({"v": 1, "id": 1, "type": "shutdown"}), b"\x80"], "unknown message type 'shutdown'"),
        (
            [msgpack.packb({"v": 1, "id": 1, "type": "run"}), msgpack.packb({"ops": [1]})[:-1]],
            "body is not valid msgpack",
        ),
        ([msgpack.packb({"v": 1, "id": 1, "type": "run"}), msgpack.packb([1])], "must be a map"),
        ([msgpack.packb({"v": 1, "id": 1, "type": "run"}), msgpack.packb({"ops": []})], "non-empty list"),
        ([msgpack.packb({"v": 1, "id": 1, "type": "run", "pad": "x" * 100_000}), b"\x80"], "header is 1000"),
        ([OK_HEADER, b"\x00" * (65 * 1024 * 1024)], "body is"),
        ([msgpack.packb({"v": 1, "id": 1, "type": "get"}), msgpack.packb({"id": 5})], "no object"),
        (
            [
                msgpack.packb({"v": 1, "id": 1, "type": "run"}),
                msgpack.packb(
                    {
                        "ops": [
                            {
                                "kind": "op",
                                "name": "add",
                                "args": [{"~": "nd", "dtype": "<f8", "shape": [4], "b": 0}, 1],
                            }
                        ]
                    }
                ),
                b"\x00" * 7,
            ],
            "does not match",
        ),
        (
            [
                msgpack.packb({"v": 1, "id": 1, "type": "run"}),
                msgpack.packb({"ops": [{"kind": "op", "name": "add", "args": [{"~": "res", "i": 3}, 1]}]}),
            ],
            "before it exists",
        ),
        (
            [
                msgpack.packb({"v": 1, "id": 1, "type": "run"}),
                msgpack.packb(
                    {"ops": [{"kind": "op", "name": "add", "args": [{"~": "pickle", "v": b"cos\nsystem"}, 1]}]}
                ),
            ],
            "unknown value kind 'pickle'",
        ),
    ],
)
def test_bad_messages_get_clear_errors_and_the_node_keeps_serving(raw, owner: sk.Client, frames, match: str) -> None:  # type: ignore[no-untyped-def]
    header, body, _ = raw.ask(frames)
    assert header["status"] == "error"
    assert body["error"] in ("ProtocolError", "NotFound")
    assert match in body["message"]
    assert owner.call("hello")[0]["node"] == "hospital"


def test_a_flood_of_garbage_does_not_stop_the_node(raw, owner: sk.Client) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    for _ in range(200):
        raw.sock.send_multipart([rng.bytes(int(rng.integers(0, 64))) for _ in range(int(rng.integers(1, 5)))])
    replies = 0
    while raw.sock.poll(2000):
        raw.sock.recv_multipart()
        replies += 1
        if replies == 200:
            break
    assert replies == 200  # one error reply per message
    assert owner.call("hello")[0]["user"] == "owner"


def test_many_clients_at_once(syft_node, published: sk.Client, make_user) -> None:  # type: ignore[no-untyped-def]
    keys = [make_user(f"user{i}") for i in range(6)]
    errors: list[BaseException] = []
    results: list[tuple[int, ...]] = []

    def work(key) -> None:  # type: ignore[no-untyped-def]
        try:
            with sk.login(syft_node.connection_file, key=key) as c:
                births = c.datasets["birth-records-feb"]["births"]
                for _ in range(30):
                    results.append((births["weight"] * 2).shape)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert results == [(500,)] * 180


def test_one_client_shared_by_threads(published: sk.Client) -> None:
    births = published.datasets["birth-records-feb"]["births"]
    sums: list[float] = []

    def work() -> None:
        for _ in range(20):
            sums.append(births["weight"].sum().get())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(sums) == 80 and len(set(sums)) == 1


@pytest.mark.syft_own_node  # each case uploads 'bulk'
@pytest.mark.parametrize("transport", ["tcp", None])
def test_bulk_arrays_and_frames_over_tcp_and_ipc(syft_node, owner: sk.Client, transport) -> None:  # type: ignore[no-untyped-def]
    big = np.random.default_rng(1).standard_normal(4 * 1024 * 1024)  # 32 MiB
    frame = pd.DataFrame({"a": big[:1_000_000], "b": np.arange(1_000_000), "s": ["x", "y"] * 500_000})
    owner.datasets.upload("bulk", assets={"big": big, "frame": frame})
    with syft_node.login(transport=transport) as c:
        assert c.address.startswith("tcp://" if transport == "tcp" else "ipc://")
        got = c.datasets["bulk"]["big"].get()
        assert got.dtype == big.dtype and np.array_equal(got, big)
        assert got.flags.writeable  # received buffers are the user's to change
        pd.testing.assert_frame_equal(c.datasets["bulk"]["frame"].get(), frame)


def test_unknown_message_types_are_listed(owner: sk.Client) -> None:
    with pytest.raises(sk.ProtocolError, match="this node knows .*datasets.list"):
        owner.call("drop_tables")


def test_message_framing_round_trip() -> None:
    frames = codec.pack_message({"id": 3, "type": "x"}, {"k": [1, 2]}, [b"abc"])
    assert codec.unpack_header(frames[0]) == {"v": 1, "id": 3, "type": "x"}
    assert codec.unpack_body(frames[1]) == {"k": [1, 2]}
    assert frames[2] == b"abc"


def test_a_send_nobody_takes_gives_up_with_a_clear_error() -> None:
    """A send never blocks for good: with no node to take them, the queue fills and the next
    send waits its timeout, then says the node is not taking messages (the lock is let go)."""
    import socket

    from syft_kernel.core import schema
    from syft_kernel.core.keys import generate_keypair
    from syft_kernel.transport import Transport

    with socket.socket() as s:  # a free port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = {"name": "nobody", "node_public_key": generate_keypair("n").public, "addresses": []}
    io = Transport(conn, generate_keypair("me"), f"tcp://127.0.0.1:{port}", "nobody")
    try:
        with pytest.raises(sk.NodeUnavailable, match="took no message"):
            for _ in range(5000):  # more than the default high-water mark of 1000
                io.send(schema.Hello(), noreply=True, timeout=0.2)
        assert io._io.acquire(timeout=1)  # nobody holds the socket's lock
        io._io.release()
    finally:
        io.close()


def test_a_client_that_never_reads_its_replies_cannot_stall_the_node(tmp_path: Path) -> None:
    """A client pipelines 30,000 requests and reads none of the replies (its queue and the
    socket buffers fill): the node drops what it cannot deliver instead of blocking on it, so
    other users are answered and SIGTERM still stops it cleanly."""
    import zmq

    from syft_kernel.core import codec
    from syft_kernel.core.keys import read_keypair

    node = sk.start_node(tmp_path / "h", name="h")
    pair = read_keypair(node.owner_key)
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.curve_serverkey = node.connection["node_public_key"].encode()
    s.curve_publickey, s.curve_secretkey = pair.public.encode(), pair.secret.encode()  # type: ignore[union-attr]
    s.rcvhwm, s.sndhwm, s.linger = 1, 100_000, 0
    s.setsockopt(zmq.RCVBUF, 4096)
    s.connect(next(a for a in node.connection["addresses"] if a.startswith("tcp://")))
    try:
        for i in range(30_000):
            s.send_multipart(codec.pack_message({"id": i + 1, "type": "datasets.list"}, {"query": ""}))
        time.sleep(2)  # the node works through them meanwhile
        with node.login(timeout=20) as other:
            assert other.call("hello")[0]["node"] == "h"
    finally:
        s.close(0)
        ctx.term()
        assert node.stop(timeout=15) == 0
    assert "not reading its replies" in node.log() and "node h stopped" in node.log()
