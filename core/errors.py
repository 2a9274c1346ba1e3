"""One exception hierarchy for client and node, rooted in ``SyftError``.

Errors cross the wire as ``{"error": class name, "message": text, "data": {...}}`` and are
rebuilt on the client as the same class, so a refusal on the node reads the same in Jupyter.
"""

from __future__ import annotations

from typing import Any


class SyftError(Exception):
    """Root of every syft-kernel error."""

    def __init__(self, message: str = "", **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def to_wire(self) -> dict[str, Any]:
        """The error as a msgpack-able dict for an error reply."""
        return {"error": type(self).__name__, "message": self.message, "data": self.data}

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a long client-side traceback.
        return [f"\x1b[31m{type(self).__name__}\x1b[0m: {self.message}"]


class ProtocolError(SyftError):
    """A message could not be read: malformed, truncated, oversized or of an unknown type."""


class AuthenticationError(SyftError):
    """The node refused this key, or the key file could not be used."""


class Unauthorized(SyftError):
    """The user is known but their role may not do this (e.g. a scientist calling owner actions)."""


class PermissionDenied(SyftError):
    """A private value was asked for without approval. ``request_hint`` says how to ask."""

    @property
    def request_hint(self) -> str:
        """How to ask for the value (e.g. ``ptr.request(reason='…')``)."""
        return str(self.data.get("request_hint", ""))


class OpNotAllowed(SyftError):
    """An operation is not on the allowlist. ``op`` names it."""

    @property
    def op(self) -> str:
        """The operation that was refused, by name."""
        return str(self.data.get("op", ""))


class BudgetExceeded(SyftError):
    """A DP release would overspend the privacy budget. ``left`` is what remains."""

    @property
    def left(self) -> float:
        """The budget (epsilon) still left on the dataset."""
        return float(self.data.get("left", 0.0))

    @property
    def needed(self) -> float:
        """The epsilon this release would have spent."""
        return float(self.data.get("needed", 0.0))

    @property
    def dataset(self) -> str:
        """The dataset whose budget the release would overspend."""
        return str(self.data.get("dataset", ""))


class NotFound(SyftError, KeyError):
    """A dataset, asset, object or user does not exist (or is not yours to see). A ``KeyError``
    too, so ``name in client.datasets`` and ``dict``-style code work.
    """

    def __str__(self) -> str:
        return self.message


class InvalidArgument(SyftError):
    """An argument was refused before anything ran (bad name, bad schema, bad value)."""


class RemoteError(SyftError):
    """An allowlisted operation failed while running on the node (e.g. a pandas KeyError)."""


class NodeUnavailable(SyftError):
    """The node did not answer in time."""


class QuotaExceeded(SyftError):
    """A per-user limit of the node was reached (messages waiting, objects, bytes, requests, time,
    memory, result size). ``limit`` names it; the node keeps serving.
    """

    @property
    def limit(self) -> str:
        """Which limit was reached (bytes, objects, requests, time, memory, …)."""
        return str(self.data.get("limit", ""))


class CompositeError(SyftError):
    """Work sent to several nodes at once failed on more than one of them. ``errors`` maps each
    node's name to its own error (the way ipyparallel's ``CompositeError`` reports engines).
    """

    def __init__(self, errors: dict[str, SyftError]) -> None:
        self.errors = dict(errors)
        lines = [f"{len(self.errors)} nodes failed:"]
        lines += [f"  {node}: {type(e).__name__}: {e.message}" for node, e in self.errors.items()]
        super().__init__("\n".join(lines), nodes=sorted(self.errors))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errors,))


_ALL = {
    cls.__name__: cls
    for cls in (
        SyftError,
        ProtocolError,
        AuthenticationError,
        Unauthorized,
        PermissionDenied,
        BudgetExceeded,
        OpNotAllowed,
        NotFound,
        InvalidArgument,
        RemoteError,
        NodeUnavailable,
        QuotaExceeded,
    )
}


def from_wire(body: dict[str, Any]) -> SyftError:
    """Rebuild an error reply as the matching exception (``SyftError`` if the name is unknown)."""
    cls = _ALL.get(str(body.get("error", "")), SyftError)
    data = body.get("data") or {}
    if not isinstance(data, dict):
        data = {}
    return cls(str(body.get("message", "")), **data)
