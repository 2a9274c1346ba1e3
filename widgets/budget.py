"""``BudgetView``: a scientist's privacy budgets as bars (warning / danger near the end) and the
history of releases plotted over time. It updates itself when a release is charged."""

from __future__ import annotations

import datetime as _dt
import io
import threading
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from syft_kernel.core.errors import NodeUnavailable, SyftError
from syft_kernel.dp import budget_table

from .common import LiveView, TextFallback, call, esc, notice, when
from .live import NodeWatcher, node_gone, session_closed_text

if TYPE_CHECKING:
    from syft_kernel.client import Client

WARNING_AT = 0.75  # share of the budget spent at which the bar turns orange
DANGER_AT = 0.9  # … and red
PAD = _dt.timedelta(minutes=1)  # the history plot shows at least this much time each side of its releases


def bar_style(spent: float, total: float) -> str:
    """``success`` / ``warning`` / ``danger`` for a budget ``spent`` of ``total``."""
    share = 1.0 if total <= 0 else spent / total
    return "danger" if share >= DANGER_AT else "warning" if share >= WARNING_AT else "success"


class BudgetView(LiveView, TextFallback, w.VBox):
    """Per dataset: epsilon spent and left as a bar; below, cumulative epsilon over time."""

    def __init__(self, client: Client, user: str | None = None, live: bool = True) -> None:
        self.client = client
        self.user = user  # owners may look at a scientist's budgets
        self.data: dict[str, Any] = {"budgets": [], "history": []}
        self.updated_at: float | None = None  # when the figures shown were read from the node
        self._rows: dict[str, w.HBox] = {}
        self._empty = w.HTML("<i>no privacy budgets yet: the data owner sets them (owner.budget.set)</i>")
        self.status = w.HTML()
        self._lock = threading.Lock()
        self._fetches = self._applied = 0
        self.banner = w.HTML()
        self.bars = w.VBox()
        self.plot = w.Image(format="png", layout=w.Layout(max_width="640px"))
        self.refresh_button = w.Button(description="Refresh", icon="refresh", layout=w.Layout(width="100px"))
        self.refresh_button.on_click(lambda _: self.refresh())
        who = user or client.user
        super().__init__(
            [
                w.HBox(
                    [w.HTML(f"<b>Privacy budgets of {esc(who)} on {esc(client.node_label)}</b>"), self.refresh_button]
                ),
                self.banner,
                self.bars,
                self.status,
                self.plot,
            ]
        )
        self.add_class("syft-budget")
        self._unsubscribe = NodeWatcher.of(client).subscribe(self.on_event) if live else None
        self.refresh()

    def refresh(self) -> None:
        """Read the budgets from the node and update the bars in place; if the node cannot answer,
        the view keeps the last figures and says how old they are."""
        with self._lock:
            fetch = self._fetches = self._fetches + 1
        try:
            reply, _ = call(self.client, "budgets.get", {"user": self.user} if self.user else {})
        except NodeUnavailable:
            if self.client.closed:
                self.session_closed()
            else:
                self.stale(node_gone(self.client))
            return
        except SyftError as e:
            self.banner.value = notice(f"{e} ({self._age()})", "error")
            return
        png = history_png(reply["history"], {b["dataset"]: b["epsilon"] for b in reply["budgets"]})
        with self._lock:
            if fetch < self._applied:  # a newer reply (another thread's) is already showing
                return
            self._applied = fetch
            self.updated_at = time.time()
            self.banner.value = ""
            self.status.value = f"<span style='color:#666;font-size:90%'>{esc(self._age())}</span>"
            self.plot.value = png or b""
            self.plot.layout.display = "" if png else "none"
            rows = [self._bar(b) for b in reply["budgets"]]
            if [id(r) for r in rows] != [id(r) for r in self.bars.children]:
                self.bars.children = rows or [self._empty]
            self.data = reply

    def _bar(self, b: dict[str, Any]) -> w.HBox:
        """The row of ``b``'s dataset, made once and then updated in place: a frontend that has
        drawn it shows each new figure (a row replaced from the watcher's thread may not be)."""
        total, spent = float(b["epsilon"]), float(b["spent"])
        row = self._rows.get(b["dataset"])
        if row is None:
            bar = w.FloatProgress(min=0.0, max=1.0, layout=w.Layout(width="260px"))
            bar.add_class("syft-budget-bar")
            name = w.HTML(f"<code>{esc(b['dataset'])}</code>", layout=w.Layout(width="220px"))
            row = self._rows[b["dataset"]] = w.HBox([name, bar, w.HTML()])
        name, bar, label = row.children
        top = max(total, 1e-12)
        if top >= bar.max:  # max first when it grows, value first when it shrinks: never clipped
            bar.max, bar.value = top, min(spent, total)
        else:
            bar.value, bar.max = min(spent, total), top
        bar.bar_style = bar_style(spent, total)
        delta = f", δ {b['delta']:.2g}" if b.get("delta") else ""
        label.value = (
            f"<span style='padding-left:8px'>ε spent <b>{spent:.4g}</b> of {total:.4g} · left "
            f"<b>{b['left']:.4g}</b>{esc(delta)} · {esc(b['releases'])} release(s)</span>"
        )
        return row

    def bar(self, dataset: str) -> w.FloatProgress:
        """The progress bar of ``dataset`` (for tests and for styling)."""
        for row in self.bars.children:
            if isinstance(row, w.HBox) and dataset in row.children[0].value:
                return row.children[1]
        raise KeyError(f"no budget bar for {dataset!r}")

    def _age(self) -> str:
        if self.updated_at is None:
            return "not loaded yet"
        return f"last updated {time.strftime('%H:%M:%S', time.localtime(self.updated_at))}"

    def stale(self, gone: bool = False) -> None:
        """The node cannot answer: keep the figures, and say since when they are not refreshed."""
        label = self.client.node_label
        if gone:
            text = f"{self._age()}; {label} was deleted (its folder is gone): these figures will not change"
        else:
            text = f"{self._age()}; {label} is not answering: this view recovers when it is back"
        self.banner.value = notice(text, "warning")

    def session_closed(self) -> None:
        self.banner.value = notice(f"{self._age()}; {session_closed_text(self.client.node_label)}", "warning")
        self.refresh_button.disabled = True

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "node.down":
            self.stale(bool(event.get("gone")))
        elif kind == "session.closed":
            self.session_closed()
        elif kind == "budget.changed" and event.get("user") not in (None, self.user or self.client.user):
            return  # an owner hears every scientist's charges; this view shows one scientist
        elif kind in ("node.up", "budget.changed", "request.decided"):
            self.refresh()

    def text(self) -> str:
        data = {"user": self.user or self.client.user, **self.data}
        lines = [budget_table(data)]
        if self.data["history"]:
            last = self.data["history"][-1]
            lines.append(f"last release: {last['query']} on {last['dataset']} at {when(last['at'])}")
        return "\n".join(lines)


