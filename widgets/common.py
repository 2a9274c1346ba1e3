"""Small pieces the widgets share: short-timeout calls, HTML snippets, a text fallback."""

from __future__ import annotations

import datetime as _dt
import functools
import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syft_kernel.client import Client

CALL_TIMEOUT = 5.0  # a widget waits this long for the node, then says it is unreachable

COLORS = {
    "pending": "#b26a00",
    "approved": "#1b7f3b",
    "denied": "#b3261e",
    "running": "#1a5fb4",
    "failed": "#b3261e",
    "done": "#1b7f3b",
    "online": "#1b7f3b",  # a node on a network: answering its gateway, or not
    "offline": "#888",
    "admitted": "#1b7f3b",
}


def call(client: Client, msg_type: str, body: dict[str, Any] | None = None) -> tuple[Any, list[Any]]:
    """A node call that gives up after ``CALL_TIMEOUT``: a widget must never hang the kernel."""
    return client.call(msg_type, body or {}, timeout=CALL_TIMEOUT)


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def badge(status: str) -> str:
    color = COLORS.get(status, "#555")
    return (
        f'<span class="syft-badge syft-{esc(status)}" style="background:{color};color:white;'
        f'border-radius:8px;padding:0 7px;font-size:90%">{esc(status)}</span>'
    )


def notice(text: str, kind: str = "info") -> str:
    """A one-line message box: ``info``, ``warning`` or ``error``."""
    colors = {"info": ("#e8f0fe", "#1a5fb4"), "warning": ("#fff4e5", "#8a4b00"), "error": ("#fdecea", "#b3261e")}
    bg, fg = colors.get(kind, colors["info"])
    return (
        f'<div class="syft-notice syft-notice-{kind}" style="background:{bg};color:{fg};'
        f'padding:4px 8px;border-radius:4px">{esc(text)}</div>'
    )


def when(ts: float | None) -> str:
    return "" if ts is None else _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def size_text(size: Any) -> str:
    if size is None:
        return ""
    size = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return ""


@functools.lru_cache(maxsize=1024)
def highlight(code: str) -> str:
    """Python source as syntax-highlighted HTML (inline styles: no stylesheet needed). Cached:
    a plan or code request never changes, and refreshes re-render the same ones."""
    from pygments import highlight as _highlight

    return _highlight(code, *_pygments())


@functools.lru_cache(maxsize=1)
def _pygments() -> tuple[Any, Any]:
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return PythonLexer(), HtmlFormatter(noclasses=True, nowrap=False)


class TextFallback:
    """Mixin for widgets: where no widget can render (a terminal, nbconvert), show the text table."""

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        data = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        if data:
            data["text/plain"] = self.text()  # type: ignore[attr-defined]
        return data

    def __repr__(self) -> str:  # print(view) and a plain Python prompt: the text table, not the widget's traits
        try:
            return str(self.text())  # type: ignore[attr-defined]
        except Exception:  # not built yet (a trait error while it is made)
            return super().__repr__()

    __str__ = __repr__


class LiveView:
    """Mixin for widgets fed by a ``NodeWatcher``: closing the widget stops its live updates."""

    _unsubscribe: Any = None

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        super().close()  # type: ignore[misc]
