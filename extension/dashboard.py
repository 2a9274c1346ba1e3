"""The owner's dashboard at ``/syft/dashboard``: local nodes (start / stop), each running node's
network (its gateway, whether it is admitted and answering, the account requests waiting), its
request queue with Approve / Deny, its datasets and its scientists' budgets. Rendered here on the
server; ``static/dashboard.js`` refreshes sections and sends decisions through the REST API."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from syft_kernel.core.errors import NodeUnavailable, SyftError
from syft_kernel.requests import account_text
from syft_kernel.widgets.budget import bar_style
from syft_kernel.widgets.common import COLORS, esc, highlight, size_text, when

from .api import AUTH_RESOURCE, budgets
from .registry import NodeRegistry

# What the page says when the owner acts, as sentences naming the node and the request; the
# page's script fills in the {names} (``notice_text`` here, for what the server renders).
NOTICES = {
    "approving": "Approving request {request} on {node}…",
    "denying": "Denying request {request} on {node}…",
    "approved": "You approved request {request} by {requester} on {node}: it is now approved, and {requester} sees the outcome.",
    "still_pending": "You approved request {request} by {requester} on {node}: it stays pending until the other owners decide.",
    "denied": "You denied request {request} by {requester} on {node}: {requester} sees that it was denied, with your comment.",
    "decide_failed": "Request {request} on {node} could not be {decided}: {error}",
    "stopping_training": "Stopping the training of request {request} on {node}…",
    "training_stopped": "You stopped the training of request {request} on {node}: no round runs again under it.",
    "stop_training_failed": "The training of request {request} on {node} could not be stopped: {error}",
    "starting": "Starting node {node}…",
    "stopping": "Stopping node {node}…",
    "start_failed": "Node {node} could not be started: {error}",
    "stop_failed": "Node {node} could not be stopped: {error}",
    "creating": "Creating and starting node {node}…",
    "create_failed": "Node {node} could not be created: {error}",
    "no_name": "Give the new node a name first (letters, digits, '.', '_' or '-').",
    "unreachable": "Node {node} is not answering ({error}); this page tries again every 2 seconds.",
    "account_approved": "You approved the account for {requester} on {node}: {requester} can log in to {node} now.",
    "account_denied": "You denied the account for {requester} on {node}: {requester} sees that it was denied, with your comment.",
    "no_network": "Node {node} is on no network: join one from a notebook with owner.network.join('grid/connection.json').",
    "network_pending": "Node {node} waits for the operator of {gateway} to admit it (syft-kernel gateway admit {node}): until then scientists cannot find its datasets.",
    "network_down": "Node {node} cannot reach its gateway {gateway}: {error} It keeps serving its users and tries again at every heartbeat.",
    "network_unknown": "Node {node} did not say how it stands on its network: {error}",
}


def notice_text(key: str, **values: Any) -> str:
    """A notice as the page shows it: a sentence, whatever the error it quotes ends with."""
    if "error" in values:
        values["error"] = sentence(str(values["error"]))
    return NOTICES[key].format(**values)


def sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?…)" else text + "."


class _FragmentHandler(ExtensionHandlerMixin, JupyterHandler):
    """Base for the dashboard's HTML: behind Jupyter's login; node work runs on a thread."""

    auth_resource = AUTH_RESOURCE

    def render_html(self, registry: NodeRegistry, **path: str) -> str:
        """The HTML for this URL (runs on a worker thread: it talks to nodes)."""
        raise web.HTTPError(404)

    def wrap(self, registry: NodeRegistry, html: str) -> str:
        return html

    @web.authenticated
    @authorized
    async def get(self, **path: str) -> None:
        registry: NodeRegistry = self.settings["syft_registry"]
        html = await asyncio.to_thread(self.render_html, registry, **path)
        self.finish(self.wrap(registry, html))


class DashboardHandler(_FragmentHandler):
    """The whole page (a login redirect first when the browser is not logged in to Jupyter)."""

    def render_html(self, registry: NodeRegistry, **path: str) -> str:
        return "".join(node_section(registry, n["name"]) for n in registry.list())

    def wrap(self, registry: NodeRegistry, html: str) -> str:
        return page(self, registry, html)  # on the server's thread: it sets the XSRF cookie


class NodesTableHandler(_FragmentHandler):
    """The nodes table, for the page's periodic refresh (a node started or stopped elsewhere)."""

    def render_html(self, registry: NodeRegistry, **path: str) -> str:
        return nodes_table(registry)


class NodeSectionHandler(_FragmentHandler):
    """One node's section, for the page's periodic refresh."""

    def render_html(self, registry: NodeRegistry, **path: str) -> str:
        return node_section(registry, path["node"])


