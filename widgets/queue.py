"""``RequestQueue``: the owner's live request queue with Approve / Deny, or a scientist's own
requests and their outcomes. New requests and decisions arrive as the node pushes them."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from syft_kernel.core.errors import NodeUnavailable, SyftError
from syft_kernel.requests import Request, account_text, make_request, network_name, requests_table

from .common import (
    CALL_TIMEOUT,
    LiveView,
    TextFallback,
    badge,
    call,
    esc,
    highlight,
    notice,
    size_text,
    when,
)
from .live import NodeWatcher, down_text, node_gone, session_closed_text

if TYPE_CHECKING:
    from syft_kernel.client import Client

FILTERS = ("all", "pending", "approved", "denied")


class RequestRow(w.VBox):
    """One request: what it asks and why, its plan or code, governance progress, and (for an owner
    who has not decided yet) a comment box with Approve and Deny."""

    def __init__(self, queue: RequestQueue, request: Request) -> None:
        self.queue = queue
        self.request = request
        self.summary = w.HTML()
        self.code = w.Accordion(children=[w.HTML()])
        self.comment = w.Textarea(placeholder="comment (the requester sees it)", rows=1, layout=w.Layout(width="360px"))
        self.approve_button = w.Button(description="Approve", button_style="success", icon="check")
        self.deny_button = w.Button(description="Deny", button_style="danger", icon="times")
        self.approve_button.on_click(lambda _: self.decide("approve"))
        self.deny_button.on_click(lambda _: self.decide("deny"))
        self.actions = w.HBox([self.comment, self.approve_button, self.deny_button])
        self.stop_button = w.Button(description="Stop training", button_style="warning", icon="stop")
        self.stop_button.on_click(lambda _: self.stop())
        self.message = w.HTML()
        self._shown: dict[str, Any] | None = None  # the request as last drawn
        super().__init__(layout=w.Layout(border="1px solid #ddd", padding="4px 8px", margin="3px 0"))
        self.add_class("syft-request")
        self.update(request)

    @property
    def request_id(self) -> str:
        return self.request.id

    def update(self, request: Request) -> None:
        """Show the request as it is now on the node (nothing to redraw if it has not changed)."""
        if request.info == self._shown:
            self.request = request
            self.set_enabled(self.queue.node_up)
            return
        self.request, self._shown = request, request.info
        self.summary.value = _summary_html(request, self.queue.client.user, self.queue.network)
        code, title = _code_of(request)
        children: list[w.Widget] = [self.summary]
        if code:
            self.code.children[0].value = highlight(code)
            self.code.set_title(0, title)
            children.append(self.code)
        if self.can_decide:
            children.append(self.actions)
        if self.can_stop:
            children.append(self.stop_button)
        children.append(self.message)
        self.children = children
        self.set_enabled(self.queue.node_up)

    @property
    def can_decide(self) -> bool:
        client = self.queue.client
        decided_by_me = any(a.get("owner") == client.user for a in self.request.approvals)
        return client.role == "owner" and self.request.status == "pending" and not decided_by_me

    @property
    def can_stop(self) -> bool:
        """An approved training still running: its owners and its scientist may stop it."""
        r = self.request
        return r.kind == "training" and r.status == "approved" and r.info.get("run_status") in ("ready", "training")

    def set_enabled(self, enabled: bool) -> None:
        self.approve_button.disabled = self.deny_button.disabled = self.stop_button.disabled = not enabled

    def stop(self) -> None:
        """Stop the training on the node: no round runs again under this approval."""
        self.set_enabled(False)
        try:
            self.update(self.request.stop(self.comment.value))
            self.message.value = notice("stopped: no round runs again under this approval")
        except SyftError as e:
            self.message.value = notice(f"{e}", "error")
            self.set_enabled(True)

    def decide(self, decision: str) -> None:
        """Approve or deny on the node (signed with the owner's key), then show the outcome."""
        request = self.request
        request.call_timeout = CALL_TIMEOUT
        self.set_enabled(False)
        try:
            if decision == "approve":
                request.approve(self.comment.value)
            else:
                request.deny(self.comment.value)
        except NodeUnavailable as e:
            if self.queue.client.closed:
                self.message.value = notice("this session was closed: nothing was decided", "error")
                self.queue.session_closed()
                return
            self.message.value = notice(f"{e}: nothing was decided; try again once the node is back", "error")
            self.queue.node_down(node_gone(self.queue.client))
            return
        except SyftError as e:
            self.message.value = notice(f"{e}", "error")
            self.set_enabled(True)
            self.queue.refresh()  # someone else may have decided it: show the request as it is now
            return
        self.comment.value = ""
        self.message.value = notice(f"{'approved' if decision == 'approve' else 'denied'} {request.id}", "info")
        self.update(request)
        self.queue.refresh()


class RequestQueue(LiveView, TextFallback, w.VBox):
    """All requests on the node (owners) or your own (scientists), newest and pending first, live."""

    def __init__(self, client: Client, status: str = "all", page_size: int = 20, live: bool = True) -> None:
        if status not in FILTERS:
            raise ValueError(f"status is one of {', '.join(FILTERS)}")
        if page_size < 1:
            raise ValueError("page_size is at least 1")
        self.client = client
        self.page_size = page_size
        self.page = 0
        self.requests: list[Request] = []
        self.rows: dict[str, RequestRow] = {}
        self.network: str | None = None  # the node's network, named in account requests
        self.node_up = True
        self._down_since: float | None = None
        self._lock = threading.RLock()
        self._fetches = self._applied = 0  # listings are numbered; an older reply never overwrites a newer
        self.session_is_closed = False
        self.title = w.HTML()
        self.title.value = self._title(None if status == "all" else status, 0)
        self.banner = w.HTML()
        self.filter = w.ToggleButtons(options=FILTERS, value=status, style={"button_width": "90px"})
        self.filter.observe(lambda _: self.show_page(0), names="value")
        self.refresh_button = w.Button(description="Refresh", icon="refresh", layout=w.Layout(width="100px"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.list = w.VBox()
        self.prev_button = w.Button(description="‹ Prev", layout=w.Layout(width="80px"))
        self.next_button = w.Button(description="Next ›", layout=w.Layout(width="80px"))
        self.prev_button.on_click(lambda _: self.show_page(self.page - 1))
        self.next_button.on_click(lambda _: self.show_page(self.page + 1))
        self.page_label = w.HTML()
        super().__init__(
            [
                self.title,
                w.HBox([self.filter, self.refresh_button]),
                self.banner,
                self.list,
                w.HBox([self.prev_button, self.page_label, self.next_button]),
            ]
        )
        self.add_class("syft-request-queue")
        self._unsubscribe = NodeWatcher.of(client).subscribe(self.on_event) if live else None
        self.refresh()

    # ---- data
    def refresh(self) -> None:
        """Reload the requests from the node and update the rows in place (typed comments stay)."""
        self.show_page(self.page)

    def show_page(self, page: int) -> None:
        status = None if self.filter.value == "all" else self.filter.value
        with self._lock:
            fetch = self._fetches = self._fetches + 1
        try:
            reply, _ = call(self.client, "requests.list", {"status": status} if status else {})
        except NodeUnavailable:
            if self.client.closed:  # logged out: nothing will reconnect
                self.session_closed()
            else:
                self.node_down(node_gone(self.client))
            return
        except SyftError as e:
            self.banner.value = notice(str(e), "error")
            return
        if any(r["kind"] == "account" for r in reply["requests"]):  # they name the network they came through
            self.network = network_name(self.client, CALL_TIMEOUT) or self.network
        with self._lock:
            if fetch < self._applied:  # a newer listing (another thread's) is already showing
                return
            self._applied = fetch
            if not self.node_up:
                self.node_back()
            ordered = sorted(reply["requests"], key=lambda r: (r["status"] != "pending", -r["created_at"]))
            self.requests = [make_request(self.client, r) for r in ordered]
            last_page = max(0, (len(self.requests) - 1) // self.page_size)
            self.page = min(max(0, page), last_page)
            shown = self.requests[self.page * self.page_size : (self.page + 1) * self.page_size]
            rows = []
            for r in shown:
                row = self.rows.get(r.id)
                if row is None:
                    row = self.rows[r.id] = RequestRow(self, r)
                else:
                    row.update(r)
                rows.append(row)
            self.list.children = rows or [w.HTML(f"<i>no {'' if status is None else status + ' '}requests</i>")]
            self.title.value = self._title(status, len(self.requests))
            first = self.page * self.page_size
            self.page_label.value = (
                f"<span style='padding:0 10px'>{first + 1}–{first + len(shown)} of {len(self.requests)}</span>"
                if shown
                else ""
            )
            self.prev_button.disabled = self.page == 0
            self.next_button.disabled = first + len(shown) >= len(self.requests)

    def row(self, request_id: str) -> RequestRow:
        """The row showing ``request_id`` (it must be on the current page)."""
        for row in self.list.children:
            if isinstance(row, RequestRow) and row.request_id == request_id:
                return row
        raise KeyError(f"request {request_id} is not on this page of the queue")

    # ---- liveness
    def on_event(self, event: dict[str, Any]) -> None:
        kind = str(event.get("event", ""))
        if kind == "node.down":
            self.node_down(bool(event.get("gone")))
        elif kind == "session.closed":
            self.session_closed()
        elif kind == "node.up" or kind.startswith("request.") or kind == "job.finished":
            self.refresh()

    def node_down(self, gone: bool = False) -> None:
        with self._lock:
            if self.session_is_closed:
                return
            self.node_up = False
            self._down_since = self._down_since or time.time()
            self.banner.value = notice(
                down_text(self.client.node_label, gone, self._down_since, "decisions are paused"), "warning"
            )
            for row in self.rows.values():
                row.set_enabled(False)

    def session_closed(self) -> None:
        """The client was closed: say so (the node may be fine) and turn the buttons off for good."""
        with self._lock:
            self.session_is_closed, self.node_up = True, False
            self.banner.value = notice(session_closed_text(self.client.node_label), "warning")
            for button in (self.refresh_button, self.prev_button, self.next_button):
                button.disabled = True
            self.filter.disabled = True
            for row in self.rows.values():
                row.set_enabled(False)

    def _title(self, status: str | None, count: int) -> str:
        who = "all requests" if self.client.role == "owner" else f"requests by {self.client.user}"
        shown = f"{status} ({count})" if status else f"all ({count})"
        return (
            f"<b>Requests on {esc(self.client.node_label)} — {esc(shown)}</b>"
            f" <span style='color:#666'>({esc(who)})</span>"
        )

    def node_back(self) -> None:
        with self._lock:
            self.node_up, self._down_since = True, None
            self.banner.value = ""
            for row in self.rows.values():
                row.set_enabled(True)

    def text(self) -> str:
        return requests_table(self.requests, self.network)


def _summary_html(r: Request, viewer: str, network: str | None = None) -> str:
    size = size_text(r.size)
    what = (
        f"<div class='syft-account'><b>{esc(account_text(r, network))}</b></div>"
        if r.kind == "account"
        else f"<div>target: {target_html(r)}</div>"
    )
    parts = [
        f"<div><b>{esc(r.id)}</b> {badge(r.status)} <span style='color:#555'>{esc(r.kind)} request"
        f" by <b>{esc(r.requester)}</b> · {esc(when(r.info.get('created_at')))}"
        f"{' · ' + esc(size) if size else ''}</span></div>",
        what,
        f"<div>reason: {esc(r.reason)}</div>",
    ]
    if r.kind == "budget" and r.epsilon is not None:
        parts.append(f"<div>DP cost: <b>ε +{r.epsilon:g}</b> on {esc(r.target)}</div>")
    for p in r.progress:
        needed, got = int(p["needed"]), int(p["approvals"])
        pct = 100 * min(got, needed) / max(needed, 1)
        parts.append(
            f"<div class='syft-progress'>{esc(p['dataset'])}: <b>{got} of {needed}</b> approvals "
            f"({esc(p['policy'].get('kind', ''))}) <span style='display:inline-block;width:120px;"
            f"height:8px;background:#eee;vertical-align:middle'><span style='display:block;height:8px;"
            f"width:{pct:.0f}%;background:#1b7f3b'></span></span></div>"
        )
    for a in r.approvals:
        mine = " (you)" if a.get("owner") == viewer else ""
        text = f"{a.get('owner')}{mine}: {a.get('decision')}"
        if a.get("comment"):
            text += f" — “{a['comment']}”"
        parts.append(f"<div style='color:#555'>{esc(text)}</div>")
    run = r.info.get("run_status")
    if r.kind in ("code", "training") and run:
        error = f": {r.info.get('run_error')}" if r.info.get("run_error") else ""
        parts.append(f"<div>run: {badge(str(run))}{esc(error)}</div>")
    if r.status == "approved" and r.kind in ("object", "plan", "code") and viewer == r.requester:
        parts.append(notice("approved: .get() on the pointer (or job.result()) now returns the value"))
    if r.status == "approved" and r.kind == "account":
        name = (r.account or {}).get("name", r.target)
        parts.append(notice(f"approved: {name} is a data scientist here now and can log in with their key"))
    if r.status == "denied" and r.comment:
        parts.append(notice(f"denied: {r.comment}", "warning"))
    return "".join(parts)


def describe_target(r: Request) -> str:
    """What a request is about, in words: the function and its data for code, the plan's last
    line for a value, the dataset for more budget (the object id follows, for reference)."""
    info = r.info
    datasets = ", ".join(str(d) for d in info.get("datasets") or [])
    on = f" on {datasets}" if datasets else ""
    if r.kind == "code":
        return f"{info.get('fn_name') or 'code'}(…){on}"
    if r.kind == "budget":
        return f"more ε on {r.target}"
    if r.kind == "account":
        return account_text(r)
    if r.kind == "training" and r.plan:  # its first line says what trains where, for how long
        return str(r.plan[0])
    if r.plan:
        last = str(r.plan[-1]).strip()
        return (last if len(last) <= 80 else last[:77] + "…") + on
    return f"a value{on}" if on else r.target


def target_html(r: Request) -> str:
    what = describe_target(r)
    if what == r.target:
        return f"<code>{esc(r.target)}</code>"
    return f"<code>{esc(what)}</code> <span style='color:#888;font-size:85%'>({esc(r.target)})</span>"


def _code_of(r: Request) -> tuple[str, str]:
    if r.kind == "account":  # its "plan" is the node's one-line description: shown in the summary
        return "", ""
    if r.source:
        return str(r.source), f"code ({len(str(r.source).splitlines())} lines)"
    if r.plan:
        return "\n".join(r.plan), f"plan ({len(r.plan)} lines)"
    return "", ""
