"""Requests from the client side: file them (``ptr.request``), follow them (``req.wait``),
and, as an owner, review and decide them (``owner.requests``, ``req.approve``, ``req.deny``).
"""

from __future__ import annotations

import builtins
import datetime as _dt
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .core import schema
from .core.errors import InvalidArgument, NodeUnavailable, PermissionDenied, SyftError

if TYPE_CHECKING:
    from .client import Client
    from .pointer import Pointer

DECIDED = ("approved", "denied")


class Request:
    """One request as its viewer sees it. ``refresh()`` reloads it from the node."""

    call_timeout: float | None = None  # how long approve/deny wait for the node (None: the client's)

    def __init__(self, client: Client, info: dict[str, Any]) -> None:
        self._client = client
        self.info = info

    # ---- fields
    id = property(lambda self: str(self.info["id"]))
    status = property(lambda self: str(self.info["status"]), doc="pending, approved or denied")
    comment = property(lambda self: str(self.info.get("comment") or ""), doc="the deciding owner's comment")
    requester = property(lambda self: str(self.info["requester"]))
    reason = property(lambda self: str(self.info["reason"]))
    kind = property(lambda self: str(self.info["kind"]), doc="object, code, plan, budget, account or training")
    epsilon = property(
        lambda self: (self.info.get("inputs") or {}).get("epsilon"), doc="for a budget request: the epsilon asked for"
    )
    target = property(lambda self: str(self.info["target"]))
    plan = property(lambda self: list(self.info.get("plan") or []), doc="the ops that produced the object")
    source = property(lambda self: self.info.get("source"), doc="a code request's source")
    size = property(lambda self: self.info.get("size"), doc="bytes of the result, when known")
    approvals = property(lambda self: list(self.info.get("approvals") or []), doc="who decided what, signed")
    progress = property(lambda self: list(self.info.get("progress") or []), doc="governance progress per dataset")

    @property
    def created_at(self) -> _dt.datetime:
        """When the request was filed."""
        return _dt.datetime.fromtimestamp(self.info["created_at"])

    def refresh(self) -> Request:
        """Read the request's current state from the node."""
        self.info = self._client.call(schema.RequestsGet(id=self.id))[0]
        return self

    def wait(self, timeout: float | None = None) -> Request:
        """Return once the request is decided (woken by the node, not by polling). Raises
        ``PermissionDenied`` with the owner's comment if it was denied.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self.refresh()
        while self.status not in DECIDED:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            event = self._client.wait_event(lambda e: e.get("request") == self.id, left)
            if event is None:
                raise NodeUnavailable(f"request {self.id} is still {self.status} after {timeout}s")
            if isinstance(event.get("info"), dict) and event["info"].get("id") == self.id:
                self.info = event["info"]  # the event carries the decided request: no extra round trip
            else:
                self.refresh()
        self._client.discard_events(self.id)
        if self.status == "denied":
            raise PermissionDenied(
                f"request {self.id} was denied: {self.comment or 'no comment given'}", comment=self.comment
            )
        return self

    # ---- owner actions
    def _decide(self, decision: str, comment: str, **extra: Any) -> Request:
        from syft_kernel.core.keys import decision_message

        nonce = secrets.token_hex(16)
        message = decision_message(self._client.node_name, self.id, self.info["content_hash"], decision, nonce)
        body = schema.RequestsDecide(
            id=self.id,
            decision=decision,
            comment=comment,
            nonce=nonce,
            signature=self._client.key.sign(message),
            **extra,
        )
        self.info = self._client.call(body, timeout=self.call_timeout)[0]
        return self

    def approve(
        self,
        comment: str = "",
        *,
        timeout: float | None = None,
        memory_mb: float | None = None,
        output_mb: float | None = None,
    ) -> Request:
        """Approve (signed with your key). For code requests, ``timeout`` (s), ``memory_mb`` and
        ``output_mb`` (the result and any file the code writes in its sandbox) bound the run.
        """
        given = {"timeout": timeout, "memory_mb": memory_mb, "output_mb": output_mb}
        limits = {k: v for k, v in given.items() if v is not None}
        return self._decide("approve", comment, **({"limits": limits} if limits else {}))

    def deny(self, reason: str = "") -> Request:
        """Deny, saying why: the requester sees the reason."""
        return self._decide("deny", reason)

    def stop(self, reason: str = "") -> Request:
        """Stop an approved training (an owner of its data, or its scientist): its trainer is ended
        and no round runs again under this approval.
        """
        if self.kind != "training":
            raise InvalidArgument(f"request {self.id} is a {self.kind} request: only a training is stopped")
        self._client.call(schema.FlStop(request=self.id, reason=reason))
        return self.refresh()

    @property
    def account(self) -> dict[str, Any] | None:
        """For an account request (a scientist asked through the node's network): the user
        ``name`` asked for, the ``role`` approval gives, the ``public_key`` and ``signing_key``;
        None for other kinds.
        """
        return account_of(self.info)

    def __repr__(self) -> str:
        lines = [f"<Request {self.id} · {self.kind} · {self.status} · by {self.requester}: {self.reason!r}>"]
        if self.kind == "account":
            lines.append(f"    {account_text(self, network_name(self._client))}")
        elif self.plan:
            lines += [f"    {line}" for line in self.plan]
        if self.source:
            lines += [f"    {line}" for line in str(self.source).splitlines()]
        if self.kind == "budget":
            lines.append(f"    epsilon +{self.epsilon:g} on {self.target}")
        for p in self.progress:
            lines.append(f"  {p['dataset']}: {p['approvals']} of {p['needed']} approvals ({p['policy']['kind']})")
        if self.comment:
            lines.append(f"  comment: {self.comment}")
        return "\n".join(lines)


class RequestsAPI:
    """``client.requests``: the owner's queue (all requests) or a scientist's own requests."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self, status: str | None = None, requester: str | None = None, kind: str | None = None) -> list[Request]:
        """Requests by status (pending, approved, denied), requester and kind."""
        rows = self._client.call(schema.RequestsList(status=status, requester=requester, kind=kind))[0]["requests"]
        return [make_request(self._client, r) for r in rows]

    def filter(
        self, status: str | None = None, requester: str | None = None, kind: str | None = None
    ) -> builtins.list[Request]:
        """The same as ``list``."""
        return self.list(status, requester, kind)

    @property
    def pending(self) -> builtins.list[Request]:
        """The requests still waiting for a decision."""
        return self.list(status="pending")

    def __getitem__(self, request_id: str) -> Request:
        return make_request(self._client, self._client.call(schema.RequestsGet(id=request_id))[0])

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.list())

    def __len__(self) -> int:
        return len(self.list())

    def _ipython_display_(self) -> None:
        from .display import show
        from .widgets import RequestQueue

        show(self, self._client, "requests", lambda: RequestQueue(self._client))

    def __repr__(self) -> str:
        rows = self.list()
        return requests_table(rows, network_name(self._client) if any(r.kind == "account" for r in rows) else None)


