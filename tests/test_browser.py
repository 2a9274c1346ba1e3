"""In a real browser (Playwright + Debian's chromium): approve a request by clicking, once in the
request-queue widget inside JupyterLab and once on the /syft/dashboard page; the node decides.
The dashboard also shows a node's network and approves an account asked through it, and a federated
training request as its plan, approved and then stopped by clicking."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch.nn as nn
from browser_support import (
    ARTIFACTS,
    browser_page,
    chromium_available,
    jupyter_lab,
    open_notebook_and_run_all,
    save_screenshot,
)

import syft_kernel as sk
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


def digits_table(rows: slice) -> pd.DataFrame:
    """Some of load_digits (shipped with scikit-learn): 64 pixel columns in [0, 1] and a label."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    frame = pd.DataFrame((x[rows] / 16).astype("float32"), columns=[f"p{i}" for i in range(64)])
    frame["label"] = y[rows]
    return frame.reset_index(drop=True)


def test_the_dashboard_approves_and_stops_a_training(tmp_path: Path) -> None:
    """clinic's owner approves alice's federated training on the page, sees its rounds run and
    stops it there; lab (another node, approved from Python) goes on training alone."""
    key, public_key = write_keypair(generate_keypair("alice"), tmp_path / "keys")
    clinic = start_node(tmp_path / "nodes" / "clinic", name="clinic")  # the dashboard's node
    lab = start_node(tmp_path / "elsewhere" / "lab", name="lab")
    try:
        for node, rows in ((clinic, slice(0, 300)), (lab, slice(300, 600))):
            with node.login() as owner:
                owner.users.add("alice", role="data_scientist", public_key=public_key)
                owner.datasets.upload("digits", assets={"train": digits_table(rows)}, public={"label": list(range(10))})
        with sk.login(clinic.connection_file, key=key) as at_clinic, sk.login(lab.connection_file, key=key) as at_lab:
            model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
            data = {"clinic": at_clinic.datasets["digits"]["train"], "lab": at_lab.datasets["digits"]["train"]}
            job = sk.fl.Job(model, data=data, target="label", rounds=3)
            rid = job.request(reason="a digits classifier across two sites")["clinic"].id
            with lab.login() as owner:
                owner.requests.pending[0].approve()
            root = tmp_path / "jupyter"
            root.mkdir()
            with (
                jupyter_lab(root, env={"SYFT_KERNEL_NODES": str(tmp_path / "nodes")}) as server,
                browser_page() as page,
            ):
                page.goto(f"{server.url}/syft/dashboard?token={server.token}")
                row = page.locator(f"#request-{rid}[data-kind='training'][data-status='pending']")
                row.wait_for(timeout=30_000)
                assert "training request by alice" in row.inner_text()
                row.locator("summary").click()
                page.wait_for_timeout(2500)  # the page's 2 s refresh passes: an opened plan stays open
                plan = page.locator(f"#request-{rid} details[open]").inner_text(timeout=5_000)  # lines, not JSON
                assert "Federated training on digits/train: 3 round(s)" in plan and "loss: cross_entropy" in plan
                assert "leaves the node, each round: the trained weights" in plan and '"version"' not in plan
                save_screenshot(page, ARTIFACTS, "dashboard-training-request")

                row.locator("button.approve").click()
                page.locator("#flash", has_text=f"You approved request {rid} by alice on clinic").wait_for(
                    timeout=30_000
                )
                done = page.locator(f"#request-{rid}[data-status='approved']")
                done.locator("div", has_text="training:").locator(".badge", has_text="ready").wait_for(timeout=30_000)
                done.locator("button.stop-training").wait_for(timeout=30_000)

                job.run(rounds=1, progress=False)  # round 1 on both nodes; the page refreshes by itself
                done.locator("div", has_text="training:").locator(".badge", has_text="training").wait_for(
                    timeout=30_000
                )
                save_screenshot(page, ARTIFACTS, "dashboard-training-running")
                done.locator("textarea.comment").fill("the study is over")
                done.locator("button.stop-training").click()
                page.locator("#flash", has_text=f"You stopped the training of request {rid} on clinic").wait_for(
                    timeout=30_000
                )
                done.locator("div", has_text="training:").locator(".badge", has_text="stopped").wait_for(timeout=30_000)
                assert done.locator("button.stop-training").count() == 0
                save_screenshot(page, ARTIFACTS, "dashboard-training-stopped")
            with clinic.login() as owner:
                stopped = owner.requests[rid]
                assert stopped.info["run_status"] == "stopped"
                assert stopped.info["run_error"] == "stopped by owner: the study is over"
            job.run(progress=False)  # rounds 2 and 3: lab trains, clinic refuses
            history = job.history.set_index(["round", "node"])
            assert (history.loc[(1, "clinic"), "status"], history.loc[(1, "lab"), "status"]) == ("ok", "ok")
            for r in (2, 3):
                assert history.loc[(r, "clinic"), "status"] == "failed"
                assert "stopped by owner" in history.loc[(r, "clinic"), "reason"]
                assert history.loc[(r, "lab"), "status"] == "ok"
            job.stop()
    finally:
        clinic.stop()
        lab.stop()
