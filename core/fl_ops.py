"""What a federated model may be made of: torch modules (with their constructor arguments),
functions and tensor methods, each by name.

A model travels as a graph of these names (``fl_graph``), never as code. Both sides use this
table: the client refuses a model that uses anything else before it is sent, naming the op; the
node checks every name and every constructor argument again, and computes each module's
weights' shapes from its arguments alone, without torch, so a graph is judged before anything
is built from it. Nothing here imports torch until a name is resolved to a callable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgument, OpNotAllowed

MAX_DIM = 1 << 24  # the largest size a module's argument may give one axis of a weight
MAX_KERNEL = 64  # the largest kernel, stride, padding or dilation of a convolution or pooling

# ---------------------------------------------------------------- argument kinds


def _int(lo: int = 1, hi: int = MAX_DIM) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if type(v) is not int or not lo <= v <= hi:
            raise InvalidArgument(f"{name} is an integer from {lo} to {hi}, not {v!r}")
        return v

    return check


def _opt_int(lo: int, hi: int) -> Callable[[str, Any], Any]:
    inner = _int(lo, hi)
    return lambda name, v: None if v is None else inner(name, v)


def _float(lo: float = -1e9, hi: float = 1e9) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if type(v) not in (int, float) or not math.isfinite(v) or not lo <= v <= hi:
            raise InvalidArgument(f"{name} is a number from {lo:g} to {hi:g}, not {v!r}")
        return float(v)

    return check


def _opt_float(lo: float, hi: float) -> Callable[[str, Any], Any]:
    inner = _float(lo, hi)
    return lambda name, v: None if v is None else inner(name, v)


def _bool(name: str, v: Any) -> Any:
    if type(v) is not bool:
        raise InvalidArgument(f"{name} is true or false, not {v!r}")
    return v


def _choice(*allowed: Any) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if v not in allowed or type(v) not in {type(a) for a in allowed}:
            raise InvalidArgument(f"{name} is one of {', '.join(map(repr, allowed))}, not {v!r}")
        return v

    return check


def _ints(n: int | None, lo: int = 1, hi: int = MAX_KERNEL) -> Callable[[str, Any], Any]:
    """An integer, or a list of ``n`` integers (a kernel size, a stride); kept as a list."""

    def check(name: str, v: Any) -> Any:
        items = [v] if type(v) is int else list(v) if isinstance(v, (list, tuple)) else None
        if items is None or not items or (n is not None and len(items) not in (1, n)) or len(items) > 8:
            raise InvalidArgument(f"{name} is an integer or {n or 'a few'} integers, not {v!r}")
        for x in items:
            _int(lo, hi)(name, x)
        return items[0] if type(v) is int else items

    return check


def _padding(n: int) -> Callable[[str, Any], Any]:
    sized = _ints(n, 0, MAX_KERNEL)
    return lambda name, v: v if v in ("same", "valid") else sized(name, v)


def _shape(name: str, v: Any) -> Any:
    items = [v] if type(v) is int else list(v) if isinstance(v, (list, tuple)) else None
    if not items or len(items) > 8:
        raise InvalidArgument(f"{name} is an integer or a few integers, not {v!r}")
    return [_int(1, MAX_DIM)(name, x) for x in items]


def _output_size(name: str, v: Any) -> Any:
    items = [v] if type(v) is int or v is None else list(v) if isinstance(v, (list, tuple)) else None
    if not items or len(items) > 3:
        raise InvalidArgument(f"{name} is an integer or a few integers, not {v!r}")
    out = [None if x is None else _int(1, 4096)(name, x) for x in items]
    return out[0] if type(v) is int or v is None else out


def _default(value: Any) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if v != value:
            raise InvalidArgument(f"{name} must be {value!r} here (a federated model keeps it at its default)")
        return v

    return check


# ---------------------------------------------------------------- modules


def _tuple(v: Any, n: int) -> list[int]:
    return list(v) * (n if len(list(v)) == 1 else 1) if isinstance(v, (list, tuple)) else [v] * n


def _linear(a: dict[str, Any]) -> dict[str, list[int]]:
    out = {"weight": [a["out_features"], a["in_features"]]}
    if a["bias"]:
        out["bias"] = [a["out_features"]]
    return out


def _conv(n: int, transposed: bool = False) -> Callable[[dict[str, Any]], dict[str, list[int]]]:
    def state(a: dict[str, Any]) -> dict[str, list[int]]:
        if a["in_channels"] % a["groups"] or a["out_channels"] % a["groups"]:
            raise InvalidArgument("in_channels and out_channels must both be divisible by groups")
        k = _tuple(a["kernel_size"], n)
        if transposed:
            w = [a["in_channels"], a["out_channels"] // a["groups"], *k]
        else:
            w = [a["out_channels"], a["in_channels"] // a["groups"], *k]
        out = {"weight": w}
        if a["bias"]:
            out["bias"] = [a["out_channels"]]
        return out

    return state


def _norm(a: dict[str, Any]) -> dict[str, list[int]]:
    c = a["num_features"]
    out: dict[str, list[int]] = {}
    if a["affine"]:
        out |= {"weight": [c], "bias": [c]}
    if a["track_running_stats"]:
        out |= {"running_mean": [c], "running_var": [c], "num_batches_tracked": []}
    return out


def _layer_norm(a: dict[str, Any]) -> dict[str, list[int]]:
    shape = a["normalized_shape"]
    out: dict[str, list[int]] = {}
    if a["elementwise_affine"]:
        out["weight"] = list(shape)
        if a["bias"]:
            out["bias"] = list(shape)
    return out


def _group_norm(a: dict[str, Any]) -> dict[str, list[int]]:
    if a["num_channels"] % a["num_groups"]:
        raise InvalidArgument("num_channels must be divisible by num_groups")
    c = a["num_channels"]
    return {"weight": [c], "bias": [c]} if a["affine"] else {}


def _embedding(a: dict[str, Any]) -> dict[str, list[int]]:
    if a["padding_idx"] is not None and not -a["num_embeddings"] <= a["padding_idx"] < a["num_embeddings"]:
        raise InvalidArgument("padding_idx must index one of the embeddings")
    return {"weight": [a["num_embeddings"], a["embedding_dim"]]}


def _none(a: dict[str, Any]) -> dict[str, list[int]]:
    return {}


@dataclass(frozen=True)
class ModuleSpec:
    """A module the graph may use: its constructor arguments' checks and its state's shapes."""

    args: dict[str, Callable[[str, Any], Any]]
    state: Callable[[dict[str, Any]], dict[str, list[int]]] = _none

    def check(self, type_name: str, args: Any) -> dict[str, Any]:
        if not isinstance(args, dict) or set(args) != set(self.args):
            got = sorted(args) if isinstance(args, dict) else args
            raise InvalidArgument(f"{type_name} takes the arguments {', '.join(self.args) or 'none'}; got {got!r}")
        return {k: check(f"{type_name}.{k}", args[k]) for k, check in self.args.items()}


def _conv_args(n: int, transposed: bool = False) -> dict[str, Callable[[str, Any], Any]]:
    out = {
        "in_channels": _int(),
        "out_channels": _int(),
        "kernel_size": _ints(n),
        "stride": _ints(n),
        "padding": _ints(n, 0) if transposed else _padding(n),
        "dilation": _ints(n),
        "groups": _int(1, 1 << 16),
        "bias": _bool,
        "padding_mode": _choice("zeros") if transposed else _choice("zeros", "reflect", "replicate", "circular"),
    }
    if transposed:
        out["output_padding"] = _ints(n, 0)
    return out


_NORM = {
    "num_features": _int(),
    "eps": _float(0, 1),
    "momentum": _opt_float(0, 1),
    "affine": _bool,
    "track_running_stats": _bool,
}
_POOL_MAX = {
    "kernel_size": _ints(None),
    "stride": _ints(None),
    "padding": _ints(None, 0),
    "dilation": _ints(None),
    "ceil_mode": _bool,
    "return_indices": _default(False),
}
_POOL_AVG = {
    "kernel_size": _ints(None),
    "stride": _ints(None),
    "padding": _ints(None, 0),
    "ceil_mode": _bool,
    "count_include_pad": _bool,
}
_DIM = _int(-8, 8)

MODULES: dict[str, ModuleSpec] = {
    "Linear": ModuleSpec({"in_features": _int(), "out_features": _int(), "bias": _bool}, _linear),
    "Bilinear": ModuleSpec(
        {"in1_features": _int(), "in2_features": _int(), "out_features": _int(), "bias": _bool},
        lambda a: (
            {"weight": [a["out_features"], a["in1_features"], a["in2_features"]]}
            | ({"bias": [a["out_features"]]} if a["bias"] else {})
        ),
    ),
    "Conv1d": ModuleSpec(_conv_args(1), _conv(1)),
    "Conv2d": ModuleSpec(_conv_args(2), _conv(2)),
    "Conv3d": ModuleSpec(_conv_args(3), _conv(3)),
    "ConvTranspose2d": ModuleSpec(_conv_args(2, True), _conv(2, True)),
    "BatchNorm1d": ModuleSpec(_NORM, _norm),
    "BatchNorm2d": ModuleSpec(_NORM, _norm),
    "BatchNorm3d": ModuleSpec(_NORM, _norm),
    "InstanceNorm1d": ModuleSpec(_NORM, _norm),
    "InstanceNorm2d": ModuleSpec(_NORM, _norm),
    "LayerNorm": ModuleSpec(
        {"normalized_shape": _shape, "eps": _float(0, 1), "elementwise_affine": _bool, "bias": _bool}, _layer_norm
    ),
    "GroupNorm": ModuleSpec(
        {"num_groups": _int(), "num_channels": _int(), "eps": _float(0, 1), "affine": _bool}, _group_norm
    ),
    "Embedding": ModuleSpec(
        {
            "num_embeddings": _int(),
            "embedding_dim": _int(),
            "padding_idx": _opt_int(-MAX_DIM, MAX_DIM),
            "max_norm": _default(None),
            "scale_grad_by_freq": _default(False),
            "sparse": _default(False),
        },
        _embedding,
    ),
    "Dropout": ModuleSpec({"p": _float(0, 1)}),
    "Dropout1d": ModuleSpec({"p": _float(0, 1)}),
    "Dropout2d": ModuleSpec({"p": _float(0, 1)}),
    "AlphaDropout": ModuleSpec({"p": _float(0, 1)}),
    "Identity": ModuleSpec({}),
    "ReLU": ModuleSpec({}),
    "ReLU6": ModuleSpec({}),
    "LeakyReLU": ModuleSpec({"negative_slope": _float()}),
    "ELU": ModuleSpec({"alpha": _float()}),
    "SELU": ModuleSpec({}),
    "CELU": ModuleSpec({"alpha": _float(1e-6, 1e6)}),
    "GELU": ModuleSpec({"approximate": _choice("none", "tanh")}),
    "SiLU": ModuleSpec({}),
    "Mish": ModuleSpec({}),
    "Tanh": ModuleSpec({}),
    "Sigmoid": ModuleSpec({}),
    "Hardtanh": ModuleSpec({"min_val": _float(), "max_val": _float()}),
    "Hardswish": ModuleSpec({}),
    "Softplus": ModuleSpec({"beta": _float(1e-6, 1e6), "threshold": _float()}),
    "Softmax": ModuleSpec({"dim": _opt_int(-8, 8)}),
    "LogSoftmax": ModuleSpec({"dim": _opt_int(-8, 8)}),
    "Flatten": ModuleSpec({"start_dim": _DIM, "end_dim": _DIM}),
    "Unflatten": ModuleSpec({"dim": _DIM, "unflattened_size": _shape}),
    "MaxPool1d": ModuleSpec(_POOL_MAX),
    "MaxPool2d": ModuleSpec(_POOL_MAX),
    "AvgPool1d": ModuleSpec(_POOL_AVG),
    "AvgPool2d": ModuleSpec({**_POOL_AVG, "divisor_override": _opt_int(1, 1 << 16)}),
    "AdaptiveAvgPool1d": ModuleSpec({"output_size": _output_size}),
    "AdaptiveAvgPool2d": ModuleSpec({"output_size": _output_size}),
    "AdaptiveMaxPool2d": ModuleSpec({"output_size": _output_size, "return_indices": _default(False)}),
}


def module_args(module: Any) -> dict[str, Any]:
    """A torch module's constructor arguments, read from its attributes (the client side)."""
    type_name = type(module).__name__
    spec = MODULES.get(type_name)
    if spec is None or type(module).__module__.split(".")[:2] != ["torch", "nn"]:
        raise OpNotAllowed(
            f"module {type(module).__module__}.{type_name} is not allowed in a federated model "
            f"(allowed: {', '.join(sorted(MODULES))})",
            op=f"{type(module).__module__}.{type_name}",
        )
    out: dict[str, Any] = {}
    for name in spec.args:
        if name == "bias":  # a flag to the constructor, a tensor (or None) on the module
            value = getattr(module, "bias", None) is not None
        else:
            value = getattr(module, name)
        if isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


