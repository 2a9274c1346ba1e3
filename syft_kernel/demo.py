"""The demo: a hospital node with three months of birth records, a data scientist with a budget
and a few requests already filed, and JupyterLab with the widgets and the owner's dashboard."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.errors import NodeUnavailable
from .core.keys import generate_keypair, write_keypair
from .launcher import NodeProcess, start_node
from .sample_data import MONTHS, birth_records

START_NOTEBOOK = "00-start-here.ipynb"


def prepare_demo(folder: Path, port: int = 5555) -> dict[str, Path]:
    """Create (once) the hospital node with sample data, a data scientist ``alice`` with a budget
    on February, two DP releases and two pending requests, so every view has something to show."""
    node_dir = folder / "hospital"
    users = folder / "users"
    fresh = not (node_dir / "node.db").exists()
    node = start_node(node_dir, name="hospital", port=port)
    try:
        if fresh:
            key, pub = write_keypair(generate_keypair("alice"), users)
            with node.login() as owner:
                owner.users.add("alice", role="data_scientist", public_key=pub)
                for month in (1, 2, 3):
                    name = MONTHS[month - 1][:3].lower()
                    owner.datasets.upload(
                        f"birth-records-{name}",
                        assets={"births": birth_records(month=month)},
                        description=f"Birth records of {MONTHS[month - 1]} 2026 (generated sample data)",
                        tags=[f"#{MONTHS[month - 1]}", "#birth-records"],
                        subject_column="mother_id",
                        public={  # what anyone may know: the mock is made from it, ranges are DP bounds
                            "weight": (0.5, 6.0),
                            "height": (30.0, 60.0),
                            "weeks": (24.0, 44.0),
                            "mother_age": (16, 50),
                            "mother_id": (100_000, 999_999),
                            "sex": ["F", "M"],
                            "delivery": ["vaginal", "caesarean"],
                            "day": (f"2026-{month:02d}-01", f"2026-{month:02d}-{(31, 28, 31)[month - 1]}"),
                        },
                    )
                owner.budget.set("alice", "birth-records-feb", epsilon=1.0)
            from .client import login

            with login(node.connection_file, key=key) as alice:
                births = alice.datasets["birth-records-feb"]["births"]
                births["weight"].dp.mean(epsilon=0.3)
                births.dp.groupby("sex", categories=["F", "M"]).count(epsilon=0.2)
                births["weight"].mean().request(reason="mean birth weight for the February report")
                births.groupby("day")["weight"].max().request(reason="heaviest baby per day")
    finally:
        node.stop()
    return {
        "node": node_dir,
        "connection": node_dir / "connection.json",
        "owner_key": node_dir / "keys" / "owner.key",
        "alice_key": users / "alice.key",
    }


@dataclass
class Demo:
    """The demo node as the owner and as ``alice`` see it (``owner``, ``ds``); ``close()`` ends it."""

    owner: Any
    ds: Any
    node: NodeProcess | None = None
    workdir: Path | None = None
    paths: dict[str, Path] = field(default_factory=dict)

    def close(self) -> None:
        self.ds.close()
        self.owner.close()
        if self.node is not None:
            self.node.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def open_demo() -> Demo:
    """Log in to the demo node ``make demo`` serves (found through its environment), or, outside
    the demo, make a fresh one in a temporary folder and serve it until ``close()``."""
    from .client import login

    if os.environ.get("SYFT_DEMO_CONNECTION"):
        conn = os.environ["SYFT_DEMO_CONNECTION"]
        return Demo(
            login(conn, key=os.environ["SYFT_DEMO_OWNER_KEY"]), login(conn, key=os.environ["SYFT_DEMO_ALICE_KEY"])
        )
    workdir = Path(tempfile.mkdtemp(prefix="syft-tutorial-"))
    paths = prepare_demo(workdir, port=0)
    node = start_node(paths["node"], name="hospital")
    return Demo(node.login(), login(paths["connection"], key=paths["alice_key"]), node, workdir, paths)


def run_demo(folder: Path, port: int = 5555, lab: bool = True, lab_port: int = 8888, user: bool = False) -> int:
    """Serve the demo node and (unless ``lab=False``) JupyterLab on copies of the notebooks until
    Ctrl-C or SIGTERM, which stop everything it started (Jupyter, its kernels, the node). The kernel
    and the server extension go into this Python's prefix, or with ``user`` into your Jupyter
    folders (``JUPYTER_DATA_DIR`` / ``JUPYTER_CONFIG_DIR`` move them, as tests do)."""
    from .kernel import enable_server_extension, install

    folder = folder.resolve()
    for what, number, flag in (("the node's", port, "PORT"), ("JupyterLab's", lab_port if lab else 0, "LAB_PORT")):
        if number and not port_is_free(number):
            print(busy_port_message(number, what, flag), file=sys.stderr)
            return 2
    if lab and shutil.which("jupyter") is None and not _has_module("jupyterlab"):
        print("JupyterLab is not installed: pip install 'syft-kernel[demo]'", file=sys.stderr)
        return 2
    install(user=user)
    enable_server_extension(user=user)
    before = _stop_on_sigterm()
    node: NodeProcess | None = None
    jupyter: subprocess.Popen[bytes] | None = None
    try:
        try:
            paths = prepare_demo(folder, port=port)
            node = start_node(paths["node"], name="hospital", port=port, stop_with_parent=True)
        except NodeUnavailable as e:  # taken between our check and the node's bind: say so, not its traceback
            if port and ("Address already in use" in str(e) or not port_is_free(port)):
                print(busy_port_message(port, "the node's", "PORT"), file=sys.stderr)
            else:
                print(
                    f"the demo node did not start: {str(e).splitlines()[0]} (its log: {folder / 'hospital' / 'node.log'})",
                    file=sys.stderr,
                )
            return 2
        print(f"hospital node serving: {', '.join(node.connection['addresses'])}")
        print(f"  connection file: {paths['connection']}")
        print(f"  owner key:       {paths['owner_key']}")
        print(f"  scientist key:   {paths['alice_key']}")
        print("  try: import syft_kernel as sk; ds = sk.login(CONNECTION, key=ALICE_KEY)")
        if not lab:
            print("serving until Ctrl-C", flush=True)
            node.proc.wait()
            return 0
        env = {
            **os.environ,
            "SYFT_DEMO_CONNECTION": str(paths["connection"]),
            "SYFT_DEMO_OWNER_KEY": str(paths["owner_key"]),
            "SYFT_DEMO_ALICE_KEY": str(paths["alice_key"]),
            "SYFT_KERNEL_NODES": str(folder),
        }
        root = copy_notebooks(folder / "notebooks")
        token = secrets.token_hex(24)
        cmd = [
            sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
            f"--port={lab_port}", "--ServerApp.port_retries=0",  # the port asked for or none: never another
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        ]  # fmt: skip
        if (root / START_NOTEBOOK).exists():
            cmd.append(f"--LabApp.default_url=/lab/tree/{START_NOTEBOOK}")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        # its own session: Ctrl-C reaches this process alone, which stops Jupyter without its prompt
        jupyter = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        info = _wait_server_info(jupyter)
        if info is None:
            if jupyter.poll() is not None and not port_is_free(lab_port):
                print(busy_port_message(lab_port, "JupyterLab's", "LAB_PORT"), file=sys.stderr)
            else:
                print(f"JupyterLab did not start on port {lab_port}: see its messages above", file=sys.stderr)
            return 2
        base = str(info.get("url") or f"http://127.0.0.1:{info.get('port', lab_port)}/").rstrip("/")  # as served
        print(f"notebooks:         {root} (your copies: delete one to get it fresh)")
        print(f"JupyterLab:        {base}/lab/tree/{START_NOTEBOOK}?token={token}")
        print(f"owner's dashboard: {base}/syft/dashboard?token={token}")
        print("Ctrl-C stops JupyterLab, its kernels and the node", flush=True)
        return jupyter.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        with _signals_held(restore=before):  # a second Ctrl-C or SIGTERM must not cut the clean-up short
            if jupyter is not None:
                _stop_jupyter(jupyter)
            if node is not None:
                node.stop()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` on ``host`` can be listened on now (nobody else holds it)."""
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def busy_port_message(port: int, what: str, flag: str) -> str:
    """One line naming the busy ``port`` and how to choose another (make variable and CLI flag)."""
    option = "--" + flag.lower().replace("_", "-")
    return (
        f"port {port} ({what}) is in use, by another demo or program: choose another with "
        f"`make demo {flag}={_another_port(port)}` (or `syft-kernel demo {option} …`)"
    )


