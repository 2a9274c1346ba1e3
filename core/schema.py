"""The message schema: one typed body per message type, built by the client, checked by the node.

Each body is a frozen dataclass. ``to_wire()`` gives the msgpack map the client sends;
``decode(msg_type, raw)`` is what the node's dispatch runs once, before any handler: it checks
every field's type (numbers never take booleans, a ``float`` takes integers), string and list
lengths, list items and names, and returns the typed body, or raises the error that says what
was expected. Handlers then check only what depends on the node's state.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:  # for type checkers only: bodies are dataclasses (PEP 681)
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_: Any) -> Any:
        return lambda fn: fn


from .codec import short_repr
from .errors import InvalidArgument, ProtocolError
from .names import check_name

B = TypeVar("B", bound="Body")

_KIND_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a map",
    bytes: "bytes",
    type(None): "null",
}
MISSING = dataclasses.MISSING


def kind_name(value: Any) -> str:
    return _KIND_NAMES.get(type(value), type(value).__name__)


def spec(
    default: Any = MISSING,
    *,
    max_len: int | None = None,
    what: str | None = None,
    invalid: str | None = None,
    name: str | None = None,
) -> Any:
    """A body field: its ``default`` (absent or null means that), the longest string or list
    (``max_len``), how to describe what is expected (``what``), an ``InvalidArgument`` message for
    a value of the wrong type (``invalid``; else a ``ProtocolError``), or ``name="user"`` (and
    dataset, asset) for a checked name."""
    meta = {"max_len": max_len, "what": what, "invalid": invalid, "name": name}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class _Field:
    key: str
    kinds: tuple[type, ...]  # accepted Python types of the value (NoneType: only through the default)
    items: tuple[type, ...] | None  # of a list's items or a map's values
    nested: type[Body] | None  # a list of bodies
    required: bool
    default: Any
    factory: Any  # makes a fresh default (lists and maps) for each message
    max_len: int | None
    what: str | None
    invalid: str | None
    name: str | None


def _flatten(tp: Any) -> tuple[type, ...]:
    if tp is Any:
        return ()
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        out: tuple[type, ...] = ()
        for arg in typing.get_args(tp):
            out += _flatten(arg)
        return out
    return (origin or tp,)


def _items(tp: Any) -> tuple[tuple[type, ...] | None, type[Body] | None]:
    """What a list's items (or a map's values) must be, or the body type of a list of bodies."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next((a for a in typing.get_args(tp) if a is not type(None)), Any)
    args = typing.get_args(tp)
    if not args:
        return None, None
    last = args[-1]
    if isinstance(last, type) and issubclass(last, Body):
        return None, last
    return (_flatten(last) or None), None


