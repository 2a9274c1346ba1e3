"""A newcomer's first hour in a real browser: ``syft-kernel demo`` (what ``make demo`` runs) and its
JupyterLab opened by chromium at the URL it prints, Run All on ``00-start-here``, Approve clicked in
the owner's queue widget, and Alice's view of her requests updating by itself. Screenshots of each
step go to ``test-results/``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import (
    ARTIFACTS,
    LabServer,
    browser_page,
    chromium_available,
    free_port,
    open_notebook_and_run_all,
    save_screenshot,
)

from syft_kernel import login

if not chromium_available():  # `make install` (and so `.ci/run`) installs both
    pytest.fail("browser tests need /usr/bin/chromium and playwright: run `make install`", pytrace=False)

LAB_URL = re.compile(r"(http://127\.0\.0\.1:(\d+))/lab\S*[?&]token=(\w+)")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[LabServer, Path]]:
    """The demo as a newcomer starts it, in its own folder; stopped (every process of it) after."""
    node_port, lab_port = free_port(), free_port()
    log_path = tmp_path / "demo.log"
    state = tmp_path / "lab-state"
    env = {
        **{k: v for k, v in os.environ.items() if k != "SYFT_NOTEBOOK_CLEANUP"},  # a person's Run All
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(state / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "syft_kernel.cli", "demo", "--dir", str(tmp_path / "demo-node"),
             "--port", str(node_port), "--lab-port", str(lab_port), "--user"],
            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (found := LAB_URL.search(log_path.read_text())):
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.25)
        url, port, token = found.group(1), int(found.group(2)), found.group(3)
        assert port == lab_port  # the URL printed is the one served
        yield LabServer(url=url, token=token, port=port, log_path=log_path, proc=proc), tmp_path / "demo-node"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_the_first_hour_in_a_browser(demo: tuple[LabServer, Path]) -> None:
    lab, folder = demo
    with login(folder / "hospital" / "connection.json", key=folder / "hospital" / "keys" / "owner.key") as owner:
        pending = [r for r in owner.requests if r.status == "pending"]
        assert len(pending) == 2  # the demo filed two for Alice
        req = pending[0]
        with browser_page() as page:
            open_notebook_and_run_all(page, lab, "00-start-here.ipynb")
            save_screenshot(page, ARTIFACTS, "first-hour-1-run-all")
            # Run All left it live: the last cell said so and closed nothing
            page.locator(".jp-OutputArea-output pre", has_text="still live: set done = True").wait_for(timeout=30_000)
            rows = page.locator(".syft-request", has_text=req.id)
            rows.first.wait_for(timeout=30_000)
            assert rows.count() == 2  # in the owner's queue and in Alice's requests
            owner_row = rows.filter(has=page.locator(".jupyter-widgets.widget-button", has_text="Approve"))
            owner_row.locator("textarea").fill("fine for the February report")
            save_screenshot(page, ARTIFACTS, "first-hour-2-before-approve")
            owner_row.locator(".jupyter-widgets.widget-button", has_text="Approve").click()
            # the scientist's view (her own widget, her own session) updates without a re-run
            page.locator(".syft-request", has_text=req.id).locator(".syft-badge.syft-approved").nth(1).wait_for(
                timeout=30_000
            )
            save_screenshot(page, ARTIFACTS, "first-hour-3-approved")
        decided = owner.requests[req.id]
        assert decided.status == "approved"
        assert decided.approvals[0]["comment"] == "fine for the February report"
