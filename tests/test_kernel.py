"""The syft kernel (and %load_ext syft_kernel): a cell's pointer work is one plan per node."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

import syft_kernel as sk

# Its tests only read from the node, or write under names of their own: they share one
# (syft_shared_node, syft_kernel/pytest_plugin.py); the ones marked syft_own_node need a fresh one.
pytestmark = pytest.mark.syft_shared_node


class Cells:
    """Run cells in a real kernel; collect status, text output and errors."""

    def __init__(self, kernel_name: str) -> None:
        self.km = KernelManager(kernel_name=kernel_name)
        self.km.start_kernel()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str) -> dict[str, Any]:
        out: dict[str, Any] = {"text": "", "error": None}

        def hook(msg: dict[str, Any]) -> None:
            t, c = msg["msg_type"], msg["content"]
            if t == "stream":
                out["text"] += c["text"]
            elif t in ("execute_result", "display_data"):
                out["text"] += c["data"].get("text/plain", "") + "\n"
            elif t == "error":
                out["error"] = c

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=120)
        out["status"] = reply["content"]["status"]
        return out

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def syft_cells(syft_node, published, make_user) -> Iterator[tuple[Cells, str]]:  # type: ignore[no-untyped-def]
    from syft_kernel.kernel import install

    install(user=True)  # into JUPYTER_DATA_DIR: a temporary folder (tests/conftest.py)
    key = make_user("alice")
    cells = Cells("syft")
    cells.run(
        f"import syft_kernel as sk, numpy as np\n%syft connect {syft_node.connection_file} as hospital --key {key}"
    )
    yield cells, str(key)
    cells.close()


def runs(owner: sk.Client) -> int:
    return int(owner.stats()["counters"].get("alice:run", 0))


def test_a_cell_of_many_ops_is_one_round_trip(syft_cells, published: sk.Client) -> None:  # type: ignore[no-untyped-def]
    cells, _ = syft_cells
    r = cells.run("births = hospital.datasets['birth-records-feb']['births']")
    assert r["status"] == "ok"
    before = runs(published)
    code = "x = births['weight'] * 1.0\n" + "\n".join("x = x + 1" for _ in range(100)) + "\nm = x.mean()\nm"
    r = cells.run(code)
    assert r["status"] == "ok", r
    assert runs(published) - before == 1
    assert "numpy_scalar pointer on hospital" in r["text"] and "private" in r["text"]
    r = cells.run("%syft plan")
    assert "last plan: 103 op(s), one round trip" in r["text"] and "v103 = v102.mean()" in r["text"]
    # one plan per node per cell, also when the cell has no pointer work at all
    before = runs(published)
    assert cells.run("y = 1 + 1")["status"] == "ok"
    assert runs(published) == before


def test_a_failure_in_the_plan_is_the_cells_own_error(syft_cells) -> None:  # type: ignore[no-untyped-def]
    cells, _ = syft_cells
    cells.run("births = hospital.datasets['birth-records-feb']['births']")
    r = cells.run("w = births['weight'] * 2\nbad = births['no-such-column']\ntotal = w.sum()")
    assert r["status"] == "error"
    assert r["error"]["ename"] == "RemoteError"
    assert "line 2: bad = births['no-such-column']" in r["error"]["evalue"]
    assert "KeyError" in r["error"]["evalue"]
    r = cells.run("births.to_csv('/tmp/x.csv')")
    assert r["status"] == "error" and r["error"]["ename"] == "OpNotAllowed"
    assert "DataFrame.to_csv" in r["error"]["evalue"]
    # the kernel goes on
    assert cells.run("print(births.shape)")["text"].strip() == "(500, 8)"


def test_private_values_in_python_control_flow(syft_cells) -> None:  # type: ignore[no-untyped-def]
    cells, _ = syft_cells
    cells.run("births = hospital.datasets['birth-records-feb']['births']\nm = births['weight'].mean()")
    for code in ("if m > 3:\n    pass", "bool(m)", "float(m)", "print(m)", "len(births[births['weight'] > 3])"):
        r = cells.run(code)
        assert r["status"] == "error", code
        assert r["error"]["ename"] == "PermissionDenied"
        assert "lives on hospital" in r["error"]["evalue"] and "request(reason=" in r["error"]["evalue"]
    r = cells.run("m")
    assert "pointer on hospital" in r["text"] and "3." not in r["text"]


def test_plans_and_explicit_batches_in_the_syft_kernel(syft_cells, published: sk.Client) -> None:  # type: ignore[no-untyped-def]
    cells, _ = syft_cells
    cells.run("births = hospital.datasets['birth-records-feb']['births']")
    r = cells.run("@sk.plan\ndef stats(b):\n    return b['weight'].mean()\nprint(stats.trace(births))")
    assert r["status"] == "ok", r
    assert "v2 = v1.mean()" in r["text"]
    r = cells.run("m = stats(births)\nm")
    assert r["status"] == "ok", r  # the traced plan is never sent as a cell's batch
    assert cells.run("x = 1")["status"] == "ok"
    r = cells.run(
        "try:\n    with hospital.batch():\n        bad = births['nope']\nexcept sk.RemoteError as e:\n"
        "    print('caught', type(e).__name__)"
    )
    assert r["status"] == "ok" and "caught RemoteError" in r["text"]  # the block sends when it ends


def test_magics_in_the_syft_kernel(syft_cells, published: sk.Client) -> None:  # type: ignore[no-untyped-def]
    cells, _ = syft_cells
    assert "hospital: hospital at" in cells.run("%syft nodes")["text"]
    assert "birth-records-feb" in cells.run("%syft datasets")["text"]
    cells.run("req = hospital.datasets['birth-records-feb']['births']['weight'].sum().request(reason='r')")
    assert "pending" in cells.run("%syft requests hospital")["text"]
    assert "no privacy budgets for alice" in cells.run("%syft budget")["text"]
    published.budget.set("alice", "birth-records-feb", epsilon=1.0)
    assert "birth-records-feb" in cells.run("%syft budget hospital")["text"]
    r = cells.run("%syft requests nowhere")
    assert r["status"] == "error" and "not connected to nowhere" in r["error"]["evalue"]


def test_load_ext_in_the_plain_python_kernel(syft_node, published: sk.Client, make_user) -> None:  # type: ignore[no-untyped-def]
    key = make_user("alice")
    cells = Cells("python3")
    try:
        r = cells.run(f"%load_ext syft_kernel\n%syft connect {syft_node.connection_file} as hospital --key {key}")
        assert r["status"] == "ok", r
        cells.run("births = hospital.datasets['birth-records-feb']['births']")
        before = runs(published)
        r = cells.run("%%remote hospital\nw = births['weight']\ns = (w * 2 + 1).sum()\ns")
        assert r["status"] == "ok", r
        assert runs(published) - before == 1 and "pointer on hospital" in r["text"]
        before = runs(published)
        r = cells.run("a = births['weight'] + 1\nb = a * 3\nc = b.max()")
        assert r["status"] == "ok" and runs(published) - before == 1
        r = cells.run("z = births['weight'] * 2\nbad = births['nope']")
        assert r["status"] == "error" and "line 2" in r["error"]["evalue"]
    finally:
        cells.close()


def test_a_failed_cell_does_not_leak_into_the_next(syft_cells, published: sk.Client) -> None:  # type: ignore[no-untyped-def]
    cells, _ = syft_cells
    cells.run("births = hospital.datasets['birth-records-feb']['births']")
    r = cells.run("y = births['weight'] + 1\nbad = births['nope']\nraise ValueError('stop')")
    assert r["status"] == "error" and r["error"]["ename"] == "ValueError"
    before = runs(published)
    assert cells.run("z = 1")["status"] == "ok"
    assert runs(published) == before
    r = cells.run("y.get()")
    assert r["status"] == "error" and "not sent" in r["error"]["evalue"]
    # a long chain: no recursion limit, and its type comes without replaying it on the mock
    r = cells.run("x = births['weight'] * 1.0\nfor _ in range(2000):\n    x = x + 1\nm = x.mean()\nm")
    assert r["status"] == "ok", r