def module_state(type_name: str, args: Any) -> dict[str, list[int]]:
    """A module's checked arguments' state shapes: what its weights must be (no torch needed)."""
    spec = MODULES.get(type_name)
    if spec is None:
        raise OpNotAllowed(
            f"module torch.nn.{type_name} is not allowed in a federated model (allowed: {', '.join(sorted(MODULES))})",
            op=f"torch.nn.{type_name}",
        )
    return spec.state(spec.check(type_name, args))


# ---------------------------------------------------------------- functions and methods

FUNCTIONS = (
    frozenset(f"operator.{n}" for n in "add sub mul truediv floordiv neg pos matmul getitem pow mod".split())
    | frozenset(
        f"torch.{n}"
        for n in (
            "relu sigmoid tanh flatten cat concat stack add sub mul div matmul mm bmm mean sum softmax log_softmax "
            "transpose permute reshape squeeze unsqueeze exp log sqrt rsqrt abs clamp clip maximum minimum max min "
            "where chunk split narrow neg square pow sin cos erf amax amin argmax logsumexp flip roll einsum "
            "layer_norm dropout sign tril triu"
        ).split()
    )
    | frozenset(
        f"torch.nn.functional.{n}"
        for n in (
            "relu relu6 gelu silu elu selu celu leaky_relu mish hardtanh hardswish softplus sigmoid tanh softmax "
            "log_softmax dropout dropout1d dropout2d max_pool1d max_pool2d avg_pool1d avg_pool2d adaptive_avg_pool1d "
            "adaptive_avg_pool2d adaptive_max_pool2d layer_norm group_norm normalize pad linear conv1d conv2d embedding "
            "glu logsigmoid softsign tanhshrink"
        ).split()
    )
    | frozenset({"builtins.getattr"})
)

