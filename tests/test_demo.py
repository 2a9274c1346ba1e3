"""The front door: ``syft-kernel demo`` serves the seeded hospital node and JupyterLab with the
server extension on, so a new user sees the widgets and the dashboard at once."""

from __future__ import annotations

import json
import os
import re
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


def ours(folder: Path) -> list[str]:
    """Command lines of the live processes that name ``folder`` (the demo's node, Jupyter, kernels)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(folder) in cmdline and state != "Z":
            found.append(cmdline[:200])
    return found


def test_a_busy_port_is_named_with_how_to_choose_another(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for flag, name in (("--port", "PORT"), ("--lab-port", "LAB_PORT")):
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "syft_kernel.cli",
                    "demo",
                    "--dir",
                    str(tmp_path / "d"),
                    flag,
                    str(port),
                    "--user",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert run.returncode == 2
            assert f"port {port}" in run.stderr and f"make demo {name}=" in run.stderr
            assert "Traceback" not in run.stderr + run.stdout
    assert not (tmp_path / "d").exists()  # nothing was started or made


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
            if "Ctrl-C stops" in (tmp_path / "demo.log").read_text():  # printed once Lab serves
                break
            assert time.monotonic() < deadline, (tmp_path / "demo.log").read_text()[-3000:]
            time.sleep(0.25)
        # the extension is on: the dashboard asks a browser without a token to log in …
        assert http_status(f"http://127.0.0.1:{lab_port}/syft/dashboard") == 302
        text = (tmp_path / "demo.log").read_text()
        assert "/syft/dashboard" in text and "scientist key" in text
        # … and the links the demo prints are the ones served, with the token that logs in
        lab_url = re.search(r"^JupyterLab: +(\S+)$", text, re.M).group(1)  # type: ignore[union-attr]
        dashboard = re.search(r"^owner's dashboard: +(\S+)$", text, re.M).group(1)  # type: ignore[union-attr]
        assert lab_url.startswith(f"http://127.0.0.1:{lab_port}/lab/tree/00-start-here.ipynb?token=")
        assert http_status(dashboard) == 200
        token = dashboard.split("token=")[1]
        # the notebooks Lab serves are the demo's copies, not the project's stored ones
        assert (tmp_path / "demo" / "notebooks" / "00-start-here.ipynb").exists()
        kernel = json.loads(
            urllib.request.urlopen(
                urllib.request.Request(
                    f"http://127.0.0.1:{lab_port}/api/kernels",
                    data=b'{"name": "syft"}',
                    headers={"Authorization": f"token {token}"},
                ),
                timeout=30,
            ).read()
        )
        assert kernel["name"] == "syft"
        with login(
            tmp_path / "demo" / "hospital" / "connection.json", key=tmp_path / "demo" / "users" / "alice.key"
        ) as alice:
            assert {r.status for r in alice.requests} == {"pending"} and len(alice.requests) == 2
            assert alice.budget.spent("birth-records-feb") == 0.5
            assert len(alice.datasets) == 3
        assert ours(tmp_path)  # the demo, its node, Jupyter and the kernel
        # SIGTERM (what `make` passes on, like Ctrl-C) stops every process the demo started
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 30
        while ours(tmp_path):
            assert time.monotonic() < deadline, f"left running: {ours(tmp_path)}"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:  # the test failed before it stopped the demo
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()
