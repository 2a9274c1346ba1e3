"""A training plan and the local training it describes: one loop for the node's trainer and for
``Job.run_on_mock`` on the client, so a job debugged on mocks trains the same way on the data.

A plan names its loss and optimizer from short lists, with checked settings, and says how many
rounds, local epochs and examples a batch it runs; the owner approves exactly that.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgument

if TYPE_CHECKING:
    import numpy as np
    import torch

CLASSIFICATION = ("cross_entropy", "nll")
LOSSES = ("cross_entropy", "nll", "mse", "l1", "smooth_l1", "huber", "bce_with_logits")
MAX_ROUNDS, MAX_EPOCHS, MAX_BATCH = 10_000, 1_000, 1 << 16
EVAL_BATCH = 1024


def _num(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Any:
    def check(name: str, v: Any) -> float:
        ok = type(v) in (int, float) and math.isfinite(v)
        ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            brackets = ("(" if lo_open else "[", ")" if hi_open else "]")
            raise InvalidArgument(f"{name} is a number in {brackets[0]}{lo:g}, {hi:g}{brackets[1]}, not {v!r}")
        return float(v)

    return check


def _flag(name: str, v: Any) -> bool:
    if type(v) is not bool:
        raise InvalidArgument(f"{name} is true or false, not {v!r}")
    return v


_LR = _num(0, 10, lo_open=True)
_DECAY = _num(0, 1)
_BETA = _num(0, 1, hi_open=True)
_EPS = _num(0, 1, lo_open=True)
OPTIMIZERS: dict[str, dict[str, tuple[Any, Any]]] = {
    "sgd": {
        "lr": (_LR, 0.01),
        "momentum": (_BETA, 0.0),
        "dampening": (_BETA, 0.0),
        "weight_decay": (_DECAY, 0.0),
        "nesterov": (_flag, False),
    },
    "adam": {
        "lr": (_LR, 1e-3),
        "beta1": (_BETA, 0.9),
        "beta2": (_BETA, 0.999),
        "eps": (_EPS, 1e-8),
        "weight_decay": (_DECAY, 0.0),
        "amsgrad": (_flag, False),
    },
    "adamw": {
        "lr": (_LR, 1e-3),
        "beta1": (_BETA, 0.9),
        "beta2": (_BETA, 0.999),
        "eps": (_EPS, 1e-8),
        "weight_decay": (_DECAY, 0.01),
        "amsgrad": (_flag, False),
    },
    "rmsprop": {
        "lr": (_LR, 1e-2),
        "alpha": (_BETA, 0.99),
        "eps": (_EPS, 1e-8),
        "weight_decay": (_DECAY, 0.0),
        "momentum": (_BETA, 0.0),
        "centered": (_flag, False),
    },
    "adagrad": {
        "lr": (_LR, 1e-2),
        "lr_decay": (_DECAY, 0.0),
        "weight_decay": (_DECAY, 0.0),
        "eps": (_EPS, 1e-10),
    },
}


def check_optimizer(spec: Any) -> dict[str, Any]:
    """An optimizer spec ``{"name": "sgd", "lr": 0.05, …}``, every setting filled in and checked."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or spec["name"] not in OPTIMIZERS:
        raise InvalidArgument(
            f"the optimizer is one of {', '.join(OPTIMIZERS)} (sk.fl.SGD(lr=…), sk.fl.Adam(…), …), not {spec!r}"[:300]
        )
    name = spec["name"]
    table = OPTIMIZERS[name]
    extra = set(spec) - set(table) - {"name"}
    if extra:
        raise InvalidArgument(f"{name} takes {', '.join(table)}; not {', '.join(sorted(map(str, extra)))}"[:300])
    out: dict[str, Any] = {"name": name}
    for k, (check, default) in table.items():
        out[k] = check(f"{name}.{k}", spec.get(k, default))
    return out


def _count(name: str, v: Any, hi: int) -> int:
    if type(v) is not int or not 1 <= v <= hi:
        raise InvalidArgument(f"{name} is an integer from 1 to {hi}, not {v!r}")
    return v


def check_plan(plan: Any) -> dict[str, Any]:
    """A training plan's settings (the graph is checked by ``fl_graph.check_graph``)."""
    keys = {"loss", "optimizer", "rounds", "local_epochs", "batch_size", "proximal_mu", "seed", "target", "features"}
    if not isinstance(plan, dict) or set(plan) != keys:
        raise InvalidArgument(f"a training plan has the keys {', '.join(sorted(keys))}")
    if plan["loss"] not in LOSSES:
        raise InvalidArgument(f"the loss is one of {', '.join(LOSSES)}, not {str(plan['loss'])[:100]!r}")
    features = plan["features"]
    if features is not None and (
        not isinstance(features, list)
        or not features
        or len(features) > 1 << 16
        or not all(isinstance(f, str) for f in features)
    ):
        raise InvalidArgument("features is a list of column names, or None for every column but the target")
    if not isinstance(plan["target"], str) or not 0 < len(plan["target"]) <= 1000:
        raise InvalidArgument("target names the column the model predicts")
    if features is not None and plan["target"] in features:
        raise InvalidArgument(f"the target {plan['target']!r} is also a feature")
    seed = plan["seed"]
    if type(seed) is not int or not 0 <= seed < 1 << 62:
        raise InvalidArgument("seed is a non-negative integer")
    return {
        "loss": plan["loss"],
        "optimizer": check_optimizer(plan["optimizer"]),
        "rounds": _count("rounds", plan["rounds"], MAX_ROUNDS),
        "local_epochs": _count("local_epochs", plan["local_epochs"], MAX_EPOCHS),
        "batch_size": _count("batch_size", plan["batch_size"], MAX_BATCH),
        "proximal_mu": _num(0, 1e6)("proximal_mu", plan["proximal_mu"]),
        "seed": seed,
        "target": plan["target"],
        "features": features,
    }


