"""The wire codec shared by client and node: values to a msgpack tree plus raw buffers.

A message is multipart: ``[header, body, *buffers]``. Header and body are msgpack; ndarray and
tensor memory and numeric DataFrame columns travel as raw buffers (zero-copy both ways); other
DataFrame columns travel as one Arrow IPC stream. Nothing here unpickles or evaluates: decoding
only builds plain data from a fixed set of tagged node kinds, and refuses anything else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import InvalidArgument, OpNotAllowed, ProtocolError, SyftError

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 64
TAG = "~"

# numpy dtype kinds that are plain fixed-size memory: safe to rebuild from bytes.
_RAW_KINDS = frozenset("biufcmM")
_PY_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool, "str": str, "complex": complex}
_TORCH_DTYPES = (
    "float16 float32 float64 bfloat16 int8 int16 int32 int64 uint8 bool complex64 complex128"
).split()

Buffer = Any  # bytes, memoryview, zmq.Frame: anything with the buffer protocol


class Encoder:
    """Turns a value into a msgpack-able tree, appending raw buffers to ``self.buffers``.

    ``on_object`` encodes types the codec does not know (pointers → refs on the client).
    """

    def __init__(self, on_object: Callable[[Any], Any] | None = None) -> None:
        self.buffers: list[Buffer] = []
        self.on_object = on_object

    def buffer(self, data: Buffer) -> int:
        self.buffers.append(data)
        return len(self.buffers) - 1

    def encode(self, obj: Any) -> Any:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int) and not isinstance(obj, np.integer):
            if -(2**63) <= obj < 2**64:
                return obj
            return {TAG: "int", "v": str(obj)}
        if isinstance(obj, float) and not isinstance(obj, np.floating):
            return obj
        if isinstance(obj, (bytes, bytearray)):
            return bytes(obj)
        if isinstance(obj, complex):
            return {TAG: "complex", "v": [obj.real, obj.imag]}
        if isinstance(obj, list):
            return [self.encode(x) for x in obj]
        if isinstance(obj, tuple):
            return {TAG: "tuple", "v": [self.encode(x) for x in obj]}
        if isinstance(obj, dict):
            return {TAG: "dict", "v": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if isinstance(obj, slice):
            return {TAG: "slice", "v": [self.encode(obj.start), self.encode(obj.stop), self.encode(obj.step)]}
        if obj is Ellipsis:
            return {TAG: "..."}
        if isinstance(obj, np.ndarray):
            return self._ndarray(obj)
        if isinstance(obj, np.generic):
            return self._npscalar(obj)
        if isinstance(obj, pd.DataFrame):
            return self._frame(obj)
        if isinstance(obj, pd.Series):
            return {TAG: "series", "f": self._frame(obj.to_frame(name=0)), "name": self.encode(obj.name)}
        if isinstance(obj, pd.Index):
            return {TAG: "index", "f": self._frame(pd.DataFrame(index=obj))}
        if obj is pd.NaT:
            return {TAG: "nat"}
        if obj is pd.NA:
            return {TAG: "na"}
        if isinstance(obj, pd.Timestamp):
            return {TAG: "ts", "v": obj.value, "unit": obj.unit, "tz": str(obj.tz) if obj.tz else None}
        if isinstance(obj, pd.Timedelta):
            return {TAG: "td", "v": obj.value, "unit": obj.unit}
        if isinstance(obj, np.dtype):
            return {TAG: "dtype", "v": _dtype_name(obj)}
        if isinstance(obj, type):
            if issubclass(obj, np.generic):
                return {TAG: "dtype", "v": _dtype_name(np.dtype(obj))}
            for name, t in _PY_TYPES.items():
                if obj is t:
                    return {TAG: "pytype", "v": name}
        torch = loaded_torch()
        if torch is not None:
            if isinstance(obj, torch.Tensor):
                return self._tensor(obj)
            if isinstance(obj, torch.dtype):
                return {TAG: "tdtype", "v": str(obj).removeprefix("torch.")}
            if isinstance(obj, torch.Size):
                return {TAG: "tuple", "v": list(obj)}
        if self.on_object is not None:
            return self.on_object(obj)
        if callable(obj):
            raise OpNotAllowed(
                f"cannot send {type(obj).__name__} {getattr(obj, '__name__', '')!s}: functions never "
                "travel to a node; use a string name (e.g. agg('mean')) or submit code for review",
                op="callable argument",
            )
        raise InvalidArgument(f"cannot send a {type(obj).__module__}.{type(obj).__qualname__} to a node")

    def _ndarray(self, arr: np.ndarray) -> dict[str, Any]:
        if arr.dtype.kind not in _RAW_KINDS or arr.dtype.fields is not None:
            if arr.dtype.kind in "OUS" and arr.ndim == 1:
                return {TAG: "arrow_array", "a": self._arrow(pa.table({"v": pa.array(arr.tolist())}))}
            raise InvalidArgument(f"arrays of dtype {arr.dtype} cannot be sent; convert to a numeric dtype")
        arr = np.ascontiguousarray(arr)
        return {TAG: "nd", "dtype": arr.dtype.str, "shape": list(arr.shape), "b": self.buffer(_bytes_view(arr))}

    def _npscalar(self, x: np.generic) -> dict[str, Any]:
        if x.dtype.kind not in _RAW_KINDS:
            return self.encode(x.item())
        return {TAG: "npscalar", "dtype": x.dtype.str, "v": x.tobytes()}

    def _tensor(self, t: Any) -> dict[str, Any]:
        torch = loaded_torch()
        t = t.detach().cpu().contiguous()
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in _TORCH_DTYPES:
            raise InvalidArgument(f"tensors of dtype {dtype} cannot be sent")
        raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
        node = {TAG: "tensor", "dtype": dtype, "shape": list(t.shape), "b": self.buffer(_bytes_view(raw.numpy()))}
        return node

    def _arrow(self, table: pa.Table) -> int:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return self.buffer(sink.getvalue())

    def _frame(self, df: pd.DataFrame) -> dict[str, Any]:
        """Numeric columns as raw buffers; the rest (strings, categories, nullable) as Arrow IPC."""
        arrow_cols: dict[str, pd.Series] = {}

        def column(key: str, values: Any) -> dict[str, Any]:
            dtype = values.dtype
            if isinstance(dtype, np.dtype) and dtype.kind in _RAW_KINDS:
                arr = np.ascontiguousarray(values.to_numpy() if hasattr(values, "to_numpy") else values)
                return {"dtype": arr.dtype.str, "b": self.buffer(_bytes_view(arr))}
            arrow_cols[key] = pd.Series(values, copy=False).reset_index(drop=True)
            return {"arrow": key}

        cols = [column(f"c{i}", df.iloc[:, i]) for i in range(df.shape[1])]
        index = df.index
        if isinstance(index, pd.RangeIndex):
            idx: dict[str, Any] = {"range": [index.start, index.stop, index.step], "names": [self.encode(index.name)]}
        else:
            levels = [index.get_level_values(i) for i in range(index.nlevels)]
            idx = {
                "cols": [column(f"i{i}", lv) for i, lv in enumerate(levels)],
                "names": [self.encode(n) for n in index.names],
                "multi": isinstance(index, pd.MultiIndex),
            }
        labels = df.columns
        node: dict[str, Any] = {
            TAG: "df",
            "rows": len(df),
            "columns": [self.encode(c) for c in labels],
            "column_names": [self.encode(n) for n in labels.names],
            "multi_columns": isinstance(labels, pd.MultiIndex),
            "cols": cols,
            "index": idx,
        }
        if arrow_cols:
            table = pa.Table.from_pandas(pd.DataFrame(arrow_cols, copy=False), preserve_index=False)
            node["arrow"] = self._arrow(table)
        return node


class Decoder:
    """Rebuilds values from a tree and the message's buffers. ``on_tag`` handles extra tags
    (refs to stored objects on the node); anything else unknown is a ``ProtocolError``."""

    def __init__(self, buffers: Sequence[Buffer], on_tag: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.buffers = buffers
        self.on_tag = on_tag

    def buffer(self, i: Any) -> Buffer:
        if not isinstance(i, int) or not 0 <= i < len(self.buffers):
            raise ProtocolError(f"message refers to buffer {i!r} but carries {len(self.buffers)}")
        return self.buffers[i]

    def decode(self, node: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise ProtocolError(f"value nested deeper than {MAX_DEPTH} levels")
        if node is None or isinstance(node, (bool, int, float, str, bytes)):
            return node
        if isinstance(node, list):
            return [self.decode(x, depth + 1) for x in node]
        if not isinstance(node, dict):
            raise ProtocolError(f"unexpected {type(node).__name__} in message")
        tag = node.get(TAG)
        try:
            return self._tagged(tag, node, depth)
        except SyftError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, pa.ArrowException) as e:
            raise ProtocolError(f"malformed {tag!r} value: {type(e).__name__}: {e}") from None

    def _tagged(self, tag: Any, node: dict[str, Any], depth: int) -> Any:
        d = depth + 1
        if tag == "tuple":
            return tuple(self.decode(x, d) for x in node["v"])
        if tag == "dict":
            return {_hashable(self.decode(k, d)): self.decode(v, d) for k, v in node["v"]}
        if tag == "int":
            return int(str(node["v"])[:400])
        if tag == "complex":
            re_, im = node["v"]
            return complex(float(re_), float(im))
        if tag == "slice":
            return slice(*(self.decode(x, d) for x in node["v"][:3]))
        if tag == "...":
            return Ellipsis
        if tag == "nd":
            dtype = _raw_dtype(node["dtype"])
            shape = tuple(int(s) for s in node["shape"])
            buf = self.buffer(node["b"])
            if any(s < 0 for s in shape) or math.prod(shape) * dtype.itemsize != memoryview(buf).nbytes:
                raise ProtocolError(f"array buffer does not match shape {shape} and dtype {dtype}")
            return np.frombuffer(buf, dtype=dtype).reshape(shape)
        if tag == "npscalar":
            dtype = _raw_dtype(node["dtype"])
            raw = node["v"]
            if not isinstance(raw, bytes) or len(raw) != dtype.itemsize:
                raise ProtocolError("numpy scalar has the wrong number of bytes")
            return np.frombuffer(raw, dtype=dtype)[0]
        if tag == "tensor":
            return self._tensor(node)
        if tag == "df":
            return self._frame(node, d)
        if tag == "series":
            s = self._frame(node["f"], d).iloc[:, 0]
            s.name = _hashable(self.decode(node["name"], d))
            return s
        if tag == "index":
            return self._frame(node["f"], d).index
        if tag == "arrow_array":
            return np.asarray(_read_arrow(self.buffer(node["a"])).column("v").to_pylist(), dtype=object)
        if tag == "nat":
            return pd.NaT
        if tag == "na":
            return pd.NA
        if tag == "ts":
            ts = pd.Timestamp(int(node["v"]), unit="ns")
            tz = node.get("tz")
            return ts.tz_localize("UTC").tz_convert(str(tz)) if tz else ts
        if tag == "td":
            return pd.Timedelta(int(node["v"]), unit="ns")
        if tag == "dtype":
            return _raw_dtype(node["v"]) if node["v"] not in ("category", "string", "str") else str(node["v"])
        if tag == "pytype":
            return _PY_TYPES[str(node["v"])]
        if tag == "tdtype":
            name = str(node["v"])
            if name not in _TORCH_DTYPES:
                raise ProtocolError(f"unknown torch dtype {name!r}")
            return getattr(import_torch(), name)
        if self.on_tag is not None:
            return self.on_tag(node)
        raise ProtocolError(f"unknown value kind {tag!r}")

    def _tensor(self, node: dict[str, Any]) -> Any:
        torch = import_torch()
        name = str(node["dtype"])
        if name not in _TORCH_DTYPES:
            raise ProtocolError(f"unknown torch dtype {name!r}")
        dtype = getattr(torch, name)
        shape = tuple(int(s) for s in node["shape"])
        buf = self.buffer(node["b"])
        itemsize = torch.empty((), dtype=dtype).element_size()
        nbytes = memoryview(buf).nbytes
        if any(s < 0 for s in shape) or math.prod(shape) * itemsize != nbytes:
            raise ProtocolError(f"tensor buffer does not match shape {shape} and dtype {name}")
        if nbytes == 0:
            return torch.empty(shape, dtype=dtype)
        raw_dtype = torch.int16 if dtype == torch.bfloat16 else dtype
        t = torch.frombuffer(buf, dtype=raw_dtype)
        if dtype == torch.bfloat16:
            t = t.view(torch.bfloat16)
        return t.reshape(shape)

    def _frame(self, node: dict[str, Any], depth: int) -> pd.DataFrame:
        rows = int(node["rows"])
        table = _read_arrow(self.buffer(node["arrow"])) if "arrow" in node else None
        arrow_frame = table.to_pandas() if table is not None else None

        def column(desc: dict[str, Any]) -> Any:
            if "arrow" in desc:
                if arrow_frame is None:
                    raise ProtocolError("frame column refers to a missing Arrow table")
                values = arrow_frame[str(desc["arrow"])]
                if len(values) != rows:
                    raise ProtocolError("Arrow column length does not match the frame")
                return values.array
            dtype = _raw_dtype(desc["dtype"])
            buf = self.buffer(desc["b"])
            if memoryview(buf).nbytes != rows * dtype.itemsize:
                raise ProtocolError("column buffer does not match the frame's row count")
            return np.frombuffer(buf, dtype=dtype)

        idx = node["index"]
        names = [_hashable(self.decode(n, depth)) for n in idx["names"]]
        if "range" in idx:
            start, stop, step = (int(x) for x in idx["range"])
            index: pd.Index = pd.RangeIndex(start, stop, step, name=names[0] if names else None)
            if len(index) != rows:
                raise ProtocolError("frame index length does not match its rows")
        else:
            levels = [column(c) for c in idx["cols"]]
            if idx.get("multi"):
                index = pd.MultiIndex.from_arrays(levels, names=names)
            else:
                index = pd.Index(levels[0], name=names[0], copy=False)
        labels = [_hashable(self.decode(c, depth)) for c in node["columns"]]
        arrays = [column(c) for c in node["cols"]]
        if len(labels) != len(arrays):
            raise ProtocolError("frame has a different number of column labels and columns")
        col_names = [_hashable(self.decode(n, depth)) for n in node.get("column_names", [None])]
        if node.get("multi_columns"):
            columns: pd.Index = pd.MultiIndex.from_tuples(labels, names=col_names)
        else:
            columns = pd.Index(labels, name=col_names[0] if col_names else None, tupleize_cols=False)
        if not arrays:
            return pd.DataFrame(index=index, columns=columns)
        data = dict(enumerate(arrays))
        df = pd.DataFrame(data, index=index, copy=False)
        df.columns = columns
        return df


def _hashable(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_hashable(v) for v in x)
    try:
        hash(x)
    except TypeError:
        raise ProtocolError(f"{type(x).__name__} cannot be a key or label") from None
    return x


def _bytes_view(arr: np.ndarray) -> memoryview:
    """A flat byte view of a C-contiguous array, without copying."""
    return memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else memoryview(b"")


def _dtype_name(dtype: np.dtype) -> str:
    return dtype.str if dtype.kind in _RAW_KINDS else dtype.name


def _raw_dtype(name: Any) -> np.dtype:
    try:
        dtype = np.dtype(str(name))
    except TypeError:
        raise ProtocolError(f"unknown dtype {name!r}") from None
    if dtype.kind not in _RAW_KINDS or dtype.fields is not None or dtype.itemsize == 0:
        raise ProtocolError(f"dtype {name!r} is not a plain numeric dtype")
    return dtype


def _read_arrow(buf: Buffer) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(buf)) as reader:
        return reader.read_all()


_torch_module: Any = None


def loaded_torch() -> Any:
    """torch if it is already imported (no import cost for users who never touch tensors)."""
    global _torch_module
    if _torch_module is None:
        import sys

        _torch_module = sys.modules.get("torch")
    return _torch_module


def import_torch() -> Any:
    global _torch_module
    if _torch_module is None:
        import torch

        _torch_module = torch
    return _torch_module


# ---------------------------------------------------------------- message framing


def pack_message(header: dict[str, Any], body: Any, buffers: Sequence[Buffer] = ()) -> list[Any]:
    """Frames for one message: msgpack header, msgpack body, raw buffers."""
    header = {"v": PROTOCOL_VERSION, **header}
    return [msgpack.packb(header, use_bin_type=True), msgpack.packb(body, use_bin_type=True), *buffers]


SMALL_MESSAGE = 64 * 1024


def copy_cheaper(frames: Sequence[Buffer]) -> bool:
    """Small messages are cheaper to copy than to track zero-copy (pyzmq's own advice)."""
    return sum(memoryview(f).nbytes for f in frames) < SMALL_MESSAGE


def unpack_header(frame: Buffer, require_id: bool = True) -> dict[str, Any]:
    """Read and check a header frame; raise ``ProtocolError`` with what is wrong."""
    raw = memoryview(frame)
    if raw.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError(f"header is {raw.nbytes} bytes; the limit is {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(raw, raw=False)
    except Exception as e:  # msgpack raises several unrelated types on bad input
        raise ProtocolError(f"header is not valid msgpack ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError("header must be a msgpack map")
    if header.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {header.get('v')!r} is not supported; this node speaks {PROTOCOL_VERSION}")
    if not isinstance(header.get("type"), str):
        raise ProtocolError("header has no message type")
    if require_id and not isinstance(header.get("id"), (int, str)):
        raise ProtocolError("header has no message id")
    return header


def unpack_body(frame: Buffer, limit: int = MAX_BODY_BYTES) -> Any:
    raw = memoryview(frame)
    if raw.nbytes > limit:
        raise ProtocolError(f"body is {raw.nbytes} bytes; the limit is {limit}: send bulk data as buffers")
    try:
        return msgpack.unpackb(raw, raw=False)
    except Exception as e:
        raise ProtocolError(f"body is not valid msgpack ({type(e).__name__})") from None


def encode_value(value: Any, on_object: Callable[[Any], Any] | None = None) -> tuple[Any, list[Buffer]]:
    """Encode one value; return (tree, buffers)."""
    enc = Encoder(on_object)
    return enc.encode(value), enc.buffers


def decode_value(tree: Any, buffers: Sequence[Buffer], on_tag: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """Decode one value from its tree and buffers."""
    return Decoder(buffers, on_tag).decode(tree)
