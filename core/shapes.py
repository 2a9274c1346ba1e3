"""Which shapes of private results are public: an allowlist of ops whose result's shape is a
function of their inputs' public shapes and the plan's public arguments, never of the values.

Anything not listed here has a private shape (``ptr.shape`` is then a pointer). A private scalar
argument (``repeat(k)``, ``linspace(0, 1, m[2, 3])``) is never a shape: it makes the result's
shape private unless the op only broadcasts it elementwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import allowlist as al
from .codec import loaded_torch
from .errors import OpNotAllowed

# numpy / torch ops whose result shape follows from the shapes of array operands that broadcast
# against each other (every operand may be private: values never change the shape)
_BROADCAST = frozenset(
    {f"numpy.{n}" for n in al.NUMPY_UFUNCS}
    | {f"numpy.{n}" for n in "abs clip round around nan_to_num".split()}
    | {f"torch.{n}" for n in al._TORCH_ELEMENTWISE.split() if n not in ("softmax", "log_softmax", "cumsum", "cumprod")}
    | {f"ndarray.{n}" for n in "clip round abs conj".split()}
    | {f"Tensor.{n}" for n in al._TORCH_ELEMENTWISE.split() if n not in ("softmax", "log_softmax", "cumsum", "cumprod")}
    | {f"torch.nn.functional.{n}" for n in "relu sigmoid gelu silu tanh leaky_relu".split()}
)

# ops whose result shape follows from the target's shape and the op's public arguments; only
# the target may be private
_FROM_TARGET = frozenset(
    "ndarray.astype ndarray.copy ndarray.cumsum ndarray.cumprod ndarray.sum ndarray.mean ndarray.std "
    "ndarray.var ndarray.min ndarray.max ndarray.prod ndarray.all ndarray.any ndarray.argmax "
    "ndarray.argmin ndarray.ptp ndarray.argsort ndarray.flatten ndarray.ravel ndarray.reshape "
    "ndarray.squeeze ndarray.swapaxes ndarray.transpose ndarray.diagonal ndarray.T "
    "numpy.sum numpy.mean numpy.std numpy.var numpy.min numpy.max numpy.amin numpy.amax numpy.median "
    "numpy.nanmean numpy.nansum numpy.nanstd numpy.nanvar numpy.nanmin numpy.nanmax numpy.nanmedian "
    "numpy.argmax numpy.argmin numpy.argsort numpy.sort numpy.transpose numpy.reshape numpy.ravel "
    "numpy.cumsum numpy.cumprod numpy.prod numpy.ptp numpy.squeeze numpy.expand_dims numpy.all "
    "numpy.any numpy.count_nonzero numpy.diff numpy.average numpy.isclose "
    "Tensor.float Tensor.double Tensor.half Tensor.int Tensor.long Tensor.bool Tensor.contiguous "
    "Tensor.detach Tensor.clone Tensor.to Tensor.sum Tensor.mean Tensor.std Tensor.var Tensor.amin "
    "Tensor.amax Tensor.argmax Tensor.argmin Tensor.prod Tensor.reshape Tensor.flatten "
    "Tensor.transpose Tensor.permute Tensor.squeeze Tensor.unsqueeze Tensor.view Tensor.t Tensor.T "
    "Tensor.mT Tensor.softmax Tensor.log_softmax Tensor.cumsum Tensor.cumprod Tensor.sort "
    "Tensor.argsort Tensor.count_nonzero Tensor.all Tensor.any Tensor.norm Tensor.numpy "
    "Series.to_numpy DataFrame.to_numpy Series.values DataFrame.values "
    "torch.sum torch.mean torch.std torch.var torch.amin torch.amax torch.argmax torch.argmin "
    "torch.prod torch.reshape torch.flatten torch.transpose torch.permute torch.squeeze "
    "torch.unsqueeze torch.t torch.softmax torch.log_softmax torch.cumsum torch.cumprod torch.argsort "
    "torch.count_nonzero torch.all torch.any torch.norm torch.nn.functional.softmax "
    "torch.nn.functional.log_softmax torch.nn.functional.normalize".split()
)

# ops on several arrays whose result shape follows from all their shapes (matrix products,
# joins along an axis); every array may be private, scalars must be public
_FROM_SHAPES = frozenset(
    "numpy.dot numpy.matmul numpy.inner numpy.outer numpy.tensordot numpy.concatenate numpy.stack "
    "numpy.vstack numpy.hstack numpy.column_stack numpy.einsum ndarray.dot matmul "
    "torch.matmul torch.mm torch.bmm torch.dot torch.mv torch.cat torch.stack torch.outer "
    "torch.einsum torch.cdist Tensor.matmul Tensor.mm Tensor.bmm Tensor.dot Tensor.mv".split()
)

# pandas methods that keep their target's shape whatever their (public) arguments
_PANDAS_SAME = frozenset(
    "abs round clip isna isnull notna notnull astype fillna cumsum cumprod cummax cummin rank shift "
    "diff pct_change copy sort_values sort_index where mask isin replace".split()
)


# pandas methods whose arguments beyond the target are values, not sizes: a private number there
# changes values only (fillna(p.mean()), clip(lo, hi), p > p.mean())
_VALUE_ARGS = _PANDAS_SAME | frozenset(
    "add sub mul div truediv floordiv mod pow radd rsub rmul rdiv eq ne lt le gt ge between".split()
)

# ops whose every argument beyond the target sets the result's size (counts, repetitions)
_SIZE_OPS = frozenset(
    "ndarray.repeat Tensor.repeat numpy.linspace numpy.histogram numpy.histogram_bin_edges "
    "numpy.bincount Tensor.topk torch.topk ndarray.take".split()
)


_TO_ARRAY = frozenset("Series.to_numpy DataFrame.to_numpy Series.values DataFrame.values".split())


def stand_in(x: Any, shape: tuple[int, ...]) -> Any:
    """An array of ``x``'s dtype and the given shape that takes no memory (every element is
    the same zero), for working out a result's shape without the data."""
    torch = loaded_torch()
    if torch is not None and isinstance(x, torch.Tensor):
        return torch.zeros((), dtype=x.dtype).expand(shape)
    if isinstance(x, np.ndarray):
        arr = np.lib.stride_tricks.as_strided(np.zeros(1, dtype=x.dtype), shape=shape, strides=(0,) * len(shape))
        arr.flags.writeable = False
        return arr
    return None


