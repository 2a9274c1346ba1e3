"""The IPython extension: per-cell batching and the ``%syft`` / ``%%remote`` magics.

``%load_ext syft_kernel`` (and the ``syft`` kernel, which loads it) makes every cell's pointer
work one plan per node: ops are recorded while the cell runs and sent when it ends, by a call the
cell's AST gets as its last statement, so a failure in the plan is the cell's own error.
"""

from __future__ import annotations

import ast
import shlex
from typing import Any

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from . import batch as _batch
from .client import Client, login

NODES: dict[str, Client] = {}
FLUSH_NAME = "__syft_flush__"


def flush(value: Any = None) -> Any:
    """Send every recorded op (one plan per node); return ``value`` so the cell still displays it."""
    _batch.flush_all()
    return value


class FlushAtCellEnd(ast.NodeTransformer):
    """Ends each cell with the flush: ``expr`` → ``__syft_flush__(expr)``, else ``__syft_flush__()``."""

    def visit_Module(self, node: ast.Module) -> ast.Module:
        if node.body and isinstance(node.body[-1], ast.Expr):
            last = node.body[-1]
            last.value = _located(
                ast.Call(func=ast.Name(id=FLUSH_NAME, ctx=ast.Load()), args=[last.value], keywords=[]), last.value
            )
        else:
            anchor = node.body[-1] if node.body else None
            call = ast.Call(func=ast.Name(id=FLUSH_NAME, ctx=ast.Load()), args=[], keywords=[])
            stmt = ast.Expr(value=call)
            if anchor is None:
                ast.fix_missing_locations(stmt)
            else:
                _located(stmt, anchor)
                _located(call, anchor)
            node.body.append(stmt)
        return node


def _located(new: Any, old: ast.AST) -> Any:
    """Give a new node (and its new children) the location of ``old``: only the nodes we add."""
    for n in ast.walk(new):
        if not hasattr(n, "lineno") or getattr(n, "lineno", None) is None:
            ast.copy_location(n, old)
    return new


@magics_class
class SyftMagics(Magics):
    """``%syft connect|nodes|datasets|requests|budget|plan`` and ``%%remote NODE``."""

    @line_magic
    def syft(self, line: str) -> Any:
        args = shlex.split(line)
        if not args:
            print(self.syft.__doc__ or USAGE)
            return None
        command, rest = args[0], args[1:]
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            raise ValueError(f"unknown %syft command {command!r}\n{USAGE}")
        return handler(rest)

    def _cmd_connect(self, rest: list[str]) -> Client:
        # %syft connect FILE as NAME --key KEY [--transport tcp]
        if len(rest) < 1:
            raise ValueError("usage: %syft connect CONNECTION_FILE as NAME --key KEY_FILE")
        conn, name, key, transport = rest[0], None, None, None
        i = 1
        while i < len(rest):
            if rest[i] == "as" and i + 1 < len(rest):
                name, i = rest[i + 1], i + 2
            elif rest[i] == "--key" and i + 1 < len(rest):
                key, i = rest[i + 1], i + 2
            elif rest[i] == "--transport" and i + 1 < len(rest):
                transport, i = rest[i + 1], i + 2
            else:
                raise ValueError(f"unexpected {rest[i]!r}: usage: %syft connect FILE as NAME --key KEY")
        if key is None:
            raise ValueError("%syft connect needs --key KEY_FILE")
        client = login(conn, key=key, transport=transport)
        name = name or client.node_name
        if not name.isidentifier():
            raise ValueError(f"{name!r} is not a Python name: pick another with 'as NAME'")
        NODES[name] = client
        self.shell.user_ns[name] = client  # type: ignore[union-attr]
        print(f"connected to {client.node_name} as {client.user} ({client.role}); it is `{name}`")
        return None  # type: ignore[return-value]

    def _clients(self, rest: list[str]) -> dict[str, Client]:
        if rest:
            missing = [n for n in rest if n not in NODES]
            if missing:
                raise ValueError(f"not connected to {', '.join(missing)}: %syft connect FILE as NAME --key KEY")
            return {n: NODES[n] for n in rest}
        return dict(NODES)

    def _cmd_nodes(self, rest: list[str]) -> None:
        if not NODES:
            print("no nodes: %syft connect CONNECTION_FILE as NAME --key KEY_FILE")
        for name, c in NODES.items():
            print(f"{name}: {c.node_name} at {c.address} as {c.user} ({c.role})")

    def _cmd_datasets(self, rest: list[str]) -> None:
        for name, c in self._clients(rest).items():
            print(f"[{name}]\n{c.datasets!r}")

    def _cmd_requests(self, rest: list[str]) -> None:
        for name, c in self._clients(rest).items():
            print(f"[{name}]\n{c.requests!r}")

    def _cmd_budget(self, rest: list[str]) -> None:
        for name, c in self._clients(rest).items():
            print(f"[{name}]\n{c.budget!r}")

    def _cmd_plan(self, rest: list[str]) -> None:
        from syft_kernel.core.render import render_plan

        for name, c in self._clients(rest).items():
            print(f"[{name}] last plan: {len(c.last_plan)} op(s), one round trip")
            for line in render_plan(c.last_plan):
                print(f"    {line}")

    @cell_magic
    def remote(self, line: str, cell: str) -> Any:
        """``%%remote NODE``: run the cell's pointer work on NODE as one plan."""
        name = line.strip()
        if name not in NODES:
            raise ValueError(f"not connected to {name!r}: %syft connect FILE as {name or 'NAME'} --key KEY")
        client = NODES[name]
        tree = ast.parse(cell)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        shell = self.shell
        assert shell is not None
        with client.batch():  # the user's own cell, run in their own kernel by IPython
            if tree.body:
                shell.ex(ast.unparse(tree))
            value = shell.ev(ast.unparse(last.value)) if last is not None else None
        return value


USAGE = """%syft connect CONNECTION_FILE as NAME --key KEY_FILE   log in to a node
%syft nodes                                               the nodes this kernel knows
%syft datasets [NAME ...]                                 datasets on them
%syft requests [NAME ...]                                 requests (the owner's queue, or yours)
%syft budget [NAME ...]                                   your privacy budgets: spent and left
%syft plan [NAME ...]                                     the plan the last cell sent
%%remote NAME                                             run a cell as one plan on NAME"""


def load_ipython_extension(ip: Any) -> None:
    """Magics plus per-cell batching, in any IPython kernel."""
    ip.register_magics(SyftMagics)
    ip.user_ns[FLUSH_NAME] = flush
    if not any(isinstance(t, FlushAtCellEnd) for t in ip.ast_transformers):
        ip.ast_transformers.append(FlushAtCellEnd())
        ip.events.register("post_run_cell", _after_cell)
    _batch.set_auto(True)


def _after_cell(result: Any) -> None:
    """A cell that failed before its end never reached the flush: drop what it recorded, so the
    next cell does not send (or fail on) another cell's ops."""
    if not result.success:
        _batch.discard_all("the cell that recorded this failed before it ended")


def unload_ipython_extension(ip: Any) -> None:
    ip.ast_transformers[:] = [t for t in ip.ast_transformers if not isinstance(t, FlushAtCellEnd)]
    if _after_cell in ip.events.callbacks["post_run_cell"]:
        ip.events.unregister("post_run_cell", _after_cell)
    _batch.flush_all()
    _batch.set_auto(False)
