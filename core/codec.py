"""The wire codec shared by client and node: values to a msgpack tree plus raw buffers.

A message is multipart: ``[header, body, *buffers]``. Header and body are msgpack; ndarray and
tensor memory and numeric DataFrame columns travel as raw buffers (zero-copy both ways); other
DataFrame columns travel as one Arrow IPC stream. Nothing here unpickles or evaluates: decoding
only builds plain data from a fixed set of tagged node kinds, and refuses anything else.
"""

from __future__ import annotations

import functools
import json
import math
import re
import reprlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import InvalidArgument, OpNotAllowed, ProtocolError, SyftError

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_BUFFERS = 65_536  # raw buffer frames of one message (one per array or numeric column)
# msgpack builds up to ~80 bytes of Python objects per byte (an empty map is one byte): bulk
# data travels as raw buffers, so bodies stay small
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64  # of a value tree
MAX_BODY_DEPTH = MAX_DEPTH + 16  # of a whole header or body (ops, args, then value trees)
MAX_VALUE_NODES = 1_000_000  # parts of one decoded value
MAX_INT_DIGITS = 4300  # Python's own limit for int(str)
MAX_DIMS = 32
MAX_ELEMENTS = 2**40  # of one array or frame, whatever its shape
MAX_UNBACKED_ROWS = 2**27  # of a frame with no columns (rows that no buffer pays for)
MAX_ARROW_DECODED = 4 * 1024**3  # estimated pandas / Python bytes one Arrow stream may become
ARROW_EXPANSION = 32  # … and at most this many times the stream's own size
ARROW_SLACK = 64 * 1024**2  # … plus this much (null columns, short strings)
MAX_ARROW_MESSAGES = 4096
MAX_ARROW_COLUMNS = 100_000
MAX_ARROW_NODES = 1_000_000
MAX_ARROW_NESTING = 8
MAX_PANDAS_METADATA = 16 * 1024**2
TAG = "~"

# numpy dtype kinds that are plain fixed-size memory: safe to rebuild from bytes.
_RAW_KINDS = frozenset("biufcmM")
_PY_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool, "str": str, "complex": complex}
_TORCH_DTYPES = ("float16 float32 float64 bfloat16 int8 int16 int32 int64 uint8 bool complex64 complex128").split()

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
        for kind in _EXTENSIONS:
            if kind.encodes(obj):
                return kind.encode(self, obj)  # type: ignore[misc]
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
                return {TAG: "arrow_array", "a": self._arrow(lambda: pa.table({"v": pa.array(arr.tolist())}))}
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

    def _arrow(self, make: Callable[[], pa.Table]) -> int:
        try:
            table = make()
        except (pa.ArrowException, TypeError, ValueError) as e:  # e.g. a column mixing strings and numbers
            raise InvalidArgument(
                f"values of mixed or unsupported types cannot be sent ({type(e).__name__}: "
                f"{_clip(str(e))}): convert the column to one type"
            ) from None
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
            node["arrow"] = self._arrow(
                lambda: pa.Table.from_pandas(pd.DataFrame(arrow_cols, copy=False), preserve_index=False)
            )
        return node