def describe_optimizer(spec: dict[str, Any]) -> str:
    """``SGD(lr=0.05, momentum=0.0, …)``, for the request and the job's repr."""
    names = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad"}
    return f"{names[spec['name']]}(" + ", ".join(f"{k}={v!r}" for k, v in spec.items() if k != "name") + ")"


# ---------------------------------------------------------------- data


def feature_columns(columns: list[str], plan: dict[str, Any]) -> list[str]:
    """The columns the model reads: the plan's features, or every column but the target."""
    if plan["target"] not in columns:
        raise InvalidArgument(f"the data has no column {plan['target']!r} to predict")
    feats = plan["features"] if plan["features"] is not None else [c for c in columns if c != plan["target"]]
    known = set(columns)
    missing = [f for f in feats if f not in known]
    if len(set(feats)) != len(feats):
        raise InvalidArgument("features names a column twice")
    if missing:
        raise InvalidArgument(f"the data has no column(s) {', '.join(map(repr, missing[:5]))}")
    if not feats:
        raise InvalidArgument("the data has no column to learn from besides the target")
    return list(feats)


def arrays(frame: Any, plan: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Features as float32 and the target (int64 for classification, float32 otherwise)."""
    import numpy as np

    feats = feature_columns([str(c) for c in frame.columns], plan)
    x = np.array(frame[feats].to_numpy(dtype=np.float32), order="C", copy=True)
    target = frame[plan["target"]]
    y = np.array(target.to_numpy(dtype=np.int64 if plan["loss"] in CLASSIFICATION else np.float32), copy=True)
    return x, y


# ---------------------------------------------------------------- training


def round_seed(seed: int, round_: int) -> int:
    """The seed of one round's shuffling and dropout: the same wherever the round runs."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{round_}".encode()).digest()[:7], "little")


def _loss_fn(name: str) -> Any:
    import torch.nn.functional as F

    return {
        "cross_entropy": F.cross_entropy,
        "nll": F.nll_loss,
        "mse": F.mse_loss,
        "l1": F.l1_loss,
        "smooth_l1": F.smooth_l1_loss,
        "huber": F.huber_loss,
        "bce_with_logits": F.binary_cross_entropy_with_logits,
    }[name]


def make_optimizer(params: Any, spec: dict[str, Any]) -> torch.optim.Optimizer:
    """The torch optimizer a checked spec names."""
    import torch

    s = {k: v for k, v in spec.items() if k != "name"}
    if "beta1" in s:
        s["betas"] = (s.pop("beta1"), s.pop("beta2"))
    cls = {
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "rmsprop": torch.optim.RMSprop,
        "adagrad": torch.optim.Adagrad,
    }[spec["name"]]
    return cls(params, **s)  # type: ignore[no-any-return]


def _shaped(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if y.dim() == 1 and out.dim() == 2 and out.shape[1] == 1 and y.is_floating_point():
        return y.unsqueeze(1)
    return y


def fit(model: Any, x: torch.Tensor, y: torch.Tensor, plan: dict[str, Any], round_: int) -> dict[str, float]:
    """Train ``model`` in place for the plan's local epochs; returns the round's metrics."""
    import torch

    seed = round_seed(plan["seed"], round_)
    torch.manual_seed(seed)  # dropout
    gen = torch.Generator().manual_seed(seed)  # shuffling
    loss_fn = _loss_fn(plan["loss"])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, plan["optimizer"])
    mu = plan["proximal_mu"]
    anchor = [p.detach().clone() for p in params] if mu > 0 else []
    n, bs = int(x.shape[0]), plan["batch_size"]
    if n == 0:
        raise InvalidArgument("the training data has no rows")
    model.train()
    total, seen = 0.0, 0
    for _ in range(plan["local_epochs"]):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = loss_fn(out, _shaped(out, yb))
            objective = loss
            if mu > 0:  # FedProx: stay near the round's global model (Li et al. 2020)
                objective = loss + (mu / 2) * sum(((p - a) ** 2).sum() for p, a in zip(params, anchor))
            objective.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
    return {"train_loss": total / seen, "examples": float(n)}


def evaluate(model: Any, x: torch.Tensor, y: torch.Tensor, plan: dict[str, Any]) -> dict[str, float]:
    """Loss (and accuracy, for a classifier) of ``model`` on ``x, y``."""
    import torch

    loss_fn = _loss_fn(plan["loss"])
    model.eval()
    n = int(x.shape[0])
    if n == 0:
        raise InvalidArgument("the evaluation data has no rows")
    total, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, n, EVAL_BATCH):
            xb, yb = x[i : i + EVAL_BATCH], y[i : i + EVAL_BATCH]
            out = model(xb)
            total += float(loss_fn(out, _shaped(out, yb), reduction="sum"))
            if plan["loss"] in CLASSIFICATION:
                correct += int((out.argmax(dim=1) == yb).sum())
            elif plan["loss"] == "bce_with_logits":
                correct += int(((out.reshape(yb.shape) > 0).to(yb.dtype) == yb).sum())
    out_metrics = {"eval_loss": total / n, "eval_examples": float(n)}
    if plan["loss"] in (*CLASSIFICATION, "bce_with_logits"):
        out_metrics["accuracy"] = correct / n
    return out_metrics


__all__ = ["LOSSES", "OPTIMIZERS", "arrays", "check_optimizer", "check_plan", "evaluate", "fit", "make_optimizer"]
