"""``make lint``'s type check: mypy, strict, on the public API's modules.

mypy cannot follow setuptools' ``package-dir`` mapping (``core/`` is ``syft_kernel.core``), so
the package is laid out as it installs, with symbolic links in a temporary folder, and checked
there; every error is reported with its path in the repository.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYOUT = {"core": "core", "node": "node", "gateway": "gateway", "widgets": "widgets", "extension": "extension"}
PUBLIC = [
    "__init__.py",
    "client.py",
    "aio.py",
    "transport.py",
    "protocol.py",
    "pointer.py",
    "plans.py",
    "requests.py",
    "datasets.py",
    "dp.py",
    "code.py",
    "governance.py",
    "launcher.py",
    "users.py",
    "audit.py",
    "records.py",
    "network.py",
    "fl/__init__.py",
    "fl/job.py",
    "fl/optim.py",
    "fl/live.py",
    "fl/strategies/__init__.py",
    "fl/strategies/base.py",
    "core/fl_graph.py",
    "core/fl_ops.py",
    "core/fl_train.py",
    "core/errors.py",
    "core/keys.py",
    "core/schema.py",
    "core/plan.py",
]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "syft_kernel"
        pkg.mkdir()
        for f in (REPO / "syft_kernel").iterdir():
            if f.name != "__pycache__":
                (pkg / f.name).symlink_to(f)
        for name, folder in LAYOUT.items():
            (pkg / name).symlink_to(REPO / folder)
        cmd = [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",
            "--ignore-missing-imports",
            "--no-incremental",
            "--explicit-package-bases",
            *(str(pkg / p) for p in PUBLIC),
        ]
        out = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        text = out.stdout.replace(f"{pkg}/core/", "core/").replace(f"{pkg}/", "syft_kernel/")
        text = text.replace("syft_kernel/core/", "core/")
        print(text.strip() or out.stderr.strip())
        return out.returncode


if __name__ == "__main__":
    sys.exit(main())
