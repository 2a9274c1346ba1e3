"""The jupyter_server extension through pytest-jupyter's ``jp_fetch``: REST API against real nodes,
the dashboard page, node start / stop, and refusals (no token, cross-site POST, bad requests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures for this module only)
from tornado.httpclient import HTTPClientError

from syft_kernel import Client, login
from syft_kernel.launcher import NodeProcess


@pytest.fixture
def jp_server_config(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    return {
        "ServerApp": {"jpserver_extensions": {"syft_kernel.extension": True}},
        "SyftExtension": {"nodes_dir": str(tmp_path)},
    }


@pytest.fixture
def fetch(jp_fetch, jp_asyncio_loop):  # type: ignore[no-untyped-def]
    """``jp_fetch`` run to completion on the server's loop (plain test functions, no async plugin)."""
    return lambda *parts, **kwargs: jp_asyncio_loop.run_until_complete(jp_fetch(*parts, **kwargs))


def payload(response) -> dict:  # type: ignore[no-untyped-def, type-arg]
    return json.loads(response.body)


def expect_error(fetch, *parts: str, status: int, **kwargs) -> dict:  # type: ignore[no-untyped-def, type-arg]
    with pytest.raises(HTTPClientError) as info:
        fetch(*parts, **kwargs)
    assert info.value.code == status, info.value.response.body if info.value.response else info.value
    body = info.value.response.body if info.value.response else b""
    try:
        return json.loads(body)
    except ValueError:
        return {"raw": body.decode(errors="replace")}


def test_installing_enables_the_extension() -> None:
    """The package's jupyter-config file turns the extension on: no manual step."""
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "server", "extension", "list"], capture_output=True, text=True, timeout=120
    )
    text = out.stdout + out.stderr
    assert "syft_kernel.extension" in text and "enabled" in text.split("syft_kernel.extension", 1)[1][:40]


def test_nodes_datasets_and_budgets(fetch, syft_node: NodeProcess, published: Client) -> None:
    nodes = payload(fetch("syft", "api", "nodes"))["nodes"]
    assert [(n["name"], n["status"]) for n in nodes] == [("hospital", "running")]
    datasets = payload(fetch("syft", "api", "nodes", "hospital", "datasets", params={"q": "birth"}))
    assert [d["name"] for d in datasets["datasets"]] == ["birth-records-feb"]
    assert payload(fetch("syft", "api", "nodes", "hospital", "datasets", params={"q": "no-such-thing"}))["total"] == 0
    published.users.add("bob", role="data_scientist", public_key=_fresh_public_key())
    published.budget.set("bob", "birth-records-feb", epsilon=2.0)
    budgets = payload(fetch("syft", "api", "nodes", "hospital", "budgets"))["budgets"]
    assert budgets[0]["user"] == "bob" and budgets[0]["epsilon"] == 2.0 and budgets[0]["left"] == 2.0


def _fresh_public_key() -> str:
    from syft_kernel.core.keys import generate_keypair

    return generate_keypair("bob").public


def test_approve_and_deny_through_the_api(fetch, published: Client, scientist: Client) -> None:
    ptr = scientist.datasets["birth-records-feb"]["births"]["weight"].mean()
    req = ptr.request(reason="annual report")
    listed = payload(fetch("syft", "api", "nodes", "hospital", "requests", params={"status": "pending"}))
    assert [r["id"] for r in listed["requests"]] == [req.id]
    info = payload(
        fetch(
            "syft",
            "api",
            "nodes",
            "hospital",
            "requests",
            req.id,
            "approve",
            method="POST",
            body=json.dumps({"comment": "from the dashboard"}),
        )
    )
    assert info["status"] == "approved"
    assert published.requests[req.id].status == "approved"
    assert published.requests[req.id].approvals[0]["comment"] == "from the dashboard"
    assert isinstance(ptr.get(), float)  # the scientist's get() works now

    again = expect_error(
        fetch,
        "syft",
        "api",
        "nodes",
        "hospital",
        "requests",
        req.id,
        "deny",
        method="POST",
        body=json.dumps({"comment": "changed my mind"}),
        status=400,
    )
    assert "already approved" in again["message"]
    unknown = expect_error(
        fetch,
        "syft",
        "api",
        "nodes",
        "hospital",
        "requests",
        "r0123456789abcdef",
        "approve",
        method="POST",
        body="{}",
        status=404,
    )
    assert "r0123456789abcdef" in unknown["message"]
    bad = expect_error(
        fetch,
        "syft",
        "api",
        "nodes",
        "hospital",
        "requests",
        req.id,
        "approve",
        method="POST",
        body="not json",
        status=400,
    )
    assert bad  # a clear JSON error, and the server keeps serving:
    assert payload(fetch("syft", "api", "nodes"))["nodes"][0]["status"] == "running"


def test_unknown_and_stopped_nodes(fetch, syft_node: NodeProcess) -> None:
    missing = expect_error(fetch, "syft", "api", "nodes", "nowhere", "requests", status=404)
    assert "no local node 'nowhere'" in missing["message"]
    syft_node.stop()
    stopped = expect_error(fetch, "syft", "api", "nodes", "hospital", "requests", status=503)
    assert "start it" in stopped["message"]
    section = fetch("syft", "dashboard", "nodes", "hospital").body.decode()
    assert "stopped: start it above" in section
    page = fetch("syft", "dashboard").body.decode()
    assert "node-start" in page and "stopped" in page


