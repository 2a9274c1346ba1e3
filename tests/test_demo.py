"""The front door: ``syft-kernel demo`` serves the seeded hospital node and JupyterLab with the
server extension on, so a new user sees the widgets and the dashboard at once."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from browser_support import free_port

from syft_kernel import login

REPO = Path(__file__).resolve().parents[1]


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


def alive(pids: dict[int, str]) -> list[str]:
    """Those of ``pids`` (pid: start time) still running: same pid, same start, not a zombie."""
    left = []
    for pid, started in pids.items():
        try:
            stat = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat[19] == started and stat[0] != "Z":
            left.append(f"{pid}: {cmdline[:200]}")
    return left


def tree(pid: int) -> dict[int, str]:
    """``pid`` and every process below it (pid: start time), read from /proc."""
    stats: dict[int, list[str]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stats[int(proc.name)] = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        here = todo.pop()
        if here in stats:
            found[here] = stats[here][19]
            todo += [p for p, stat in stats.items() if int(stat[1]) == here]
    return found


def demo_command(folder: Path, node_port: int, lab_port: int) -> list[str]:
    """``make demo PORT= LAB_PORT=`` as a user types it (its install step skipped: the test run has
    installed), or the CLI it runs where there is no make."""
    if shutil.which("make"):
        return [
            "make", "-s", "-C", str(REPO), "-o", "install", "demo", f"PYTHON={sys.executable}",
            f"PORT={node_port}", f"LAB_PORT={lab_port}", f"DEMO_DIR={folder}", "DEMO_ARGS=--user",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "syft_kernel.cli", "demo", "--dir", str(folder),
        "--port", str(node_port), "--lab-port", str(lab_port), "--user",
    ]  # fmt: skip


class DemoRun:
    """``make demo`` started in a session of its own (as a terminal's foreground job), its output
    in a log; ``start()`` waits until it prints its links."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.folder = tmp_path / "demo"
        self.node_port, self.lab_port = free_port(), free_port()
        self.log_path = tmp_path / "demo.log"
        self.runtime = tmp_path / "runtime"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started: dict[int, str] = {}

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self) -> DemoRun:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                demo_command(self.folder, self.node_port, self.lab_port),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "JUPYTER_RUNTIME_DIR": str(self.runtime)},
            )
        deadline = time.monotonic() + 120
        while "Ctrl-C stops" not in self.text():  # printed once Lab serves
            assert self.proc.poll() is None, self.text()[-3000:]
            assert time.monotonic() < deadline, self.text()[-3000:]
            time.sleep(0.25)
        text = self.text()
        self.lab_url = re.search(r"^JupyterLab: +(\S+)$", text, re.M).group(1)  # type: ignore[union-attr]
        self.dashboard = re.search(r"^owner's dashboard: +(\S+)$", text, re.M).group(1)  # type: ignore[union-attr]
        self.token = self.dashboard.split("token=")[1]
        return self

    def start_kernel(self) -> dict:  # type: ignore[type-arg]
        """A syft kernel started through Lab's REST API, as opening a notebook does, once it is ready."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.lab_port}/api/kernels",
            data=b'{"name": "syft"}',
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        kernel: dict = json.loads(urllib.request.urlopen(request, timeout=30).read())  # type: ignore[type-arg]
        from jupyter_client import BlockingKernelClient

        client = BlockingKernelClient(connection_file=str(self.runtime / f"kernel-{kernel['id']}.json"))
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)  # imported and answering, as a notebook waits
        finally:
            client.stop_channels()
        return kernel

    def processes(self) -> dict[int, str]:
        """Every process the demo started, with its kernels (each in a session of its own)."""
        assert self.proc is not None
        self.started = tree(self.proc.pid)
        return self.started

    def assert_all_stop(self, started: dict[int, str]) -> None:
        """Every one of ``started`` ends (the clean-up is bounded), and nothing names the demo's folder."""
        assert self.proc is not None
        self.proc.wait(60)
        deadline = time.monotonic() + 30
        while alive(started) or ours(self.tmp_path):
            assert time.monotonic() < deadline, f"left running: {alive(started)} {ours(self.tmp_path)}"
            time.sleep(0.2)

    def close(self) -> None:
        """Stop the demo and whatever it left if a failed test left them running (never leak them)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        for left in alive(self.started):
            with contextlib.suppress(OSError):
                os.kill(int(left.split(":")[0]), signal.SIGKILL)


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
            line = f"port {port} ({'the node' if name == 'PORT' else 'JupyterLab'}'s) is in use"
            assert line in run.stderr and f"make demo {name}=" in run.stderr and f"{flag} " in run.stderr
            assert len(run.stderr.strip().splitlines()) == 1  # one clear line
            assert "Traceback" not in run.stderr + run.stdout
    assert not (tmp_path / "d").exists()  # nothing was started or made


def test_a_port_taken_after_the_check_is_named_too(tmp_path: Path) -> None:
    """The node failing to bind (someone took the port between the check and the bind) gets the
    same one line, not the node's ZMQError."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        script = (
            "import sys, pathlib, syft_kernel.demo as d; d.port_is_free = lambda port, host='': True; "
            f"sys.exit(d.run_demo(pathlib.Path({str(tmp_path / 'd')!r}), port={port}, lab=False, user=True))"
        )
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert f"port {port} (the node's) is in use" in run.stderr and "make demo PORT=" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout and "ZMQError" not in run.stderr