def history_png(history: list[dict[str, Any]], totals: dict[str, float]) -> bytes | None:
    """Cumulative epsilon per dataset over time, with each budget as a dashed line (PNG)."""
    if not history:
        return None
    fig = history_figure(history, totals)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def history_figure(history: list[dict[str, Any]], totals: dict[str, float]) -> Any:
    """The figure of ``history_png``: a local-time axis a person reads (dates, hours, minutes,
    seconds as ``21:40:05``, never bare second fractions), at least two minutes wide."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 2.6), dpi=100)
    ax = fig.add_subplot()
    for dataset in sorted({h["dataset"] for h in history}):
        points = [h for h in history if h["dataset"] == dataset]
        times = [_dt.datetime.fromtimestamp(h["at"]) for h in points]
        (line,) = ax.step(times, [h["spent"] for h in points], where="post", marker="o", markersize=3, label=dataset)
        if dataset in totals:
            ax.axhline(totals[dataset], color=line.get_color(), linestyle="--", linewidth=0.8)
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    first = min(_dt.datetime.fromtimestamp(h["at"]) for h in history)
    last = max(_dt.datetime.fromtimestamp(h["at"]) for h in history)
    if last - first < PAD * 2:  # one release, or a burst: a few minutes around it, not years
        middle = first + (last - first) / 2
        ax.set_xlim(middle - PAD, middle + PAD)
    else:
        margin = (last - first) * 0.05
        ax.set_xlim(first - margin, last + margin)
    locator = AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    formatter = ConciseDateFormatter(locator)  # readable from seconds to months
    # levels: years, months, days, hours, minutes, seconds; the corner says the day once
    formatter.formats = ["%Y", "%b", "%d %b", "%H:%M", "%H:%M", "%H:%M:%S"]
    formatter.zero_formats = ["", "%Y", "%d %b", "%d %b", "%H:%M", "%H:%M:%S"]
    formatter.offset_formats = ["", "%Y", "%b %Y", "%Y-%m-%d", "%Y-%m-%d", "%Y-%m-%d"]
    ax.xaxis.set_major_formatter(formatter)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("ε spent")
    ax.set_title("privacy spent over time (dashed: budget)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