def requests_table(rows: builtins.list[Request], network: str | None = None) -> str:
    """Requests as a text table (terminals, plain IPython, and the widget's text fallback); an
    account request says for whom and which key (asked through the network ``network``).
    """
    if not rows:
        return "no requests"
    lines = [f"{'id':<18} {'status':<9} {'kind':<7} {'requester':<12} {'size':>10}  reason"]
    for r in rows:
        size = "" if r.size is None else f"{r.size:,}"
        reason = r.reason[:50]
        if r.kind == "account":
            reason += f" — {account_text(r, network)}"
        lines.append(f"{r.id:<18} {r.status:<9} {r.kind:<7} {r.requester:<12} {size:>10}  {reason}")
    return "\n".join(lines)


def account_of(info: Mapping[str, Any]) -> dict[str, Any] | None:
    """What an account request (a request's info, as the node sends it) asks for; None for
    other kinds (``Request.account``).
    """
    if info.get("kind") != "account":
        return None
    inputs = info.get("inputs") or {}
    return {
        "name": str(inputs.get("name", info.get("target", ""))),
        "role": "data_scientist",  # what the node registers an approved account as
        "public_key": str(inputs.get("public_key", "")),
        "signing_key": inputs.get("signing_key"),
        "gateway": inputs.get("gateway"),
    }


def account_text(r: Request | Mapping[str, Any], network: str | None = None) -> str:
    """An account request (a ``Request`` or its info) in words: "account for alice
    (data_scientist), key 1a2B3c4D…, asked through the network grid" (``network``: the name of
    the node's gateway, when known).
    """
    acct = account_of(r.info if isinstance(r, Request) else r) or {}
    network = acct.get("gateway") or network  # the one it came through, recorded by the node
    via = f"the network {network}" if network else "the network"
    who, role, key = acct.get("name", "?"), acct.get("role", "data_scientist"), str(acct.get("public_key", ""))[:8]
    return f"account for {who} ({role}), key {key}…, asked through {via}"


def network_name(client: Client, timeout: float = 3.0) -> str | None:
    """The name of the network (gateway) ``client``'s node is on, or None (not on one, or the
    node did not say in ``timeout`` seconds).
    """
    try:
        status = client.call(schema.NetworkStatus(), timeout=timeout)[0]
    except SyftError:
        return None
    return str(status["gateway"]) if status.get("joined") and status.get("gateway") else None


def make_request(client: Client, info: dict[str, Any]) -> Request:
    """A ``Job`` for code requests, a ``Request`` otherwise."""
    if info.get("kind") == "code":
        from .code import Job

        return Job(client, info)
    return Request(client, info)


def request_object(ptr: Pointer, reason: str) -> Request:
    """File a request for the release of ``ptr``'s value, saying why."""
    info = ptr.client.call(schema.RequestsCreate(id=ptr.id, reason=reason))[0]
    return Request(ptr.client, info)