def page(handler: JupyterHandler, registry: NodeRegistry, sections: str) -> str:
    base = handler.base_url.rstrip("/")
    xsrf = handler.xsrf_token.decode() if isinstance(handler.xsrf_token, bytes) else handler.xsrf_token
    static = handler.static_url("dashboard.js") if hasattr(handler, "static_url") else ""
    css = handler.static_url("dashboard.css") if hasattr(handler, "static_url") else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>syft-kernel · data nodes</title>
<meta name="syft-base" content="{esc(base)}"><meta name="syft-xsrf" content="{esc(xsrf)}">
<link rel="stylesheet" href="{esc(css)}"></head>
<body><header><h1>syft-kernel · data nodes</h1>
<span class="muted">node folders in <code>{esc(registry.nodes_dir)}</code></span></header>
<div id="flash" role="status"></div>
<script type="application/json" id="syft-notices">{notices_json()}</script>
<section id="nodes-panel"><h2>Nodes</h2><div id="nodes-holder">{nodes_table(registry)}</div>
<form id="new-node"><input name="name" placeholder="new node name, e.g. clinic" pattern="[A-Za-z0-9_.\\-]+" required>
<button type="submit">Create and start</button></form></section>
<main id="node-sections">{sections}</main>
<script src="{esc(static)}"></script></body></html>"""


def notices_json() -> str:
    """``NOTICES`` for the page's script, safe inside a ``<script>`` element."""
    return json.dumps(NOTICES).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def nodes_table(registry: NodeRegistry) -> str:
    rows = []
    for n in registry.list():
        running = n["status"] == "running"
        button = (
            f"<button class='node-stop' data-node='{esc(n['name'])}'>Stop</button>"
            if running
            else f"<button class='node-start' data-node='{esc(n['name'])}'>Start</button>"
        )
        rows.append(
            f"<tr><td><b>{esc(n['name'])}</b></td><td>{_badge(n['status'])}</td>"
            f"<td><code>{esc(', '.join(n['addresses']))}</code></td>"
            f"<td><code>{esc(n['connection_file'])}</code><div class='muted'>in a notebook: <code>owner = "
            f"sk.login({esc(repr(n['connection_file']))}, key={esc(repr(n['owner_key']))})</code></div></td>"
            f"<td>{button}</td></tr>"
        )
    if not rows:
        return "<p class='muted'>No local nodes yet: create one below.</p>"
    return (
        "<table id='nodes'><tr><th>node</th><th>status</th><th>addresses</th><th>connection file "
        "(give it to scientists)</th><th></th></tr>" + "".join(rows) + "</table>"
    )


def node_section(registry: NodeRegistry, name: str) -> str:
    """The node's queue, datasets and budgets, or why they cannot be shown."""
    head = f"<section class='node' id='node-{esc(name)}' data-node='{esc(name)}'><h2>{esc(name)}</h2>"
    try:
        if registry.describe(name)["status"] != "running":
            return (
                head
                + f"<p class='muted stopped'>Node {esc(name)} is stopped: start it above to see its queue.</p></section>"
            )
        requests, datasets, budget_rows, status = registry.call(
            name,
            lambda c: (
                c.call("requests.list", {})[0]["requests"],
                c.call("datasets.list", {})[0]["datasets"],
                budgets(c),
                network_status(c),
            ),
        )
    except SyftError as e:
        return head + f"<p class='error'>{esc(notice_text('unreachable', node=name, error=e.message))}</p></section>"
    gateway = str(status["gateway"]) if status.get("joined") else None
    return (
        head
        + network_html(name, status, requests)
        + requests_html(requests, gateway)
        + datasets_html(datasets)
        + budgets_html(budget_rows["budgets"])
        + "</section>"
    )


def network_status(client: Any) -> dict[str, Any]:
    """``owner.network.status()`` as a dict; a node that cannot say (``{"error": …}``) still
    shows its queue."""
    try:
        return dict(client.network.status().to_dict())
    except NodeUnavailable:
        raise  # the node itself is down: the whole section says so
    except SyftError as e:
        return {"joined": None, "error": e.message}


def ago(ts: float | None, now: float | None = None) -> str:
    """How long ago ``ts`` was, in words (``12 s ago``, ``3 min ago``, ``never``)."""
    if ts is None:
        return "never"
    secs = max(0.0, (now or time.time()) - ts)
    if secs < 1:
        return "just now"
    if secs < 120:
        return f"{secs:.0f} s ago"
    if secs < 7200:
        return f"{secs / 60:.0f} min ago"
    if secs < 2 * 86400:
        return f"{secs / 3600:.0f} h ago"
    return f"{secs / 86400:.0f} days ago"


