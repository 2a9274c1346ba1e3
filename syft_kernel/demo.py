"""The demo: a hospital node with three months of birth records, a data scientist, and JupyterLab."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .keys import generate_keypair, write_keypair
from .launcher import start_node
from .sample_data import MONTHS, birth_records


def prepare_demo(folder: Path, port: int = 5555) -> dict[str, Path]:
    """Create (once) the hospital node with sample data and a data scientist ``alice``."""
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
                        f"birth-records-{name}", assets={"births": birth_records(month=month)},
                        description=f"Birth records of {MONTHS[month - 1]} 2026 (generated sample data)",
                        tags=[f"#{MONTHS[month - 1]}", "#birth-records"], subject_column="mother_id")
    finally:
        node.stop()
    return {"node": node_dir, "connection": node_dir / "connection.json", "owner_key": node_dir / "keys" / "owner.key",
            "alice_key": users / "alice.key"}


def run_demo(folder: Path, port: int = 5555, lab: bool = True, lab_port: int = 8888) -> int:
    """Serve the demo node and (unless ``lab=False``) JupyterLab on the notebooks until Ctrl-C."""
    from .kernel import install

    folder = folder.resolve()
    install()
    paths = prepare_demo(folder, port=port)
    node = start_node(paths["node"], name="hospital", port=port, stop_with_parent=True)
    print(f"hospital node serving: {', '.join(node.connection['addresses'])}")
    print(f"  connection file: {paths['connection']}")
    print(f"  owner key:       {paths['owner_key']}")
    print(f"  scientist key:   {paths['alice_key']}")
    print("  try: import syft_kernel as sk; ds = sk.login(CONNECTION, key=ALICE_KEY)")
    env = {**os.environ, "SYFT_DEMO_CONNECTION": str(paths["connection"]),
           "SYFT_DEMO_OWNER_KEY": str(paths["owner_key"]), "SYFT_DEMO_ALICE_KEY": str(paths["alice_key"])}
    try:
        if lab:
            notebooks = Path(__file__).resolve().parent.parent / "notebooks"
            cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={lab_port}",
                   "--ip=127.0.0.1", f"--notebook-dir={notebooks if notebooks.is_dir() else Path.cwd()}"]
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                cmd.append("--allow-root")
            if shutil.which("jupyter") is None and not _has_module("jupyterlab"):
                print("JupyterLab is not installed: pip install 'syft-kernel[demo]'", file=sys.stderr)
                return 2
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