def test_start_and_stop_local_nodes(fetch, tmp_path: Path) -> None:
    made = payload(fetch("syft", "api", "nodes", method="POST", body=json.dumps({"name": "clinic"})))
    assert made["status"] == "running" and made["managed"]
    with login(tmp_path / "clinic" / "connection.json", key=tmp_path / "clinic" / "keys" / "owner.key") as owner:
        assert owner.node_name == "clinic"
    stopped = payload(fetch("syft", "api", "nodes", "clinic", "stop", method="POST", body=""))
    assert stopped["status"] == "stopped"
    again = payload(fetch("syft", "api", "nodes", "clinic", "start", method="POST", body=""))
    assert again["status"] == "running"
    bad = expect_error(fetch, "syft", "api", "nodes", method="POST", body=json.dumps({"name": "../x"}), status=400)
    assert "name" in bad["message"]
    fetch("syft", "api", "nodes", "clinic", "stop", method="POST", body="")


def test_no_token_is_refused(fetch, syft_node: NodeProcess) -> None:
    expect_error(fetch, "syft", "api", "nodes", headers={"Authorization": ""}, status=403)
    expect_error(
        fetch,
        "syft",
        "api",
        "nodes",
        "hospital",
        "requests",
        "r0123456789abcdef",
        "approve",
        method="POST",
        body="{}",
        headers={"Authorization": ""},
        status=403,
    )
    page = expect_error(fetch, "syft", "dashboard", headers={"Authorization": ""}, follow_redirects=False, status=302)
    assert page is not None  # the dashboard sends a browser to Jupyter's login page


def test_cross_site_post_is_refused(fetch, published: Client, scientist: Client) -> None:
    """A logged-in browser's cookie alone cannot decide: the XSRF token must come with it."""
    req = scientist.datasets["birth-records-feb"]["births"]["weight"].sum().request(reason="total")
    page = fetch("syft", "dashboard")  # token login: the page sets the login and _xsrf cookies
    assert req.id in page.body.decode() and "Approve" in page.body.decode()
    cookies = SimpleCookie()
    for header in page.headers.get_list("Set-Cookie"):
        cookies.load(header)
    assert "_xsrf" in cookies
    cookie_header = "; ".join(f"{k}={v.value}" for k, v in cookies.items())
    browser = {"Authorization": "", "Cookie": cookie_header}
    expect_error(
        fetch,
        "syft",
        "api",
        "nodes",
        "hospital",
        "requests",
        req.id,
        "approve",
        method="POST",
        body="{}",
        headers=browser,
        status=403,
    )
    assert published.requests[req.id].status == "pending"
    ok = fetch(
        "syft",
        "api",
        "nodes",
        "hospital",
        "requests",
        req.id,
        "approve",
        method="POST",
        body="{}",
        headers={**browser, "X-XSRFToken": cookies["_xsrf"].value},
    )
    assert payload(ok)["status"] == "approved" and published.requests[req.id].status == "approved"


def test_dashboard_renders_queue_datasets_and_budgets(fetch, published: Client, scientist: Client) -> None:
    published.budget.set("alice", "birth-records-feb", epsilon=1.0)
    scientist.datasets["birth-records-feb"]["births"]["weight"].dp.mean(epsilon=0.8, bounds=(0, 6000))
    req = scientist.datasets["birth-records-feb"]["births"]["weight"].max().request(reason="<script>alert(1)</script>")
    html = (fetch("syft", "dashboard")).body.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert f"request-{req.id}" in html and "birth-records-feb" in html and "fill warning" in html
    section = (fetch("syft", "dashboard", "nodes", "hospital")).body.decode()
    assert section.startswith("<section class='node'") and req.id in section
    js = fetch("static", "syft_kernel.extension", "dashboard.js")
    assert b"X-XSRFToken" in js.body


def test_a_stale_pid_is_not_a_running_node(fetch, syft_node: NodeProcess, tmp_path: Path) -> None:
    """After a crash the pid in connection.json may belong to another process: never trust or kill it."""
    syft_node.kill()
    info = json.loads(syft_node.connection_file.read_text())
    info["pid"] = os.getpid()  # this test process: alive, but not that node
    syft_node.connection_file.write_text(json.dumps(info))
    nodes = payload(fetch("syft", "api", "nodes"))["nodes"]
    assert nodes[0]["status"] == "stopped"
    assert payload(fetch("syft", "api", "nodes", "hospital", "stop", method="POST", body=""))["status"] == "stopped"
    started = payload(fetch("syft", "api", "nodes", "hospital", "start", method="POST", body=""))
    assert started["status"] == "running" and started["pid"] != os.getpid()
    fetch("syft", "api", "nodes", "hospital", "stop", method="POST", body="")
    assert "pid" not in json.loads(syft_node.connection_file.read_text())  # a clean stop clears it


def test_dashboard_notices_are_sentences_naming_the_node_and_request(fetch, published: Client) -> None:
    from syft_kernel.extension.dashboard import NOTICES, notice_text

    page = fetch("syft", "dashboard").body.decode()
    start = page.index('<script type="application/json" id="syft-notices">') + len(
        '<script type="application/json" id="syft-notices">'
    )
    shown = json.loads(page[start : page.index("</script>", start)])
    assert shown == NOTICES  # what the page's script fills in
    values = {"request": "r1", "node": "hospital", "requester": "alice", "decided": "approved", "gateway": "grid"}
    for key, template in NOTICES.items():
        text = notice_text(key, **values, error="the node is busy")
        assert text[0].isupper() and text[-1] in ".…", text
        if "{node}" in template or key != "no_name":
            assert "hospital" in text, text
    assert notice_text("approved", **values).startswith("You approved request r1 by alice on hospital")
    assert notice_text("decide_failed", **values, error="it was already denied") == (
        "Request r1 on hospital could not be approved: it was already denied."
    )
    js = fetch("static", "syft_kernel.extension", "dashboard.js").body.decode()
    assert "syft-notices" in js and "`${name}: ${e.message}`" not in js
