"""The demo: a hospital node with three months of birth records, a data scientist with a budget
and a few requests already filed, and JupyterLab with the widgets and the owner's dashboard."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    """Serve the demo node and (unless ``lab=False``) JupyterLab on the notebooks until Ctrl-C.
    The kernel and the server extension go into this Python's prefix, or with ``user`` into your
    Jupyter folders (``JUPYTER_DATA_DIR`` / ``JUPYTER_CONFIG_DIR`` move them, as tests do)."""
    from .kernel import enable_server_extension, install

    folder = folder.resolve()
    install(user=user)
    enable_server_extension(user=user)
    paths = prepare_demo(folder, port=port)
    node = start_node(paths["node"], name="hospital", port=port, stop_with_parent=True)
    print(f"hospital node serving: {', '.join(node.connection['addresses'])}")
    print(f"  connection file: {paths['connection']}")
    print(f"  owner key:       {paths['owner_key']}")
    print(f"  scientist key:   {paths['alice_key']}")
    print("  try: import syft_kernel as sk; ds = sk.login(CONNECTION, key=ALICE_KEY)")
    env = {
        **os.environ,
        "SYFT_DEMO_CONNECTION": str(paths["connection"]),
        "SYFT_DEMO_OWNER_KEY": str(paths["owner_key"]),
        "SYFT_DEMO_ALICE_KEY": str(paths["alice_key"]),
        "SYFT_KERNEL_NODES": str(folder),
    }
    try:
        if lab:
            if shutil.which("jupyter") is None and not _has_module("jupyterlab"):
                print("JupyterLab is not installed: pip install 'syft-kernel[demo]'", file=sys.stderr)
                return 2
            notebooks = Path(__file__).resolve().parent.parent / "notebooks"
            root = notebooks if notebooks.is_dir() else Path.cwd()
            cmd = [
                sys.executable,
                "-m",
                "jupyter",
                "lab",
                "--no-browser",
                f"--port={lab_port}",
                "--ip=127.0.0.1",
                f"--ServerApp.root_dir={root}",
            ]
            if (root / START_NOTEBOOK).exists():
                cmd.append(f"--LabApp.default_url=/lab/tree/{START_NOTEBOOK}")
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                cmd.append("--allow-root")
            print(f"JupyterLab: http://127.0.0.1:{lab_port}/lab (use the link with the token Jupyter prints)")
            print(f"owner's dashboard: http://127.0.0.1:{lab_port}/syft/dashboard")
            return subprocess.call(cmd, env=env)
        print("serving until Ctrl-C")
        node.proc.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        node.stop()


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