def test_a_lab_port_taken_after_the_check_is_named_and_stops_the_node(tmp_path: Path) -> None:
    """JupyterLab failing to bind fails loudly (it never moves to another port) with the same one
    line, and the node the demo had started stops."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        lab_port, node_port = taken.getsockname()[1], free_port()
        script = (
            "import sys, pathlib, syft_kernel.demo as d; real = d.port_is_free; seen = set()\n"
            "def once_free(port, host='127.0.0.1'):\n"  # the check before starting passes: the race
            "    first = port not in seen; seen.add(port); return first or real(port, host)\n"
            "d.port_is_free = once_free\n"
            f"sys.exit(d.run_demo(pathlib.Path({str(tmp_path / 'd')!r}), port={node_port}, lab_port={lab_port}, "
            "user=True))"
        )
        run = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")},
        )
    assert run.returncode == 2, run.stderr[-3000:]
    assert f"port {lab_port} (JupyterLab's) is in use" in run.stderr and "make demo LAB_PORT=" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert "JupyterLab:" not in run.stdout  # no link to a server that is not ours
    assert not ours(tmp_path)


def test_demo_serves_node_lab_and_dashboard_and_sigterm_stops_all(tmp_path: Path) -> None:
    demo = DemoRun(tmp_path)
    try:
        demo.start()
        # the extension is on: the dashboard asks a browser without a token to log in …
        assert http_status(f"http://127.0.0.1:{demo.lab_port}/syft/dashboard") == 302
        text = demo.text()
        assert "scientist key" in text and "Traceback" not in text
        # … and the links the demo prints are the ones served (Jupyter's own record), with the token that logs in
        info = json.loads(next(demo.runtime.glob("jpserver-*.json")).read_text())
        assert info["port"] == demo.lab_port and info["token"] == demo.token
        assert demo.lab_url == f"http://127.0.0.1:{demo.lab_port}/lab/tree/00-start-here.ipynb?token={demo.token}"
        assert demo.dashboard == f"http://127.0.0.1:{demo.lab_port}/syft/dashboard?token={demo.token}"
        assert http_status(demo.dashboard) == 200
        assert http_status(demo.lab_url) == 200
        # the notebooks Lab serves are the demo's copies, not the project's stored ones
        assert (demo.folder / "notebooks" / "00-start-here.ipynb").exists()
        assert demo.start_kernel()["name"] == "syft"
        with login(demo.folder / "hospital" / "connection.json", key=demo.folder / "users" / "alice.key") as alice:
            assert {r.status for r in alice.requests} == {"pending"} and len(alice.requests) == 2
            assert alice.budget.spent("birth-records-feb") == 0.5
            assert len(alice.datasets) == 3
        started = demo.processes()
        assert len(ours(tmp_path)) >= 4  # the demo, its node, Jupyter and the kernel
        # SIGTERM to `make demo` (make passes it on to the demo, which the recipe execs) stops all it started
        assert demo.proc is not None
        os.kill(demo.proc.pid, signal.SIGTERM)
        demo.assert_all_stop(started)
    finally:
        demo.close()


def test_ctrl_c_stops_lab_its_kernels_and_the_node(tmp_path: Path) -> None:
    demo = DemoRun(tmp_path).start()
    try:
        demo.start_kernel()
        started = demo.processes()
        assert demo.proc is not None
        os.killpg(demo.proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends: to the whole job
        demo.assert_all_stop(started)
        assert "Traceback" not in demo.text()
    finally:
        demo.close()
