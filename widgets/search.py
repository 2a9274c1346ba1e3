"""``DatasetSearch``: find datasets on a node or across a network, look at their schema and mock,
take pointers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import ipywidgets as w

from syft_kernel.core.errors import InvalidArgument, NodeUnavailable, NotFound, SyftError
from syft_kernel.datasets import Dataset, datasets_table

from .common import CALL_TIMEOUT, TextFallback, badge, call, esc, notice, when

if TYPE_CHECKING:
    from syft_kernel.client import Client
    from syft_kernel.network import DatasetHit, Network
    from syft_kernel.pointer import Pointer

COLUMNS = "minmax(140px, 1.2fr) minmax(90px, 1fr) minmax(160px, 2.5fr) 80px minmax(90px, 1fr)"
# on a network: node, name, tags, description, assets, online
NETWORK_COLUMNS = (
    "minmax(80px, 0.8fr) minmax(140px, 1.2fr) minmax(90px, 1fr) minmax(160px, 2.5fr) minmax(90px, 1fr) 80px"
)
NETWORK_LIMIT = 1000  # hits fetched per network search (the gateway's most); pages are cut from them
GREY = "#999"
T = TypeVar("T")


class DatasetSearch(TextFallback, w.VBox):
    """A search box and tag filter over a node's datasets (``DatasetSearch(client)``) or over every
    dataset listed on a network (``DatasetSearch(net)``, ``net`` from ``sk.connect_network``), a
    paged results table, and the selected dataset's schema (and mock preview).

    On a node, ``search.selected`` is a ``Dataset`` and ``search.selected["asset"]`` a pointer to
    that asset. On a network each hit names its node and whether that node is online (an offline
    node's hits are greyed: their listing is what the node last published), and
    ``search.selected`` is the ``DatasetHit``; ``search.pointer("asset")`` logs in to the hit's
    node (``net.login(hit.node)``) and returns a pointer to that asset there, and
    ``search.dataset()`` the node's ``Dataset`` (``net.login(hit.node).datasets[hit.name]``).
    Without an account on that node, both say how to ask for one
    (``net.request_account(node, reason=…)``). ``pointer`` and ``dataset`` work on a node too.

    Until a dataset is selected (a click on its name, or ``search.select(name)``; on a network
    ``search.select(name, node=…)`` when several nodes list that name), ``search.selected`` is
    the first hit; with no hits it raises ``NotFound``. Printed where no widget can render (a
    terminal), the search is a text table of its hits.
    """

    def __init__(
        self, source: Client | Network, query: str = "", tags: list[str] | None = None, page_size: int = 10
    ) -> None:
        from syft_kernel.network import Network

        if page_size < 1:
            raise ValueError("page_size is at least 1")
        self.network: Network | None = source if isinstance(source, Network) else None
        self.client: Client | None = None if isinstance(source, Network) else source
        self.page_size = page_size
        self.page = 0
        self.total = 0
        self.results: list[Any] = []  # Dataset on a node, DatasetHit on a network
        self._hits: list[DatasetHit] = []  # a network search's hits, every page
        self._selected: Any = None
        self._pending: threading.Thread | None = None  # a gateway call still running
        self.query = w.Text(
            value=query,
            placeholder="search names, descriptions, tags, assets",
            description="Search",
            continuous_update=False,  # on Enter or leaving the box
            layout=w.Layout(width="420px"),
        )
        self.tags = w.TagsInput(
            value=list(tags or []), allowed_tags=[], allow_duplicates=False, layout=w.Layout(min_width="120px")
        )
        self.tag_hint = w.HTML()
        columns = NETWORK_COLUMNS if self.network is not None else COLUMNS
        self.table = w.GridBox(layout=w.Layout(grid_template_columns=columns, grid_gap="2px 10px"))
        self.prev_button = w.Button(description="‹ Prev", layout=w.Layout(width="80px"))
        self.next_button = w.Button(description="Next ›", layout=w.Layout(width="80px"))
        self.refresh_button = w.Button(description="Refresh", icon="refresh", layout=w.Layout(width="100px"))
        self.page_label = w.HTML()
        self.message = w.HTML()
        self.detail = w.HTML()
        self.query.observe(lambda _: self.search(), names="value")
        self.tags.observe(lambda _: self.search(), names="value")
        self.prev_button.on_click(lambda _: self.show_page(self.page - 1))
        self.next_button.on_click(lambda _: self.show_page(self.page + 1))
        self.refresh_button.on_click(lambda _: self.refresh())
        search_row = [self.query] + ([self.refresh_button] if self.network is not None else [])
        super().__init__(
            [
                w.HTML(f"<b>Datasets on {esc(self.where)}</b>"),
                w.HBox(search_row),
                w.HBox([w.Label("Tags", layout=w.Layout(width="80px")), self.tags, self.tag_hint]),
                self.message,
                self.table,
                w.HBox([self.prev_button, self.page_label, self.next_button]),
                self.detail,
            ]
        )
        self.add_class("syft-dataset-search")
        if self.network is not None:
            self.add_class("syft-network-search")
        self.search()

    @property
    def where(self) -> str:
        """What is searched: the node's label, or "the network NAME"."""
        if self.network is not None:
            return f"the network {self.network.name}"
        assert self.client is not None
        return self.client.node_label

    @property
    def selected(self) -> Any:
        """The selected dataset (a ``Dataset`` on a node, a ``DatasetHit`` on a network); before
        any selection, the first hit of the search."""
        if self._selected is not None:
            return self._selected
        if self.results:
            return self.results[0]
        what = f" matches {self.query.value!r}" if self.query.value else " is on this page"
        raise NotFound(f"no dataset{what}: search for one, then select it first (search.select(name))")

    def dataset(self) -> Dataset:
        """The selected dataset as its node shows it (on a network: logged in with
        ``net.login(hit.node)``, so its pointers work)."""
        chosen = self.selected
        if self.network is None:
            return chosen  # type: ignore[no-any-return]
        if not chosen.online:
            raise NodeUnavailable(
                f"{chosen.node} is not answering (offline on {self.where}): its dataset {chosen.name} can be "
                "used once it is back (search.refresh() shows when)"
            )
        return self.network.login(chosen.node).datasets[chosen.name]

    def pointer(self, asset: str | None = None) -> Pointer:
        """A pointer to ``asset`` of the selected dataset (its only asset when it has one)."""
        names = list(self.selected.assets) if self.network is None else [a["name"] for a in self.selected.assets]
        if asset is None:
            if len(names) != 1:
                raise InvalidArgument(f"{self.selected.name} has the assets {', '.join(names)}: search.pointer(asset)")
            asset = names[0]
        if asset not in names:
            raise NotFound(f"dataset {self.selected.name!r} has no asset {asset!r}; it has {', '.join(names)}")
        return self.dataset()[asset]

    # ---- actions (also what the controls call)
    def search(self, query: str | None = None, tags: list[str] | None = None) -> None:
        """Run a search (from the box and the tag filter, or the arguments) from its first page."""
        if query is not None and query != self.query.value:
            self.query.value = query  # observing the box runs the search
            return
        if tags is not None and list(tags) != list(self.tags.value):
            self.tags.value = list(tags)
            return
        if self.network is not None:
            self._search_network(0)
        else:
            self.show_page(0)

    def refresh(self) -> None:
        """Run the current search again (on the current page); on a network this also shows which
        nodes are online now."""
        if self.network is not None:
            self._search_network(self.page)
        else:
            self.show_page(self.page)

    def show_page(self, page: int) -> None:
        """Show page ``page`` (from 0) of the current search."""
        page = max(0, page)
        if self.network is not None:
            self._show_hits(page)
            return
        body = {
            "query": self.query.value,
            "tags": list(self.tags.value),
            "offset": page * self.page_size,
            "limit": self.page_size,
        }
        assert self.client is not None
        try:
            reply, _ = call(self.client, "datasets.list", body)
        except SyftError as e:
            self.message.value = notice(f"{e} — press Next or search again to retry", "error")
            return
        total = int(reply.get("total", len(reply["datasets"])))
        if not reply["datasets"] and page > 0 and total > 0:  # datasets went away: show the last page
            self.show_page((total - 1) // self.page_size)
            return
        self.message.value = ""
        self.page, self.total = page, total
        self.results = [Dataset(self.client, d) for d in reply["datasets"]]
        self.tags.allowed_tags = list(reply.get("tags", []))
        self._hint_tags(self.tags.allowed_tags)
        self._render_table()

    def select(self, name: str, node: str | None = None) -> Any:
        """Select a dataset by name (on a network, and by ``node`` where several nodes list it):
        show its schema, and make it ``search.selected``."""
        if self.network is not None:
            return self._select_hit(name, node)
        assert self.client is not None
        found = next((d for d in self.results if d.name == name), None)
        if found is None:
            reply, _ = call(self.client, "datasets.get", {"name": name})
            found = Dataset(self.client, reply)
        self._selected = found
        self.detail.value = self._detail_html(found)
        for child in self.table.children:
            if isinstance(child, w.Button):
                child.button_style = "info" if child.description == name else ""
        return found

    def _clicked(self, name: str, node: str | None = None) -> None:
        try:
            self.select(name, node)
        except SyftError as e:
            self.message.value = notice(f"{e} — click the name again to retry", "error")
            return
        self.message.value = ""

    # ---- the network
    def _gateway(self, fn: Callable[[], T]) -> T:
        """Run a gateway call for at most ``CALL_TIMEOUT`` seconds (a widget never hangs the
        kernel); one at a time: while one is still out, the next says so."""
        assert self.network is not None
        if self._pending is not None and self._pending.is_alive():
            raise NodeUnavailable(f"still waiting for the gateway {self.network.name} to answer the last search")
        out: dict[str, Any] = {}

        def run() -> None:
            try:
                out["value"] = fn()
            except BaseException as e:  # handed to the caller's thread
                out["error"] = e

        thread = threading.Thread(target=run, name="syft-network-search", daemon=True)
        thread.start()
        thread.join(CALL_TIMEOUT)
        if thread.is_alive():
            self._pending = thread
            raise NodeUnavailable(f"the gateway {self.network.name} did not answer in {CALL_TIMEOUT:.0f}s")
        if "error" in out:
            raise out["error"]
        return out["value"]  # type: ignore[no-any-return]

    def _search_network(self, page: int) -> None:
        net = self.network
        assert net is not None
        query, tags = self.query.value, list(self.tags.value)
        try:
            hits = self._gateway(lambda: list(net.datasets.search(query, tags=tags, limit=NETWORK_LIMIT)))
        except SyftError as e:
            self.message.value = notice(f"{e} — press Refresh to try again", "error")
            return
        self.message.value = ""
        self._hits = hits
        if self._selected is not None:  # the same dataset, as the gateway sees it now (online or not)
            fresh = next((h for h in hits if _key(h) == _key(self._selected)), None)
            if fresh is not None:
                self._selected = fresh
                self.detail.value = self._hit_html(fresh)
        self._hint_tags(sorted({t for h in hits for t in h.tags}))
        self._show_hits(page)

    def _show_hits(self, page: int) -> None:
        last = max(0, (len(self._hits) - 1) // self.page_size)
        self.page = min(max(0, page), last)
        self.total = len(self._hits)
        self.results = self._hits[self.page * self.page_size : (self.page + 1) * self.page_size]
        self._render_table()

    def _select_hit(self, name: str, node: str | None) -> DatasetHit:
        found = [h for h in self._hits if h.name == name and (node is None or h.node == node)]
        if not found:
            net = self.network
            assert net is not None
            found = list(self._gateway(lambda: list(net.datasets.search(node=node, limit=NETWORK_LIMIT))))
            found = [h for h in found if h.name == name]
        if not found:
            on = f" on {node}" if node else ""
            raise NotFound(f"no dataset {name!r}{on} is listed on {self.where}: search for it first")
        if len(found) > 1 and node is None:
            nodes = ", ".join(h.node for h in found)
            raise InvalidArgument(f"{name} is listed by several nodes ({nodes}): search.select({name!r}, node=…)")
        hit = found[0]
        self._selected = hit
        self.detail.value = self._hit_html(hit)
        self._highlight()
        return hit

    # ---- rendering
    def _hint_tags(self, known: list[str]) -> None:
        offered = [t for t in known if t not in self.tags.value]
        more = f" … (+{len(offered) - 12})" if len(offered) > 12 else ""
        self.tag_hint.value = (
            (f"<span style='color:#666;padding-left:8px'>type a tag: {esc(' '.join(offered[:12]))}{more}</span>")
            if offered
            else ""
        )

    def _render_table(self) -> None:
        if self.network is not None:
            cells = self._network_cells()
        else:
            cells = [w.HTML(f"<b>{h}</b>") for h in ("name", "tags", "description", "rows", "assets")]
            for d in self.results:
                button = w.Button(
                    description=d.name,
                    tooltip=f"show {d.name}",
                    layout=w.Layout(width="auto"),
                    button_style="info" if self._selected and self._selected.name == d.name else "",
                )
                button.on_click(lambda b: self._clicked(b.description))
                cells += [
                    button,
                    w.HTML(esc(" ".join(d.tags))),
                    w.HTML(esc(d.description)),
                    w.HTML(esc(_rows(d))),
                    w.HTML(esc(", ".join(d.assets))),
                ]
        if not self.results:
            cells.append(w.HTML("<i>no dataset matches</i>"))
        self.table.children = cells
        first = self.page * self.page_size
        shown = f"{first + 1}–{first + len(self.results)} of {self.total}" if self.results else f"0 of {self.total}"
        if self.network is not None and self.total >= NETWORK_LIMIT:
            shown += " (the first hits: search for fewer)"
        self.page_label.value = f"<span style='padding:0 10px'>{shown}</span>"
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = first + len(self.results) >= self.total

    def _network_cells(self) -> list[w.Widget]:
        cells: list[w.Widget] = [
            w.HTML(f"<b>{h}</b>") for h in ("node", "name", "tags", "description", "assets", "online")
        ]
        for h in self.results:
            grey = "" if h.online else f" style='color:{GREY}'"
            button = w.Button(
                description=h.name,
                tooltip=f"show {h.name} on {h.node}" + ("" if h.online else " (the node is offline)"),
                layout=w.Layout(width="auto"),
                button_style="info" if self._selected is not None and _key(self._selected) == _key(h) else "",
            )
            button.node = h.node  # which node's dataset this button shows
            if not h.online:
                button.style.text_color = GREY
                button.add_class("syft-offline")
            button.on_click(lambda b: self._clicked(b.description, b.node))
            cells += [
                w.HTML(f"<span class='syft-node'{grey}>{esc(h.node)}</span>"),
                button,
                w.HTML(f"<span{grey}>{esc(' '.join(h.tags))}</span>"),
                w.HTML(f"<span{grey}>{esc(h.description)}</span>"),
                w.HTML(f"<span{grey}>{esc(', '.join(a['name'] for a in h.assets))}</span>"),
                w.HTML(badge("online" if h.online else "offline")),
            ]
        return cells

    def _highlight(self) -> None:
        chosen = _key(self._selected) if self._selected is not None else None
        for child in self.table.children:
            if isinstance(child, w.Button):
                child.button_style = "info" if (getattr(child, "node", None), child.description) == chosen else ""

    def _hit_html(self, h: DatasetHit) -> str:
        assert self.network is not None
        net = self.network.name
        state = badge("online" if h.online else "offline")
        parts = [
            f"<h4 style='margin:8px 0 2px'>{esc(h.name)} <span style='color:#555'>on {esc(h.node)}</span> {state}</h4>"
            f"<div>{esc(h.description)}</div>"
        ]
        if h.tags:
            parts.append(f"<div style='color:#555'>tags: {esc(' '.join(h.tags))}</div>")
        if not h.online:
            parts.append(notice(self._offline_text(h), "warning"))
        for a in h.assets:
            parts.append(
                f"<div style='margin-top:6px'><b>asset {esc(a['name'])}</b>: {esc(a['type'])} ({esc(_listed_shape(a))})"
                + (f" — pointer: <code>search.pointer({esc(repr(a['name']))})</code>" if h.online else "")
                + "</div>"
            )
            if a.get("columns"):
                parts.append(_schema_table(a["columns"], a.get("dtypes") or []))
        client = self.network.clients.get(h.node)
        if not h.online:
            return "".join(parts)
        if client is None or client.closed:
            parts.append(
                notice(
                    f"the schema above is what {h.node} lists on {net}; search.dataset() logs in to {h.node} "
                    f"(net.login({h.node!r})) for its mock and pointers. No account there? "
                    f"net.request_account({h.node!r}, reason='…')"
                )
            )
            return "".join(parts)
        for a in h.assets:  # logged in already: the mock costs one call
            try:
                value = client.datasets.mock(h.name, a["name"], timeout=CALL_TIMEOUT)
                parts.append(f"<div><i>{esc(a['name'])}: mock preview (synthetic values)</i></div>" + _preview(value))
            except SyftError as e:
                parts.append(notice(f"no mock preview of {a['name']}: {e}", "warning"))
            except (TypeError, ValueError) as e:
                parts.append(notice(f"the mock preview of {a['name']} could not be drawn: {e}", "warning"))
        return "".join(parts)

    def _offline_text(self, h: DatasetHit) -> str:
        assert self.network is not None
        net = self.network
        heard = ""
        try:
            seen = next((n.last_seen for n in self._gateway(lambda: list(net.nodes)) if n.name == h.node), None)
            heard = f", last heard {when(seen)}" if seen else ""
        except SyftError:
            pass
        return (
            f"{h.node} is not answering (offline on {net.name}{heard}): what is shown is what it last "
            "published; its data can be used once it is back (Refresh shows when)"
        )

    def _detail_html(self, d: Dataset) -> str:
        assert self.client is not None
        parts = [f"<h4 style='margin:8px 0 2px'>{esc(d.name)}</h4><div>{esc(d.description)}</div>"]
        for name, a in d.assets.items():
            shape = esc("×".join(map(str, a.get("shape") or [])) or "?")
            dtype = f", {a['dtype']}" if a.get("dtype") else ""
            parts.append(
                f"<div style='margin-top:6px'><b>asset {esc(name)}</b>: {esc(a['type'])} ({shape}{esc(dtype)})"
                f" — pointer: <code>search.selected[{esc(repr(name))}]</code></div>"
            )
            if a.get("columns"):
                parts.append(_schema_table(a["columns"], a.get("dtypes") or []))
            try:
                parts.append(
                    "<div><i>mock preview (synthetic values)</i></div>"
                    + _preview(self.client.datasets.mock(d.name, name, timeout=CALL_TIMEOUT))
                )
            except SyftError as e:
                parts.append(notice(f"no mock preview: {e}", "warning"))
            except (TypeError, ValueError) as e:  # a mock this view cannot draw: say so, keep the rest
                parts.append(notice(f"the mock preview could not be drawn: {e}", "warning"))
        return "".join(parts)

    def text(self) -> str:
        """The hits as a text table, with what was searched and which is selected."""
        asked = [f"{self.query.value!r}"] if self.query.value else []
        asked += list(self.tags.value)
        head = f"datasets on {self.where}" + (f" matching {' '.join(asked)}" if asked else "")
        if not self.results:
            return f"{head}: none found"
        first = self.page * self.page_size
        lines = [f"{head} ({first + 1}–{first + len(self.results)} of {self.total})"]
        if self.network is not None:
            lines.append(_hits_table(self.results))
            pick = self._selected or self.results[0]
            chosen = f"{pick.name} on {pick.node}" + ("" if self._selected else " (the first hit)")
            lines.append(
                f"selected: {chosen} — search.select(name, node=…) picks another; search.pointer(asset) logs in"
            )
            return "\n".join(lines)
        assert self.client is not None
        lines.append(datasets_table(self.results, self.client.node_label))
        chosen = self._selected.name if self._selected else f"{self.results[0].name} (the first hit)"
        lines.append(f"selected: {chosen} — search.select(name) picks another")
        return "\n".join(lines)


def _key(hit: Any) -> tuple[str, str]:
    return (str(hit.node), str(hit.name))


def _hits_table(hits: list[DatasetHit]) -> str:
    rows = [
        [h.node, h.name, ", ".join(a["name"] for a in h.assets), "online" if h.online else "offline", _about(h)]
        for h in hits
    ]
    head = ["node", "name", "assets", "state", "tags / description"]
    widths = [max(len(head[i]), *(len(r[i][:24]) for r in rows)) for i in range(4)]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(head[:4])) + "  " + head[4]]
    for r in rows:
        lines.append("  ".join(r[i][:24].ljust(widths[i]) for i in range(4)) + "  " + r[4])
    return "\n".join(lines)


def _about(h: DatasetHit) -> str:
    return f"{' '.join(h.tags)}  {h.description[:60]}".strip()


def _listed_shape(a: dict[str, Any]) -> str:
    """An asset's shape as a listing gives it: rows only where the owner made them public."""
    known = a.get("rows") is not None
    dtype = f", {a['dtype']}" if a.get("dtype") else ""
    hidden = "" if known else " (row count not public)"
    if a.get("columns") is not None:
        rows = f"{a['rows']:,} rows × " if known else ""
        return f"{rows}{len(a['columns'])} columns{dtype}{hidden}"
    shape = [f"{a['rows']:,}" if known else "?", *map(str, a.get("shape") or [])]
    return f"{' × '.join(shape)}{dtype}{hidden}"


def _schema_table(columns: list[Any], dtypes: list[Any]) -> str:
    types = list(dtypes) + [""] * len(columns)
    names = "".join(f"<th>{esc(c)}</th>" for c in columns)
    cells = "".join(f"<td>{esc(t)}</td>" for t in types[: len(columns)])
    return f"<table class='syft-schema'><tr><th>column</th>{names}</tr><tr><th>type</th>{cells}</tr></table>"


def _rows(d: Dataset) -> str:
    counts = [a["shape"][0] for a in d.assets.values() if a.get("shape")]
    return f"{counts[0]:,}" if len(counts) == 1 else " / ".join(f"{c:,}" for c in counts)


def _preview(value: Any) -> str:
    import numpy as np
    import pandas as pd

    if isinstance(value, pd.Series):
        value = value.to_frame()
    if isinstance(value, pd.DataFrame):
        return value.head(5).to_html(max_cols=12)  # escapes every value
    array = np.asarray(value)
    return f"<pre>{esc(np.array2string(array[:5] if array.ndim else array, threshold=40))}</pre>"
