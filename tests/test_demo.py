"""The front door: ``syft-kernel demo`` serves the seeded hospital node and JupyterLab with the
server extension on, so a new user sees the widgets and the dashboard at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from browser_support import free_port

from syft_kernel import login


def http_status(url: str) -> int:
    request = urllib.request.Request(url)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        return opener.open(request, timeout=5).status
    except urllib.error.HTTPError as e:
        return e.code


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def test_demo_serves_node_lab_and_dashboard(tmp_path: Path) -> None:
    node_port, lab_port = free_port(), free_port()
    log = (tmp_path / "demo.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syft_kernel.cli",
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--port",
            str(node_port),
            "--lab-port",
            str(lab_port),
            "--user",  # the kernelspec and the extension's config go to the test's Jupyter folders
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "demo.log").read_text()
            try:
                if http_status(f"http://127.0.0.1:{lab_port}/api/status") in (200, 403):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "demo.log").read_text()[-3000:]
            time.sleep(0.25)
        # the extension is on: the dashboard asks a browser without a token to log in
        assert http_status(f"http://127.0.0.1:{lab_port}/syft/dashboard") == 302
        with login(
            tmp_path / "demo" / "hospital" / "connection.json", key=tmp_path / "demo" / "users" / "alice.key"
        ) as alice:
            assert {r.status for r in alice.requests} == {"pending"} and len(alice.requests) == 2
            assert alice.budget.spent("birth-records-feb") == 0.5
            assert len(alice.datasets) == 3
        text = (tmp_path / "demo.log").read_text()
        assert "/syft/dashboard" in text and "scientist key" in text
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
