"""The ``syft`` Jupyter kernel: IPython's kernel with the syft_kernel extension loaded, so each
cell's pointer work is one plan per node, sent before the cell's execute reply."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ipykernel.ipkernel import IPythonKernel

KERNEL_NAME = "syft"
DISPLAY_NAME = "Python 3 (syft)"


class SyftKernel(IPythonKernel):
    implementation = "syft_kernel"
    implementation_version = "0.1.0"
    banner = "syft-kernel: pointer work in a cell runs on the data node as one plan"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shell.extension_manager.load_extension("syft_kernel")


def install(user: bool = False, prefix: str | None = None) -> str:
    """Install the ``syft`` kernelspec (into ``sys.prefix`` unless ``user`` or ``prefix``)."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = {
        "argv": [sys.executable, "-m", "syft_kernel.kernel", "-f", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "python",
        "metadata": {"debugger": True},
    }
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "kernel.json").write_text(json.dumps(spec, indent=1))
        return KernelSpecManager().install_kernel_spec(
            tmp, KERNEL_NAME, user=user, prefix=None if user else (prefix or sys.prefix)
        )


def enable_server_extension(prefix: str | None = None, user: bool = False) -> Path:
    """Write the config file that enables the jupyter_server extension (the wheel ships it as a
    data file; an editable install does not place data files, so ``syft-kernel install`` does).
    ``user`` writes it to your Jupyter config folder instead of the environment's."""
    if user:
        from jupyter_core.paths import jupyter_config_dir

        folder = Path(jupyter_config_dir())
    else:
        folder = Path(prefix or sys.prefix) / "etc" / "jupyter"
    target = folder / "jupyter_server_config.d" / "syft_kernel.json"
    config = {"ServerApp": {"jpserver_extensions": {"syft_kernel.extension": True}}}
    if not target.exists() or json.loads(target.read_text() or "{}") != config:
        from .core.keys import atomic_write

        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, (json.dumps(config, indent=2) + "\n").encode())
    return target


if __name__ == "__main__":
    from ipykernel.kernelapp import IPKernelApp

    IPKernelApp.launch_instance(kernel_class=SyftKernel)
