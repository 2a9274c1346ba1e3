"""A federated job: one torch model trained across data nodes; only its updates leave them.

``Job(model, data={node: pointer}, …)`` traces the model into a graph of allowlisted ops
(``core.fl_graph``: a forbidden op is refused here, by name). ``run_on_mock()`` runs the whole job
locally on each node's mock; ``request(reason=…)`` files one training request per node, which
its owners approve once; ``run()`` sends each round's global weights to the sampled nodes at
once, waits for their updates (a node that fails or times out is dropped from the round, and
the round goes on with the others if ``min_nodes`` answered), checks every update (names,
shapes, finite values) and aggregates them with the strategy. ``model`` is the trained model,
``history`` a DataFrame of every node's every round, and a ``checkpoint`` folder lets
``Job.resume(path)`` continue after the kernel restarts.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import fl_graph, fl_train, schema
from ..core.errors import CompositeError, InvalidArgument, NodeUnavailable, PermissionDenied, SyftError
from .optim import SGD, Optimizer
from .strategies import FedAvg, Strategy, Update, strategy_from

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from ..client import Client
    from ..requests import Request

CHECKPOINT_VERSION = 1
HISTORY_COLUMNS = [
    "round",
    "node",
    "status",
    "examples",
    "train_loss",
    "eval_examples",
    "eval_loss",
    "accuracy",
    "reason",
]


@dataclass
class _Node:
    client: Client
    data: str  # the training asset's id
    evaluate: str | None
    pointer: Any = None  # the data pointer (for its mock), when the job was made with one
    eval_pointer: Any = None
    request: Request | None = None


@dataclass
class _Round:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def row(self, round_: int, node: str) -> dict[str, Any]:
        return self.rows.setdefault(node, {"round": round_, "node": node, "status": "not sampled"})


def _as_nodes(pointers: Any, what: str) -> dict[str, Any]:
    if pointers is None:
        return {}
    if isinstance(pointers, dict):
        items = list(pointers.values())
    elif isinstance(pointers, (list, tuple)):
        items = list(pointers)
    else:
        items = [pointers]
    out: dict[str, Any] = {}
    for p in items:
        client = getattr(p, "client", None)
        if client is None or not isinstance(getattr(p, "id", None), str):
            raise InvalidArgument(f"{what} is a pointer, a list of pointers or {{node: pointer}}, one per node")
        if client.node_label in out:
            raise InvalidArgument(f"{what} has two pointers on {client.node_label}: one per node")
        out[client.node_label] = p
    return out


def check_update(node: str, reference: dict[str, torch.Tensor], body: Any, buffers: list[Any]) -> Update:
    """A node's reply as an ``Update``, or ``InvalidArgument`` saying what is wrong with it: not
    safetensors, other names, shapes or dtypes than the global model's, values that are not
    finite, or no example count.
    """
    import torch

    if not isinstance(body, dict) or not isinstance(body.get("metrics"), dict) or len(buffers) != 1:
        raise InvalidArgument(f"{node}'s update is malformed (no weights or no metrics)")
    try:
        got = fl_graph.from_safetensors(memoryview(buffers[0]))
    except Exception as e:
        raise InvalidArgument(f"{node}'s update is not safetensors ({type(e).__name__})") from None
    if set(got) != set(reference):
        diff = sorted(set(got) ^ set(reference))[:5]
        raise InvalidArgument(f"{node}'s update has other tensors than the model's: {', '.join(diff)}")
    for k, ref in reference.items():
        t = got[k]
        if t.shape != ref.shape or t.dtype != ref.dtype:
            raise InvalidArgument(
                f"{node}'s update has {k} as {tuple(t.shape)} {t.dtype}, not {tuple(ref.shape)} {ref.dtype}"
            )
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise InvalidArgument(f"{node}'s update has values that are not finite (NaN or infinite) in {k}: rejected")
    metrics = body["metrics"]
    examples = metrics.get("examples")
    if (
        not isinstance(examples, (int, float))
        or not math.isfinite(examples)
        or examples < 1
        or examples != int(examples)
    ):
        raise InvalidArgument(f"{node}'s update has no sound example count")
    clean = {str(k): float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    return Update(node, got, int(examples), clean)


class Job:
    """A federated training job over data nodes (see the module's docstring).

    Parameters
    ----------
    model : torch.nn.Module
        Any module ``torch.fx`` can trace, made of allowed ops; it is never sent as code.
    data : dict or Pointer or list
        ``{node: pointer}`` to each node's training table (``net.datasets.pointers(…)``).
    target : str
        The column the model predicts; the features are every other column (or ``features``).
    loss : str
        One of ``cross_entropy``, ``nll``, ``mse``, ``l1``, ``smooth_l1``, ``huber``, ``bce_with_logits``.
    optimizer : Optimizer
        ``sk.fl.SGD(lr=…)``, ``Adam``, ``AdamW``, ``RMSprop`` or ``Adagrad``; a fresh one each round.
    strategy : Strategy
        How updates are aggregated and nodes sampled (``sk.fl.FedAvg()`` by default).
    rounds, local_epochs, batch_size : int
        The training plan the owners approve.
    evaluate : dict or Pointer or list, optional
        Each node's evaluation table: the global model is evaluated there after every round.
    round_timeout : float
        Seconds a round waits for the nodes; one that has not answered is dropped from the round.
    checkpoint : str or Path, optional
        A folder where the job is saved after every round (``Job.resume(path)``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data: Any,
        target: str,
        loss: str = "cross_entropy",
        optimizer: Optimizer | None = None,
        strategy: Strategy | None = None,
        rounds: int = 5,
        local_epochs: int = 1,
        batch_size: int = 32,
        evaluate: Any = None,
        features: list[str] | None = None,
        seed: int = 0,
        round_timeout: float = 600.0,
        checkpoint: str | os.PathLike[str] | None = None,
    ) -> None:
        optimizer = optimizer if optimizer is not None else SGD(lr=0.01)
        if not isinstance(optimizer, Optimizer):
            raise InvalidArgument("optimizer is one of sk.fl.SGD, Adam, AdamW, RMSprop or Adagrad (with its settings)")
        self.strategy = strategy if strategy is not None else FedAvg()
        if not isinstance(self.strategy, Strategy):
            raise InvalidArgument("strategy is one of sk.fl's strategies (FedAvg(), FedProx(mu=…), …)")
        if not isinstance(round_timeout, (int, float)) or not round_timeout > 0:
            raise InvalidArgument("round_timeout is a positive number of seconds")
        self.graph, weights = fl_graph.trace(model)
        self._checked = fl_graph.check_graph(self.graph)
        self.plan = fl_train.check_plan(
            {
                "loss": loss,
                "optimizer": optimizer.spec(),
                "rounds": rounds,
                "local_epochs": local_epochs,
                "batch_size": batch_size,
                "proximal_mu": float(self.strategy.fit_config().get("proximal_mu", 0.0)),
                "seed": seed,
                "target": target,
                "features": list(features) if features is not None else None,
            }
        )
        self._user_model: torch.nn.Module | None = model
        self._global = {k: v.detach().clone() for k, v in weights.items()}
        self.round_timeout = float(round_timeout)
        self.round = 0
        self._rows: list[dict[str, Any]] = []
        train, test = _as_nodes(data, "data"), _as_nodes(evaluate, "evaluate")
        if not train:
            raise InvalidArgument("data names at least one node's pointer")
        if set(test) - set(train):
            raise InvalidArgument(f"evaluate has nodes that train nothing: {', '.join(sorted(set(test) - set(train)))}")
        self._nodes = {
            n: _Node(p.client, p.id, test[n].id if n in test else None, p, test.get(n))
            for n, p in sorted(train.items())
        }
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.mock_model: torch.nn.Module | None = None
        self.stopped = False

    # ---- what the job is
    @property
    def nodes(self) -> list[str]:
        """The nodes this job trains on."""
        return list(self._nodes)

    @property
    def parameters(self) -> int:
        """Trainable numbers in the model."""
        return self._checked.parameters

    def describe(self) -> list[str]:
        """The model graph as the owners read it in their request queue."""
        return self._checked.lines()

    @property
    def requests(self) -> dict[str, Request]:
        """``{node: Request}`` once ``request()`` filed them."""
        return {n: nd.request for n, nd in self._nodes.items() if nd.request is not None}

    @property
    def model(self) -> torch.nn.Module:
        """The global model as trained so far: a copy of your model with the global weights (or,
        after ``resume`` without a model, the graph's own module, which computes the same).
        """
        return self._model_with(self._global)

    def _model_with(self, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        if self._user_model is not None:
            m = copy.deepcopy(self._user_model)
            result = m.load_state_dict(weights, strict=False)
            if result.unexpected_keys:
                raise InvalidArgument(f"the model does not take {result.unexpected_keys[:5]}")
            return m
        gm: torch.nn.Module = fl_graph.build_model(self._checked)
        gm.load_state_dict(weights, strict=True)
        return gm

    @property
    def history(self) -> pd.DataFrame:
        """One row per node per round: status (ok, dropped, failed, rejected, not sampled, or
        discarded when the round had too few updates), examples, train loss, eval loss, accuracy,
        reason.
        """
        import pandas as pd

        return pd.DataFrame(self._rows, columns=HISTORY_COLUMNS)

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per round: train loss weighted by examples; eval loss and accuracy weighted by
        evaluation examples; how many nodes answered.
        """
        return _round_metrics(self.history)

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else f"round {self.round} of {self.plan['rounds']}"
        return (
            f"<sk.fl.Job {type(self.strategy).__name__} on {len(self._nodes)} node(s) ({', '.join(self._nodes)}), "
            f"{self.parameters:,} parameters: {state}>"
        )

    # ---- on the mocks
    def run_on_mock(self) -> pd.DataFrame:
        """Run the whole job here on each node's mock data (free, and nothing leaves any node):
        the same graph, training loop and strategy. Returns the history; ``mock_model`` is the result.
        """
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as the nodes' trainers (fl_threads): on a busy machine many threads crawl
        try:
            return self._on_mocks()
        finally:
            torch.set_num_threads(threads)

    def _on_mocks(self) -> pd.DataFrame:
        import torch

        strategy = strategy_from(type(self.strategy).__name__, self.strategy.params())
        weights = {k: v.clone() for k, v in self._global.items()}
        models, data, tests = {}, {}, {}
        for n, nd in self._nodes.items():
            if nd.pointer is None:
                raise InvalidArgument("run_on_mock needs the pointers the job was made with (not a resumed job)")
            x, y = fl_train.arrays(nd.pointer.mock, self.plan)
            data[n] = (torch.from_numpy(x), torch.from_numpy(y))
            if nd.eval_pointer is not None:
                ex, ey = fl_train.arrays(nd.eval_pointer.mock, self.plan)
                tests[n] = (torch.from_numpy(ex), torch.from_numpy(ey))
            models[n] = fl_graph.build_model(self._checked)
        rows: list[dict[str, Any]] = []
        for r in range(1, self.plan["rounds"] + 1):
            rnd = _Round()
            updates = []
            for n in strategy.sample(list(self._nodes), r):
                models[n].load_state_dict(weights, strict=True)
                try:
                    metrics = fl_train.fit(models[n], *data[n], self.plan, r)
                except Exception as e:  # the scientist's own model on public mocks: the whole message
                    raise InvalidArgument(
                        f"round {r} on {n}'s mock failed: {type(e).__name__}: {str(e)[:500]} (a mock's values are "
                        "synthetic: the owner can declare a column's values, e.g. public={'label': list(range(10))})"
                    ) from e
                state = {k: v.detach().clone() for k, v in models[n].state_dict().items()}
                rnd.row(r, n).update(status="ok", examples=int(metrics["examples"]), train_loss=metrics["train_loss"])
                updates.append(Update(n, state, int(metrics["examples"]), metrics))
            weights = _aggregate(strategy, r, weights, updates)
            for n, (tx, ty) in tests.items():
                models[n].load_state_dict(weights, strict=True)
                m = fl_train.evaluate(models[n], tx, ty, self.plan)
                rnd.row(r, n).update(
                    eval_examples=int(m["eval_examples"]), eval_loss=m["eval_loss"], accuracy=m.get("accuracy")
                )
            rows += rnd.rows.values()
        self.mock_model = self._model_with(weights)
        import pandas as pd

        return pd.DataFrame(rows, columns=HISTORY_COLUMNS)

    # ---- requests
    def request(self, reason: str) -> dict[str, Request]:
        """File the training plan with every node (one request each) for its owners to approve.
        Nodes that already have one keep it.
        """
        from ..requests import make_request

        errors: dict[str, SyftError] = {}
        for n, nd in self._nodes.items():
            if nd.request is not None:
                continue
            body = schema.FlSubmit(
                graph=self.graph,
                plan=self.plan,
                data=nd.data,
                evaluate=nd.evaluate,
                strategy=repr(self.strategy),
                reason=reason,
            )
            try:
                nd.request = make_request(nd.client, nd.client.call(body)[0])
            except SyftError as e:
                errors[n] = e
        self._save()
        if len(errors) == 1:
            raise next(iter(errors.values()))
        if errors:
            raise CompositeError(errors)
        return self.requests

    def wait(self, timeout: float | None = None) -> Job:
        """Wait until every node's owners have decided."""
        for nd in self._nodes.values():
            if nd.request is None:
                raise InvalidArgument("file the requests first: job.request(reason='…')")
            nd.request.wait(timeout)
        return self

    def _ready_nodes(self) -> list[str]:
        ready, waiting = [], []
        for n, nd in self._nodes.items():
            if nd.request is None:
                raise InvalidArgument(
                    "file the training requests first: job.request(reason='…'), then the owners approve"
                )
            if nd.request.status == "pending":
                nd.request.refresh()
            if nd.request.status == "approved":
                ready.append(n)
            elif nd.request.status == "pending":
                waiting.append(n)
            else:
                warnings.warn(
                    f"{n} denied the training request ({nd.request.comment or 'no comment'}); it is left out",
                    stacklevel=3,
                )
        if waiting:
            raise PermissionDenied(
                f"the training request is still waiting for approval on {', '.join(waiting)}: job.wait() until the owners decide",
                request_hint="job.wait()",
            )
        if len(ready) < self.strategy.min_nodes:
            raise PermissionDenied(
                f"only {len(ready)} node(s) approved the training; the strategy needs {self.strategy.min_nodes}"
            )
        return ready

    # ---- running
    def _send_all(self, msgs: dict[str, Any], payload: bytes) -> dict[str, tuple[Any, list[Any]] | SyftError]:
        """One message to each node at once, then every reply (or its error) by the round's deadline."""
        sent: dict[str, int] = {}
        out: dict[str, tuple[Any, list[Any]] | SyftError] = {}
        for n, msg in msgs.items():
            try:
                sent[n] = self._nodes[n].client.send(msg, buffers=[payload])
            except SyftError as e:
                out[n] = e
        deadline = time.monotonic() + self.round_timeout
        for n, msg_id in sent.items():
            try:
                out[n] = self._nodes[n].client.reply(msg_id, timeout=max(0.01, deadline - time.monotonic()))
            except SyftError as e:
                out[n] = e
        return out

    def run(self, rounds: int | None = None, progress: bool = True, plot: bool | None = None) -> Job:
        """Run the approved rounds that are left (or the next ``rounds`` of them): each one trains on
        the sampled nodes, aggregates their updates and evaluates the new global model.
        """
        if self.stopped:
            raise InvalidArgument("this job was stopped: make a new Job (and request it again)")
        ready = self._ready_nodes()
        last = self.plan["rounds"] if rounds is None else min(self.plan["rounds"], self.round + rounds)
        from tqdm.auto import tqdm

        from .live import LivePlot

        bar = tqdm(
            total=self.plan["rounds"], initial=self.round, desc="federated rounds", disable=not progress, leave=True
        )
        live = LivePlot.maybe(plot)
        try:
            while self.round < last:
                self._round(self.round + 1, ready)
                m = self.metrics
                if len(m):
                    row = m.iloc[-1]
                    bar.set_postfix(
                        {k: f"{row[k]:.3f}" for k in ("train_loss", "eval_loss", "accuracy") if row[k] == row[k]}
                    )
                    if live is not None:
                        live.update(m)
                bar.update(1)
        finally:
            bar.close()
            if live is not None:
                live.close()
        return self

    def _rid(self, node: str) -> str:
        request = self._nodes[node].request
        if request is None:
            raise InvalidArgument(f"no training request on {node} yet: job.request(reason='…')")
        return str(request.id)

    def _round(self, r: int, ready: list[str]) -> None:
        sampled = self.strategy.sample(ready, r)
        rnd = _Round()
        payload = fl_graph.to_safetensors(self._global)
        msgs = {n: schema.FlFit(request=self._rid(n), round=r) for n in sampled}
        replies = self._send_all(msgs, payload)
        updates: list[Update] = []
        for n in sampled:
            row = rnd.row(r, n)
            reply = replies[n]
            if isinstance(reply, SyftError):
                row.update(
                    status="dropped" if isinstance(reply, NodeUnavailable) else "failed", reason=reply.message[:500]
                )
                continue
            try:
                u = check_update(n, self._global, *reply)
            except InvalidArgument as e:
                row.update(status="rejected", reason=e.message)
                continue
            updates.append(u)
            row.update(status="ok", examples=u.examples, train_loss=u.metrics.get("train_loss"))
        if len(updates) < self.strategy.min_nodes:
            why = "; ".join(
                f"{n}: {rnd.rows[n]['status']} ({rnd.rows[n].get('reason', '')})"
                for n in sampled
                if rnd.rows[n]["status"] != "ok"
            )
            refused = all(isinstance(replies[n], PermissionDenied) for n in sampled if rnd.rows[n]["status"] != "ok")
            for row in rnd.rows.values():  # the attempt stays in the history; its updates were not used
                if row["status"] == "ok":
                    row.update(status="discarded", reason="the round had too few updates")
            self._rows += rnd.rows.values()
            self._save()
            what = f"round {r}: {len(updates)} of {len(sampled)} node(s) answered, fewer than min_nodes="
            what += f"{self.strategy.min_nodes}; the global model is unchanged"
            if refused:  # stopped, or not approved: trying again changes nothing
                raise PermissionDenied(f"{what}: the nodes refused the round: {why}")
            raise NodeUnavailable(f"{what} (run() again retries the round): {why}")
        new = _aggregate(self.strategy, r, self._global, updates)
        evals = {n: schema.FlEvaluate(request=self._rid(n), round=r) for n in ready if self._nodes[n].evaluate}
        if evals:
            for n, reply in self._send_all(evals, fl_graph.to_safetensors(new)).items():
                row = rnd.row(r, n)
                if isinstance(reply, SyftError):
                    row["reason"] = (row.get("reason", "") + f" evaluation: {reply.message}")[:500].strip()
                    continue
                m = reply[0].get("metrics", {}) if isinstance(reply[0], dict) else {}
                row.update(
                    eval_examples=m.get("eval_examples"), eval_loss=m.get("eval_loss"), accuracy=m.get("accuracy")
                )
        self._global = new
        self.round = r
        self._rows += rnd.rows.values()
        self._save()

    def stop(self, reason: str = "") -> None:
        """Stop the job on every node: no round runs again under these approvals."""
        for nd in self._nodes.values():
            if nd.request is not None and nd.request.status == "approved":
                try:
                    nd.client.call(schema.FlStop(request=nd.request.id, reason=reason))
                except SyftError as e:
                    warnings.warn(f"{nd.client.node_label}: {e.message}", stacklevel=2)
        self.stopped = True
        self._save()

    def status(self) -> dict[str, Any]:
        """Each node's view of the job: its rounds trained and evaluated, and failures."""
        out = {}
        for n, nd in self._nodes.items():
            if nd.request is not None:
                out[n] = nd.client.call(schema.FlStatus(request=nd.request.id))[0]
        return out

    # ---- checkpoints
    def _save(self) -> None:
        if self.checkpoint is None:
            return
        self.checkpoint.mkdir(parents=True, exist_ok=True)
        nodes = {}
        for n, nd in self._nodes.items():
            nodes[n] = {
                "connection": nd.client.connection,
                "key": str(nd.client.key_path) if nd.client.key_path is not None else None,
                "data": nd.data,
                "evaluate": nd.evaluate,
                "request": nd.request.id if nd.request is not None else None,
            }
        state = {
            "version": CHECKPOINT_VERSION,
            "graph": self.graph,
            "plan": self.plan,
            "strategy": {"name": type(self.strategy).__name__, "params": self.strategy.params()},
            "round": self.round,
            "round_timeout": self.round_timeout,
            "stopped": self.stopped,
            "history": self._rows,
            "nodes": nodes,
        }
        _write(self.checkpoint / "model.safetensors", fl_graph.to_safetensors(self._global))
        _write(self.checkpoint / "strategy.safetensors", fl_graph.to_safetensors(self.strategy.state_dict()))
        _write(self.checkpoint / "job.json", json.dumps(state, default=_json_default).encode())

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike[str],
        key: str | os.PathLike[str] | None = None,
        model: torch.nn.Module | None = None,
    ) -> Job:
        """The job saved in ``path`` after its last round, logged in to its nodes again (with
        ``key``, or the key file it was made with); ``run()`` goes on from the next round.
        """
        from ..client import login

        folder = Path(path)
        try:
            state = json.loads((folder / "job.json").read_text())
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"{folder} holds no job checkpoint ({type(e).__name__}: {e})") from None
        if state.get("version") != CHECKPOINT_VERSION:
            raise InvalidArgument(f"{folder}'s checkpoint is of another version")
        job = cls.__new__(cls)
        job.graph = state["graph"]
        job._checked = fl_graph.check_graph(job.graph)
        job.plan = fl_train.check_plan(state["plan"])
        job.strategy = strategy_from(state["strategy"]["name"], state["strategy"]["params"])
        try:
            model_bytes = (folder / "model.safetensors").read_bytes()
            fl_graph.check_weights(job._checked, model_bytes)
            job._global = fl_graph.from_safetensors(model_bytes)
            server = (folder / "strategy.safetensors").read_bytes()
            fl_graph.weights_header(server)
            job.strategy.load_state_dict(fl_graph.from_safetensors(server))
        except (OSError, SyftError, ValueError) as e:
            raise InvalidArgument(f"{folder}'s checkpoint is damaged ({e}); its last good round is lost") from None
        except Exception as e:  # safetensors' own error for bytes its header does not describe
            raise InvalidArgument(f"{folder}'s checkpoint is damaged ({type(e).__name__})") from None
        job._user_model = model
        job.round, job.round_timeout = int(state["round"]), float(state["round_timeout"])
        job._rows, job.stopped = list(state["history"]), bool(state["stopped"])
        job.checkpoint, job.mock_model = folder, None
        job._nodes = {}
        from ..requests import Request

        for n, info in state["nodes"].items():
            key_file = key if key is not None else info["key"]
            if key_file is None:
                raise InvalidArgument(f"the job logged in to {n} with a key object: give Job.resume(path, key='…')")
            client = login(info["connection"], key=key_file)
            nd = _Node(client, info["data"], info["evaluate"])
            if info["request"] is not None:
                nd.request = Request(client, client.call(schema.RequestsGet(id=info["request"]))[0])
            job._nodes[n] = nd
        return job