class Body:
    """A message body. Subclasses are frozen dataclasses with a ``TYPE`` (the message type)."""

    TYPE: ClassVar[str] = ""
    _fields: ClassVar[list[_Field]]

    def to_wire(self) -> dict[str, Any]:
        """The body as the msgpack map that travels (nested bodies too; nulls left out)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, list) and value and isinstance(value[0], Body):
                value = [v.to_wire() for v in value]
            out[f.name] = value
        return out

    @classmethod
    def fields_of(cls) -> list[_Field]:
        cached = cls.__dict__.get("_fields")
        if cached is None:
            hints = typing.get_type_hints(cls)
            cached = []
            for f in dataclasses.fields(cls):  # type: ignore[arg-type]
                tp = hints[f.name]
                items, nested = _items(tp)
                has_default = f.default is not MISSING or f.default_factory is not MISSING
                default = f.default if f.default is not MISSING else None
                factory = f.default_factory if f.default_factory is not MISSING else None
                m = f.metadata
                cached.append(
                    _Field(
                        f.name,
                        _flatten(tp),
                        items,
                        nested,
                        not has_default,
                        default,
                        factory,
                        m.get("max_len"),
                        m.get("what"),
                        m.get("invalid"),
                        m.get("name"),
                    )
                )
            cls._fields = cached
        return cached

    @classmethod
    def from_wire(cls: type[B], raw: Any) -> B:
        """Check a received body field by field and build it (see the module's docstring)."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ProtocolError("message body must be a map")
        missing = [f.key for f in cls.fields_of() if f.required and raw.get(f.key) is None and f.key not in raw]
        if missing:
            raise ProtocolError(f"message body lacks {', '.join(missing)}")
        values = {f.key: _check(f, raw) for f in cls.fields_of()}
        return cls(**values)


def _fits(value: Any, kinds: tuple[type, ...]) -> bool:
    return not kinds or type(value) in kinds or (float in kinds and type(value) is int)


def _expected(kinds: tuple[type, ...]) -> str:
    return " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds if k is not type(None))


def _check(f: _Field, raw: dict[str, Any]) -> Any:
    value = raw.get(f.key)
    if value is None and not f.required:
        return f.factory() if f.factory is not None else f.default
    if f.name is not None:
        return check_name(value, f.name)
    expected = f.what or _expected(f.kinds)
    if value is None:
        if f.invalid:
            raise InvalidArgument(f.invalid)
        raise ProtocolError(f"{f.key} is {expected}, not null" if f.key in raw else f"message body lacks {f.key}")
    if not _fits(value, f.kinds):
        if f.invalid:
            raise InvalidArgument(f.invalid)
        raise ProtocolError(f"{f.key} must be {expected}, not {kind_name(value)} {short_repr(value)}")
    if f.max_len is not None and isinstance(value, (str, list)) and len(value) > f.max_len:
        raise InvalidArgument(
            f"{f.key} is at most {f.max_len} {'characters' if isinstance(value, str) else 'items'} long"
        )
    if float in f.kinds and type(value) is int:
        value = float(value)  # a number is a float for the handler, whatever msgpack carried
    if f.nested is not None and isinstance(value, list):
        return [f.nested.from_wire(x) for x in value]
    if f.items is not None:
        parts = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else []
        keys_ok = not isinstance(value, dict) or all(type(k) is str for k in value)
        bad = next((x for x in parts if not _fits(x, f.items)), _OK) if keys_ok else None
        if bad is not _OK:
            if f.invalid:
                raise InvalidArgument(f.invalid)
            what = f.what or ("a list of " if isinstance(value, list) else "a map of strings to ") + _expected(f.items)
            raise ProtocolError(f"{f.key} must be {what}; it holds {kind_name(bad)} {short_repr(bad)}")
    return value


_OK = object()

MESSAGES: dict[str, type[Body]] = {}  # what a data node answers
GATEWAY_MESSAGES: dict[str, type[Body]] = {}  # what a gateway answers (``gateway.*``)


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, spec))
def message(msg_type: str) -> Callable[[type[B]], type[B]]:
    """Class decorator: a frozen dataclass body for ``msg_type``, entered in ``MESSAGES`` (or in
    ``GATEWAY_MESSAGES`` for a ``gateway.*`` type)."""

    def deco(cls: type[B]) -> type[B]:
        cls = dataclass(frozen=True)(cls)
        cls.TYPE = msg_type
        (GATEWAY_MESSAGES if msg_type.startswith("gateway.") else MESSAGES)[msg_type] = cls
        return cls

    return deco


def decode(msg_type: str, raw: Any, registry: dict[str, type[Body]] | None = None) -> Body:
    """The typed body of a received message (``ProtocolError`` for an unknown type)."""
    known = MESSAGES if registry is None else registry
    cls = known.get(msg_type)
    if cls is None:
        what = "gateway" if known is GATEWAY_MESSAGES else "node"
        raise ProtocolError(f"unknown message type {msg_type!r}; this {what} knows {', '.join(sorted(known))}")
    return cls.from_wire(raw)


# ---------------------------------------------------------------- the bodies, by concept