def network_html(node: str, status: dict[str, Any], requests: list[dict[str, Any]]) -> str:
    """The node's network: its gateway, admitted or pending, when it last heard from it, what
    went wrong, and the account requests waiting (each links to its row in the queue)."""
    if status.get("joined") is None:  # the node could not say
        text = notice_text("network_unknown", node=node, error=status.get("error", ""))
        return f"<div class='network' data-status='unknown'><h3>Network</h3><p class='error'>{esc(text)}</p></div>"
    if not status.get("joined"):
        return (
            "<div class='network' data-status='none'><h3>Network</h3>"
            f"<p class='muted'>{esc(notice_text('no_network', node=node))}</p></div>"
        )
    gateway = str(status.get("gateway", ""))
    state = str(status.get("status", ""))
    online = bool(status.get("online")) and not status.get("error")
    heard = status.get("last_contact")
    line = (
        f"<p class='network-line'>On the network <b>{esc(gateway)}</b> {_badge(state)} "
        f"{_badge('online' if online else 'offline')} · last heard "
        f"<span class='heard' title='{esc(when(heard))}'>{esc(ago(heard))}</span>"
        f" · {esc(_listed(status, state))}"
        f" · row counts public: {esc(_rows_public(status.get('public_rows')))}</p>"
    )
    parts = [
        f"<div class='network' data-gateway='{esc(gateway)}' data-status='{esc(state)}'"
        f" data-online='{'yes' if online else 'no'}'><h3>Network</h3>",
        line,
    ]
    if state == "pending":
        parts.append(f"<p class='muted pending'>{esc(notice_text('network_pending', node=node, gateway=gateway))}</p>")
    if status.get("error"):
        text = notice_text("network_down", node=node, gateway=gateway, error=status["error"])
        parts.append(f"<p class='error network-error'>{esc(text)}</p>")
    waiting = [r for r in requests if r.get("kind") == "account" and r["status"] == "pending"]
    if waiting:
        items = "".join(
            f"<li><a href='#request-{esc(r['id'])}'>{esc(account_text(r, gateway))}</a> — reason: {esc(r['reason'])}</li>"
            for r in sorted(waiting, key=lambda r: -r["created_at"])
        )
        parts.append(
            f"<p>Account requests waiting ({len(waiting)}): approve or deny them in the queue below.</p>"
            f"<ul class='accounts'>{items}</ul>"
        )
    else:
        parts.append("<p class='muted'>No account requests waiting.</p>")
    parts.append("</div>")
    return "".join(parts)


def _listed(status: dict[str, Any], state: str) -> str:
    """How many of the node's datasets the gateway lists (as it last said)."""
    total, listed = status.get("datasets", 0), status.get("listed")
    if state == "admitted" and listed is not None:
        return f"{listed} of {total} dataset(s) listed"
    return f"{total} dataset(s) to list once admitted"


def _rows_public(rows: Any) -> str:
    if rows is True:
        return "every dataset's"
    if isinstance(rows, list) and rows:
        return ", ".join(str(r) for r in rows)
    return "none"


MAX_PENDING = 100  # requests drawn per node: every pending one up to this, then the latest decided
MAX_DECIDED = 20
MAX_CODE_LINES = 200


def requests_html(requests: list[dict[str, Any]], network: str | None = None) -> str:
    ordered = sorted(requests, key=lambda r: (r["status"] != "pending", -r["created_at"]))
    pending = [r for r in ordered if r["status"] == "pending"]
    decided = [r for r in ordered if r["status"] != "pending"]
    shown = pending[:MAX_PENDING] + decided[:MAX_DECIDED]
    items = "".join(request_html(r, network) for r in shown) or "<p class='muted'>No requests.</p>"
    hidden = len(requests) - len(shown)
    more = (
        (
            f"<p class='muted'>{hidden} older or further requests are not shown here: list them with "
            f"<code>owner.requests</code> or GET /syft/api/nodes/…/requests</p>"
        )
        if hidden
        else ""
    )
    return (
        f"<h3>Requests <span class='muted'>({len(pending)} pending)</span></h3>"
        f"<div class='requests'>{items}</div>{more}"
    )


