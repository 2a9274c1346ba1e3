"""The network, as a scientist sees it: search a gateway for datasets across nodes, log in to
the nodes that hold them, ask for an account where you have none.

``connect_network(path, key=…)`` connects to a gateway (any key may search: it holds only
public metadata). ``net.login(node)`` returns an ordinary ``Client`` for that node, reached at
the addresses the node registered; the node itself still decides who gets in. A gateway that
stops answering stops only the search: clients already logged in keep working.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .aio import DEFAULT_TIMEOUT, pick_address
from .core import schema
from .core.errors import AuthenticationError, InvalidArgument, NodeUnavailable, NotFound, PermissionDenied
from .core.keys import KeyPair, read_connection_file, read_keypair
from .protocol import require_secret
from .records import Record, Table
from .transport import Transport

if TYPE_CHECKING:
    from .client import Client
    from .pointer import Pointer


class NetworkNode(Record):
    """A member node: ``name``, ``online``, ``datasets`` (how many it lists), ``addresses``,
    ``last_seen`` (its last heartbeat) and its public key.
    """

    KIND = "node"
    SHOWN = ("name", "online", "datasets")


class DatasetHit(Record):
    """A dataset listed on the network: ``node``, ``name``, ``description``, ``tags``, ``assets``
    (each asset's schema; its row count only where the owner made it public), ``has_mock`` and
    whether the node is ``online``.
    """

    KIND = "dataset"
    SHOWN = ("node", "name", "online")


class SearchResults(Table[DatasetHit]):
    """The hits of a network search, best first: a table (a widget in Jupyter)."""

    def __init__(self, network: Network, rows: list[DatasetHit], query: str, tags: list[str]) -> None:
        what = " ".join(([repr(query)] if query else []) + tags) or "all datasets"
        super().__init__(
            rows, ("node", "dataset", "description", "tags", "assets", "online"), f"{network.name}: {what}"
        )
        self.network, self.query, self.tags = network, query, tags
        self.truncated = False  # the gateway left out further hits (its reply's size limit)

    def __repr__(self) -> str:
        more = "\n(more hits were left out: narrow the search with words, tags or node=)" if self.truncated else ""
        return super().__repr__() + more

    def _cells(self) -> list[list[str]]:
        out = []
        for r in self._rows:
            desc = r.description if len(r.description) <= 40 else r.description[:37] + "…"
            assets = ", ".join(a["name"] for a in r.assets)
            out.append([r.node, r.name, desc, " ".join(r.tags), assets, "yes" if r.online else "no"])
        return out

    def to_frame(self) -> Any:
        """The hits as a DataFrame (assets as their names)."""
        import pandas as pd

        return pd.DataFrame(
            [{**r.to_dict(), "assets": [a["name"] for a in r.assets]} for r in self._rows],
            columns=["node", "name", "description", "tags", "assets", "has_mock", "online", "updated_at"],
        )

    def _ipython_display_(self) -> None:
        from .display import widgets_usable

        if widgets_usable():
            from IPython.display import display

            from .widgets import DatasetSearch

            display(DatasetSearch(self.network, query=self.query, tags=self.tags))  # type: ignore[no-untyped-call]
        else:
            from IPython.display import display

            display({"text/plain": repr(self), "text/html": self._repr_html_()}, raw=True)  # type: ignore[no-untyped-call]


class AccountRequest:
    """An account asked of a node through the gateway: ``status`` is forwarding (the node has not
    fetched it yet), filed (in its owners' queue), approved (log in with ``net.login(node)``) or
    denied (``comment`` says why).
    """

    def __init__(self, network: Network, info: dict[str, Any]) -> None:
        self.network = network
        self.info = info

    id = property(lambda self: str(self.info["id"]), doc="The request's id on the gateway.")
    node = property(lambda self: str(self.info["node"]), doc="The node asked.")
    name = property(lambda self: str(self.info["name"]), doc="The user name asked for.")
    status = property(lambda self: str(self.info["status"]), doc="forwarding, filed, approved or denied.")
    request_id = property(
        lambda self: str(self.info.get("request", "")),
        doc="The request's id in the node's queue, once filed (``owner.requests[req.request_id]``).",
    )
    comment = property(
        lambda self: str(self.info.get("comment", "")), doc="The owner's comment, or why it was refused."
    )

    def refresh(self) -> AccountRequest:
        """Ask the gateway how the request stands."""
        self.info = self.network._call(schema.GatewayAccountStatus(id=self.id))
        return self

    def wait(self, timeout: float | None = None, poll: float = 0.25) -> AccountRequest:
        """Wait until the owner decides; raises ``PermissionDenied`` if denied, ``TimeoutError``
        if ``timeout`` passes first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.refresh().status in ("forwarding", "filed"):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"account request {self.id} on {self.node} is still {self.status}")
            time.sleep(poll)
        if self.status == "denied":
            raise PermissionDenied(f"{self.node} denied the account for {self.name}: {self.comment or 'no comment'}")
        return self

    def __repr__(self) -> str:
        extra = f": {self.comment}" if self.comment else ""
        return f"<AccountRequest {self.id} · {self.name} on {self.node} · {self.status}{extra}>"


class NetworkDatasets:
    """The datasets listed on the network: ``search`` them, or take ``pointers`` on every node."""

    def __init__(self, network: Network) -> None:
        self.network = network

    def search(
        self,
        query: str = "",
        tags: list[str] | None = None,
        node: str | None = None,
        limit: int = 100,
        timeout: float | None = None,
    ) -> SearchResults:
        """Datasets whose name, description, tags or assets have every word of ``query`` (ranked)
        and that carry every one of ``tags``; optionally on one ``node``. ``timeout``: seconds to
        wait for the gateway (default: the network's).
        """
        tags = list(tags or [])
        body = self.network._call(schema.GatewaySearch(query=query, tags=tags, node=node, limit=limit), timeout)
        hits = [DatasetHit(d) for d in body["datasets"]]
        results = SearchResults(self.network, hits, query, tags)
        results.truncated = bool(body.get("truncated"))
        return results

    def pointers(self, dataset: str, asset: str | None = None) -> dict[str, Pointer]:
        """``{node: pointer}`` to ``asset`` of the dataset named ``dataset`` (or tagged so) on every
        online node where you have an account. Nodes left out are named in a warning, with why.
        """
        by_name = self.network._call(schema.GatewaySearch(name=dataset, limit=1000))["datasets"]
        by_tag = self.network._call(schema.GatewaySearch(tags=[dataset], limit=1000))["datasets"]
        chosen: dict[str, dict[str, Any]] = {}
        for hit in by_name + by_tag:
            node = hit["node"]
            if node in chosen and chosen[node]["name"] != hit["name"] and chosen[node]["name"] != dataset:
                raise InvalidArgument(
                    f"{node} has several datasets tagged {dataset!r} ({chosen[node]['name']}, {hit['name']}): "
                    "ask for one by its name"
                )
            chosen.setdefault(node, hit)
        if not chosen:
            raise NotFound(
                f"no dataset named or tagged {dataset!r} on {self.network.name}: search with net.datasets.search(…)"
            )
        skipped: dict[str, str] = {}
        online = {}
        for node, hit in sorted(chosen.items()):
            if not hit["online"]:
                skipped[node] = "offline"
            else:
                online[node] = hit
        clients = self.network._login_all(list(online), skipped)
        out: dict[str, Pointer] = {}
        for node, client in clients.items():
            hit = online[node]
            names = [a["name"] for a in hit["assets"]]
            pick = asset if asset is not None else (names[0] if len(names) == 1 else None)
            if pick is None:
                raise InvalidArgument(f"{hit['name']} on {node} has the assets {', '.join(names)}: pass asset=…")
            if pick not in names:
                skipped[node] = f"{hit['name']} has no asset {pick!r}"
                continue
            out[node] = client.datasets[hit["name"]][pick]
        if skipped and not out:
            raise NotFound(
                f"no pointer to {dataset!r} on {self.network.name}: "
                + "; ".join(f"{n} ({why})" for n, why in sorted(skipped.items()))
            )
        if skipped:
            warnings.warn("left out: " + "; ".join(f"{n} ({why})" for n, why in sorted(skipped.items())), stacklevel=2)
        return out

    def __repr__(self) -> str:
        return repr(self.search())

    def _ipython_display_(self) -> None:
        self.search()._ipython_display_()


class Network:
    """A connection to a gateway. Use ``connect_network()``."""

    def __init__(self, connection: dict[str, Any], key: KeyPair, timeout: float = DEFAULT_TIMEOUT) -> None:
        require_secret(key)
        if connection.get("kind") != "gateway":
            raise InvalidArgument("that is a node's connection file, not a gateway's: log in with sk.login(…)")
        self.connection, self.key, self.timeout = connection, key, timeout
        self.name: str = str(connection.get("name", "the gateway"))
        self.address = pick_address(connection)
        self.clients: dict[str, Client] = {}
        self.key_path: Path | None = None  # the key file connected with, if any
        self._io = Transport(connection, key, self.address, self.name)
        try:
            hello = self._call(schema.GatewayHello(), timeout=timeout)
        except NodeUnavailable:
            self._io.close()
            raise NodeUnavailable(
                f"the gateway {self.name} at {self.address} did not answer in {timeout:.0f}s: "
                "is it running (`syft-kernel gateway serve DIR`)?"
            ) from None
        except BaseException:
            self._io.close()
            raise
        self._io.stop_monitor()
        self.name = str(hello["gateway"])
        self.datasets = NetworkDatasets(self)

    def _call(self, body: schema.Body, timeout: float | None = None) -> dict[str, Any]:
        wait = timeout or self.timeout
        try:
            reply, _ = self._io.wait(self._io.send(body, timeout=wait), wait)
        except NodeUnavailable as e:
            raise NodeUnavailable(
                f"the gateway {self.name} is not answering ({e.message}); the nodes you are logged in to "
                f"({', '.join(sorted(self.clients)) or 'none yet'}) still work: net.clients[NAME]"
            ) from None
        return reply  # type: ignore[no-any-return]

    @property
    def nodes(self) -> Table[NetworkNode]:
        """The admitted member nodes, online or not."""
        rows = [NetworkNode(n) for n in self._call(schema.GatewayNodes())["nodes"]]
        return Table(rows, ("name", "online", "datasets", "addresses", "last_seen"), f"nodes on {self.name}")

    def _node(self, name: str) -> dict[str, Any]:
        for n in self._call(schema.GatewayNodes())["nodes"]:
            if n["name"] == name:
                return dict(n)
        raise NotFound(f"no node {name!r} on {self.name}: see net.nodes")

    def login(self, node: str, timeout: float | None = None) -> Client:
        """A ``Client`` for ``node`` with your key (the one made earlier, if still open)."""
        known = self.clients.get(node)
        if known is not None and not known.closed:
            return known
        info = self._node(node)
        return self._login(info, timeout)

    def _login(self, info: dict[str, Any], timeout: float | None = None) -> Client:
        from .client import Client

        name = info["name"]
        connection = {"name": name, "addresses": info["addresses"], "node_public_key": info["node_public_key"]}
        try:
            client = Client(connection, self.key, timeout=timeout or self.timeout)
            client.key_path = self.key_path
        except AuthenticationError:
            raise AuthenticationError(
                f"you have no account on {name}: ask for one with net.request_account({name!r}, reason='…')"
            ) from None
        self.clients[name] = client
        return client

    def _login_all(self, names: list[str], skipped: dict[str, str]) -> dict[str, Client]:
        """Log in to several nodes at once; the ones that fail go to ``skipped`` with why."""
        nodes = {n["name"]: n for n in self._call(schema.GatewayNodes())["nodes"]}
        out: dict[str, Client] = {}

        def one(name: str) -> Client:
            known = self.clients.get(name)
            if known is not None and not known.closed:
                return known
            return self._login(nodes[name], timeout=min(self.timeout, 10.0))

        todo = [n for n in names if n in nodes]
        skipped.update({n: "not a member any more" for n in names if n not in nodes})
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(8, len(todo)))) as pool:
            futures = {n: pool.submit(one, n) for n in todo}
            for n, f in futures.items():
                try:
                    out[n] = f.result()
                except AuthenticationError:
                    skipped[n] = f"no account: net.request_account({n!r}, reason='…')"
                except NodeUnavailable:
                    skipped[n] = "not answering"
        return out

    def request_account(self, node: str, reason: str, name: str | None = None, wait: float = 10.0) -> AccountRequest:
        """Ask ``node``'s owners for an account for your key (as ``name``, default your key's
        name). Waits up to ``wait`` seconds for the node to file it in its owners' queue; a
        refusal (the name is taken) is raised at once.
        """
        user = name or self.key.name
        if not user:
            raise InvalidArgument("your key has no name: pass name='…'")
        info = self._call(
            schema.GatewayAccountRequest(node=node, name=user, reason=reason, signing_key=self.key.sign_public)
        )
        req = AccountRequest(self, info)
        deadline = time.monotonic() + wait
        while req.status == "forwarding" and time.monotonic() < deadline:
            time.sleep(0.1)
            req.refresh()
        if req.status == "denied":
            raise InvalidArgument(f"{node} refused the account request: {req.comment}")
        return req

    def close(self) -> None:
        """Close the gateway's connection and every client it made."""
        for c in self.clients.values():
            c.close()
        self.clients.clear()
        self._io.close()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<syft_kernel.Network {self.name} via {self.address} as {self.key.name}>"


