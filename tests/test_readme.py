"""The README's Python blocks, run in order as pasted, against the demo node in its folder.

Each block is written to a file and run statement by statement in one namespace (so a function
submitted as code has its source, as in a notebook cell); a bare expression is shown with
``repr`` as a terminal would, so the text tables run too. Bash blocks are not run.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syft_kernel.demo import prepare_demo
from syft_kernel.launcher import NodeProcess, start_node

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """Every ```python block of ``text``: (its first line's number, its code, dedented)."""
    blocks = []
    for m in FENCE.finditer(text):
        indent = len(m.group(1))
        code = "".join(line[indent:] + "\n" for line in m.group(2).splitlines())
        blocks.append((text.count("\n", 0, m.start(2)) + 1, code))
    return blocks


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``make demo``'s folder layout (``demo-node/``), its node serving on a free port."""
    root = tmp_path_factory.mktemp("readme")
    paths = prepare_demo(root / "demo-node", port=0)
    node: NodeProcess = start_node(paths["node"], name="hospital")
    try:
        yield root
    finally:
        node.stop()


def test_the_blocks_are_found() -> None:
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 6
    assert all("```" not in code for _, code in blocks)


def test_every_readme_block_runs_as_pasted(demo_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(demo_folder)
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    shown: list[str] = []
    try:
        _run_blocks(demo_folder, namespace, shown)
    finally:
        import syft_kernel as sk

        for value in list(namespace.values()):
            if isinstance(value, (sk.Client, sk.Network)):
                value.close()
            elif isinstance(value, sk.NodeProcess):  # nodes and gateways a block started
                value.stop()
    assert shown  # the blocks' expressions showed something (tables, values)


def _run_blocks(demo_folder: Path, namespace: dict[str, Any], shown: list[str]) -> None:
    for line, code in python_blocks(README.read_text()):
        path = demo_folder / f"readme_line_{line}.py"
        path.write_text(code)
        for stmt in ast.parse(code, filename=str(path)).body:
            where = f"README.md line {line + stmt.lineno - 1}: {ast.get_source_segment(code, stmt)}"
            try:
                if isinstance(stmt, ast.Expr):
                    value = eval(compile(ast.Expression(stmt.value), str(path), "eval"), namespace)
                    if value is not None:
                        shown.append(repr(value))
                else:
                    exec(compile(ast.Module([stmt], type_ignores=[]), str(path), "exec"), namespace)
            except Exception as e:  # noqa: BLE001 (the failing line is what the report needs)
                pytest.fail(f"{where}\nraised {type(e).__name__}: {e}", pytrace=False)
        if re.search(r"^def test_", code, re.M):  # a test for pytest: run by pytest too
            test_file = demo_folder / f"test_readme_line_{line}.py"
            test_file.write_text(code)
            run = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:benchmark", test_file.name],
                cwd=demo_folder,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert run.returncode == 0, f"README.md line {line}: pytest says\n{run.stdout[-3000:]}"
