"""The rooms of DESIGN.md: imports run one way (``make lint`` runs this file as a script too).

Every ``import`` and ``from … import`` in our sources is read with ``ast`` (imports inside
functions and under ``TYPE_CHECKING`` count as well), resolved to a module of ours, and checked
against the rule of the room it is in.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOMS = {
    "core": "syft_kernel.core",
    "node": "syft_kernel.node",
    "gateway": "syft_kernel.gateway",
    "widgets": "syft_kernel.widgets",
    "extension": "syft_kernel.extension",
    "syft_kernel": "syft_kernel",
}
# the entry points start nodes: they alone may import the node
ENTRY_POINTS = {"syft_kernel.cli", "syft_kernel.demo", "syft_kernel.launcher", "syft_kernel.pytest_plugin"}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in ROOMS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def _imports(module: str, path: Path) -> set[str]:
    """The modules of ours that ``module`` imports (anywhere in the file)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m == "syft_kernel" or m.startswith("syft_kernel.")}


def room_of(module: str) -> str:
    for room in (
        "syft_kernel.core",
        "syft_kernel.node",
        "syft_kernel.gateway",
        "syft_kernel.widgets",
        "syft_kernel.extension",
    ):
        if module == room or module.startswith(room + "."):
            return room
    return "client"


def violations() -> list[str]:
    modules = _modules()
    bad = []
    for module, path in modules.items():
        room = room_of(module)
        for target in sorted(_imports(module, path)):
            if target not in modules and target.rpartition(".")[0] in modules:
                continue  # a name imported from a module ("from x import y"): the module was counted
            there = room_of(target)
            if there == "syft_kernel.core" or target == "syft_kernel":
                if room == "syft_kernel.core" and target == "syft_kernel":
                    bad.append(f"{module} imports the client package {target}")
                continue
            if room == "syft_kernel.core" and there != room:
                bad.append(f"{module} (core) imports {target}")
            elif room == "syft_kernel.node" and there != room:
                bad.append(f"{module} (node) imports {target}: the node imports only core")
            elif room == "syft_kernel.gateway" and there != room:
                bad.append(f"{module} (gateway) imports {target}: the gateway imports only core")
            elif (
                room in ("client", "syft_kernel.widgets", "syft_kernel.extension")
                and there in ("syft_kernel.node", "syft_kernel.gateway")
                and module not in ENTRY_POINTS
            ):
                bad.append(
                    f"{module} imports {target}: only the entry points ({', '.join(sorted(ENTRY_POINTS))}) "
                    f"may import the {there.rpartition('.')[2]}"
                )
    return bad


def test_imports_run_one_way() -> None:
    assert violations() == []


def test_the_rule_catches_a_wrong_import() -> None:
    assert room_of("syft_kernel.pointer") == "client" and room_of("syft_kernel.core.codec") == "syft_kernel.core"
    assert _imports("syft_kernel.core.codec", REPO / "core" / "codec.py") >= {"syft_kernel.core.errors"}
    assert "syft_kernel.core.executor" in _imports("syft_kernel.node.state", REPO / "node" / "state.py")


def test_the_node_never_loads_the_client() -> None:
    """``import syft_kernel.node.server`` loads core and the node only: no pointers, no widgets."""
    code = (
        "import json, sys, syft_kernel.node.server, syft_kernel.node.sandbox; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('syft_kernel'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert [m for m in loaded if room_of(m) not in ("syft_kernel.core", "syft_kernel.node")] == ["syft_kernel"]


def test_the_gateway_loads_only_core() -> None:
    """``import syft_kernel.gateway.server`` loads core and the gateway: no node, no client."""
    code = (
        "import json, sys, syft_kernel.gateway.server; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('syft_kernel'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert [m for m in loaded if room_of(m) not in ("syft_kernel.core", "syft_kernel.gateway")] == ["syft_kernel"]


def test_import_syft_kernel_is_lazy() -> None:
    code = "import json, sys, syft_kernel; print(json.dumps(sorted(m for m in sys.modules if m.startswith('syft_kernel'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == ["syft_kernel"]


if __name__ == "__main__":
    problems = violations()
    for p in problems:
        print(p)
    print(f"rooms: {len(_modules())} modules, {len(problems)} wrong-way imports")
    sys.exit(1 if problems else 0)