def connect_network(
    connection: str | os.PathLike[str] | Mapping[str, Any],
    key: str | os.PathLike[str] | KeyPair,
    timeout: float = DEFAULT_TIMEOUT,
) -> Network:
    """Connect to a network's gateway with ``key`` (your ``NAME.key``) to search its datasets.

    ``connection`` is the gateway's connection file (``syft-kernel gateway init`` makes it) or its
    contents.
    """
    info = dict(connection) if isinstance(connection, Mapping) else read_connection_file(connection)
    pair = key if isinstance(key, KeyPair) else read_keypair(Path(key))
    net = Network(info, pair, timeout)
    if not isinstance(key, KeyPair):  # its nodes' clients remember it (a resumed federated job logs in again)
        net.key_path = Path(key).resolve()
    return net


class NetworkMembership:
    """``owner.network``: have this node join a gateway, leave it, and see how it stands."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def join(
        self, connection: str | os.PathLike[str] | Mapping[str, Any], public_rows: bool | list[str] = False
    ) -> NetworkStatus:
        """Register this node with the gateway (signed by the node's key) and publish its datasets'
        public metadata from then on. Row counts are published only for ``public_rows`` (True:
        every dataset's).
        """
        info = dict(connection) if isinstance(connection, Mapping) else read_connection_file(connection)
        body, _ = self.client.call(schema.NetworkJoin(connection=info, public_rows=public_rows), timeout=30)
        return NetworkStatus(body)

    def leave(self) -> dict[str, Any]:
        """Leave the network: the gateway drops this node's listings."""
        body, _ = self.client.call(schema.NetworkLeave(), timeout=30)
        return dict(body)

    def wait(self, timeout: float = 60.0) -> NetworkStatus:
        """Wait until the gateway's operator has admitted this node and it lists every dataset
        (``TimeoutError`` after ``timeout`` seconds, saying where it stands).
        """
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            listable = int(status.get("datasets") or 0) - len(status.get("unlisted") or {})
            if status.get("status") == "admitted" and status.get("listed") == listable:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"still not admitted and listed: {status!r}")
            time.sleep(0.1)

    def status(self) -> NetworkStatus:
        """The gateway this node belongs to, whether it is admitted and answering, what waits."""
        return NetworkStatus(self.client.call(schema.NetworkStatus())[0])

    def __repr__(self) -> str:
        return repr(self.status())


class NetworkStatus(Record):
    """How a node stands on its network: ``joined``, ``gateway``, ``status`` (pending until the
    operator admits it, then admitted), ``online``, ``error``, ``datasets`` (the node's) and
    ``listed`` (what the gateway holds), ``unlisted`` (datasets the gateway would refuse, and
    why), ``account_requests`` waiting.
    """

    KIND = "network"

    def __repr__(self) -> str:
        d = self._data
        if not d.get("joined"):
            return "<network: not on a network (owner.network.join('grid/connection.json'))>"
        seen = d.get("last_contact")
        when = datetime.datetime.fromtimestamp(seen).strftime("%H:%M:%S") if seen else "never"
        state = d.get("status")
        if state == "pending":
            state = "pending (the gateway's operator admits it: syft-kernel gateway admit NODE)"
        line = f"<network {d['gateway']}: {state}; last heard {when}"
        if d.get("error"):
            line += f"; {d['error']}"
        for name, why in (d.get("unlisted") or {}).items():
            line += f"; {name} is not listed ({why})"
        return line + f"; {d.get('account_requests', 0)} account request(s) waiting>"
