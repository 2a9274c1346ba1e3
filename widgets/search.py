"""``DatasetSearch``: find datasets on a node, look at their schema and mock, take pointers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w

from syft_kernel.core.errors import NotFound, SyftError
from syft_kernel.datasets import Dataset, datasets_table

from .common import CALL_TIMEOUT, TextFallback, call, esc, notice

if TYPE_CHECKING:
    from syft_kernel.client import Client

COLUMNS = "minmax(140px, 1.2fr) minmax(90px, 1fr) minmax(160px, 2.5fr) 80px minmax(90px, 1fr)"


class DatasetSearch(TextFallback, w.VBox):
    """A search box and tag filter over a node's datasets, a paged results table, and the selected
    dataset's schema and mock preview. ``search.selected["asset"]`` is a pointer to that asset.

    Until a dataset is selected (a click on its name, or ``search.select(name)``),
    ``search.selected`` is the first hit; with no hits it raises ``NotFound``. Printed where no
    widget can render (a terminal), the search is a text table of its hits.
    """

    def __init__(self, client: Client, query: str = "", tags: list[str] | None = None, page_size: int = 10) -> None:
        if page_size < 1:
            raise ValueError("page_size is at least 1")
        self.client = client
        self.page_size = page_size
        self.page = 0
        self.total = 0
        self.results: list[Dataset] = []
        self._selected: Dataset | None = None
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
        self.table = w.GridBox(layout=w.Layout(grid_template_columns=COLUMNS, grid_gap="2px 10px"))
        self.prev_button = w.Button(description="‹ Prev", layout=w.Layout(width="80px"))
        self.next_button = w.Button(description="Next ›", layout=w.Layout(width="80px"))
        self.page_label = w.HTML()
        self.message = w.HTML()
        self.detail = w.HTML()
        self.query.observe(lambda _: self.search(), names="value")
        self.tags.observe(lambda _: self.search(), names="value")
        self.prev_button.on_click(lambda _: self.show_page(self.page - 1))
        self.next_button.on_click(lambda _: self.show_page(self.page + 1))
        super().__init__(
            [
                w.HTML(f"<b>Datasets on {esc(client.node_label)}</b>"),
                w.HBox([self.query]),
                w.HBox([w.Label("Tags", layout=w.Layout(width="80px")), self.tags, self.tag_hint]),
                self.message,
                self.table,
                w.HBox([self.prev_button, self.page_label, self.next_button]),
                self.detail,
            ]
        )
        self.add_class("syft-dataset-search")
        self.search()

    @property
    def selected(self) -> Dataset:
        """The selected dataset; before any selection, the first hit of the search."""
        if self._selected is not None:
            return self._selected
        if self.results:
            return self.results[0]
        what = f" matches {self.query.value!r}" if self.query.value else " is on this page"
        raise NotFound(f"no dataset{what}: search for one, then select it first (search.select(name))")

    # ---- actions (also what the controls call)
    def search(self, query: str | None = None, tags: list[str] | None = None) -> None:
        """Run a search (from the box and the tag filter, or the arguments) from its first page."""
        if query is not None and query != self.query.value:
            self.query.value = query  # observing the box runs the search
            return
        if tags is not None and list(tags) != list(self.tags.value):
            self.tags.value = list(tags)
            return
        self.show_page(0)

    def refresh(self) -> None:
        """Run the current search again (on the current page)."""
        self.show_page(self.page)

    def show_page(self, page: int) -> None:
        page = max(0, page)
        body = {
            "query": self.query.value,
            "tags": list(self.tags.value),
            "offset": page * self.page_size,
            "limit": self.page_size,
        }
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
        offered = [t for t in self.tags.allowed_tags if t not in self.tags.value]
        more = f" … (+{len(offered) - 12})" if len(offered) > 12 else ""
        self.tag_hint.value = (
            (f"<span style='color:#666;padding-left:8px'>type a tag: {esc(' '.join(offered[:12]))}{more}</span>")
            if offered
            else ""
        )
        self._render_table()

    def select(self, name: str) -> Dataset:
        """Select a dataset by name: show its schema and mock, and make it ``search.selected``."""
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

    def _clicked(self, name: str) -> None:
        try:
            self.select(name)
        except SyftError as e:
            self.message.value = notice(f"{e} — click the name again to retry", "error")
            return
        self.message.value = ""

    # ---- rendering
    def _render_table(self) -> None:
        cells: list[w.Widget] = [w.HTML(f"<b>{h}</b>") for h in ("name", "tags", "description", "rows", "assets")]
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
        self.page_label.value = f"<span style='padding:0 10px'>{shown}</span>"
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = first + len(self.results) >= self.total

    def _detail_html(self, d: Dataset) -> str:
        parts = [f"<h4 style='margin:8px 0 2px'>{esc(d.name)}</h4><div>{esc(d.description)}</div>"]
        for name, a in d.assets.items():
            shape = esc("×".join(map(str, a.get("shape") or [])) or "?")
            dtype = f", {a['dtype']}" if a.get("dtype") else ""
            parts.append(
                f"<div style='margin-top:6px'><b>asset {esc(name)}</b>: {esc(a['type'])} ({shape}{esc(dtype)})"
                f" — pointer: <code>search.selected[{esc(repr(name))}]</code></div>"
            )
            if a.get("columns"):
                dtypes = list(a.get("dtypes") or []) + [""] * len(a["columns"])
                names = "".join(f"<th>{esc(c)}</th>" for c in a["columns"])
                types = "".join(f"<td>{esc(t)}</td>" for t in dtypes[: len(a["columns"])])
                parts.append(
                    f"<table class='syft-schema'><tr><th>column</th>{names}</tr><tr><th>type</th>{types}</tr></table>"
                )
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
        head = f"datasets on {self.client.node_label}" + (f" matching {' '.join(asked)}" if asked else "")
        if not self.results:
            return f"{head}: none found"
        first = self.page * self.page_size
        lines = [f"{head} ({first + 1}–{first + len(self.results)} of {self.total})"]
        lines.append(datasets_table(self.results, self.client.node_label))
        chosen = self._selected.name if self._selected else f"{self.results[0].name} (the first hit)"
        lines.append(f"selected: {chosen} — search.select(name) picks another")
        return "\n".join(lines)


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