REASON = "say why you need {}: {}(…, reason='…')"


# node
@message("hello")
class Hello(Body):
    pass


@message("node.stats")
class NodeStats(Body):
    pass


# users
@message("users.add")
class UsersAdd(Body):
    name: str = spec(name="user")
    role: str = spec()
    public_key: str = spec(max_len=1000)
    signing_key: str | None = spec(
        default=None, invalid="a signing key is 64 hex characters (the signing_key in NAME.pub)"
    )
    budget: dict[str, float] | None = spec(default=None, invalid="a budget is sk.Budget(epsilon=…, delta=…)")


@message("users.remove")
class UsersRemove(Body):
    name: str = spec(name="user")


@message("users.list")
class UsersList(Body):
    pass


# datasets
@dataclass(frozen=True)
class AssetUpload(Body):
    name: str = spec(name="asset")
    value: Any = spec()
    mock: Any = spec(default=None)


@message("datasets.upload")
class DatasetsUpload(Body):
    name: str = spec(name="dataset")
    assets: list[AssetUpload] = spec(invalid="a dataset has at least one asset")
    description: str = spec(default="", invalid="the description is a string of at most 10,000 characters")
    tags: list[str] = spec(default=[], invalid="tags are a list of short strings")
    subject_column: str | None = spec(default=None, max_len=1000)
    owners: list[str] | None = spec(default=None, invalid="owners are users with the owner role on this node")
    policy: dict[str, Any] | None = spec(default=None)
    bounds: dict[str, list[Any]] = spec(
        default={}, invalid="bounds map column names to public (lower, upper) pairs, lower < upper"
    )
    subject_limit: float = spec(
        default=0.0, invalid="subject_limit is a non-negative privacy loss per data subject (0: no limit)"
    )
    max_rows_per_subject: int = spec(default=1, invalid="max_rows_per_subject is a whole number from 1 to 10000")
    public: dict[str, dict[str, Any]] = spec(
        default={},
        invalid="public maps column names to declarations ({'range': [lo, hi]}, {'dates': [first, last]}, "
        "{'categories': [...]} or {'format': 'ID-{:06d}'})",
    )


@message("datasets.delete")
class DatasetsDelete(Body):
    name: str = spec(name="dataset")


@message("datasets.list")
class DatasetsList(Body):
    query: str = spec(default="", max_len=1000)
    tags: list[str] = spec(default=[], max_len=100, what="a list of tags (strings)")
    offset: int = spec(default=0, invalid="offset and limit are non-negative integers (a page of the results)")
    limit: int | None = spec(default=None, invalid="offset and limit are non-negative integers (a page of the results)")


@message("datasets.get")
class DatasetsGet(Body):
    name: str = spec(name="dataset")


@message("datasets.mock")
class DatasetsMock(Body):
    dataset: str = spec(name="dataset")
    asset: str = spec(name="asset")


@message("asset.pointer")
class AssetPointer(Body):
    dataset: str = spec(name="dataset")
    asset: str = spec(name="asset")


# objects and plans
@message("run")
class Run(Body):
    ops: list[Any] = spec(what="a non-empty list of ops (a plan)")
    keep: list[int] | None = spec(default=None, what="a list of indices of the plan's ops")
    inputs: list[str] = spec(default=[], what="a list of object ids")
    plan: str | None = spec(default=None, max_len=128, what="the plan's hash (a string)")


@message("get")
class Get(Body):
    id: Any = spec()  # looked up as its string form: an id that is no string is simply not found


@message("objects.describe")
class ObjectsDescribe(Body):
    id: str = spec(max_len=1000, what="an object id (a string)")


@message("del")
class Del(Body):
    ids: list[str] = spec(what="a list of object ids")


# budgets and DP
@message("budgets.set")
class BudgetsSet(Body):
    user: str = spec(name="user")
    dataset: str = spec(name="dataset")
    epsilon: float = spec()
    delta: float = spec(default=0.0)


