"""Differential privacy from the client: ``ptr.dp.mean(…)`` and friends, budgets and their history.

Each query runs on the node, is charged to your budget on the dataset first, and comes back at
once: no request, no owner action. ``ds.budget`` shows what is spent and left.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from .core import codec, schema
from .records import Release, Table

HISTORY_COLUMNS = ("at", "dataset", "query", "mechanism", "epsilon", "rho", "spent")

if TYPE_CHECKING:
    from .client import Client
    from .pointer import Pointer
    from .requests import Request


def _params(epsilon: float | None, delta: float | None, rho: float | None, **more: Any) -> dict[str, Any]:
    out = {"epsilon": epsilon, "delta": delta, "rho": rho, **more}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items() if v is not None}


class DPQueries:
    """``ptr.dp``: differentially private releases of a column (or frame, for counts and groups).

    Give ``epsilon`` (Laplace, pure DP), or ``epsilon`` and ``delta``, or ``rho`` (Gaussian, zCDP).
    ``bounds=(lower, upper)`` clamp values and set the noise (or the owner's declared bounds apply).
    """

    def __init__(self, ptr: Pointer) -> None:
        self._ptr = ptr

    def _run_float(self, query: str, params: dict[str, Any]) -> float:
        return float(self._run(query, params))

    def _run(self, query: str, params: dict[str, Any]) -> Any:
        client = self._ptr.client
        body, buffers = client.call(schema.DPQuery(target=self._ptr.id, query=query, params=params))
        client.last_release = body
        return codec.decode_value(body["value"], buffers)

    def count(self, epsilon: float | None = None, *, delta: float | None = None, rho: float | None = None) -> float:
        """A DP count of the rows (or of each group's rows)."""
        return self._run_float("count", _params(epsilon, delta, rho))

    def sum(
        self,
        epsilon: float | None = None,
        bounds: tuple[float, float] | None = None,
        *,
        delta: float | None = None,
        rho: float | None = None,
    ) -> float:
        """A DP sum of the values clamped to ``bounds``."""
        return self._run_float("sum", _params(epsilon, delta, rho, bounds=bounds))

    def mean(
        self,
        epsilon: float | None = None,
        bounds: tuple[float, float] | None = None,
        *,
        delta: float | None = None,
        rho: float | None = None,
    ) -> float:
        """A DP mean of the values clamped to ``bounds`` (a noisy sum over a noisy count)."""
        return self._run_float("mean", _params(epsilon, delta, rho, bounds=bounds))

    def var(
        self,
        epsilon: float | None = None,
        bounds: tuple[float, float] | None = None,
        *,
        delta: float | None = None,
        rho: float | None = None,
    ) -> float:
        """A DP variance of the values clamped to ``bounds``."""
        return self._run_float("var", _params(epsilon, delta, rho, bounds=bounds))

    def quantile(self, q: float, bounds: tuple[float, float] | None = None, epsilon: float | None = None) -> float:
        """A DP ``q``-quantile within ``bounds`` (the exponential mechanism; pure epsilon)."""
        return self._run_float("quantile", _params(epsilon, None, None, q=q, bounds=bounds))

    def histogram(
        self,
        bins: list[float] | None = None,
        categories: list[Any] | None = None,
        epsilon: float | None = None,
        *,
        delta: float | None = None,
        rho: float | None = None,
    ) -> Any:
        """DP counts of the values in each bin (``bins`` are the public edges) or of each of the
        public ``categories`` (default: the ones the owner declared for this column).
        """
        return self._run("histogram", _params(epsilon, delta, rho, bins=bins, categories=categories))

    def groupby(self, by: str, categories: list[Any] | None = None) -> DPGroupBy:
        """Group by a column with public keys (declared categories, or ``categories=[…]``)."""
        return DPGroupBy(self, by, categories)


class DPGroupBy:
    """``ptr.dp.groupby(column)``: DP counts, sums and means per public category."""

    def __init__(self, queries: DPQueries, by: str, categories: list[Any] | None) -> None:
        self._q, self._by, self._categories = queries, by, categories

    def _run(
        self, query: str, column: str | None, epsilon: float | None, bounds: Any, delta: float | None, rho: float | None
    ) -> Any:
        params = _params(epsilon, delta, rho, by=self._by, column=column, bounds=bounds, categories=self._categories)
        return self._q._run(query, params)

    def count(self, epsilon: float | None = None, *, delta: float | None = None, rho: float | None = None) -> Any:
        """A DP count of the rows (or of each group's rows)."""
        return self._run("group_count", None, epsilon, None, delta, rho)

    def sum(
        self,
        column: str,
        bounds: tuple[float, float] | None = None,
        epsilon: float | None = None,
        *,
        delta: float | None = None,
        rho: float | None = None,
    ) -> Any:
        """A DP sum of the values clamped to ``bounds``."""
        return self._run("group_sum", column, epsilon, bounds, delta, rho)

    def mean(
        self,
        column: str,
        bounds: tuple[float, float] | None = None,
        epsilon: float | None = None,
        *,
        delta: float | None = None,
        rho: float | None = None,
    ) -> Any:
        """A DP mean of the values clamped to ``bounds`` (a noisy sum over a noisy count)."""
        return self._run("group_mean", column, epsilon, bounds, delta, rho)


@dataclass(frozen=True)
class Budget:
    """A privacy budget: the ``epsilon`` (and ``delta``) a data scientist may spend on a dataset.

    ``owner.users.add("alice", public_key=…, budget=sk.Budget(epsilon=1.0, delta=1e-6))`` gives
    it on every dataset of the node (now and later); ``owner.budget.set(user, dataset, …)`` on one.
    """

    epsilon: float
    delta: float = 0.0

    def to_wire(self) -> dict[str, float]:
        """The budget as the message field ``users.add`` carries."""
        return {"epsilon": self.epsilon, "delta": self.delta}


class Budgets:
    """``client.budget``: your privacy budgets per dataset, what is spent and left, and the
    history; for owners also ``set`` and ``of`` (a scientist's).
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    def _fetch(self, dataset: str | None = None) -> dict[str, Any]:
        return cast("dict[str, Any]", self._client.call(schema.BudgetsGet(dataset=dataset or None))[0])

    def __getitem__(self, dataset: str) -> dict[str, Any]:
        rows = self._fetch(dataset)["budgets"]
        if not rows:
            from .core.errors import NotFound

            raise NotFound(f"no budget on {dataset!r}")
        return cast("dict[str, Any]", rows[0])

    def left(self, dataset: str) -> float:
        """The epsilon left on ``dataset``."""
        return float(self[dataset]["left"])

    def spent(self, dataset: str) -> float:
        """The epsilon spent on ``dataset``."""
        return float(self[dataset]["spent"])

    @property
    def history(self) -> Table[Release]:
        """Every release charged to you, oldest first, with its cost and the running total: a list
        of rows (``h["epsilon"]``, ``h.spent``) that prints as a table with local times.
        """
        rows = [Release(h) for h in self._fetch()["history"]]
        return Table(
            rows, HISTORY_COLUMNS, f"privacy budget history of {self._client.user} on {self._client.node_label}"
        )

    def request(self, dataset: str, epsilon: float, reason: str) -> Request:
        """Ask the dataset's owners for ``epsilon`` more; approval raises your budget."""
        from .requests import make_request

        info = self._client.call(schema.BudgetsRequest(dataset=dataset, epsilon=epsilon, reason=reason))[0]
        return make_request(self._client, info)

    def _ipython_display_(self) -> None:
        from .display import show
        from .widgets import BudgetView

        show(self, self._client, "budget", lambda: BudgetView(self._client))

    def __repr__(self) -> str:
        return budget_table(self._fetch())

    # ---- owners
    def set(self, user: str, dataset: str, epsilon: float | Budget, delta: float = 0.0) -> dict[str, Any]:
        """Set ``user``'s budget on ``dataset`` (epsilon and delta, or an ``sk.Budget``)."""
        if isinstance(epsilon, Budget):
            given = epsilon
            epsilon, delta = given.epsilon, given.delta
        body = schema.BudgetsSet(user=user, dataset=dataset, epsilon=epsilon, delta=delta)
        return cast("dict[str, Any]", self._client.call(body)[0]["budget"][0])

    def of(self, user: str, dataset: str | None = None) -> dict[str, Any]:
        """A scientist's budgets and releases; with ``dataset``, also how many subjects are spent."""
        return cast("dict[str, Any]", self._client.call(schema.BudgetsGet(user=user, dataset=dataset or None))[0])


def budget_table(data: dict[str, Any]) -> str:
    """A ``budgets.get`` reply as a text table (terminals, and the budget widget's text fallback)."""
    if not data["budgets"]:
        return f"no privacy budgets for {data['user']}"
    lines = [f"{'dataset':<24} {'epsilon':>9} {'spent':>9} {'left':>9} {'delta':>9} releases"]
    for b in data["budgets"]:
        lines.append(
            f"{b['dataset']:<24} {b['epsilon']:>9.4g} {b['spent']:>9.4g} {b['left']:>9.4g} "
            f"{b['delta']:>9.2g} {b['releases']}"
        )
    return "\n".join(lines)


def _when(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
