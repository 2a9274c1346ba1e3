"""The REST API under ``/syft/api/``: local nodes, datasets, requests (approve / deny), budgets
and each node's network (its gateway and the account requests waiting).

Every handler sits behind Jupyter's own authentication; POSTs also need Jupyter's XSRF token
(or a token in the Authorization header). The server talks to each node as that node's owner.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from syft_kernel.client import Client
from syft_kernel.core.errors import (
    AuthenticationError,
    InvalidArgument,
    NodeUnavailable,
    NotFound,
    PermissionDenied,
    RemoteError,
    SyftError,
    Unauthorized,
)
from syft_kernel.requests import make_request

from .registry import NodeRegistry

# the node's refusals map to HTTP; the node failing (or refusing the owner key) is a bad gateway
STATUS = {
    NotFound: 404,
    PermissionDenied: 403,
    Unauthorized: 403,
    NodeUnavailable: 503,
    InvalidArgument: 400,
    RemoteError: 502,
    AuthenticationError: 502,
}
AUTH_RESOURCE = "syft"


def http_status(error: SyftError) -> int:
    for cls, code in STATUS.items():
        if isinstance(error, cls):
            return code
    return 400


class SyftAPIHandler(ExtensionHandlerMixin, APIHandler):
    """Base: JSON in and out; a node's refusal becomes a JSON error with an HTTP status."""

    auth_resource = AUTH_RESOURCE

    @property
    def registry(self) -> NodeRegistry:
        return self.settings["syft_registry"]

    def body(self) -> dict[str, Any]:
        if not self.request.body:
            return {}
        try:
            data = json.loads(self.request.body)
        except ValueError:
            raise web.HTTPError(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "the body is a JSON object")
        return data

    async def run(self, fn: Callable[[], Any]) -> None:
        """Run blocking node work on a thread and reply with its result (or a clear error)."""
        try:
            result = await asyncio.to_thread(fn)
        except SyftError as e:
            self.set_status(http_status(e))
            self.finish(json.dumps({"error": type(e).__name__, "message": e.message}))
            return
        self.finish(json.dumps(result, default=str))

    def on_node(self, node: str, fn: Callable[[Client], Any]) -> Callable[[], Any]:
        return lambda: self.registry.call(node, fn)


class NodesHandler(SyftAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        await self.run(lambda: {"nodes": self.registry.list(), "nodes_dir": str(self.registry.nodes_dir)})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Create (if new) and start a node: ``{"name": "clinic"}``."""
        body = self.body()
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise web.HTTPError(400, 'give the node a name: {"name": "clinic"}')
        await self.run(lambda: self.registry.start(name))


class NodeActionHandler(SyftAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, node: str, action: str) -> None:
        if action == "start":
            await self.run(lambda: self.registry.start(node))
        else:
            await self.run(lambda: self.registry.stop(node))


class DatasetsHandler(SyftAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, node: str) -> None:
        query = self.get_query_argument("q", "")
        tags = self.get_query_arguments("tag")
        await self.run(self.on_node(node, lambda c: c.call("datasets.list", {"query": query, "tags": tags})[0]))


class RequestsHandler(SyftAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, node: str) -> None:
        status = self.get_query_argument("status", None)
        body = {"status": status} if status else {}
        await self.run(self.on_node(node, lambda c: c.call("requests.list", body)[0]))


class RequestHandler(SyftAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, node: str, request_id: str) -> None:
        await self.run(self.on_node(node, lambda c: c.call("requests.get", {"id": request_id})[0]))


class DecideHandler(SyftAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, node: str, request_id: str, decision: str) -> None:
        """Approve or deny, signed with the node owner's key: ``{"comment": "…"}``."""
        comment = self.body().get("comment", "")
        if not isinstance(comment, str):
            raise web.HTTPError(400, "comment is a string")
        await self.run(self.on_node(node, lambda c: decide(c, request_id, decision, comment)))


class StopTrainingHandler(SyftAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, node: str, request_id: str) -> None:
        """Stop an approved training (``{"reason": "…"}``): no round runs again under it."""
        reason = self.body().get("reason", "")
        if not isinstance(reason, str):
            raise web.HTTPError(400, "reason is a string")
        await self.run(self.on_node(node, lambda c: stop_training(c, request_id, reason)))


def stop_training(client: Client, request_id: str, reason: str) -> dict[str, Any]:
    request = make_request(client, client.call("requests.get", {"id": request_id})[0])
    return request.stop(reason).info


def decide(client: Client, request_id: str, decision: str, comment: str) -> dict[str, Any]:
    request = make_request(client, client.call("requests.get", {"id": request_id})[0])
    request.call_timeout = client.timeout
    (request.approve if decision == "approve" else request.deny)(comment)
    return request.info


class BudgetsHandler(SyftAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, node: str) -> None:
        await self.run(self.on_node(node, budgets))


def budgets(client: Client) -> dict[str, Any]:
    """Every scientist's budgets on the node."""
    users = [u["name"] for u in client.call("users.list")[0]["users"] if u["role"] != "owner"]
    rows = []
    for user in users:
        for b in client.call("budgets.get", {"user": user, "history": False})[0]["budgets"]:
            rows.append({"user": user, **b})
    return {"budgets": rows}


class NetworkHandler(SyftAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, node: str) -> None:
        """``owner.network.status()`` plus the account requests waiting (``pending_accounts``)."""
        await self.run(self.on_node(node, network))


def network(client: Client) -> dict[str, Any]:
    """How the node stands on its network, and the account requests waiting for its owners."""
    status = client.network.status().to_dict()
    waiting = client.requests.list(status="pending", kind="account")
    return {**status, "pending_accounts": [r.info for r in waiting]}


def api_handlers(base: str = "/syft/api") -> list[tuple[str, type]]:
    node = r"(?P<node>[A-Za-z0-9_.\-]+)"
    return [
        (f"{base}/nodes", NodesHandler),
        (f"{base}/nodes/{node}/(?P<action>start|stop)", NodeActionHandler),
        (f"{base}/nodes/{node}/datasets", DatasetsHandler),
        (f"{base}/nodes/{node}/requests", RequestsHandler),
        (f"{base}/nodes/{node}/requests/(?P<request_id>[A-Za-z0-9]+)", RequestHandler),
        (f"{base}/nodes/{node}/requests/(?P<request_id>[A-Za-z0-9]+)/(?P<decision>approve|deny)", DecideHandler),
        (f"{base}/nodes/{node}/requests/(?P<request_id>[A-Za-z0-9]+)/stop", StopTrainingHandler),
        (f"{base}/nodes/{node}/budgets", BudgetsHandler),
        (f"{base}/nodes/{node}/network", NetworkHandler),
    ]