class Decoder:
    """Rebuilds values from a tree and the message's buffers. ``on_tag`` handles extra tags
    (refs to stored objects on the node); anything else unknown is a ``ProtocolError``.

    Everything from the wire is checked before use: each field's type, dtypes (plain numeric
    only), shapes against their buffer's exact byte size, each buffer used once per value, Arrow
    streams read only uncompressed, within a decoded-size budget and fully validated, and the
    nesting depth and number of parts capped. Numeric arrays are zero-copy views of their
    buffers (writable when the buffer is, as received zmq frames are: the receiver owns them).
    """

    def __init__(
        self,
        buffers: Sequence[Buffer],
        on_tag: Callable[[dict[str, Any]], Any] | None = None,
        max_nodes: int = MAX_VALUE_NODES,
    ) -> None:
        self.buffers = buffers
        self.on_tag = on_tag
        self.max_nodes = max_nodes
        self.nodes = 0
        self._used: set[int] = set()
        self._in_label = 0  # decoding a name or label: references are refused there

    def label(self, node: Any, depth: int) -> Any:
        """A name or label (of a Series, an index level, the columns): plain data only, so a
        reference cannot hide where a reviewer of the plan sees just ``<series>``."""
        self._in_label += 1
        try:
            return _hashable(self.decode(node, depth))
        finally:
            self._in_label -= 1

    def buffer(self, i: Any) -> Buffer:
        if type(i) is not int or not 0 <= i < len(self.buffers):
            raise ProtocolError(f"message refers to buffer {short_repr(i)} but carries {len(self.buffers)}")
        if i in self._used:
            raise ProtocolError(f"buffer {i} is used twice: each buffer carries one array or column")
        self._used.add(i)
        return self.buffers[i]

    def decode(self, node: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise ProtocolError(f"value nested deeper than {MAX_DEPTH} levels")
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise ProtocolError(f"value has more than {self.max_nodes} parts")
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
        except MemoryError:
            raise ProtocolError(f"a {short_repr(tag)} value is too big to decode on this node") from None
        except (
            KeyError,
            TypeError,
            ValueError,
            IndexError,
            AttributeError,
            ArithmeticError,
            NotImplementedError,
            struct.error,
            pa.ArrowException,
        ) as e:
            raise ProtocolError(f"malformed {short_repr(tag)} value: {type(e).__name__}: {_clip(str(e))}") from None

    def _tagged(self, tag: Any, node: dict[str, Any], depth: int) -> Any:
        kind = KINDS.get(tag) if isinstance(tag, str) else None
        if kind is None:
            if self.on_tag is not None:
                if self._in_label:
                    raise ProtocolError(
                        "a name or label inside a value is plain data, not a reference "
                        "to an object: pass objects as op arguments"
                    )
                return self.on_tag(node)
            raise ProtocolError(f"unknown value kind {short_repr(tag)}")
        return kind.decode(self, node, depth)

    def _tensor(self, node: dict[str, Any]) -> Any:
        name = node.get("dtype")
        if not isinstance(name, str) or name not in _TORCH_DTYPES:
            raise ProtocolError(f"unknown torch dtype {short_repr(name)}")
        shape = _shape(node, "tensor")
        buf = self.buffer(node.get("b"))
        nbytes = _check_size(buf, shape, name, "tensor")
        torch = import_torch()
        dtype = getattr(torch, name)
        if nbytes == 0:
            return torch.empty(shape, dtype=dtype)
        if name == "bool":
            _check_bools(np.frombuffer(buf, dtype=np.bool_))
        raw_dtype = torch.int16 if dtype == torch.bfloat16 else dtype
        t = torch.frombuffer(buf, dtype=raw_dtype)
        if dtype == torch.bfloat16:
            t = t.view(torch.bfloat16)
        return t.reshape(shape)

    def _frame(self, node: dict[str, Any], depth: int) -> pd.DataFrame:
        tag = "df"
        rows = _int(node, "rows", tag, 0, MAX_ELEMENTS)
        label_trees = _list(node, "columns", tag)
        col_descs = _list(node, "cols", tag)
        if len(label_trees) != len(col_descs):
            raise ProtocolError("frame has a different number of column labels and columns")
        idx = _dict(node, "index", tag)
        arrow_frame: pd.DataFrame | None = None
        if "arrow" in node:
            table = _read_arrow(self.buffer(node["arrow"]))
            if table.num_rows != rows:
                raise ProtocolError("Arrow column length does not match the frame")
            if len(set(table.column_names)) != table.num_columns:
                raise ProtocolError("malformed 'df' value: its Arrow table repeats a column name")
            arrow_frame = _to_pandas(table)
        used_arrow: set[str] = set()

        def column(desc: Any) -> Any:
            if not isinstance(desc, dict):
                raise ProtocolError(f"malformed 'df' value: a column is a map, not {type(desc).__name__}")
            if "arrow" in desc:
                key = desc["arrow"]
                if arrow_frame is None:
                    raise ProtocolError("frame column refers to a missing Arrow table")
                if not isinstance(key, str) or key not in arrow_frame.columns or key in used_arrow:
                    raise ProtocolError(f"malformed 'df' value: no unused Arrow column {short_repr(key)}")
                used_arrow.add(key)
                return arrow_frame[key].array
            dtype = _raw_dtype(desc.get("dtype"))
            buf = self.buffer(desc.get("b"))
            if memoryview(buf).nbytes != rows * dtype.itemsize:
                raise ProtocolError("column buffer does not match the frame's row count")
            return _check_bools(np.frombuffer(buf, dtype=dtype))

        names = [self.label(n, depth) for n in _list(idx, "names", "df index")]
        index: pd.Index
        if "range" in idx:
            bounds = _list(idx, "range", "df index")
            if len(bounds) != 3 or not all(type(x) is int for x in bounds):
                raise ProtocolError("malformed 'df' value: a range index is [start, stop, step] integers")
            index = pd.RangeIndex(*bounds, name=names[0] if names else None)
            if len(index) != rows:
                raise ProtocolError("frame index length does not match its rows")
            if not col_descs and rows > MAX_UNBACKED_ROWS:
                raise ProtocolError(f"a frame or range without columns has at most {MAX_UNBACKED_ROWS} rows")
        else:
            levels = [column(c) for c in _list(idx, "cols", "df index")]
            if not levels or any(len(lv) != rows for lv in levels):
                raise ProtocolError("frame index length does not match its rows")
            if idx.get("multi"):
                index = pd.MultiIndex.from_arrays(levels, names=names)
            elif len(levels) != 1:
                raise ProtocolError("malformed 'df' value: a flat index has one level")
            else:
                index = pd.Index(levels[0], name=names[0] if names else None, copy=False)
        labels = [self.label(c, depth) for c in label_trees]
        arrays = [column(c) for c in col_descs]
        col_names = [self.label(n, depth) for n in _list(node, "column_names", tag, [None])]
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


# ---------------------------------------------------------------- the registry of kinds


@dataclass(frozen=True)
class Kind:
    """A tagged kind of value on the wire: how it is decoded (checked) and, for kinds beyond the
    built-in ones, which Python types it encodes and how. A new kind (a model graph, a secret
    share, a ciphertext) is one ``register_kind`` call."""

    tag: str
    decode: Callable[[Decoder, dict[str, Any], int], Any]
    types: tuple[type, ...] | Callable[[], tuple[type, ...]] = ()
    encode: Callable[[Encoder, Any], Any] | None = None

    def encodes(self, obj: Any) -> bool:
        types = self.types() if callable(self.types) else self.types
        return bool(types) and isinstance(obj, types)


KINDS: dict[str, Kind] = {}
_EXTENSIONS: list[Kind] = []  # registered kinds that encode types the built-in encoder does not know


def register_kind(
    tag: str,
    decode: Callable[[Decoder, dict[str, Any], int], Any],
    types: tuple[type, ...] | Callable[[], tuple[type, ...]] = (),
    encode: Callable[[Encoder, Any], Any] | None = None,
) -> Kind:
    """Add a kind of value to the codec: ``decode(decoder, node, depth)`` rebuilds it from a node
    ``{"~": tag, …}`` (checking every field), ``encode(encoder, obj)`` makes that node for
    instances of ``types``."""
    if tag in KINDS or tag in ("ref", "res", "in"):
        raise ValueError(f"the codec already has a kind {tag!r}")
    kind = KINDS[tag] = Kind(tag, decode, types, encode)
    if encode is not None:
        _EXTENSIONS.append(kind)
    return kind


def _decode_tuple(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    tag = "tuple"
    return tuple(dec.decode(x, depth + 1) for x in _list(node, "v", tag))


def _decode_dict(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    tag = "dict"
    out: dict[Any, Any] = {}
    for pair in _list(node, "v", tag):
        if not isinstance(pair, list) or len(pair) != 2:
            raise ProtocolError("malformed 'dict' value: its items are [key, value] pairs")
        out[dec.label(pair[0], depth + 1)] = dec.decode(pair[1], depth + 1)
    return out


def _decode_int(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    text = node.get("v")
    if not isinstance(text, str) or not _INT_RE.match(text):
        raise ProtocolError(f"malformed 'int' value: v is up to {MAX_INT_DIGITS} decimal digits")
    return int(text)


def _decode_complex(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    tag = "complex"
    v = _list(node, "v", tag)
    if len(v) != 2 or not all(type(x) in (int, float) for x in v):
        raise ProtocolError("malformed 'complex' value: v is [real, imag]")
    return complex(float(v[0]), float(v[1]))


def _decode_slice(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    tag = "slice"
    v = _list(node, "v", tag)
    if len(v) != 3:
        raise ProtocolError("malformed 'slice' value: v is [start, stop, step]")
    return slice(*(dec.decode(x, depth + 1) for x in v))


def _decode_ellipsis(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    return Ellipsis


def _decode_nd(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    tag = "nd"
    dtype = _raw_dtype(node.get("dtype"))
    shape = _shape(node, tag)
    buf = dec.buffer(node.get("b"))
    _check_size(buf, shape, dtype, "array")
    return _check_bools(np.frombuffer(buf, dtype=dtype)).reshape(shape)


def _decode_npscalar(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    dtype = _raw_dtype(node.get("dtype"))
    raw = node.get("v")
    if not isinstance(raw, bytes) or len(raw) != dtype.itemsize:
        raise ProtocolError("numpy scalar has the wrong number of bytes")
    return _check_bools(np.frombuffer(raw, dtype=dtype))[0]


def _decode_tensor(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    return dec._tensor(node)


def _decode_df(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    return dec._frame(node, depth + 1)


def _decode_series(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    tag = "series"
    frame = dec._frame(_dict(node, "f", tag), depth + 1)
    if frame.shape[1] != 1:
        raise ProtocolError("malformed 'series' value: its frame has exactly one column")
    s = frame.iloc[:, 0]
    s.name = dec.label(node.get("name"), depth + 1)
    return s


def _decode_index(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    tag = "index"
    return dec._frame(_dict(node, "f", tag), depth + 1).index


def _decode_arrow_array(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    table = _read_arrow(dec.buffer(node.get("a")), objects=True)
    if table.column_names != ["v"]:
        raise ProtocolError("malformed 'arrow_array' value: its table has one column, v")
    values = table.column("v").to_pylist()
    return np.fromiter(values, dtype=object, count=len(values))


def _decode_nat(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    return pd.NaT


def _decode_na(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    return pd.NA


def _decode_ts(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    tag = "ts"
    ts = pd.Timestamp(_int(node, "v", tag, -(2**63) + 1, 2**63 - 1), unit="ns")
    tz = node.get("tz")
    return ts.tz_localize("UTC").tz_convert(_tz(tz)) if tz is not None else ts


def _decode_td(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    tag = "td"
    return pd.Timedelta(_int(node, "v", tag, -(2**63) + 1, 2**63 - 1), unit="ns")


def _decode_dtype(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    v = node.get("v")
    return v if v in ("category", "string", "str") else _raw_dtype(v)


def _decode_pytype(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    v = node.get("v")
    if not isinstance(v, str) or v not in _PY_TYPES:
        raise ProtocolError(f"malformed 'pytype' value: no Python type {short_repr(v)} travels")
    return _PY_TYPES[v]


def _decode_tdtype(dec: Decoder, node: dict[str, Any], depth: int) -> Any:
    name = node.get("v")
    if not isinstance(name, str) or name not in _TORCH_DTYPES:
        raise ProtocolError(f"unknown torch dtype {short_repr(name)}")
    return getattr(import_torch(), name)


# the built-in kinds (the Encoder makes them directly, for speed)
register_kind("tuple", _decode_tuple)
register_kind("dict", _decode_dict)
register_kind("int", _decode_int)
register_kind("complex", _decode_complex)
register_kind("slice", _decode_slice)
register_kind("...", _decode_ellipsis)
register_kind("nd", _decode_nd)
register_kind("npscalar", _decode_npscalar)
register_kind("tensor", _decode_tensor)
register_kind("df", _decode_df)
register_kind("series", _decode_series)
register_kind("index", _decode_index)
register_kind("arrow_array", _decode_arrow_array)
register_kind("nat", _decode_nat)
register_kind("na", _decode_na)
register_kind("ts", _decode_ts)
register_kind("td", _decode_td)
register_kind("dtype", _decode_dtype)
register_kind("pytype", _decode_pytype)
register_kind("tdtype", _decode_tdtype)


# ---------------------------------------------------------------- checks of wire values

_INT_RE = re.compile(rf"^-?[0-9]{{1,{MAX_INT_DIGITS}}}$")
_TZ_RE = re.compile(r"^(?!.*\.\.)(?!.*//)[A-Za-z0-9_+\-:][A-Za-z0-9_+\-:/]{0,63}$")
_TORCH_ITEMSIZE = {
    "float16": 2,
    "float32": 4,
    "float64": 8,
    "bfloat16": 2,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "uint8": 1,
    "bool": 1,
    "complex64": 8,
    "complex128": 16,
}
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = 6
_SHORT.maxlevel = 3


def short_repr(x: Any) -> str:
    """A peer's value for an error message: its repr, cut short."""
    return _SHORT.repr(x)


def _clip(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[:n] + "…"


def _list(node: dict[str, Any], key: str, tag: str, default: Any = None) -> list[Any]:
    v = node.get(key, default)
    if not isinstance(v, list):
        raise ProtocolError(f"malformed {tag!r} value: {key} is a list, not {type(v).__name__}")
    return v


def _dict(node: dict[str, Any], key: str, tag: str) -> dict[str, Any]:
    v = node.get(key)
    if not isinstance(v, dict):
        raise ProtocolError(f"malformed {tag!r} value: {key} is a map, not {type(v).__name__}")
    return v


def _int(node: dict[str, Any], key: str, tag: str, lo: int, hi: int) -> int:
    v = node.get(key)
    if type(v) is not int or not lo <= v <= hi:
        raise ProtocolError(f"malformed {tag!r} value: {key} is an integer from {lo} to {hi}, not {short_repr(v)}")
    return v


def _shape(node: dict[str, Any], tag: str) -> tuple[int, ...]:
    shape = node.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(type(s) is int and 0 <= s <= MAX_ELEMENTS for s in shape)
    ):
        raise ProtocolError(
            f"malformed {tag!r} value: shape is a list of at most {MAX_DIMS} non-negative "
            f"integers, not {short_repr(shape)}"
        )
    return tuple(shape)


def _check_size(buf: Buffer, shape: tuple[int, ...], dtype: np.dtype | str, what: str) -> int:
    """The buffer's byte size, if it is exactly what ``shape`` items of ``dtype`` need."""
    nbytes = memoryview(buf).nbytes
    count = math.prod(shape)
    itemsize = dtype.itemsize if isinstance(dtype, np.dtype) else _TORCH_ITEMSIZE[dtype]
    if count > MAX_ELEMENTS or count * itemsize != nbytes:
        raise ProtocolError(
            f"{what} buffer does not match shape {shape} and dtype {dtype} ({nbytes} bytes for "
            f"{count} element(s) of {itemsize} bytes)"
        )
    return nbytes


def _check_bools(arr: np.ndarray) -> np.ndarray:
    """Boolean memory holds only 0 and 1 (other bytes make numpy's bools inconsistent)."""
    if arr.dtype.kind == "b" and arr.size and int(arr.view(np.uint8).max()) > 1:
        raise ProtocolError("a boolean buffer holds bytes other than 0 and 1")
    return arr


def _tz(tz: Any) -> str:
    """A time zone name (``Europe/Paris``, ``UTC``, ``+01:00``): never a path."""
    if not isinstance(tz, str) or not _TZ_RE.match(tz):
        raise ProtocolError(f"time zone {short_repr(tz)} is not a zone name")
    return tz


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
    """A plain numeric numpy dtype from its name: no objects, strings, records or sub-arrays."""
    if not isinstance(name, str) or not 0 < len(name) <= 32:
        raise ProtocolError(f"unknown dtype {short_repr(name)}")
    return _named_dtype(name)


@functools.lru_cache(maxsize=256)
def _named_dtype(name: str) -> np.dtype:
    try:
        dtype = np.dtype(name)
    except Exception:  # numpy raises several types (and warnings) for names it does not know
        raise ProtocolError(f"unknown dtype {short_repr(name)}") from None
    if (
        dtype.kind not in _RAW_KINDS
        or dtype.fields is not None
        or dtype.subdtype is not None
        or dtype.itemsize == 0
        or (dtype.kind in "mM" and np.datetime_data(dtype)[0] == "generic")
    ):
        raise ProtocolError(f"dtype {short_repr(name)} is not a plain numeric dtype")
    return dtype


# ---------------------------------------------------------------- Arrow IPC from the wire


def _read_arrow(buf: Buffer, objects: bool = False) -> pa.Table:
    """Read an Arrow IPC stream sent by a peer, checked before and after reading.

    Before: the stream's messages are scanned (no data touched): a schema of known column types
    (no views, run-end or union encodings, no dictionaries inside nested types, time zones that
    are zone names), no compressed batches (a small buffer must not expand to gigabytes: the
    node never decompresses peer data), and a decoded-size estimate from the batches' declared
    lengths within ``ARROW_EXPANSION`` times the stream's size (plus a little) and
    ``MAX_ARROW_DECODED`` bytes. After: ``validate(full=True)``, so offsets, indices and UTF-8
    are checked before pandas or Python reads a byte. ``objects``: the values will become
    Python objects (``to_pylist``), costed as such.
    """
    nbytes = memoryview(buf).nbytes
    data = pa.py_buffer(buf)
    budget = min(MAX_ARROW_DECODED, ARROW_EXPANSION * nbytes + ARROW_SLACK)
    try:
        _scan_arrow(data, budget, objects)
        with pa.ipc.open_stream(data) as reader:
            table = reader.read_all()
        table.validate(full=True)
    except SyftError:
        raise
    except MemoryError:
        raise ProtocolError("the Arrow stream is too big to read on this node") from None
    except (pa.ArrowException, OSError, ValueError, TypeError, KeyError, IndexError, struct.error) as e:
        raise ProtocolError(f"the Arrow stream is not valid: {type(e).__name__}: {_clip(str(e))}") from None
    return table


def _scan_arrow(data: pa.Buffer, budget: int, objects: bool) -> None:
    schema_costs: list[int] | None = None
    cost = 0
    for count, message in enumerate(pa.ipc.MessageReader.open_stream(data)):
        if count > MAX_ARROW_MESSAGES:
            raise ProtocolError(f"the Arrow stream has more than {MAX_ARROW_MESSAGES} messages")
        kind = message.type
        if schema_costs is None:
            if kind != "schema":
                raise ProtocolError("an Arrow stream starts with its schema")
            schema = pa.ipc.read_schema(message)
            if len(schema) > MAX_ARROW_COLUMNS:
                raise ProtocolError(f"an Arrow table has at most {MAX_ARROW_COLUMNS} columns")
            schema_costs = []
            for f in schema:
                _arrow_costs(f.type, False, objects, 0, schema_costs)
            continue
        if kind not in ("record batch", "dictionary"):
            raise ProtocolError(f"unexpected Arrow {kind} message in a stream")
        compressed, nodes = _batch_layout(message.metadata)
        if compressed:
            raise ProtocolError(
                "compressed Arrow IPC is not accepted (the node never decompresses what a "
                "client sends): send the stream uncompressed"
            )
        costs = schema_costs if kind == "record batch" else []
        for i, length in enumerate(nodes):
            if length < 0:
                raise ProtocolError("an Arrow batch declares a negative length")
            cost += length * (costs[i] if i < len(costs) else _COST_OBJECT)
        if cost > budget:
            raise ProtocolError(
                f"the Arrow stream would decode to about {cost:,} bytes, over this node's limit of "
                f"{budget:,} for a stream of its size: send fewer rows per message"
            )
    if schema_costs is None:
        raise ProtocolError("the Arrow stream is empty")


_COST_OBJECT = 64  # bytes per value that becomes a Python object (a str, Decimal, date, …)
_COST_NESTED = 128  # per value of, or inside, a list or struct (an array or a dict per row)


def _arrow_costs(t: pa.DataType, nested: bool, objects: bool, depth: int, out: list[int]) -> None:
    """Check a column type; append the estimated decoded bytes per value of each of its IPC field
    nodes (pre-order, as the batches list them)."""
    if depth > MAX_ARROW_NESTING:
        raise ProtocolError(f"Arrow types nest at most {MAX_ARROW_NESTING} levels")
    if isinstance(t, pa.BaseExtensionType):
        t = t.storage_type
    if pa.types.is_dictionary(t):
        if nested or objects:
            raise ProtocolError("dictionary-encoded Arrow values are accepted only as top-level frame columns")
        if not pa.types.is_integer(t.index_type):
            raise ProtocolError("Arrow dictionary indices must be integers")
        value_type = t.value_type
        if isinstance(value_type, pa.BaseExtensionType):
            value_type = value_type.storage_type
        _arrow_leaf(value_type)
        out.append(t.index_type.bit_width // 8 + 1)
        return
    children: list[pa.DataType] = []
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        children = [t.value_type]
    elif pa.types.is_struct(t):
        children = [t.field(i).type for i in range(t.num_fields)]
    else:
        _arrow_leaf(t)
        if nested or objects:
            out.append(_COST_NESTED if nested else _COST_OBJECT)
        elif pa.types.is_null(t):
            out.append(8)
        elif pa.types.is_boolean(t):
            out.append(2)
        elif (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_binary(t)
            or pa.types.is_large_binary(t)
            or pa.types.is_fixed_size_binary(t)
            or pa.types.is_decimal(t)
            or pa.types.is_date(t)
            or pa.types.is_time(t)
        ):
            out.append(_COST_OBJECT)
        else:
            out.append(t.bit_width // 8 + 1)
        return
    out.append(_COST_NESTED)
    for child in children:
        _arrow_costs(child, True, objects, depth + 1, out)


def _arrow_leaf(t: pa.DataType) -> None:
    types = pa.types
    if types.is_timestamp(t) and t.tz is not None:
        _tz(t.tz)
    if not (
        types.is_null(t)
        or types.is_boolean(t)
        or types.is_integer(t)
        or types.is_floating(t)
        or types.is_decimal(t)
        or types.is_date(t)
        or types.is_time(t)
        or types.is_timestamp(t)
        or types.is_duration(t)
        or types.is_string(t)
        or types.is_large_string(t)
        or types.is_binary(t)
        or types.is_large_binary(t)
        or types.is_fixed_size_binary(t)
    ):
        raise ProtocolError(f"Arrow columns of type {_clip(str(t), 80)} are not accepted")


def _batch_layout(metadata: pa.Buffer) -> tuple[bool, list[int]]:
    """(compressed?, the length of each field node) of a record or dictionary batch, read from
    its flatbuffer metadata (Arrow's Message.fbs) without decoding its body."""
    fb = memoryview(metadata).cast("B")

    def u(fmt: str, pos: int) -> int:
        if not 0 <= pos <= len(fb) - struct.calcsize(fmt):
            raise ProtocolError("an Arrow message's metadata is truncated")
        return int(struct.unpack_from(fmt, fb, pos)[0])

    def field(table: int, i: int) -> int | None:
        vtable = table - u("<i", table)
        if 4 + 2 * i + 2 > u("<H", vtable):
            return None
        off = u("<H", vtable + 4 + 2 * i)
        return table + off if off else None

    def ref(pos: int) -> int:
        return pos + u("<I", pos)

    message = ref(0)
    header_type, header = field(message, 1), field(message, 2)
    if header_type is None or header is None:
        raise ProtocolError("an Arrow message has no header")
    batch: int | None = ref(header)
    if u("<B", header_type) == 2:  # a DictionaryBatch holds its RecordBatch as field 1
        data = field(batch, 1)
        if data is None:
            raise ProtocolError("an Arrow dictionary message has no data")
        batch = ref(data)
    nodes_at = field(batch, 1)
    lengths: list[int] = []
    if nodes_at is not None:
        vec = ref(nodes_at)
        n = u("<I", vec)
        if n > MAX_ARROW_NODES:
            raise ProtocolError(f"an Arrow batch has more than {MAX_ARROW_NODES} field nodes")
        lengths = [u("<q", vec + 4 + 16 * k) for k in range(n)]  # FieldNode {length, null_count}
    return field(batch, 3) is not None, lengths


_PANDAS_TYPE_RE = re.compile(r"^[a-z0-9_\[\], -]{1,64}$")
_NUMPY_TYPE_RE = re.compile(
    r"^(?:[A-Za-z][A-Za-z0-9]{0,15}|(?:datetime|timedelta)64\[[a-z]{1,2}(?:, (?P<tz>[^\]]{1,64}))?\]"
    r"|period\[[A-Za-z0-9-]{1,16}\]|interval\[[a-z0-9]{1,16}(?:\[[a-z]{1,2}\])?, (?:left|right|both|neither)\])$"
)
_COLUMN_META: dict[str, Callable[[Any], bool]] = {
    "num_categories": lambda v: type(v) is int,
    "ordered": lambda v: type(v) is bool,
    "timezone": lambda v: isinstance(v, str) and bool(_TZ_RE.match(v)),
    "precision": lambda v: type(v) is int,
    "scale": lambda v: type(v) is int,
}


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """``table.to_pandas()`` with the peer's pandas metadata reduced to what our encoder writes
    (column dtypes consistent with their Arrow types; no index, no column-index rebuilding)."""
    table = table.replace_schema_metadata(_pandas_metadata(table.schema))
    try:
        return table.to_pandas()
    except MemoryError:
        raise ProtocolError("the Arrow columns are too big to read on this node") from None
    except Exception as e:  # pandas and pyarrow raise many types for odd but valid data
        raise ProtocolError(f"the Arrow columns could not be read: {type(e).__name__}: {_clip(str(e))}") from None


def _pandas_metadata(schema: pa.Schema) -> dict[bytes, bytes] | None:
    raw = (schema.metadata or {}).get(b"pandas")
    if raw is None or len(raw) > MAX_PANDAS_METADATA:
        return None
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    entries = meta.get("columns") if isinstance(meta, dict) else None
    if not isinstance(entries, list):
        return None
    types = {f.name: f.type for f in schema}
    columns = []
    for c in entries:
        if not isinstance(c, dict):
            continue
        name, numpy_type, pandas_type = c.get("field_name"), c.get("numpy_type"), c.get("pandas_type")
        if (
            not isinstance(name, str)
            or c.get("name") != name
            or name not in types
            or not isinstance(pandas_type, str)
            or not _PANDAS_TYPE_RE.match(pandas_type)
            or not isinstance(numpy_type, str)
            or not _numpy_type_fits(numpy_type, types[name])
        ):
            continue
        md = c.get("metadata")
        md = {k: v for k, v in md.items() if k in _COLUMN_META and _COLUMN_META[k](v)} if isinstance(md, dict) else None
        columns.append(
            {"name": name, "field_name": name, "pandas_type": pandas_type, "numpy_type": numpy_type, "metadata": md}
        )
    clean = {"index_columns": [], "column_indexes": [], "columns": columns}
    return {b"pandas": json.dumps(clean).encode()}


def _numpy_type_fits(numpy_type: str, t: pa.DataType) -> bool:
    """A pandas dtype name that converts the Arrow column without expanding it."""
    if pa.types.is_dictionary(t):
        return bool(re.match(r"^u?int(8|16|32|64)$", numpy_type))
    if isinstance(t, pa.BaseExtensionType):
        t = t.storage_type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_struct(t):
        return numpy_type == "object" or (numpy_type.startswith("interval[") and bool(_NUMPY_TYPE_RE.match(numpy_type)))
    m = _NUMPY_TYPE_RE.match(numpy_type)
    return bool(m) and (m.group("tz") is None or bool(_TZ_RE.match(m.group("tz"))))


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
    header = _unpack(raw, "header", MAX_HEADER_BYTES // 16)
    if not isinstance(header, dict):
        raise ProtocolError("header must be a msgpack map")
    if header.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {short_repr(header.get('v'))} is not supported; this node speaks {PROTOCOL_VERSION}"
        )
    if not isinstance(header.get("type"), str):
        raise ProtocolError("header has no message type")
    if require_id and (type(header.get("id")) not in (int, str)):
        raise ProtocolError("header has no message id")
    return header


def unpack_body(frame: Buffer, limit: int = MAX_BODY_BYTES) -> Any:
    """Read a body frame of at most ``limit`` bytes: plain msgpack data (maps, lists, strings,
    bytes, numbers, booleans, nil; no extension types), nested at most ``MAX_BODY_DEPTH`` deep
    and with at most one list or map per 16 bytes, so it cannot grow much beyond its size."""
    raw = memoryview(frame)
    if raw.nbytes > limit:
        raise ProtocolError(f"body is {raw.nbytes} bytes; the limit is {limit}: send bulk data as buffers")
    return _unpack(raw, "body", max(limit // 16, 4096))


def _unpack(raw: memoryview, what: str, max_containers: int) -> Any:
    containers = 0

    def count(x: Any) -> Any:
        nonlocal containers
        containers += 1
        if containers > max_containers:
            raise ProtocolError(f"{what} holds more than {max_containers} lists and maps")
        return x

    try:
        value = msgpack.unpackb(raw, raw=False, object_hook=count, list_hook=count, ext_hook=_no_ext, timestamp=2)
    except SyftError:
        raise
    except Exception as e:  # msgpack raises several unrelated types on bad input
        raise ProtocolError(f"{what} is not valid msgpack ({type(e).__name__})") from None
    if containers > MAX_BODY_DEPTH:  # fewer containers cannot nest deeper
        _check_depth(value, what)
    return value


def _no_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack extension type {code} is not part of this protocol")


def _check_depth(value: Any, what: str) -> None:
    """Refuse trees nested deeper than ``MAX_BODY_DEPTH`` (recursive readers would fail on them)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_BODY_DEPTH:
            raise ProtocolError(f"{what} is nested deeper than {MAX_BODY_DEPTH} levels")
        for child in node.values() if type(node) is dict else node:
            if type(child) is list or type(child) is dict:
                stack.append((child, depth + 1))


def encode_value(value: Any, on_object: Callable[[Any], Any] | None = None) -> tuple[Any, list[Buffer]]:
    """Encode one value; return (tree, buffers)."""
    enc = Encoder(on_object)
    return enc.encode(value), enc.buffers


def decode_value(tree: Any, buffers: Sequence[Buffer], on_tag: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """Decode one value from its tree and buffers."""
    return Decoder(buffers, on_tag).decode(tree)
