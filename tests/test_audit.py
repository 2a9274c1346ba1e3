"""The audit log records every get, release, approval, denial and code run: who, what, when, size."""

from __future__ import annotations

import time

import syft_kernel as sk


def test_audit_records_and_filters(scientist: sk.Client, published: sk.Client) -> None:
    started = time.time()
    births = scientist.datasets["birth-records-feb"]["births"]
    a = births["weight"].mean()
    b = births["height"].mean()
    published.requests[a.request(reason="a").id].approve("yes")
    published.requests[b.request(reason="b").id].deny("no")
    a.get()
    published.datasets["birth-records-feb"]["births"]["weight"].sum().get()

    releases = published.audit(action="release")
    assert [(e["user"], e["target"]) for e in releases] == [("alice", a.id)]
    assert releases[0]["detail"]["bytes"] >= 0 and releases[0]["detail"]["lineage"] == ["birth-records-feb/births"]
    assert [e["detail"]["comment"] for e in published.audit(action="approve")] == ["yes"]
    assert [e["detail"]["comment"] for e in published.audit(action="deny")] == ["no"]
    assert {e["action"] for e in published.audit(user="alice")} >= {"request.create", "release"}
    assert published.audit(user="owner", action="get")
    assert all(e["at"] >= started for e in published.audit(since=started))
    assert len(published.audit(limit=2)) == 2
    newest_first = [e["id"] for e in published.audit]
    assert newest_first == sorted(newest_first, reverse=True)


def test_audit_entries_print_as_tables_with_local_times(scientist: sk.Client, published: sk.Client) -> None:
    import datetime as dt

    published.requests[
        scientist.datasets["birth-records-feb"]["births"]["weight"].mean().request(reason="r").id
    ].approve("fine")
    entries = published.audit(action="approve")
    stamp = dt.datetime.fromtimestamp(entries[0]["at"]).strftime("%Y-%m-%d %H:%M:%S")
    text = repr(entries)
    assert text.startswith("audit log of") and "action=approve" in text
    assert stamp in text and "comment=fine" in text  # a readable time, and the detail in words
    html = entries._repr_html_()
    assert f"<td>{stamp}</td>" in html and "<th>detail</th>" in html
    assert stamp in repr(published.audit)
