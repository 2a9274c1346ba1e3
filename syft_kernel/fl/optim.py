"""The optimizers a federated job may train with, as settings the node checks (``core.fl_train``)."""

from __future__ import annotations

from typing import Any

from ..core.fl_train import check_optimizer, describe_optimizer


class Optimizer:
    """An optimizer's name and settings; the node builds the torch optimizer from them."""

    name = ""

    def __init__(self, **settings: Any) -> None:
        self.settings = check_optimizer({"name": self.name, **settings})

    def spec(self) -> dict[str, Any]:
        """The checked settings as the training plan carries them."""
        return dict(self.settings)

    def __repr__(self) -> str:
        return describe_optimizer(self.settings)


class SGD(Optimizer):
    """``torch.optim.SGD``: ``lr``, ``momentum``, ``dampening``, ``weight_decay``, ``nesterov``."""

    name = "sgd"

    def __init__(self, lr: float = 0.01, **settings: Any) -> None:
        super().__init__(lr=lr, **settings)


class Adam(Optimizer):
    """``torch.optim.Adam``: ``lr``, ``beta1``, ``beta2``, ``eps``, ``weight_decay``, ``amsgrad``."""

    name = "adam"

    def __init__(self, lr: float = 1e-3, **settings: Any) -> None:
        super().__init__(lr=lr, **settings)


class AdamW(Optimizer):
    """``torch.optim.AdamW``: as Adam, with decoupled ``weight_decay`` (0.01 by default)."""

    name = "adamw"

    def __init__(self, lr: float = 1e-3, **settings: Any) -> None:
        super().__init__(lr=lr, **settings)


class RMSprop(Optimizer):
    """``torch.optim.RMSprop``: ``lr``, ``alpha``, ``eps``, ``weight_decay``, ``momentum``, ``centered``."""

    name = "rmsprop"

    def __init__(self, lr: float = 1e-2, **settings: Any) -> None:
        super().__init__(lr=lr, **settings)


class Adagrad(Optimizer):
    """``torch.optim.Adagrad``: ``lr``, ``lr_decay``, ``weight_decay``, ``eps``."""

    name = "adagrad"

    def __init__(self, lr: float = 1e-2, **settings: Any) -> None:
        super().__init__(lr=lr, **settings)


def optimizer_from(spec: dict[str, Any]) -> Optimizer:
    """The optimizer a plan's spec names (a resumed job)."""
    cls = {c.name: c for c in (SGD, Adam, AdamW, RMSprop, Adagrad)}[spec["name"]]
    return cls(**{k: v for k, v in spec.items() if k != "name"})