def copy_notebooks(root: Path) -> Path:
    """The tutorials copied into ``root`` (kept if already there, so your edits and outputs stay
    yours and the project's stored notebooks stay as the tests check them)."""
    source = Path(__file__).resolve().parent.parent / "notebooks"
    if not source.is_dir():
        return Path.cwd()
    root.mkdir(parents=True, exist_ok=True)
    for nb in sorted(source.glob("*.ipynb")):
        if not (root / nb.name).exists():
            shutil.copyfile(nb, root / nb.name)
    return root


def _another_port(port: int) -> int:
    for candidate in range(port + 1, port + 100):
        if port_is_free(candidate):
            return candidate
    return port + 100


def _stop_on_sigterm() -> dict[int, Any]:
    """SIGTERM ends the demo as Ctrl-C does (``make`` passes its SIGTERM on); returns the SIGINT and
    SIGTERM handlers it had before, to restore."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    return before


def _wait_server_info(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> dict[str, Any] | None:
    """Jupyter's own record of what it serves (``jpserver-<pid>.json``: url, port, token), written
    once it listens; None if ``proc`` exits first or never writes it."""
    import json
    import time

    from jupyter_core.paths import jupyter_runtime_dir

    info_file = Path(jupyter_runtime_dir()) / f"jpserver-{proc.pid}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        with contextlib.suppress(OSError, ValueError):
            info: dict[str, Any] = json.loads(info_file.read_text())
            return info
        time.sleep(0.2)
    return None


def _descendants(pid: int) -> list[int]:
    """The pids below ``pid`` in the process tree (from /proc; empty where there is none)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@contextlib.contextmanager
def _signals_held(restore: dict[int, Any]) -> Any:
    """Ignore SIGINT and SIGTERM for the block (the clean-up), then set the handlers in ``restore``."""
    for sig in restore:
        signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in restore.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _stop_jupyter(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (Jupyter shuts its kernels down), then SIGKILL for what is left of its group and of
    the processes it started (kernels run in sessions of their own, out of its group's reach)."""
    below = {pid: _started(pid) for pid in _descendants(proc.pid)}
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    for pid, started in below.items():  # a kernel Jupyter left behind, not a process that reused its pid
        if started is not None and _started(pid) == started:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _started(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, from /proc), to tell it from a reuse of its pid."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
