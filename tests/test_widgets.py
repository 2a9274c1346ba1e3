"""Widgets headless: real handlers (button.click()) against a real node; the node's state decides."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

import syft_kernel as sk
from syft_kernel import Client, PermissionDenied, login
from syft_kernel.launcher import NodeProcess, start_node
from syft_kernel.widgets import BudgetView, DatasetSearch, RequestQueue
from syft_kernel.widgets.budget import bar_style


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for something a background event causes (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the widget did not update in time"
        time.sleep(0.05)


# ---- dataset search
def test_search_filters_pages_and_selects(published: Client) -> None:
    for i in range(23):
        published.datasets.upload(
            f"lab-{i:02d}",
            assets={"values": np.arange(i + 1, dtype=float)},
            description=f"lab results batch {i}",
            tags=["#lab"] + (["#even"] if i % 2 == 0 else []),
        )
    search = sk.widgets.DatasetSearch(published, page_size=10)
    assert search.total == 24 and len(search.results) == 10
    assert "#lab" in search.tags.allowed_tags and "#February" in search.tags.allowed_tags
    assert search.prev_button.disabled and not search.next_button.disabled

    search.next_button.click()
    search.next_button.click()
    assert search.page == 2 and len(search.results) == 4 and search.next_button.disabled
    assert "21–24 of 24" in search.page_label.value

    search.tags.value = ["#even"]
    assert search.total == 12 and search.page == 0
    search.query.value = "batch 4"
    assert [d.name for d in search.results] == ["lab-04", "lab-14"]  # every word, as a substring
    search.query.value = "no such words"
    assert search.total == 0 and "no dataset matches" in search.table.children[-1].value

    search.tags.value = []
    search.query.value = "birth"
    name_button = next(c for c in search.table.children if getattr(c, "description", "") == "birth-records-feb")
    name_button.click()
    assert search.selected is not None and search.selected.name == "birth-records-feb"
    assert "mother_id" in search.detail.value and "mock preview" in search.detail.value
    ptr = search.selected["births"]
    assert ptr.client is published and "weight" in ptr.columns
    assert "birth-records-feb" in search.text()


def test_search_as_scientist_shows_mock_only(scientist: Client) -> None:
    search = DatasetSearch(scientist)
    search.select("birth-records-feb")
    with pytest.raises(PermissionDenied):
        search.selected["births"]["weight"].get()


# ---- request queue
def test_owner_approves_with_a_click(published: Client, scientist: Client) -> None:
    ptr = scientist.datasets["birth-records-feb"]["births"]["weight"].mean()
    req = ptr.request(reason="mean weight for the annual report")
    queue = RequestQueue(published)
    row = queue.row(req.id)
    assert "mean weight for the annual report" in row.summary.value and "alice" in row.summary.value
    assert row.code.get_title(0).startswith("plan") and "mean" in row.code.children[0].value
    row.comment.value = "fine for the report"
    row.approve_button.click()
    assert published.requests[req.id].status == "approved"
    assert published.requests[req.id].comment == "fine for the report"
    assert "approved" in queue.row(req.id).summary.value and queue.row(req.id).actions not in queue.row(req.id).children
    assert ptr.get() == pytest.approx(published.datasets["birth-records-feb"]["births"]["weight"].mean().get())
    queue.close()


def test_deny_and_already_decided_are_clear(published: Client, scientist: Client) -> None:
    ptr = scientist.datasets["birth-records-feb"]["births"]["weight"].max()
    req = ptr.request(reason="max weight")
    first, second = RequestQueue(published, live=False), RequestQueue(published, live=False)
    first.row(req.id).comment.value = "maxima single out babies"
    first.row(req.id).deny_button.click()
    assert published.requests[req.id].status == "denied"
    row = second.row(req.id)
    row.approve_button.click()  # a stale view: the request was decided meanwhile
    assert "already denied" in row.message.value
    assert published.requests[req.id].status == "denied"
    assert "denied" in second.row(req.id).summary.value
    with pytest.raises(PermissionDenied, match="maxima single out babies"):
        req.wait(timeout=5)


def test_new_requests_appear_without_rerunning(published: Client, scientist: Client) -> None:
    queue = RequestQueue(published)
    assert len(queue.requests) == 0
    req = scientist.datasets["birth-records-feb"]["births"]["weight"].sum().request(reason="live?")
    eventually(lambda: any(r.id == req.id for r in queue.requests))
    published.requests[req.id].approve("ok")  # decided elsewhere (another notebook): the row follows
    eventually(lambda: "approved" in queue.row(req.id).summary.value)
    queue.close()


def test_scientist_sees_own_requests_without_buttons(published: Client, scientist: Client) -> None:
    req = scientist.datasets["birth-records-feb"]["births"]["weight"].min().request(reason="min")
    queue = RequestQueue(scientist)
    row = queue.row(req.id)
    assert not row.can_decide and row.actions not in row.children
    published.requests[req.id].approve("ok")
    eventually(lambda: "now returns the value" in queue.row(req.id).summary.value)
    queue.close()


def test_consensus_progress(syft_node: NodeProcess, make_user: Callable[..., object], published: Client) -> None:
    bob_key = make_user("bob", role="owner")
    published.datasets.upload("shared", assets={"x": np.arange(5.0)}, owners=["owner", "bob"], policy=sk.Consensus())
    alice = login(syft_node.connection_file, key=make_user("alice"))
    req = alice.datasets["shared"]["x"].sum().request(reason="total")
    queue = RequestQueue(published, live=False)
    queue.row(req.id).approve_button.click()
    row = queue.row(req.id)
    assert "1 of 2" in row.summary.value and not row.can_decide
    with login(syft_node.connection_file, key=bob_key) as bob:
        bob_queue = RequestQueue(bob, live=False)
        bob_queue.row(req.id).approve_button.click()
        assert bob.requests[req.id].status == "approved"
    alice.close()


def test_widget_survives_node_restart(tmp_path, make_user) -> None:  # type: ignore[no-untyped-def]
    node = start_node(tmp_path / "clinic", name="clinic")
    owner = node.login(timeout=5)
    try:
        owner.datasets.upload("d", assets={"x": np.arange(3.0)})
        queue = RequestQueue(owner)
        node.stop()
        eventually(lambda: not queue.node_up, timeout=30)
        assert "not answering" in queue.banner.value
        assert all(r.approve_button.disabled for r in queue.rows.values())
        queue.refresh_button.click()  # refreshing while it is down says so and does not hang long
        assert "not answering" in queue.banner.value
        port = int(owner.connection["addresses"][-1].rsplit(":", 1)[1])
        node = start_node(tmp_path / "clinic", name="clinic", port=port)
        eventually(lambda: queue.node_up, timeout=30)
        assert queue.banner.value == ""
    finally:
        owner.close()
        node.stop()


# ---- budget
def test_budget_bars_and_history(published: Client, scientist: Client) -> None:
    published.budget.set("alice", "birth-records-feb", epsilon=1.0)
    view = BudgetView(scientist)
    bar = view.bar("birth-records-feb")
    assert bar.value == 0 and bar.bar_style == "success" and view.plot.layout.display == "none"
    weight = scientist.datasets["birth-records-feb"]["births"]["weight"]
    weight.dp.mean(epsilon=0.8, bounds=(0, 6000))
    eventually(lambda: view.bar("birth-records-feb").bar_style == "warning")  # pushed by the node
    assert view.data["history"][-1]["spent"] == pytest.approx(0.8)
    assert bytes(view.plot.value[:8]) == b"\x89PNG\r\n\x1a\n"
    weight.dp.mean(epsilon=0.15, bounds=(0, 6000))
    eventually(lambda: view.bar("birth-records-feb").bar_style == "danger")
    assert "0.95" in view.text()
    view.close()


def test_bar_style_thresholds() -> None:
    assert [bar_style(s, 1.0) for s in (0.0, 0.74, 0.75, 0.9, 1.0)] == [
        "success",
        "success",
        "warning",
        "danger",
        "danger",
    ]
    assert bar_style(0.0, 0.0) == "danger"


# ---- display: widget in a kernel, text elsewhere
def test_text_tables_outside_jupyter(published: Client, scientist: Client, capsys) -> None:  # type: ignore[no-untyped-def]
    from IPython.display import display

    published.budget.set("alice", "birth-records-feb", epsilon=1.0)
    display(scientist.budget)
    display(published.datasets)
    display(published.requests)
    out = capsys.readouterr().out
    assert "birth-records-feb" in out and "epsilon" in out and "no requests" in out


def test_closing_the_client_stops_live_updates(published: Client, scientist: Client) -> None:
    published.budget.set("alice", "birth-records-feb", epsilon=1.0)
    view = BudgetView(scientist)
    watcher = sk.widgets.NodeWatcher.of(scientist)
    scientist.close()
    published.budget.set("alice", "birth-records-feb", epsilon=2.0)  # an event for a closed client
    eventually(lambda: watcher._thread is None)  # the watcher's thread ended
    view.refresh_button.click()
    assert "this session was closed" in view.banner.value and "not answering" not in view.banner.value
    assert view.refresh_button.disabled


def test_series_assets_and_stale_pages(published: Client) -> None:
    import pandas as pd

    published.datasets.upload("weights", assets={"w": pd.Series([3.1, 3.4, 2.9]), "named": pd.Series([1.0], name="x")})
    search = DatasetSearch(published, page_size=1)
    assert search.total == 2 and {a for d in published.datasets.search() for a in d.assets} >= {"w", "named"}
    search.select("weights")
    assert "mock preview" in search.detail.value and "could not" not in search.detail.value
    search.next_button.click()
    assert search.page == 1
    published.datasets.delete("weights")  # the page we are on no longer exists
    search.refresh()
    assert search.page == 0 and search.total == 1 and len(search.results) == 1
    with pytest.raises(ValueError):
        DatasetSearch(published, page_size=0)


def test_displaying_again_reuses_one_live_view(published: Client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from syft_kernel import display

    monkeypatch.setattr(display, "widgets_usable", lambda: True)
    published.requests._ipython_display_()
    first = published.views["requests"]
    published.requests._ipython_display_()
    assert published.views["requests"] is first
    assert len(sk.widgets.NodeWatcher.of(published)._listeners) == 1
    first.close()
    published.requests._ipython_display_()  # a closed view is replaced
    assert published.views["requests"] is not first
    published.views["requests"].close()


def test_owner_budget_view_of_a_scientist_is_live(published: Client, scientist: Client) -> None:
    published.budget.set("alice", "birth-records-feb", epsilon=1.0)
    view = BudgetView(published, user="alice")
    scientist.datasets["birth-records-feb"]["births"]["weight"].dp.mean(epsilon=0.5, bounds=(0, 6000))
    eventually(lambda: view.bar("birth-records-feb").value == pytest.approx(0.5))
    assert "alice" in view.children[0].children[0].value
    view.close()


# ---- what a view says about itself: closed, stale, deleted (issue 13)
def test_a_closed_session_says_so_not_that_the_node_is_down(published: Client, scientist: Client) -> None:
    published.budget.set("alice", "birth-records-feb", epsilon=1.0)
    req = scientist.datasets["birth-records-feb"]["births"]["weight"].sum().request(reason="closing")
    budget, queue = BudgetView(scientist), RequestQueue(scientist)
    owner_queue = RequestQueue(published)
    scientist.close()
    eventually(lambda: "this session was closed" in budget.banner.value)
    eventually(lambda: "this session was closed" in queue.banner.value)
    for view in (budget, queue):
        assert "not answering" not in view.banner.value and view.refresh_button.disabled
    queue.refresh()  # a refresh on a closed session says the same, not "not answering"
    assert "this session was closed" in queue.banner.value and "not answering" not in queue.banner.value
    # the owner's session is still open: their queue is live and its buttons work
    assert owner_queue.banner.value == "" and not owner_queue.row(req.id).approve_button.disabled
    owner_queue.close()


def test_the_budget_view_follows_every_change_in_place(published: Client, scientist: Client) -> None:
    published.budget.set("alice", "birth-records-feb", epsilon=1.0)
    view = BudgetView(scientist)
    bar = view.bar("birth-records-feb")
    assert "last updated" in view.status.value
    weight = scientist.datasets["birth-records-feb"]["births"]["weight"]
    weight.dp.mean(epsilon=0.1, bounds=(0, 6))
    eventually(lambda: bar.value == pytest.approx(0.1))  # the same bar, updated: what a frontend shows
    for _ in range(4):
        weight.dp.mean(epsilon=0.1, bounds=(0, 6))
    eventually(lambda: bar.value == pytest.approx(0.5))
    published.budget.set("alice", "birth-records-feb", epsilon=1.2)  # set after the view was shown
    eventually(lambda: bar.max == pytest.approx(1.2))
    req = scientist.budget.request("birth-records-feb", epsilon=0.3, reason="a precise mean")
    published.requests[req.id].approve("ok")  # a grant
    eventually(lambda: bar.max == pytest.approx(1.5))
    weight.dp.mean(epsilon=0.6, bounds=(0, 6))
    eventually(lambda: bar.value == pytest.approx(1.1))
    assert view.bar("birth-records-feb") is bar
    assert "1.1" in view.text() and "1.5" in view.text()
    view.close()


def test_a_stale_budget_view_says_so_and_a_deleted_node_promises_nothing(tmp_path, make_user) -> None:  # type: ignore[no-untyped-def]
    import shutil

    node = start_node(tmp_path / "clinic", name="clinic")
    owner = node.login(timeout=5)
    try:
        owner.datasets.upload("d", assets={"x": np.arange(3.0)})
        owner.budget.set("owner", "d", epsilon=1.0)
        view, queue = BudgetView(owner), RequestQueue(owner)
        node.stop()
        eventually(lambda: "not answering" in view.banner.value, timeout=30)
        assert "last updated" in view.banner.value and "recovers when it is back" in view.banner.value
        assert view.bar("d").max == pytest.approx(1.0)  # the last figures stay
        eventually(lambda: "recovers when it is back" in queue.banner.value, timeout=30)
        shutil.rmtree(tmp_path / "clinic")  # the node is deleted: nothing will come back
        view.refresh_button.click()
        assert "was deleted" in view.banner.value and "recovers" not in view.banner.value
        queue.refresh_button.click()
        assert "was deleted" in queue.banner.value and "recovers" not in queue.banner.value
        view.close()
        queue.close()
    finally:
        owner.close()
        node.stop()


def test_the_queue_header_names_its_filter_and_targets_say_what_they_are(published: Client, scientist: Client) -> None:
    weight = scientist.datasets["birth-records-feb"]["births"]["weight"]
    first = weight.mean().request(reason="one")
    weight.max().request(reason="two")
    published.requests[first.id].approve("ok")
    queue = RequestQueue(published, status="pending", live=False)
    assert "pending (1)" in queue.title.value
    queue.filter.value = "all"
    assert "all (2)" in queue.title.value
    queue.filter.value = "denied"
    assert "denied (0)" in queue.title.value and "no denied requests" in queue.list.children[0].value
    queue.filter.value = "all"
    summary = queue.row(first.id).summary.value
    assert "mean" in summary.split("target:")[1].split("</div>")[0]  # the plan's last line, not only an id
    assert "birth-records-feb" in summary
    published.budget.set("alice", "birth-records-feb", epsilon=1.0)
    grant = scientist.budget.request("birth-records-feb", epsilon=0.5, reason="more")
    queue.refresh()
    assert "more ε on birth-records-feb" in queue.row(grant.id).summary.value


def test_dataset_search_prints_a_table_and_selects_the_first_hit(published: Client) -> None:
    search = DatasetSearch(published, query="birth")
    text = repr(search)
    assert "birth-records-feb" in text and "matching 'birth'" in text and str(search) == text
    assert "selected: birth-records-feb (the first hit)" in text
    assert search.selected.name == "birth-records-feb"  # no selection yet: the first hit
    assert "weight" in search.selected["births"].columns
    search.search("no such dataset at all")
    assert "none found" in repr(search)
    with pytest.raises(sk.NotFound, match=r"select it first \(search.select\(name\)\)"):
        search.selected  # noqa: B018


def test_the_history_plot_reads_as_local_dates_and_times() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from syft_kernel.widgets.budget import history_figure

    def labels(history: list[dict]) -> tuple[list[str], str, float]:  # type: ignore[type-arg]
        fig = history_figure(history, {"d": 1.0})
        FigureCanvasAgg(fig).draw()
        ax = fig.axes[0]
        lo, hi = ax.get_xlim()
        return [t.get_text() for t in ax.get_xticklabels()], ax.xaxis.get_major_formatter().get_offset(), hi - lo

    at = time.mktime((2026, 12, 1, 21, 40, 5, 0, 0, -1))
    ticks, offset, days = labels([{"at": at, "dataset": "d", "spent": 0.1}])  # one release
    assert 2 / 1440 <= days < 10 / 1440  # a few minutes around it, not years
    assert ticks and all(":" in t for t in ticks) and any(t.startswith("21:40") for t in ticks)
    assert offset == "2026-12-01"
    burst = [{"at": at + i * 0.03, "dataset": "d", "spent": 0.1 * i} for i in range(5)]
    ticks, _, _ = labels(burst)  # releases 30 ms apart: still clock times, never "29.82"
    assert all(":" in t for t in ticks)
    ticks, _, _ = labels(
        [{"at": at - 3 * 86400, "dataset": "d", "spent": 0.1}, {"at": at, "dataset": "d", "spent": 0.5}]
    )
    assert any("Nov" in t or "Dec" in t for t in ticks)


def test_budget_history_is_a_table_with_local_times(published: Client, scientist: Client) -> None:
    import datetime as dt

    published.budget.set("alice", "birth-records-feb", epsilon=1.0)
    scientist.datasets["birth-records-feb"]["births"]["weight"].dp.mean(epsilon=0.1, bounds=(0, 6))
    history = scientist.budget.history
    assert history[0]["epsilon"] == pytest.approx(0.1) and history[0].query == "mean"
    stamp = dt.datetime.fromtimestamp(history[0]["at"]).strftime("%Y-%m-%d %H:%M:%S")
    assert stamp in repr(history) and "mean" in repr(history) and "privacy budget history" in repr(history)
    assert f"<td>{stamp}</td>" in history._repr_html_()
