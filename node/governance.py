"""Governance policies: who must approve a release of data derived from a dataset.

``single`` (default): one of the dataset's owners decides. ``consensus``: every owner approves;
any denial denies. ``threshold`` k: k owners approve; denied once k approvals can no longer be
reached. A request touching several datasets needs every dataset's policy met.
"""

from __future__ import annotations

from typing import Any

from syft_kernel.core.errors import InvalidArgument

KINDS = ("single", "consensus", "threshold")


def check_policy(policy: Any, owners: list[str]) -> dict[str, Any]:
    """Validate a policy dict against the dataset's owners."""
    if not isinstance(policy, dict) or policy.get("kind") not in KINDS:
        raise InvalidArgument(f"a policy is one of {', '.join(KINDS)} (sk.Consensus(), sk.Threshold(k))")
    if policy["kind"] == "threshold":
        k = policy.get("k")
        if not isinstance(k, int) or not 1 <= k <= len(owners):
            raise InvalidArgument(f"Threshold(k) needs 1 <= k <= {len(owners)} (the number of owners)")
    return {"kind": policy["kind"], **({"k": policy["k"]} if policy["kind"] == "threshold" else {})}


def needed(policy: dict[str, Any], owners: list[str]) -> int:
    if policy["kind"] == "consensus":
        return len(owners)
    if policy["kind"] == "threshold":
        return int(policy["k"])
    return 1


def evaluate(datasets: list[dict[str, Any]], votes: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """The request's state from the owners' votes: (pending | approved | denied, progress per dataset)."""
    states, progress = [], []
    for d in datasets:
        owners, policy = d["owners"], d["policy"]
        yes = sum(1 for o in owners if votes.get(o) == "approve")
        no = sum(1 for o in owners if votes.get(o) == "deny")
        need = needed(policy, owners)
        if yes >= need:
            state = "approved"
        elif len(owners) - no < need:
            state = "denied"
        else:
            state = "pending"
        states.append(state)
        progress.append(
            {
                "dataset": d["name"],
                "policy": policy,
                "owners": owners,
                "approvals": yes,
                "denials": no,
                "needed": need,
                "state": state,
            }
        )
    if "denied" in states:
        return "denied", progress
    if states and all(s == "approved" for s in states):
        return "approved", progress
    return ("pending" if states else "approved"), progress


def may_decide(datasets: list[dict[str, Any]], owner: str) -> bool:
    return any(owner in d["owners"] for d in datasets)
