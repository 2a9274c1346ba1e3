"""The FL allowlist's torch-free tables agree with torch itself (they are judged on the node
without importing it): each module's weights' shapes, where output arguments sit, reserved names."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn as nn

from syft_kernel.core import fl_graph, fl_ops

EXAMPLES = [
    nn.Linear(5, 3),
    nn.Linear(5, 3, bias=False),
    nn.Bilinear(2, 3, 4),
    nn.Conv1d(2, 4, 3, stride=2, padding=1),
    nn.Conv2d(2, 4, (3, 5), groups=2, padding="same", padding_mode="reflect"),
    nn.Conv3d(1, 2, 2, bias=False),
    nn.ConvTranspose2d(2, 4, 3, stride=2, output_padding=1),
    nn.BatchNorm1d(7),
    nn.BatchNorm2d(3, affine=False),
    nn.BatchNorm3d(3, track_running_stats=False),
    nn.InstanceNorm1d(3, track_running_stats=True),
    nn.InstanceNorm2d(3, affine=True),
    nn.LayerNorm([4, 5]),
    nn.LayerNorm(6, elementwise_affine=False),
    nn.GroupNorm(2, 6),
    nn.Embedding(10, 4, padding_idx=0),
    nn.Dropout(0.3),
    nn.LeakyReLU(0.2),
    nn.GELU("tanh"),
    nn.Flatten(1, -1),
    nn.Unflatten(1, (2, 3)),
    nn.MaxPool2d(2, 2),
    nn.AvgPool2d(3, 1, 1),
    nn.AdaptiveAvgPool2d((2, 2)),
    nn.Softmax(dim=1),
]


@pytest.mark.parametrize("module", EXAMPLES, ids=lambda m: repr(m)[:40])
def test_the_shapes_a_module_s_arguments_give_are_torch_s(module: nn.Module) -> None:
    args = fl_ops.module_args(module)
    want = {k: list(v.shape) for k, v in module.state_dict().items()}
    assert fl_ops.module_state(type(module).__name__, args) == want
    rebuilt = getattr(nn, type(module).__name__)(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
    assert {k: list(v.shape) for k, v in rebuilt.state_dict().items()} == want


def test_every_allowed_module_has_an_example() -> None:
    covered = {type(m).__name__ for m in EXAMPLES}
    stateful = {n for n, spec in fl_ops.MODULES.items() if spec.state is not fl_ops._none}
    assert stateful <= covered


def test_output_arguments_sit_where_the_table_says() -> None:
    """A positional argument at or past the limit would be ``out``/``inplace``/``max_norm``."""
    for name in sorted(fl_ops.FUNCTIONS):
        fn = fl_ops.resolve_function(name)
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):  # a C builtin: its out= is keyword-only
            continue
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        first = next((i for i, p in enumerate(positional) if p.name in fl_ops.REFUSED_KWARGS), None)
        assert fl_ops.POSITIONAL_LIMIT.get(name) == first, name


def test_reserved_names_cover_torch_modules_own() -> None:
    own = {n for n in set(dir(nn.Module)) | set(vars(nn.Module())) if not n.startswith("__")}
    assert own <= fl_ops.RESERVED_NAMES
    model = fl_graph.build_model(fl_graph.check_graph(fl_graph.trace(nn.Linear(2, 2))[0]))
    assert {n for n in vars(model) if n.startswith("_sk_")} <= fl_ops.RESERVED_NAMES


def test_a_torch_builtin_is_named_as_written() -> None:
    names = fl_ops.function_names()
    assert fl_graph._function_name(torch.cumsum, names) == "torch.cumsum"
    assert fl_graph._function_name(torch.relu, names) == "torch.relu"