def _scalar(x: Any) -> bool:
    if isinstance(x, (bool, int, float, complex, np.generic)):
        return True
    torch = loaded_torch()
    return (isinstance(x, np.ndarray) and x.ndim == 0) or (
        torch is not None and isinstance(x, torch.Tensor) and x.ndim == 0
    )


def check_private_sizes(
    kind: str, label: str, values: list[Any], twin_operands: list[Any], nested_private: list[bool]
) -> None:
    """Refuse an op whose size, count or axis a private number would set (``repeat(k)``,
    ``linspace(0, 1, m[2, 3])``, ``head(n)``, ``sum(axis=n)``): its result's shape, its memory and
    its failure would tell the number. Elementwise uses (``x * n``, ``clip(x, n, m)``) are fine."""
    if kind == "op" or label in _BROADCAST:
        return
    owner, _, method = label.partition(".")
    if kind == "method" and owner in ("Series", "DataFrame") and method in _VALUE_ARGS:
        return
    for i, (v, x) in enumerate(zip(values, twin_operands)):
        if i and nested_private[i]:
            raise OpNotAllowed(
                f"{label}: argument {i} holds a private value inside a list or map, where it could set a "
                "size, a count or a key; pass public values there",
                op=label,
            )
        if i == 0 or v is None or not v.private:
            continue
        if label in _SIZE_OPS or _scalar(x):
            raise OpNotAllowed(
                f"{label}: argument {i} is a private value, and here it would set a size, a count or an "
                "axis, which the result's shape would then tell; pass a public number (or get this one "
                "released first)",
                op=label,
            )


def _array_like(value: Any) -> bool:
    torch = loaded_torch()
    return isinstance(value, (np.ndarray, np.generic)) or (torch is not None and isinstance(value, torch.Tensor))


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    if shape is None:
        return () if isinstance(value, (bool, int, float, complex)) else None
    try:
        return tuple(int(s) for s in shape)
    except TypeError:
        return None


