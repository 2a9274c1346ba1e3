"""What every aggregation strategy shares: updates, node sampling, parameters, server state.

A strategy runs on the scientist's client. Each round it picks the nodes that train
(``sample``), tells them what local training needs (``fit_config``) and turns their updates
into the next global model (``aggregate``). Its server state (momentum, moments) goes into a
checkpoint through ``state_dict`` so a job resumes exactly.
"""

from __future__ import annotations

import abc
import inspect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

from ...core.errors import InvalidArgument

Weights = dict[str, torch.Tensor]
"""A model's floating-point state entries by name (e.g. ``model.state_dict()``)."""


@dataclass(frozen=True)
class Update:
    """One node's result of a round of local training.

    Parameters
    ----------
    node : str
        The node that trained.
    weights : Weights
        Its model state after local training: full weights, not a delta.
    examples : int
        Training examples it used this round (> 0); FedAvg weighs the update by it.
    metrics : dict[str, float]
        What local training reported (loss, accuracy, ...).
    """

    node: str
    weights: Weights
    examples: int
    metrics: dict[str, float]

    def __post_init__(self) -> None:
        if isinstance(self.examples, bool) or not isinstance(self.examples, int) or self.examples <= 0:
            raise InvalidArgument(f"update from {self.node!r}: examples must be an int > 0, got {self.examples!r}")


