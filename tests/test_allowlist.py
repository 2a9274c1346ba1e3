"""Only allowlisted operations run: I/O, code evaluation, reflection and in-place writes are refused
by name, whether they come through a pointer or straight off the wire."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import torch

import syft_kernel as sk
from syft_kernel.core import codec

# Its tests only read from the node, or write under names of their own: they share one
# (syft_shared_node, syft_kernel/pytest_plugin.py); the ones marked syft_own_node need a fresh one.
pytestmark = pytest.mark.syft_shared_node


@pytest.fixture
def births(scientist: sk.Client) -> sk.Pointer:
    return scientist.datasets["birth-records-feb"]["births"]


@pytest.mark.parametrize(
    "name", ["to_csv", "to_pickle", "to_parquet", "eval", "query", "apply", "pipe", "to_sql", "style", "plot"]
)
def test_refused_frame_methods_are_named(births: sk.Pointer, name: str) -> None:
    with pytest.raises(sk.OpNotAllowed, match=f"DataFrame.{name}") as err:
        getattr(births, name)
    assert err.value.op == f"DataFrame.{name}"


def test_callables_never_travel(births: sk.Pointer) -> None:
    with pytest.raises(sk.OpNotAllowed, match="cannot send the function"):
        births["weight"].agg(lambda s: s.sum())
    with pytest.raises(sk.OpNotAllowed, match="cannot send the function"):
        births.groupby("sex", observed=True).agg(np.sum)


def test_agg_takes_only_names_of_reductions(births: sk.Pointer) -> None:
    with pytest.raises(sk.OpNotAllowed, match=r"agg\('to_csv'\)"):
        births["weight"].agg("to_csv")
    with pytest.raises(sk.OpNotAllowed, match=r"agg\('eval'\)"):
        births.groupby("sex", observed=True).agg({"weight": ["mean", "eval"]})
    assert births["weight"].agg("mean").shape == ()


def test_in_place_and_out_arguments_are_refused(births: sk.Pointer, scientist: sk.Client) -> None:
    with pytest.raises(sk.OpNotAllowed, match="inplace"):
        births.fillna(0, inplace=True)
    with pytest.raises(sk.OpNotAllowed, match="inplace"):
        births.sort_values("weight", inplace=True)
    m = scientist.datasets["birth-records-feb"]["matrix"]
    with pytest.raises(sk.OpNotAllowed, match="out"):
        np.add(m, 1, out=m)
    t = scientist.datasets["birth-records-feb"]["tensor"]
    with pytest.raises(sk.OpNotAllowed, match="Tensor.add_"):
        t.add_(1)
    with pytest.raises(sk.OpNotAllowed, match=r"Tensor.to\('cuda'\)"):
        t.to("cuda")


def test_numpy_and_torch_io_functions_are_refused(scientist: sk.Client) -> None:
    m = scientist.datasets["birth-records-feb"]["matrix"]
    with pytest.raises(sk.OpNotAllowed, match="numpy.save"):
        np.save("/tmp/x.npy", m)
    with pytest.raises(sk.OpNotAllowed, match="numpy.savetxt"):
        np.savetxt("/tmp/x.txt", m)
    with pytest.raises(sk.OpNotAllowed, match="ndarray.tofile"):
        m.tofile("/tmp/x.bin")
    t = scientist.datasets["birth-records-feb"]["tensor"]
    with pytest.raises(sk.OpNotAllowed, match="cannot be pickled or saved"):
        torch.save(t, "/tmp/x.pt")


def _op(kind: str, name: str, *args, kwargs=None):  # type: ignore[no-untyped-def]
    enc = codec.Encoder()
    return {
        "kind": kind,
        "name": name,
        "args": [enc.encode(a) for a in args],
        "kwargs": [[k, enc.encode(v)] for k, v in (kwargs or {}).items()],
    }


REF = {"~": "ref", "id": "asset:birth-records-feb/births"}


@pytest.mark.parametrize(
    "op, named",
    [
        ({"kind": "getattr", "name": "__class__", "args": [REF]}, "__class__"),
        ({"kind": "getattr", "name": "__globals__", "args": [REF]}, "__globals__"),
        ({"kind": "method", "name": "__reduce__", "args": [REF]}, "__reduce__"),
        ({"kind": "getattr", "name": "__subclasses__", "args": [REF]}, "__subclasses__"),
        ({"kind": "method", "name": "to_pickle", "args": [REF, "/tmp/stolen.pkl"]}, "DataFrame.to_pickle"),
        ({"kind": "method", "name": "eval", "args": [REF, "weight * 2"]}, "DataFrame.eval"),
        ({"kind": "method", "name": "query", "args": [REF, "weight > @x"]}, "DataFrame.query"),
        ({"kind": "function", "name": "numpy.save", "args": ["/tmp/x", REF]}, "numpy.save"),
        ({"kind": "function", "name": "numpy.load", "args": ["/etc/passwd"]}, "numpy.load"),
        ({"kind": "function", "name": "torch.load", "args": ["/tmp/x.pt"]}, "torch.load"),
        ({"kind": "function", "name": "pandas.read_csv", "args": ["/etc/passwd"]}, "pandas.read_csv"),
        ({"kind": "function", "name": "os.system", "args": ["id"]}, "os.system"),
        ({"kind": "function", "name": "builtins.eval", "args": ["1"]}, "builtins.eval"),
        ({"kind": "op", "name": "setitem", "args": [REF, "weight", 0]}, "setitem"),
        ({"kind": "op", "name": "__import__", "args": ["os"]}, "__import__"),
    ],
)
def test_refused_straight_off_the_wire(raw, published: sk.Client, op, named: str) -> None:  # type: ignore[no-untyped-def]
    frames = codec.pack_message({"id": 7, "type": "run"}, {"ops": [op]})
    header, body, _ = raw.ask(frames)
    assert header["status"] == "error" and header["id"] == 7
    assert body["error"] == "OpNotAllowed"
    assert named in body["message"]
    # and the node keeps serving
    assert published.datasets["birth-records-feb"]["births"]["weight"].sum().get() > 0


@pytest.mark.syft_own_node  # counts the node's objects
def test_the_whole_plan_is_checked_before_anything_runs(raw, published: sk.Client) -> None:  # type: ignore[no-untyped-def]
    before = published.stats()["objects"]
    plan = {
        "ops": [
            {"kind": "method", "name": "sum", "args": [REF]},
            {"kind": "function", "name": "numpy.save", "args": ["/tmp/x", {"~": "res", "i": 0}]},
        ],
        "keep": [0, 1],
    }
    header, body, _ = raw.ask(codec.pack_message({"id": 1, "type": "run"}, plan))
    assert body["error"] == "OpNotAllowed" and "numpy.save" in body["message"]
    assert published.stats()["objects"] == before


def test_results_that_are_not_data_are_refused(raw, published: sk.Client) -> None:  # type: ignore[no-untyped-def]
    # a bound method is not data even when reached through an allowlisted name
    op = {"kind": "getattr", "name": "sum", "args": [REF]}
    header, body, _ = raw.ask(codec.pack_message({"id": 1, "type": "run"}, {"ops": [op]}))
    assert body["error"] == "OpNotAllowed" and "is a method" in body["message"]
    msgpack.packb(body)


def test_reflection_on_a_pointer_stays_local(births: sk.Pointer) -> None:
    # Python's own attributes of the pointer object describe the pointer, never the data
    assert births.__class__ is sk.Pointer
    with pytest.raises(AttributeError):
        births.__globals__  # noqa: B018