def _public_literal(x: Any, depth: int = 0) -> bool:
    """A plan literal that can serve as a shape argument (ints, slices, axis tuples, dtypes, …)."""
    if x is None or isinstance(x, (bool, int, float, str, slice, np.dtype, type)) or x is Ellipsis:
        return True
    if isinstance(x, (list, tuple)) and depth < 3 and len(x) <= 64:
        return all(_public_literal(v, depth + 1) for v in x)
    torch = loaded_torch()
    return torch is not None and isinstance(x, torch.dtype)


def public_shape(
    real: Any,
    twin: Any,
    label: str,
    kind: str,
    rule: al.Rule,
    operands: list[tuple[Any, Any]],
    private: list[bool],
    known: list[tuple[int, ...] | None],
    twin_is_scalar: bool,
    dummy: Any = None,
) -> tuple[int, ...] | None:
    """The shape of a private result that its public inputs imply, or None.

    ``operands`` are the op's (real) positional then keyword argument values with, for each, whether
    it is a private value and its public shape (``known``); the target is ``operands[0]``."""
    if twin_is_scalar:
        return ()  # the twin's type is public, and the real result takes it
    if (
        kind == "op"
        and len(operands) == 2
        and private[0]
        and not private[1]
        and known[0] is not None
        and isinstance(operands[1], (int, float, bool, complex))
        and label in al.ELEMENTWISE_OPERATORS
        and isinstance(twin, np.ndarray)
    ):
        return known[0]  # the common case, ptr + 1: an array and a public number
    if real is None and dummy is not None:
        # it failed on the data: the shape a success would have had, from a stand-in of the
        # inputs' public shapes (so a failure looks like any other result)
        real = dummy()
    actual = _shape(real) if real is not None else None
    n = len(operands)
    arrays_ok = all((not private[i]) or (_array_like(operands[i]) and known[i] is not None) for i in range(n))
    others_public = all(not private[i] for i in range(1, n))
    elementwise = label in _BROADCAST or (kind == "op" and label in al.ELEMENTWISE_OPERATORS)
    if _array_like(twin):  # the twin's type, which the real result has (or it failed)
        if elementwise and arrays_ok:
            shapes = [s for s in (known[i] if private[i] else _shape(operands[i]) for i in range(n)) if s]
            if len(shapes) <= 1:  # one array and scalars: its shape (the common case, without numpy's help)
                return shapes[0] if shapes else ()
            try:
                return tuple(np.broadcast_shapes(*shapes))
            except ValueError:
                return None
        if (
            label in _FROM_TARGET
            and private[0]
            and known[0] is not None
            and others_public
            and all(_public_literal(x) for x in operands[1:])
        ):
            return actual
        if (
            label in _FROM_SHAPES
            and arrays_ok
            and all(private[i] or _array_like(operands[i]) or _public_literal(operands[i]) for i in range(n))
        ):
            return actual
        if (
            kind == "op"
            and label == "getitem"
            and private[0]
            and known[0] is not None
            and n == 2
            and not private[1]
            and _public_literal(operands[1])
            and not isinstance(operands[1], (str, list))
        ):
            return actual  # ints, slices, None and Ellipsis pick by position from a public shape
        return None
    if not isinstance(twin, (pd.Series, pd.DataFrame)) or not private[0] or known[0] is None:
        return None
    method = label.split(".", 1)[1] if "." in label else label
    if kind == "method" and method in _PANDAS_SAME and others_public:
        return known[0]
    if (
        kind == "op"
        and label in al.ELEMENTWISE_OPERATORS
        and others_public
        and n <= 2
        and (n == 1 or isinstance(operands[1], (bool, int, float, complex, np.generic)))
    ):
        return known[0]  # a scalar broadcast over a frame or series: no alignment
    if kind == "op" and label == "getitem" and isinstance(operands[0], pd.DataFrame) and n == 2 and not private[1]:
        key = operands[1]
        if isinstance(key, str):
            return (known[0][0],)
        if isinstance(key, list) and all(isinstance(k, str) for k in key) and len(set(key)) == len(key):
            return (known[0][0], len(key))
    return None


__all__ = ["public_shape", "check_private_sizes"]