@message("budgets.get")
class BudgetsGet(Body):
    user: str | None = spec(default=None, max_len=1000)
    dataset: str | None = spec(default=None, max_len=1000)
    history: bool = spec(default=True)


@message("budgets.request")
class BudgetsRequest(Body):
    dataset: str = spec(max_len=1000)
    epsilon: float = spec()
    reason: str = spec(invalid=REASON.format("more budget", "request"))


@message("dp.query")
class DPQuery(Body):
    target: str = spec(max_len=1000, what="an object id (a string)")
    query: str = spec(max_len=100)
    params: dict[str, Any] = spec(invalid="params are a map")


# audit
@message("audit.list")
class AuditList(Body):
    limit: int = spec(default=1000, invalid="limit is an integer between 1 and 100000")
    user: str | None = spec(default=None, max_len=1000)
    action: str | None = spec(default=None, max_len=1000)
    target: str | None = spec(default=None, max_len=1000)
    since: float | None = spec(default=None)


# requests
@message("requests.create")
class RequestsCreate(Body):
    id: str = spec(max_len=1000, what="an object id (a string)")
    reason: str = spec(invalid="say why you need the value: request(reason='…'), up to 5000 characters")


@message("code.submit")
class CodeSubmit(Body):
    source: str = spec(invalid="the source is a string of at most 100000 characters")
    fn_name: str = spec(max_len=1000, invalid="fn_name names the function of the source to run")
    inputs: dict[str, str] = spec(what="a map of argument names to object ids")
    reason: str = spec(invalid=REASON.format("this code run", "submit"))


@message("requests.list")
class RequestsList(Body):
    status: str | None = spec(default=None, invalid="status is pending, approved or denied")
    requester: str | None = spec(default=None, max_len=1000)
    kind: str | None = spec(default=None, max_len=100)


@message("requests.get")
class RequestsGet(Body):
    id: str = spec(max_len=1000, what="a request id (a string)")


@message("requests.decide")
class RequestsDecide(Body):
    id: str = spec(max_len=1000, what="a request id (a string)")
    decision: str = spec(invalid="decision is approve or deny")
    nonce: str = spec(max_len=1000)
    signature: str = spec(max_len=1000)
    comment: str = spec(default="", invalid="the comment is a string of at most 5000 characters")
    limits: dict[str, Any] | None = spec(default=None)


@message("plans.request")
class PlansRequest(Body):
    ops: list[Any] = spec(what="a non-empty list of ops (a plan)")
    outputs: list[int] = spec(what="indices of the plan's ops")
    inputs: list[str] = spec(what="a list of object ids")
    reason: str = spec(invalid=REASON.format("this plan", "plan.request"))


# federated learning: a training plan is approved once, then its rounds run (``node/handlers/fl.py``)
@message("fl.submit")
class FlSubmit(Body):
    graph: dict[str, Any] = spec(invalid="graph is a model graph (made by sk.fl.Job from a torch model)")
    plan: dict[str, Any] = spec(invalid="plan is a training plan (made by sk.fl.Job)")
    data: str = spec(max_len=1000, invalid="data is an asset pointer's id")
    reason: str = spec(invalid=REASON.format("this training", "job.request"))
    evaluate: str | None = spec(default=None, max_len=1000, invalid="evaluate is an asset pointer's id")
    strategy: str = spec(default="", max_len=2000, invalid="strategy describes the aggregation, as text")


@message("fl.fit")
class FlFit(Body):
    """One round of local training from the weights in the first buffer (safetensors)."""

    request: str = spec(max_len=100, invalid="request is the training request's id")
    round: int = spec(invalid="round is a round number")


@message("fl.evaluate")
class FlEvaluate(Body):
    """The loss and accuracy of the weights in the first buffer on the job's evaluation asset."""

    request: str = spec(max_len=100, invalid="request is the training request's id")
    round: int = spec(invalid="round is a round number")


