"""Governance policies a data owner attaches to a dataset at upload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Single:
    """One of the dataset's owners decides (the default)."""

    def to_wire(self) -> dict[str, Any]:
        """The policy as the node stores it."""
        return {"kind": "single"}


@dataclass(frozen=True)
class Consensus:
    """Every owner of the dataset approves; any owner's denial denies."""

    def to_wire(self) -> dict[str, Any]:
        """The policy as the node stores it."""
        return {"kind": "consensus"}


@dataclass(frozen=True)
class Threshold:
    """``k`` of the dataset's owners approve."""

    k: int

    def to_wire(self) -> dict[str, Any]:
        """The policy as the node stores it."""
        return {"kind": "threshold", "k": self.k}


Policy = Single | Consensus | Threshold
