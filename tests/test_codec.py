"""The wire codec: every supported value survives a round trip; bad trees are refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from syft_kernel.core import codec
from syft_kernel.core.errors import InvalidArgument, OpNotAllowed, ProtocolError


def roundtrip(value):  # type: ignore[no-untyped-def]
    tree, buffers = codec.encode_value(value)
    frames = codec.pack_message({"id": 1, "type": "t"}, tree, buffers)
    body = codec.unpack_body(frames[1])
    return codec.decode_value(body, frames[2:])


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        3,
        -(2**63),
        2**70,
        1.5,
        float("inf"),
        "text",
        b"bytes",
        2 + 3j,
        [1, "a", None],
        (1, (2, 3)),
        {"a": 1, 2: [3]},
        slice(1, 10, 2),
        Ellipsis,
        np.float32(1.25),
        np.int16(-3),
        np.datetime64("2026-02-01"),
        np.dtype("float32"),
        float,
        int,
        pd.Timestamp("2026-02-01 10:00"),
        pd.Timestamp("2026-02-01", tz="Europe/Paris"),
        pd.Timedelta("1h"),
    ],
)
def test_scalars_and_containers(value) -> None:  # type: ignore[no-untyped-def]
    out = roundtrip(value)
    assert out == value and type(out) is type(value)


def test_arrays_keep_dtype_shape_and_bytes() -> None:
    for arr in [
        np.arange(24, dtype=np.float64).reshape(2, 3, 4),
        np.array([True, False]),
        np.arange(10, dtype=np.uint8)[::2],
        np.asfortranarray(np.ones((3, 2))),
        np.empty((0, 3)),
        np.array(["2026-01-01"], dtype="datetime64[ns]"),
    ]:
        out = roundtrip(arr)
        assert out.dtype == arr.dtype and out.shape == arr.shape and np.array_equal(out, arr)


def test_array_buffers_are_sent_without_copying() -> None:
    arr = np.arange(1000, dtype=np.float64)
    tree, buffers = codec.encode_value(arr)
    assert np.shares_memory(np.frombuffer(buffers[0], dtype=np.float64), arr)
    out = codec.decode_value(tree, buffers)
    assert np.shares_memory(out, arr)


def test_tensors() -> None:
    for t in [
        torch.arange(6, dtype=torch.float32).reshape(2, 3),
        torch.tensor([1, 2], dtype=torch.int64),
        torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        torch.tensor([True]),
    ]:
        out = roundtrip(t)
        assert out.dtype == t.dtype and torch.equal(out, t)
    assert roundtrip(torch.float16) is torch.float16


def test_frames_numeric_columns_raw_and_the_rest_as_arrow() -> None:
    df = pd.DataFrame(
        {
            "w": np.linspace(0, 1, 5),
            "n": np.arange(5),
            "s": list("abcde"),
            "c": pd.Categorical(list("xyxyx")),
            "d": pd.date_range("2026-02-01", periods=5),
            "nullable": pd.array([1, None, 3, 4, 5], dtype="Int64"),
        }
    )
    tree, buffers = codec.encode_value(df)
    assert sum(1 for c in tree["cols"] if "b" in c) == 3  # w, n, d travel as raw buffers
    out = codec.decode_value(tree, buffers)
    pd.testing.assert_frame_equal(out, df)


def test_frames_with_multiindex_labels_and_series() -> None:
    df = pd.DataFrame({"g": ["a", "b", "a"], "h": [1, 1, 2], "w": [1.0, 2.0, 3.0]})
    agg = df.groupby(["g", "h"]).agg({"w": ["mean", "sum"]})
    pd.testing.assert_frame_equal(roundtrip(agg), agg)
    s = df.set_index("g")["w"]
    pd.testing.assert_series_equal(roundtrip(s), s)
    pd.testing.assert_index_equal(roundtrip(df.columns), df.columns)
    vc = df["g"].value_counts()
    pd.testing.assert_series_equal(roundtrip(vc), vc)


def test_functions_and_arbitrary_objects_are_not_sent() -> None:
    with pytest.raises(OpNotAllowed, match="functions never"):
        codec.encode_value(lambda x: x)
    with pytest.raises(InvalidArgument, match="cannot send"):
        codec.encode_value(object())
    with pytest.raises(InvalidArgument):
        codec.encode_value(np.array([object()], dtype=object).reshape(1, 1))


@pytest.mark.parametrize(
    "tree, buffers, match",
    [
        ({"~": "pickle", "v": b"x"}, [], "unknown value kind"),
        ({"~": "nd", "dtype": "<f8", "shape": [10], "b": 0}, [b"short"], "does not match"),
        ({"~": "nd", "dtype": "<f8", "shape": [1], "b": 3}, [], "buffer 3"),
        ({"~": "nd", "dtype": "O", "shape": [1], "b": 0}, [b"12345678"], "not a plain numeric"),
        ({"~": "tdtype", "v": "__class__"}, [], "unknown torch dtype"),
        ({"~": "pytype", "v": "eval"}, [], "malformed"),
        ({"~": "df", "rows": 2}, [], "malformed"),
    ],
)
def test_bad_trees_are_protocol_errors(tree, buffers, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProtocolError, match=match):
        codec.decode_value(tree, buffers)


def test_deep_nesting_is_refused() -> None:
    tree: object = 1
    for _ in range(200):
        tree = [tree]
    with pytest.raises(ProtocolError, match="nested deeper"):
        codec.decode_value(tree, [])


def test_a_new_kind_is_added_in_one_place() -> None:
    """``register_kind`` gives the codec a new tagged kind: encoded for its type, decoded (and
    checked) by its own function, refused when malformed, and unknown tags stay refused."""
    import fractions

    from syft_kernel.core import codec as c

    def decode(dec: c.Decoder, node: dict, depth: int) -> fractions.Fraction:  # type: ignore[type-arg]
        num, den = node.get("n"), node.get("d")
        if type(num) is not int or type(den) is not int or den == 0:
            raise ProtocolError("malformed 'fraction' value: n and d are integers, d not 0")
        return fractions.Fraction(num, den)

    kind = c.register_kind(
        "fraction",
        decode,
        types=(fractions.Fraction,),
        encode=lambda enc, f: {c.TAG: "fraction", "n": f.numerator, "d": f.denominator},
    )
    try:
        tree, bufs = c.encode_value([fractions.Fraction(3, 4), 1.5])
        assert c.decode_value(tree, bufs) == [fractions.Fraction(3, 4), 1.5]
        with pytest.raises(ProtocolError, match="n and d are integers"):
            c.decode_value({c.TAG: "fraction", "n": 1, "d": 0}, [])
        with pytest.raises(ValueError, match="already has a kind"):
            c.register_kind("nd", decode)
    finally:
        del c.KINDS["fraction"]
        c._EXTENSIONS.remove(kind)
    with pytest.raises(ProtocolError, match="unknown value kind 'fraction'"):
        c.decode_value({c.TAG: "fraction", "n": 1, "d": 2}, [])
