"""``BudgetView``: a scientist's privacy budgets as bars (warning / danger near the end) and the
history of releases plotted over time. It updates itself when a release is charged."""

from __future__ import annotations

import datetime as _dt
import io
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from syft_kernel.core.errors import NodeUnavailable, SyftError
from syft_kernel.dp import budget_table

from .common import LiveView, TextFallback, call, esc, notice, when
from .live import NodeWatcher

if TYPE_CHECKING:
    from syft_kernel.client import Client

WARNING_AT = 0.75  # share of the budget spent at which the bar turns orange
DANGER_AT = 0.9  # … and red


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
                self.plot,
            ]
        )
        self.add_class("syft-budget")
        self._unsubscribe = NodeWatcher.of(client).subscribe(self.on_event) if live else None
        self.refresh()

    def refresh(self) -> None:
        with self._lock:
            fetch = self._fetches = self._fetches + 1
        try:
            reply, _ = call(self.client, "budgets.get", {"user": self.user} if self.user else {})
        except NodeUnavailable as e:
            self.banner.value = notice(f"{e}; showing the last figures", "warning")
            return
        except SyftError as e:
            self.banner.value = notice(str(e), "error")
            return
        png = history_png(reply["history"], {b["dataset"]: b["epsilon"] for b in reply["budgets"]})
        with self._lock:
            if fetch < self._applied:  # a newer reply (another thread's) is already showing
                return
            self._applied = fetch
            self.banner.value = ""
            self.plot.value = png or b""
            self.plot.layout.display = "" if png else "none"
            self.bars.children = [self._bar(b) for b in reply["budgets"]] or [
                w.HTML("<i>no privacy budgets yet: the data owner sets them (owner.budget.set)</i>")
            ]
            self.data = reply

    def _bar(self, b: dict[str, Any]) -> w.Widget:
        total, spent = float(b["epsilon"]), float(b["spent"])
        bar = w.FloatProgress(
            value=min(spent, total),
            min=0.0,
            max=max(total, 1e-12),
            bar_style=bar_style(spent, total),
            layout=w.Layout(width="260px"),
        )
        bar.add_class("syft-budget-bar")
        delta = f", δ {b['delta']:.2g}" if b.get("delta") else ""
        label = w.HTML(
            f"<span style='padding-left:8px'>ε spent <b>{spent:.4g}</b> of {total:.4g} · left "
            f"<b>{b['left']:.4g}</b>{esc(delta)} · {esc(b['releases'])} release(s)</span>"
        )
        name = w.HTML(f"<code>{esc(b['dataset'])}</code>", layout=w.Layout(width="220px"))
        return w.HBox([name, bar, label])

    def bar(self, dataset: str) -> w.FloatProgress:
        """The progress bar of ``dataset`` (for tests and for styling)."""
        for row in self.bars.children:
            if isinstance(row, w.HBox) and dataset in row.children[0].value:
                return row.children[1]
        raise KeyError(f"no budget bar for {dataset!r}")

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "node.down":
            self.banner.value = notice(
                f"{self.client.node_label} is not answering; showing the last figures", "warning"
            )
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

    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # readable from seconds to months
    ax.set_ylim(bottom=0)
    ax.set_ylabel("ε spent")
    ax.set_title("privacy spent over time (dashed: budget)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
