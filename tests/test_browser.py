"""In a real browser (Playwright + Debian's chromium): approve a request by clicking, once in the
request-queue widget inside JupyterLab and once on the /syft/dashboard page; the node decides.
The dashboard also shows a node's network and approves an account asked through it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from browser_support import (
    ARTIFACTS,
    browser_page,
    chromium_available,
    jupyter_lab,
    open_notebook_and_run_all,
    save_screenshot,
)

from syft_kernel import Client, PermissionDenied, connect_network, generate_keypair, write_keypair
from syft_kernel.launcher import start_gateway, start_node

if not chromium_available():  # `make install` (and so `.ci/run`) installs both
    pytest.fail("browser tests need /usr/bin/chromium and playwright: run `make install`", pytrace=False)


def node_says(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the node never reached the expected state"
        time.sleep(0.1)


@pytest.fixture
def pending(published: Client, scientist: Client):  # type: ignore[no-untyped-def]
    """A private mean Alice has asked for, still pending, with the pointer she holds."""
    ptr = scientist.datasets["birth-records-feb"]["births"]["weight"].mean()
    req = ptr.request(reason="mean birth weight for the February report")
    with pytest.raises(PermissionDenied):
        ptr.get()
    return ptr, req


def test_approve_in_the_jupyterlab_widget(
    tmp_path: Path,
    syft_node,
    published: Client,
    scientist: Client,  # type: ignore[no-untyped-def]
    pending,
) -> None:
    ptr, req = pending
    root = tmp_path / "lab"
    root.mkdir()
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nb.cells = [
        nbformat.v4.new_code_cell(
            f"import syft_kernel as sk\nowner = sk.login({str(syft_node.connection_file)!r}, "
            f"key={str(syft_node.owner_key)!r})"
        ),
        nbformat.v4.new_code_cell("owner.requests"),
    ]
    nbformat.write(nb, root / "queue.ipynb")
    with jupyter_lab(root, env={"SYFT_KERNEL_NODES": str(tmp_path)}) as lab, browser_page() as page:
        open_notebook_and_run_all(page, lab, "queue.ipynb")
        row = page.locator(".syft-request", has_text=req.id)
        row.locator("textarea").fill("approved from the widget")
        row.locator(".jupyter-widgets.widget-button", has_text="Approve").click()
        node_says(lambda: published.requests[req.id].status == "approved")
        row.locator(".syft-badge.syft-approved").wait_for(timeout=30_000)  # the row updated itself
        # a request filed after the cell ran appears by itself: the node pushes it to the widget
        later = scientist.datasets["birth-records-feb"]["births"]["weight"].min().request(reason="lightest baby")
        page.locator(".syft-request", has_text=later.id).locator(
            ".jupyter-widgets.widget-button", has_text="Deny"
        ).wait_for(timeout=30_000)
        save_screenshot(page, ARTIFACTS, "widget-request-queue-approved")
    decided = published.requests[req.id]
    assert decided.approvals[0]["comment"] == "approved from the widget"
    assert 2.5 < ptr.get() < 4.5  # the scientist's get() works now


def test_approve_on_the_dashboard(tmp_path: Path, syft_node, published: Client, pending) -> None:  # type: ignore[no-untyped-def]
    ptr, req = pending
    root = tmp_path / "lab"
    root.mkdir()
    with jupyter_lab(root, env={"SYFT_KERNEL_NODES": str(tmp_path)}) as lab, browser_page() as page:
        page.goto(f"{lab.url}/syft/dashboard?token={lab.token}")
        row = page.locator(f"#request-{req.id}")
        row.wait_for(timeout=30_000)
        assert "hospital" in page.locator("#nodes").inner_text()
        row.locator("textarea.comment").fill("approved on the dashboard")
        row.locator("button.approve").click()
        page.locator("#flash", has_text=f"You approved request {req.id} by alice on hospital").wait_for(timeout=30_000)
        node_says(lambda: published.requests[req.id].status == "approved")
        page.locator(f"#request-{req.id}[data-status='approved']").wait_for(timeout=30_000)
        save_screenshot(page, ARTIFACTS, "dashboard-request-approved")

        # the owner gets a second node going from the page alone
        page.locator("#new-node input[name=name]").fill("clinic")
        page.locator("#new-node button").click()
        page.locator("#nodes tr", has_text="clinic").locator(".badge", has_text="running").wait_for(timeout=60_000)
        page.locator("button.node-stop[data-node=clinic]").click()
        page.locator("#nodes tr", has_text="clinic").locator(".badge", has_text="stopped").wait_for(timeout=60_000)
        save_screenshot(page, ARTIFACTS, "dashboard-nodes")
    assert published.requests[req.id].approvals[0]["comment"] == "approved on the dashboard"
    assert 2.5 < ptr.get() < 4.5


def test_the_dashboard_shows_the_network_and_approves_an_account(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path / "grid", name="grid", auto_admit=True)
    node = start_node(tmp_path / "nodes" / "clinic", name="clinic", settings={"heartbeat_s": 0.3})
    try:
        with node.login() as owner:
            owner.network.join(gateway.connection_file)
        key, _ = write_keypair(generate_keypair("alice"), tmp_path / "keys")
        with connect_network(gateway.connection_file, key=key) as net:
            asked = net.request_account("clinic", reason="a study of clinic visits")
            request_id = asked.info["request"]
            root = tmp_path / "lab"
            root.mkdir()
            with jupyter_lab(root, env={"SYFT_KERNEL_NODES": str(tmp_path / "nodes")}) as lab, browser_page() as page:
                page.goto(f"{lab.url}/syft/dashboard?token={lab.token}")
                network = page.locator("#node-clinic .network[data-gateway='grid'][data-status='admitted']")
                network.wait_for(timeout=30_000)
                assert "On the network grid" in network.inner_text() and "last heard" in network.inner_text()
                waiting = network.locator("ul.accounts a", has_text="account for alice (data_scientist)")
                assert "asked through the network grid" in waiting.inner_text()
                save_screenshot(page, ARTIFACTS, "dashboard-network-account-pending")
                waiting.click()  # a link to the request in the queue
                row = page.locator(f"#request-{request_id}[data-kind='account']")
                row.locator("textarea.comment").fill("welcome to the clinic")
                row.locator("button.approve").click()
                page.locator("#flash", has_text="You approved the account for alice on clinic").wait_for(timeout=30_000)
                page.locator(f"#request-{request_id}[data-status='approved']").wait_for(timeout=30_000)
                page.locator("#node-clinic .network", has_text="No account requests waiting").wait_for(timeout=30_000)
                save_screenshot(page, ARTIFACTS, "dashboard-network-account-approved")
            assert asked.wait(10).status == "approved"
            assert net.login("clinic").user == "alice"
    finally:
        node.stop()
        gateway.stop()