class Strategy(abc.ABC):
    """Base: how nodes are sampled each round and how their updates become the next global model.

    Parameters
    ----------
    fraction : float
        Share of the nodes that train each round, in (0, 1].
    min_nodes : int
        Fewest nodes a round may run with (>= 1).
    seed : int or None
        Seed of the sampling; None draws one (kept in ``params()``, so a checkpoint reproduces it).
    """

    _slots: tuple[str, ...] = ()  # names of the per-entry server state, e.g. ("m", "v")

    def __init__(self, *, fraction: float = 1.0, min_nodes: int = 1, seed: int | None = None) -> None:
        self.fraction = number(self, "fraction", fraction, "(0, 1]")
        if isinstance(min_nodes, bool) or not isinstance(min_nodes, int) or min_nodes < 1:
            raise InvalidArgument(f"{type(self).__name__}: min_nodes must be an int >= 1, got {min_nodes!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidArgument(f"{type(self).__name__}: seed must be an int or None, got {seed!r}")
        self.min_nodes = min_nodes
        # Below 2**53 so that the seed stays exact in any JSON reader (JavaScript too).
        self.seed = random.SystemRandom().randrange(2**53) if seed is None else seed
        self._state: dict[str, Weights] = {}

    def sample(self, nodes: Sequence[str], round: int) -> list[str]:
        """The nodes that train in ``round``, in the order given; the same for the same seed and round.

        Takes ``max(min_nodes, ceil(fraction * len(nodes)))`` of them.
        """
        if len(nodes) < self.min_nodes:
            raise InvalidArgument(
                f"{type(self).__name__} needs at least {self.min_nodes} nodes (min_nodes) but {len(nodes)} were given"
            )
        # The fraction as written (0.1, not the float just above it): ceil(0.1 * 30) is 3, not 4.
        count = max(self.min_nodes, math.ceil(Fraction(str(self.fraction)) * len(nodes)))
        chosen = set(random.Random(f"{self.seed}:{round}").sample(range(len(nodes)), count))
        return [node for i, node in enumerate(nodes) if i in chosen]

    @abc.abstractmethod
    def aggregate(self, round: int, global_weights: Weights, updates: Sequence[Update]) -> Weights:
        """The next global model from this round's updates.

        Returns new tensors with the keys, shapes and dtypes of ``global_weights``; never
        changes its inputs.
        """

    def fit_config(self) -> dict[str, float]:
        """What local training on the node needs from the strategy (none by default)."""
        return {}

    def state_dict(self) -> Weights:
        """The server state (momentum, moments) as tensors keyed ``"<slot>.<entry>"``, for checkpoints."""
        return {f"{slot}.{name}": t.clone() for slot, entries in self._state.items() for name, t in entries.items()}

    def load_state_dict(self, state: Weights) -> None:
        """Restore what ``state_dict`` returned, so the next ``aggregate`` continues where it left off."""
        slots: dict[str, Weights] = {}
        for key, tensor in state.items():
            slot, dot, name = key.partition(".")
            if slot not in self._slots or not dot or not name:
                allowed = ", ".join(f"'{s}.<entry>'" for s in self._slots) or "none (this strategy keeps no state)"
                raise InvalidArgument(f"{type(self).__name__}: unknown state key {key!r}; allowed: {allowed}")
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                raise InvalidArgument(f"{type(self).__name__}: state {key!r} must be a floating-point tensor")
            slots.setdefault(slot, {})[name] = tensor.detach().to(torch.float64).clone()
        if slots and (set(slots) != set(self._slots) or len({frozenset(e) for e in slots.values()}) != 1):
            raise InvalidArgument(f"{type(self).__name__}: the state needs the same entries in each of {self._slots}")
        self._state = slots

    def params(self) -> dict[str, Any]:
        """The constructor's arguments as JSON-able values; ``from_params`` rebuilds the strategy from them."""
        return {"fraction": self.fraction, "min_nodes": self.min_nodes, "seed": self.seed}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Strategy:
        """The strategy that ``params()`` described."""
        allowed = list(inspect.signature(cls).parameters)
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise InvalidArgument(f"{cls.__name__} takes {', '.join(allowed)}; unknown: {', '.join(unknown)}")
        return cls(**params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"

    def _moments(self, global_weights: Weights) -> dict[str, Weights]:
        """The server state per slot in float64: as stored, or zeros before the first round."""
        if not self._state:
            return {
                s: {k: torch.zeros_like(t, dtype=torch.float64) for k, t in global_weights.items()} for s in self._slots
            }
        for entries in self._state.values():
            if set(entries) != set(global_weights) or any(
                t.shape != global_weights[k].shape for k, t in entries.items()
            ):
                raise InvalidArgument(
                    f"{type(self).__name__}: its state is for another model (entries or shapes differ)"
                )
        return self._state


def number(strategy: Strategy, name: str, value: float, allowed: str) -> float:
    """``value`` as a float if it lies in the interval ``allowed`` (such as ``"[0, 1)"``), else InvalidArgument."""
    low, high = (float(end) for end in allowed[1:-1].split(","))
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (low <= value if allowed[0] == "[" else low < value)
        and (value <= high if allowed[-1] == "]" else value < high)
    )
    if not ok:
        raise InvalidArgument(f"{type(strategy).__name__}: {name} must be a number in {allowed}, got {value!r}")
    return float(value)


def check_updates(global_weights: Weights, updates: Sequence[Update]) -> None:
    """Refuse updates that cannot be aggregated into ``global_weights``: none, other entries, other shapes."""
    if not updates:
        raise InvalidArgument("aggregate needs at least one update")
    for name, tensor in global_weights.items():
        if not tensor.is_floating_point():
            raise InvalidArgument(
                f"global entry {name!r} is {tensor.dtype}: strategies average floating-point entries only "
                "(leave integer buffers such as num_batches_tracked out of the weights)"
            )
    for update in updates:
        if set(update.weights) != set(global_weights):
            missing, extra = set(global_weights) - set(update.weights), set(update.weights) - set(global_weights)
            raise InvalidArgument(
                f"update from {update.node!r} has other entries than the global model: "
                f"missing {sorted(missing)}, extra {sorted(extra)}"
            )
        for name, tensor in update.weights.items():
            if not tensor.is_floating_point() or tensor.shape != global_weights[name].shape:
                raise InvalidArgument(
                    f"update from {update.node!r}: entry {name!r} is {tensor.dtype} {tuple(tensor.shape)}, "
                    f"the global model's is {global_weights[name].dtype} {tuple(global_weights[name].shape)}"
                )


def f64(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float64, outside any autograd graph."""
    return tensor.detach().to(torch.float64)


def stacked(updates: Sequence[Update], name: str) -> torch.Tensor:
    """Entry ``name`` of every update stacked along a new first dimension, in float64."""
    return torch.stack([f64(u.weights[name]) for u in updates])


def weighted_average(updates: Sequence[Update], names: Sequence[str]) -> Weights:
    """Mean of the updates' entries weighted by their examples, in float64 (McMahan et al. 2017, FedAvg)."""
    share = torch.tensor([u.examples for u in updates], dtype=torch.float64)
    share = share / share.sum()
    return {name: torch.tensordot(share, stacked(updates, name), dims=1) for name in names}


def cast_like(values: Weights, like: Weights) -> Weights:
    """``values`` cast to the dtype of the same entry in ``like``."""
    return {name: values[name].to(like[name].dtype) for name in like}