@message("fl.stop")
class FlStop(Body):
    request: str = spec(max_len=100, invalid="request is the training request's id")
    reason: str = spec(default="", max_len=5000, invalid="reason is a string of at most 5000 characters")


@message("fl.status")
class FlStatus(Body):
    request: str = spec(max_len=100, invalid="request is the training request's id")


# the network: a node's membership of a gateway (asked of the node by its owner)
@message("network.join")
class NetworkJoin(Body):
    connection: dict[str, Any] = spec(invalid="connection is the gateway's connection file (its contents)")
    public_rows: bool | list[str] = spec(
        default=False, invalid="public_rows is True, False or a list of dataset names whose row counts are public"
    )


@message("network.leave")
class NetworkLeave(Body):
    pass


@message("network.status")
class NetworkStatus(Body):
    pass


# the gateway's messages (``gateway/``): nodes register and publish, scientists search
@dataclass(frozen=True)
class Registration(Body):
    """What a node signs to join a gateway (``core.keys.registration_message`` gives the bytes)."""

    gateway: str = spec(max_len=200, what="the gateway's name")
    name: str = spec(name="node")
    addresses: list[str] = spec(max_len=8, what="a list of up to 8 tcp:// addresses")
    public_key: str = spec(max_len=100, what="the node's public key (Z85)")
    signing_key: str = spec(max_len=100, what="the node's signing key (hex)")
    timestamp: float = spec(what="the time of signing (seconds since the epoch)")
    nonce: str = spec(max_len=100, what="a fresh random string")


@message("gateway.hello")
class GatewayHello(Body):
    pass


@message("gateway.join")
class GatewayJoin(Body):
    registration: dict[str, Any] = spec(what="a registration map (checked as a Registration)")
    signature: str = spec(max_len=200, what="the registration's Ed25519 signature (hex)")


@message("gateway.leave")
class GatewayLeave(Body):
    pass


@message("gateway.heartbeat")
class GatewayHeartbeat(Body):
    datasets: int = spec(default=0, what="how many datasets the node publishes")


@message("gateway.publish")
class GatewayPublish(Body):
    upsert: list[dict[str, Any]] = spec(default=[], max_len=10_000, what="a list of dataset metadata maps")
    remove: list[str] = spec(default=[], max_len=10_000, what="a list of dataset names")
    full: bool = spec(default=False)  # the upserts are all of the node's datasets
    keep: list[str] | None = spec(default=None, max_len=100_000, what="a list of dataset names")  # all there are


@message("gateway.search")
class GatewaySearch(Body):
    query: str = spec(default="", invalid="a search is a string of at most 1,000 characters")
    tags: list[str] = spec(default=[], invalid="tags are a list of at most 32 strings of at most 64 characters")
    node: str | None = spec(default=None, max_len=200)
    name: str | None = spec(default=None, max_len=200)
    limit: int = spec(default=100, invalid="limit is a whole number from 1 to 1000")


@message("gateway.nodes")
class GatewayNodes(Body):
    pass


@message("gateway.account.request")
class GatewayAccountRequest(Body):
    node: str = spec(max_len=200, what="the node's name")
    name: str = spec(name="user")
    reason: str = spec(invalid="say why you need an account: request_account(node, reason='…'), up to 5000 characters")
    signing_key: str | None = spec(default=None, max_len=100)


@message("gateway.account.status")
class GatewayAccountStatus(Body):
    id: str = spec(max_len=100, what="an account request id (a string)")


@message("gateway.accounts.pending")
class GatewayAccountsPending(Body):
    pass


@message("gateway.account.settle")
class GatewayAccountSettle(Body):
    id: str = spec(max_len=100, what="an account request id (a string)")
    status: str = spec(max_len=20, what="filed, approved or denied")
    comment: str = spec(default="", max_len=5000)
    request: str = spec(default="", max_len=100)
