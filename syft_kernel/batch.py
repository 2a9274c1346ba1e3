"""Lazy recording of pointer ops: many ops, one plan, one round trip per node.

Inside ``with client.batch():`` (and in every cell of the ``syft`` kernel, or after
``%load_ext syft_kernel``) pointer ops are recorded, not sent. The batch is sent as one plan when
it ends, or earlier when a value is needed (``get()``, ``if ptr:``, a shape). A failure inside the
plan is raised with the line of user code that recorded the failing op.
"""

from __future__ import annotations

import linecache
import os
import sys
import threading
import weakref
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .core import codec, schema
from .core.errors import CompositeError, SyftError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .client import Client
    from .pointer import Pointer

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_state = threading.local()
_auto = False  # set by the IPython extension: every client batches until the cell ends
_open: weakref.WeakSet[Batch] = weakref.WeakSet()


def user_line() -> tuple[int, str] | None:
    """(line number, source line) of the first frame outside syft_kernel, numpy, pandas, torch."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name.startswith(_PACKAGE_DIR) or "site-packages" in name or name.startswith("<frozen")):
            return frame.f_lineno, linecache.getline(name, frame.f_lineno, frame.f_globals).strip()
        frame = frame.f_back  # type: ignore[assignment]
    return None


class Batch:
    """Ops recorded for one client, sent together by ``flush()``."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.encoder = codec.Encoder()
        self.ops: list[dict[str, Any]] = []
        self.lines: list[tuple[int, str] | None] = []
        self.pointers: list[weakref.ref[Pointer]] = []
        self.sent: list[dict[str, Any]] = []
        self.explicit = 0  # how many ``with client.batch():`` blocks hold this batch
        _open.add(self)

    def __len__(self) -> int:
        return len(self.ops)

    def record(self, op: dict[str, Any], ptr: Pointer) -> int:
        self.ops.append(op)
        self.lines.append(user_line())
        self.pointers.append(weakref.ref(ptr))
        return len(self.ops) - 1

    def flush(self) -> None:
        """Send the recorded ops as one plan; give every live pointer its id and metadata."""
        self.finish(self.start())

    def start(self) -> Any:
        """Send the recorded ops as one plan without waiting for the reply (see ``finish``)."""
        if not self.ops:
            return None
        ops, lines, refs, buffers = self.ops, self.lines, self.pointers, self.encoder.buffers
        self.ops, self.lines, self.pointers, self.encoder = [], [], [], codec.Encoder()
        live = [(i, p) for i, r in enumerate(refs) if (p := r()) is not None]
        self.sent = ops
        self.client.last_plan = ops
        try:
            msg_id = self.client.send(schema.Run(ops=ops, keep=[i for i, _ in live]), buffers=buffers)
        except SyftError as e:
            return (None, e, lines, live)
        return (msg_id, None, lines, live)

    def finish(self, sent: Any) -> None:
        """Wait for the reply of ``start``: resolve the pointers, or fail them and raise."""
        if sent is None:
            return
        msg_id, error, lines, live = sent
        try:
            if error is not None:
                raise error
            body, _ = self.client.reply(msg_id)
        except SyftError as e:
            where = lines[e.data["op_index"]] if isinstance(e.data.get("op_index"), int) else None
            err = _at_line(e, where)
            for _, p in live:
                p._fail(err)
            raise err from None
        for (_, p), result in zip(live, body["results"]):
            p._resolve(result["id"], result["meta"])


def discard_all(reason: str) -> None:
    """Drop every open batch unsent (its cell failed before its end); its pointers say why."""
    from .core.errors import SyftError

    for b in list(_open):
        if getattr(b, "tracing", False) or not b.ops:
            continue
        for r in b.pointers:
            p = r()
            if p is not None and p.pending:
                p._fail(SyftError(f"not sent: {reason}"))
        b.ops, b.lines, b.pointers, b.encoder = [], [], [], codec.Encoder()
        if b.client._batch is b and b.explicit == 0:
            b.client._batch = None


def _at_line(e: SyftError, where: tuple[int, str] | None) -> SyftError:
    """The same error, saying which line of the cell recorded the op that failed."""
    if where is None:
        return e
    line, text = where
    err = type(e)(f"line {line}: {text}\n{e.message}" if text else f"line {line}: {e.message}", **e.data)
    err.data["line"] = line
    return err


def current(client: Client) -> Batch | None:
    """The batch ops on ``client`` go to right now (None: run eagerly)."""
    batch = client._batch
    if batch is None and _auto:
        batch = client._batch = Batch(client)
    return batch


@contextmanager
def batch(client: Client) -> Iterator[Batch]:
    """Record ops on ``client`` and send them as one plan when the block ends. Blocks on several
    nodes inside one another (``with a.batch(), b.batch():``) are sent together when the
    outermost ends: every node gets its plan before any reply is waited for."""
    b = client._batch
    if b is None:
        b = client._batch = Batch(client)
    b.explicit += 1
    ok = False
    try:
        yield b
        ok = True
    finally:
        b.explicit -= 1
        if b.explicit == 0:
            client._batch = None  # the outermost block ends the batch (also a per-cell one)
        if not ok and b in _deferred:
            _deferred.remove(b)
    if b.explicit == 0:
        if any(o.explicit > 0 for o in list(_open) if o is not b):  # a block on another node is open
            _deferred.append(b)  # its pointers still send it if used before that block ends
            return
        group = [*_deferred, b]
        _deferred.clear()
        _flush_together(group)


_deferred: list[Batch] = []  # ended blocks waiting for the enclosing block on another node


def flush_all() -> None:
    """Send every open batch (the end of a cell): to all their nodes at once, then wait for each.
    One failure is raised as itself; failures on several nodes as one ``CompositeError``."""
    _flush_together([b for b in list(_open) if not getattr(b, "tracing", False)])


def _flush_together(batches: list[Batch]) -> None:
    started = []
    for b in batches:
        try:
            started.append((b, b.start()))
        except BaseException as e:  # nothing was sent for this one
            started.append((b, e))
    errors: dict[str, SyftError] = {}
    first: BaseException | None = None
    for b, sent in started:
        try:
            if isinstance(sent, BaseException):
                raise sent
            b.finish(sent)
        except SyftError as e:
            label = b.client.node_label
            errors[label if label not in errors else f"{label} ({b.client.user})"] = e
            first = first or e
        except BaseException as e:
            first = first or e
    if len(errors) > 1:
        raise CompositeError(errors)
    if first is not None:
        raise first


def set_auto(on: bool) -> None:
    global _auto
    _auto = on