METHODS = frozenset(
    (
        "view reshape flatten size dim relu sigmoid tanh softmax log_softmax mean sum max min amax amin transpose "
        "permute contiguous unsqueeze squeeze add sub mul div matmul pow exp log sqrt rsqrt abs clamp clip float "
        "t chunk split expand expand_as view_as reshape_as narrow neg square argmax logsumexp type_as flip "
        "unflatten norm masked_fill tril triu sign"
    ).split()
)
GETATTR_NAMES = frozenset({"shape", "ndim", "T", "mT"})  # what ``x.attr`` may read in a graph
# an output argument, a write into an input, or a write-back into a weight: refused unless None or False
REFUSED_KWARGS = frozenset({"out", "inplace", "max_norm"})
# where those sit among a function's positional arguments (from the signatures; tests/test_fl_ops.py
# checks the table against torch): a call passes fewer positional arguments than that
POSITIONAL_LIMIT = {
    "torch.nn.functional.celu": 2,
    "torch.nn.functional.dropout": 3,
    "torch.nn.functional.dropout1d": 3,
    "torch.nn.functional.dropout2d": 3,
    "torch.nn.functional.elu": 2,
    "torch.nn.functional.embedding": 3,
    "torch.nn.functional.hardswish": 1,
    "torch.nn.functional.hardtanh": 3,
    "torch.nn.functional.leaky_relu": 2,
    "torch.nn.functional.mish": 1,
    "torch.nn.functional.normalize": 4,
    "torch.nn.functional.relu": 1,
    "torch.nn.functional.relu6": 1,
    "torch.nn.functional.selu": 1,
    "torch.nn.functional.silu": 1,
}
# what a module or tensor of a graph may not be called: torch.nn.Module's own attributes (a part named
# ``training`` or ``_modules`` would replace them) and the interpreter's
RESERVED_NAMES = frozenset(
    (
        "T_destination _apply _backward_hooks _backward_pre_hooks _buffers _call_impl _compiled_call_impl "
        "_forward_hooks _forward_hooks_always_called _forward_hooks_with_kwargs _forward_pre_hooks "
        "_forward_pre_hooks_with_kwargs _get_backward_hooks _get_backward_pre_hooks _get_name "
        "_is_full_backward_hook _load_from_state_dict _load_state_dict_post_hooks _load_state_dict_pre_hooks "
        "_maybe_warn_non_full_backward_hook _modules _named_members _non_persistent_buffers_set _parameters "
        "_register_load_state_dict_pre_hook _register_state_dict_hook _replicate_for_data_parallel "
        "_save_to_state_dict _sk_input _sk_output _sk_steps _slow_forward _state_dict_hooks "
        "_state_dict_pre_hooks _version _wrapped_call_impl add_module apply bfloat16 buffers call_super_init "
        "children compile cpu cuda double dump_patches eval extra_repr float forward get_buffer "
        "get_extra_state get_parameter get_submodule half ipu load_state_dict modules mtia named_buffers "
        "named_children named_modules named_parameters parameters register_backward_hook register_buffer "
        "register_forward_hook register_forward_pre_hook register_full_backward_hook "
        "register_full_backward_pre_hook register_load_state_dict_post_hook register_load_state_dict_pre_hook "
        "register_module register_parameter register_state_dict_post_hook register_state_dict_pre_hook "
        "requires_grad_ set_extra_state set_submodule share_memory state_dict to to_empty train training type "
        "xpu zero_grad"
    ).split()
)


def resolve_function(name: str) -> Callable[..., Any]:
    """The callable an allowed function name stands for (imports torch)."""
    if name not in FUNCTIONS:
        raise OpNotAllowed(f"{name} is not allowed in a federated model", op=name)
    import builtins
    import operator

    import torch
    import torch.nn.functional

    roots = {"operator": operator, "builtins": builtins, "torch": torch}
    head, *rest = name.split(".")
    obj: Any = roots[head]
    for part in rest:
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def function_names() -> dict[int, str]:
    """id(callable) → its allowed name, for the client's tracer (imports torch)."""
    return {id(resolve_function(n)): n for n in sorted(FUNCTIONS)}


__all__ = [
    "FUNCTIONS",
    "GETATTR_NAMES",
    "METHODS",
    "MODULES",
    "POSITIONAL_LIMIT",
    "REFUSED_KWARGS",
    "RESERVED_NAMES",
    "module_args",
    "module_state",
    "resolve_function",
]
