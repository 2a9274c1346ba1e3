"""Differentially private queries, answered at once within the scientist's budget."""

from __future__ import annotations

import numpy as np
import pandas as pd

from syft_kernel.core import codec
from syft_kernel.core import schema as s
from syft_kernel.core.codec import short_repr
from syft_kernel.core.errors import InvalidArgument, RemoteError
from syft_kernel.core.public import categories_of

from ..dp import (
    _COERCE,
    QUERIES,
    _aggregate,
    _check_params,
    _check_stable,
    _declared_keys,
    _finish,
    _individual_losses,
    _quantile,
    _subject_rows,
    check_scales,
    mechanism_of,
    opendp_error,
    release,
)
from ..state import DataNode, User
from . import Buffers, Reply


def query(node: DataNode, user: User, body: s.DPQuery, buffers: Buffers) -> Reply:
    """A DP release within the user's budget: charged first, then noised by OpenDP and returned."""
    query, params = body.query, body.params
    if query not in QUERIES:
        raise InvalidArgument(f"unknown DP query {short_repr(query)}: one of {', '.join(QUERIES)}")
    _check_params(params)
    value = node.store.get(body.target, user.name, user.is_owner)
    datasets = sorted({entry.split("/", 1)[0] for entry in value.lineage})
    if len(datasets) != 1:
        raise InvalidArgument("a DP query runs on data of exactly one dataset (its budget pays for it)")
    _check_stable(node, value)
    dataset = node.db.dataset(datasets[0])
    assert dataset is not None
    mechanism, epsilon, rho = mechanism_of(params)
    if query == "quantile" and mechanism != "laplace":
        raise InvalidArgument("a DP quantile uses the exponential mechanism (pure epsilon): give epsilon alone")
    declared = dataset.get("bounds") or {}
    if query.startswith("group_") and params.get("categories") is None:
        params = {**params, "categories": _declared_keys(node, value, params.get("by"), dataset.get("public"))}
    if query == "histogram" and params.get("categories") is None and params.get("bins") is None:
        column = getattr(value.twin, "name", None)  # the twin's name: public
        keys = categories_of(dataset.get("public") or {}, column) if isinstance(column, str) else None
        if keys is not None:  # the owner declared this column's categories: they are the keys
            params = {**params, "categories": keys}
    _aggregate(query, value.twin, params, declared, 1)  # every refusal decided on the twin: public
    data, c, ids = _subject_rows(node, value, value.value, dataset)
    _COERCE.on = True
    try:
        exact, sens, parts, extra = _aggregate(query, data, params, declared, c)
    finally:
        _COERCE.on = False
    limit = float(dataset.get("subject_limit") or 0.0)
    losses = None
    if ids is not None and limit > 0:
        # individual privacy filter: a subject whose own loss would pass the limit stops contributing
        losses = _individual_losses(query, data, params, declared, sens, parts, mechanism, epsilon, rho, ids)
        spent = node.ledger.subject_losses(user.name, dataset["name"], mechanism, losses.index.tolist())
        allowed = losses.index[(spent.reindex(losses.index, fill_value=0.0) + losses) <= limit + 1e-12]
        keep = pd.Index(ids).isin(allowed)  # hashed: np.isin on strings is quadratic
        if not keep.all():
            data, ids = data[keep], ids[keep]
            _COERCE.on = True
            try:
                exact, sens, parts, extra = _aggregate(query, data, params, declared, c)
            finally:
                _COERCE.on = False
        losses = losses.reindex(allowed)
    check_scales(query, [] if query == "quantile" else sens, parts, mechanism, epsilon, rho)  # public inputs only
    # charge first, release after: a crash in between loses no charge
    status = node.ledger.charge(
        user.name,
        dataset["name"],
        query,
        mechanism,
        epsilon,
        rho,
        {k: v for k, v in params.items() if k != "categories"},
        subject_losses=losses,
    )
    changed = {"event": "budget.changed", "dataset": dataset["name"], "user": user.name}
    node.notify(user.name, changed)  # charged: open budget views update even if the release fails
    node.notify_owners(changed)
    try:
        if query == "quantile":
            result = _quantile(exact[0], extra, c, epsilon)
        else:
            noisy = [release(np.asarray(x), s, mechanism, epsilon / parts, rho / parts) for x, s in zip(exact, sens)]
            result = _finish(query, noisy, extra, params)
    except (ArithmeticError, ValueError, opendp_error()) as e:  # charged, not released: said plainly
        node.db.audit(user.name, "dp.failed", dataset["name"], query=query, error=f"{type(e).__name__}: {e}")
        # the same words whatever failed: which library error it was could depend on the data
        raise RemoteError(
            f"the {query} was charged but could not be released; narrow the bounds or spend more epsilon "
            "(the owner's audit log has the details)",
            op=f"dp.{query}",
            exception="ReleaseFailed",
        ) from None
    cost = {"epsilon": epsilon} if mechanism == "laplace" else {"rho": rho}
    node.db.audit(
        user.name,
        "dp.release",
        dataset["name"],
        query=query,
        mechanism=mechanism,
        **cost,
        params={k: v for k, v in params.items() if k in ("bounds", "q", "column", "by")},
    )
    tree, bufs = codec.encode_value(result)
    return {"value": tree, "budget": status, "mechanism": mechanism, **cost}, bufs