def request_html(r: dict[str, Any], network: str | None = None) -> str:
    rid = esc(r["id"])
    account = r["kind"] == "account"
    what = (
        f"<div class='account'><b>{esc(account_text(r, network))}</b> — reason: {esc(r['reason'])}</div>"
        if account
        else f"<div>target <code>{esc(r['target'])}</code> — reason: {esc(r['reason'])}</div>"
    )
    lines = [
        f"<div class='request' id='request-{rid}' data-request='{rid}' data-status='{esc(r['status'])}'"
        f" data-kind='{esc(r['kind'])}' data-requester='{esc(r['requester'])}'>",
        f"<div><b>{rid}</b> {_badge(r['status'])} {esc(r['kind'])} request by <b>{esc(r['requester'])}</b>"
        f" · {esc(when(r.get('created_at')))}{' · ' + esc(size_text(r.get('size'))) if r.get('size') else ''}</div>",
        what,
    ]
    if r["kind"] == "budget":
        lines.append(f"<div>DP cost: <b>ε +{esc((r.get('inputs') or {}).get('epsilon'))}</b></div>")
    for p in r.get("progress") or []:
        lines.append(
            f"<div class='progress'>{esc(p['dataset'])}: <b>{esc(p['approvals'])} of {esc(p['needed'])}</b> approvals"
            f" ({esc(p['policy'].get('kind', ''))})</div>"
        )
    for a in r.get("approvals") or []:
        comment = f" — “{esc(a['comment'])}”" if a.get("comment") else ""
        lines.append(f"<div class='muted'>{esc(a['owner'])}: {esc(a['decision'])}{comment}</div>")
    code = "" if account else r.get("source") or "\n".join(r.get("plan") or [])
    if code:
        title = "code" if r.get("source") else "plan"
        count = len(code.splitlines())
        cut = (
            ""
            if count <= MAX_CODE_LINES
            else (
                f"<div class='muted'>first {MAX_CODE_LINES} of {count} lines: read it all with "
                f"<code>owner.requests[{esc(repr(r['id']))}]</code></div>"
            )
        )
        shown = "\n".join(code.splitlines()[:MAX_CODE_LINES])
        lines.append(f"<details><summary>{title} ({count} lines)</summary>{highlight(shown)}{cut}</details>")
    if r["status"] == "pending":
        lines.append(
            f"<div class='actions'><textarea class='comment' rows='1' placeholder='comment (the requester "
            f"sees it)'></textarea><button class='approve' data-request='{rid}'>Approve</button>"
            f"<button class='deny' data-request='{rid}'>Deny</button></div>"
        )
    if r["kind"] == "training" and r["status"] == "approved":
        run = str(r.get("run_status") or "")
        lines.append(f"<div>training: {_badge(run)}{esc(': ' + r['run_error'] if r.get('run_error') else '')}</div>")
        if run in ("ready", "training"):
            lines.append(
                "<div class='actions'><textarea class='comment' rows='1' placeholder='why (the scientist sees it)'>"
                f"</textarea><button class='stop-training' data-request='{rid}'>Stop training</button></div>"
            )
    lines.append("</div>")
    return "".join(lines)


def datasets_html(datasets: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td><b>{esc(d['name'])}</b></td><td>{esc(' '.join(d['tags']))}</td><td>{esc(d['description'])}</td>"
        f"<td>{esc(', '.join(a['name'] for a in d['assets']))}</td>"
        f"<td>{esc(', '.join(str(a['shape'][0]) for a in d['assets'] if a.get('shape')))}</td></tr>"
        for d in datasets
    )
    body = (
        (
            f"<table class='datasets'><tr><th>name</th><th>tags</th><th>description</th><th>assets</th><th>rows</th>"
            f"</tr>{rows}</table>"
        )
        if rows
        else "<p class='muted'>No datasets.</p>"
    )
    return f"<h3>Datasets</h3>{body}"


def budgets_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<h3>Privacy budgets</h3><p class='muted'>No budgets set.</p>"
    out = []
    for b in rows:
        pct = 100.0 if b["epsilon"] <= 0 else min(100.0, 100 * b["spent"] / b["epsilon"])
        out.append(
            f"<tr><td>{esc(b['user'])}</td><td>{esc(b['dataset'])}</td><td><span class='bar'>"
            f"<span class='fill {bar_style(b['spent'], b['epsilon'])}' style='width:{pct:.0f}%'></span></span>"
            f"</td><td>{b['spent']:.4g} of {b['epsilon']:.4g}</td><td>{b['left']:.4g}</td>"
            f"<td>{esc(b['releases'])}</td></tr>"
        )
    return (
        "<h3>Privacy budgets</h3><table class='budgets'><tr><th>scientist</th><th>dataset</th><th>spent</th>"
        "<th>ε</th><th>left</th><th>releases</th></tr>" + "".join(out) + "</table>"
    )


def _badge(status: str) -> str:
    return f"<span class='badge' style='background:{COLORS.get(status, '#555')}'>{esc(status)}</span>"
