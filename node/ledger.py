"""The privacy ledger: budgets per (scientist, dataset) and every charge, in SQLite.

A charge is written (and committed) before its release is computed, in one IMMEDIATE
transaction that also checks the budget, so concurrent queries can never overspend and a node
killed mid-query never loses a charge. Pure-epsilon releases add up in epsilon; Gaussian
releases add up in zCDP rho; the spend is reported as (epsilon, delta) with OpenDP's conversion.
"""

from __future__ import annotations

import json
import math
import time
from functools import lru_cache
from typing import Any

from syft_kernel.core.errors import BudgetExceeded, InvalidArgument

from .db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS budgets (
    user TEXT NOT NULL,
    dataset TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    PRIMARY KEY (user, dataset)
);
CREATE TABLE IF NOT EXISTS default_budgets (
    user TEXT PRIMARY KEY,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dp_charges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    dataset TEXT NOT NULL,
    query TEXT NOT NULL,
    mechanism TEXT NOT NULL,
    epsilon REAL NOT NULL DEFAULT 0,
    rho REAL NOT NULL DEFAULT 0,
    params TEXT NOT NULL DEFAULT '{}',
    at REAL NOT NULL,
    spent_after REAL
);
CREATE TABLE IF NOT EXISTS subject_losses (
    user TEXT NOT NULL,
    dataset TEXT NOT NULL,
    subject TEXT NOT NULL,
    epsilon REAL NOT NULL DEFAULT 0,
    rho REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (user, dataset, subject)
);
"""


@lru_cache(maxsize=4096)
def epsilon_of_rho(rho: float, delta: float) -> float:
    """The tightest epsilon at ``delta`` for rho-zCDP (OpenDP's zCDP → approximate-DP curve)."""
    if rho <= 0:
        return 0.0
    if delta <= 0:
        return math.inf
    import opendp.prelude as dp

    dp.enable_features("contrib")
    gaussian = dp.m.make_gaussian(
        dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale=1.0 / math.sqrt(2.0 * rho)
    )
    return float(dp.c.make_zCDP_to_approxDP(gaussian).map(1.0).epsilon(delta))


def rho_for(epsilon: float, delta: float) -> float:
    """The largest rho whose (epsilon, delta) conversion stays within ``epsilon`` (bisection)."""
    lo, hi = 0.0, max(epsilon, 1.0)
    while epsilon_of_rho(hi, delta) < epsilon:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if epsilon_of_rho(mid, delta) <= epsilon:
            lo = mid
        else:
            hi = mid
    return lo


def spent_epsilon(pure: list[float], rho: float, delta: float) -> float:
    """Epsilon spent at ``delta``: the better of two valid compositions of the charges."""
    total_pure = sum(pure)
    if rho <= 0:
        return total_pure
    split = total_pure + epsilon_of_rho(rho, delta)
    joint = epsilon_of_rho(rho + sum(e * e for e in pure) / 2.0, delta)  # pure eps implies eps^2/2-zCDP
    return min(split, joint)


class Ledger:
    """Budgets and charges on top of the node's database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.conn.executescript(SCHEMA)
        columns = {r["name"] for r in db.conn.execute("PRAGMA table_info(dp_charges)")}
        if "spent_after" not in columns:  # a ledger made before histories recorded the running total
            db.conn.execute("ALTER TABLE dp_charges ADD COLUMN spent_after REAL")
            db.conn.commit()

    def set_budget(self, user: str, dataset: str, epsilon: float, delta: float) -> None:
        with self.db.tx() as c:
            c.execute(
                "INSERT INTO budgets(user, dataset, epsilon, delta) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(user, dataset) DO UPDATE SET epsilon=excluded.epsilon, delta=excluded.delta",
                (user, dataset, epsilon, delta),
            )

    def set_default(self, user: str, epsilon: float, delta: float, datasets: list[str]) -> None:
        """``user``'s budget on every dataset: those given (the node's now) and each one uploaded
        later; a budget the owner set for one dataset is kept. One transaction."""
        with self.db.tx() as c:
            c.execute(
                "INSERT INTO default_budgets(user, epsilon, delta) VALUES (?, ?, ?) ON CONFLICT(user)"
                " DO UPDATE SET epsilon=excluded.epsilon, delta=excluded.delta",
                (user, epsilon, delta),
            )
            c.executemany(
                "INSERT OR IGNORE INTO budgets(user, dataset, epsilon, delta) VALUES (?, ?, ?, ?)",
                [(user, d, epsilon, delta) for d in datasets],
            )

    def apply_defaults(self, dataset: str) -> None:
        """A new dataset: every user with a default budget gets it there."""
        with self.db.tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO budgets(user, dataset, epsilon, delta)"
                " SELECT user, ?, epsilon, delta FROM default_budgets",
                (dataset,),
            )

    def forget_default(self, user: str) -> None:
        with self.db.tx() as c:
            c.execute("DELETE FROM default_budgets WHERE user=?", (user,))

    def raise_budget(self, c: Any, user: str, dataset: str, epsilon: float) -> None:
        c.execute("UPDATE budgets SET epsilon = epsilon + ? WHERE user=? AND dataset=?", (epsilon, user, dataset))

    def status(self, user: str, dataset: str | None = None) -> list[dict[str, Any]]:
        rows = self.db.conn.execute(
            "SELECT * FROM budgets WHERE user=?" + (" AND dataset=?" if dataset else "") + " ORDER BY dataset",
            (user, dataset) if dataset else (user,),
        ).fetchall()
        return [self._status(self.db.conn, dict(r)) for r in rows]

    def _status(self, c: Any, budget: dict[str, Any]) -> dict[str, Any]:
        charges = c.execute(
            "SELECT epsilon, rho FROM dp_charges WHERE user=? AND dataset=?", (budget["user"], budget["dataset"])
        ).fetchall()
        pure = [r["epsilon"] for r in charges if r["epsilon"] > 0]
        rho = float(sum(r["rho"] for r in charges))
        spent = float(spent_epsilon(pure, rho, budget["delta"]))
        left = round(max(0.0, budget["epsilon"] - spent), 12)  # no float dust in what users read
        return {
            "dataset": budget["dataset"],
            "epsilon": budget["epsilon"],
            "delta": budget["delta"],
            "spent": round(spent, 12),
            "left": left,
            "rho": rho,
            "releases": len(charges),
        }

    def subject_losses(self, user: str, dataset: str, mechanism: str, subjects: list[str]) -> Any:
        """Each subject's accumulated loss so far, in the unit of ``mechanism`` (epsilon or rho)."""
        import pandas as pd

        column = "epsilon" if mechanism == "laplace" else "rho"
        rows = self.db.conn.execute(
            f"SELECT subject, {column} AS loss FROM subject_losses WHERE user=? AND dataset=?", (user, dataset)
        )
        spent = pd.Series({r["subject"]: r["loss"] for r in rows}, dtype=float)
        return spent.reindex(subjects, fill_value=0.0) if len(subjects) else spent

    def spent_subjects(self, dataset: str, limit: float) -> int:
        """How many (scientist, subject) pairs have reached the per-subject limit."""
        row = self.db.conn.execute(
            "SELECT COUNT(*) AS n FROM subject_losses WHERE dataset=? AND (epsilon >= ? OR rho >= ?)",
            (dataset, limit - 1e-12, limit - 1e-12),
        ).fetchone()
        return int(row["n"])

    def charge(
        self,
        user: str,
        dataset: str,
        query: str,
        mechanism: str,
        epsilon: float,
        rho: float,
        params: dict[str, Any],
        subject_losses: Any = None,
    ) -> dict[str, Any]:
        """Record a charge if it fits the budget (atomic); return the budget after it.
        Raises ``BudgetExceeded`` (from syft_kernel.core.errors) if it does not fit."""
        with self.db.tx() as c:
            row = c.execute("SELECT * FROM budgets WHERE user=? AND dataset=?", (user, dataset)).fetchone()
            if row is None:
                raise BudgetExceeded(
                    f"you have no privacy budget on {dataset!r}: ask the owner to set one "
                    f"(owner.budget.set({user!r}, {dataset!r}, epsilon=…, delta=…))",
                    left=0.0,
                    dataset=dataset,
                )
            budget = dict(row)
            if rho > 0 and budget["delta"] <= 0:
                raise InvalidArgument(
                    "your budget has delta = 0: Gaussian releases need a delta; use epsilon alone (Laplace)"
                )
            before = self._status(c, budget)
            charges = c.execute(
                "SELECT epsilon FROM dp_charges WHERE user=? AND dataset=? AND epsilon > 0", (user, dataset)
            ).fetchall()
            pure = [r["epsilon"] for r in charges] + ([epsilon] if epsilon > 0 else [])
            after = spent_epsilon(pure, before["rho"] + rho, budget["delta"])
            if after > budget["epsilon"] + 1e-12:
                raise BudgetExceeded(
                    f"this release would spend your privacy budget on {dataset!r} to epsilon {after:.4g} of "
                    f"{budget['epsilon']:.4g} (left: {before['left']:.4g}); ask for more with "
                    f"ds.budget.request({dataset!r}, epsilon=…, reason='…')",
                    left=before["left"],
                    dataset=dataset,
                    needed=round(after - before["spent"], 12),
                )
            c.execute(
                "INSERT INTO dp_charges(user, dataset, query, mechanism, epsilon, rho, params, at, spent_after)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    user,
                    dataset,
                    query,
                    mechanism,
                    epsilon,
                    rho,
                    json.dumps(params, default=str),
                    time.time(),
                    float(after),
                ),
            )
            if subject_losses is not None and len(subject_losses):
                column = "epsilon" if mechanism == "laplace" else "rho"
                c.executemany(
                    f"INSERT INTO subject_losses(user, dataset, subject, {column}) VALUES (?, ?, ?, ?)"
                    f" ON CONFLICT(user, dataset, subject) DO UPDATE SET {column} = {column} + excluded.{column}",
                    [(user, dataset, str(k), float(v)) for k, v in subject_losses.items()],
                )
            return self._status(c, budget)

    def history(self, user: str, dataset: str | None = None) -> list[dict[str, Any]]:
        """Each release, oldest first, with ``spent``: the epsilon spent on its dataset once it was
        made (recorded with the charge; recomputed only for rows older than that column)."""
        rows = self.db.conn.execute(
            "SELECT * FROM dp_charges WHERE user=?" + (" AND dataset=?" if dataset else "") + " ORDER BY id",
            (user, dataset) if dataset else (user,),
        ).fetchall()
        delta: dict[str, float] | None = None
        pure: dict[str, list[float]] = {}
        rho: dict[str, float] = {}
        out = []
        for r in rows:
            d = r["dataset"]
            if r["epsilon"] > 0:
                pure.setdefault(d, []).append(r["epsilon"])
            rho[d] = rho.get(d, 0.0) + r["rho"]
            spent = r["spent_after"]
            if spent is None:
                if delta is None:
                    delta = {
                        b["dataset"]: b["delta"]
                        for b in self.db.conn.execute(
                            "SELECT dataset, delta FROM budgets WHERE user=?", (user,)
                        ).fetchall()
                    }
                spent = spent_epsilon(pure.get(d, []), rho[d], delta.get(d, 0.0))
            row = {k: r[k] for k in r.keys() if k != "spent_after"}
            out.append({**row, "params": json.loads(r["params"]), "spent": round(float(spent), 12)})
        return out