def _aggregate(
    strategy: Strategy, r: int, current: dict[str, torch.Tensor], updates: list[Update]
) -> dict[str, torch.Tensor]:
    """The strategy on the floating-point entries; counters (BatchNorm's batches seen) take the largest."""
    import torch

    floats = [k for k, v in current.items() if v.is_floating_point()]
    others = [k for k in current if k not in floats]
    agg = strategy.aggregate(
        r,
        {k: current[k] for k in floats},
        [Update(u.node, {k: u.weights[k] for k in floats}, u.examples, u.metrics) for u in updates],
    )
    bad = [k for k, v in agg.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise InvalidArgument(f"the aggregated model has values that are not finite in {', '.join(bad[:5])}")
    out = {k: agg[k] for k in floats}
    for k in others:
        out[k] = torch.stack([u.weights[k] for u in updates]).amax(dim=0)
    return {k: out[k] for k in current}


def _round_metrics(history: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for r, g in history.groupby("round", sort=True):
        ok = g[g.status == "ok"]
        ex = ok.examples.astype(float)
        ev = g.dropna(subset=["eval_examples"])
        evx = ev.eval_examples.astype(float)
        rows.append(
            {
                "round": int(r),
                "nodes": int(len(ok)),
                "examples": int(ex.sum()),
                "train_loss": float((ok.train_loss.astype(float) * ex).sum() / ex.sum()) if ex.sum() else float("nan"),
                "eval_loss": float((ev.eval_loss.astype(float) * evx).sum() / evx.sum()) if evx.sum() else float("nan"),
                "accuracy": float((ev.accuracy.astype(float) * evx).sum() / evx.sum())
                if evx.sum() and ev.accuracy.notna().all()
                else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["round", "nodes", "examples", "train_loss", "eval_loss", "accuracy"])


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON")


__all__ = ["Job", "check_update"]
