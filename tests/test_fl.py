"""Federated learning against real node processes: a digits classifier trained across three
nodes (accuracy asserted), approved once per node, its rounds in a sandboxed trainer; a node
killed mid-round; a forbidden op; NaN updates rejected; a job resumed in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from browser_support import free_port
from test_network import wait_until

import syft_kernel as sk
from syft_kernel.core import fl_graph, schema
from syft_kernel.core.keys import generate_keypair, write_keypair
from syft_kernel.launcher import NodeProcess

NODES = ("h0", "h1", "h2")
LABELS = {"label": list(range(10))}


def digits() -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """load_digits (shipped with scikit-learn) in three training splits (the last one mostly
    digits 0 to 4: not IID) and a held-out test split."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    frame = pd.DataFrame((x / 16).astype("float32"), columns=[f"p{i}" for i in range(64)])
    frame["label"] = y
    order = np.random.default_rng(0).permutation(len(frame))
    test, rest = frame.iloc[order[:360]], frame.iloc[order[360:]]
    low = rest[rest.label < 5]
    skewed = pd.concat([low.iloc[: len(low) // 2], rest[rest.label >= 5].iloc[:80]])
    others = rest.drop(skewed.index)
    parts = [others.iloc[0::2], others.iloc[1::2], skewed]
    return [p.reset_index(drop=True) for p in parts], test.reset_index(drop=True)


def accuracy(model: nn.Module, test: pd.DataFrame) -> float:
    x = torch.tensor(test.drop(columns="label").to_numpy(dtype=np.float32))
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1).numpy() == test.label.to_numpy()).mean())


class Fleet:
    """Three nodes holding the digits splits, their owners, and alice's key on each."""

    def __init__(self, root: Path, settings: dict[str, Any] | None = None, ports: bool = False) -> None:
        self.root = root
        self.key, self.pub = write_keypair(generate_keypair("alice"), root / "users")
        parts, self.test = digits()
        self.nodes: dict[str, NodeProcess] = {}
        self.ports: dict[str, int] = {}
        for name, part in zip(NODES, parts):
            port = free_port() if ports else 0
            self.ports[name] = port
            node = self.nodes[name] = sk.start_node(root / name, name=name, port=port, settings=settings)
            with node.login() as owner:
                owner.users.add("alice", role="data_scientist", public_key=self.pub)
                owner.datasets.upload("digits", assets={"train": part, "test": self.test}, public=LABELS)
        self.clients = {n: sk.login(node.connection_file, key=self.key) for n, node in self.nodes.items()}

    def pointers(self, asset: str = "train") -> dict[str, sk.Pointer]:
        return {n: c.datasets["digits"][asset] for n, c in self.clients.items()}

    def approve_all(self) -> int:
        n = 0
        for node in self.nodes.values():
            with node.login() as owner:
                for r in owner.requests.pending:
                    r.approve()
                    n += 1
        return n

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        for node in self.nodes.values():
            if node.proc.poll() is None:
                node.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp("fl"))
    yield f
    f.close()


class Net(nn.Module):
    """A small CNN with a residual connection over the 8x8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, 8, 8)
        h = F.relu(self.conv1(x))
        h = h + F.relu(self.bn(self.conv2(h)))
        h = F.max_pool2d(h, 2)
        return self.fc(torch.flatten(h, 1))


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


@pytest.fixture(scope="module")
def trained(fleet: Fleet) -> sk.fl.Job:
    """A CNN trained with FedAvg for 5 rounds, approved once per node."""
    torch.manual_seed(0)
    job = sk.fl.Job(
        Net(),
        data=fleet.pointers("train"),
        target="label",
        optimizer=sk.fl.SGD(lr=0.1, momentum=0.9),
        strategy=sk.fl.FedAvg(seed=1),
        rounds=5,
        local_epochs=2,
        batch_size=32,
        evaluate=fleet.pointers("test"),
    )
    requests = job.request(reason="a digits classifier for the study")
    assert set(requests) == set(NODES) and all(r.kind == "training" for r in requests.values())
    assert fleet.approve_all() == 3
    job.run(progress=False)
    return job


def test_a_cnn_trains_across_three_nodes_to_090(trained: sk.fl.Job, fleet: Fleet) -> None:
    model = trained.model
    assert isinstance(model, Net)
    assert accuracy(model, fleet.test) >= 0.90
    h = trained.history
    assert list(h.columns) == [
        "round", "node", "status", "examples", "train_loss", "eval_examples", "eval_loss", "accuracy", "reason",
    ]  # fmt: skip
    assert len(h) == 15 and set(h.status) == {"ok"} and set(h.node) == set(NODES)
    m = trained.metrics
    assert list(m["round"]) == [1, 2, 3, 4, 5] and (m.nodes == 3).all()
    assert m.accuracy.iloc[-1] >= 0.90 and m.eval_loss.iloc[-1] < m.eval_loss.iloc[0]
    # FedAvg weighs by examples: the third node's skewed split is smaller
    ex = h[h["round"] == 1].set_index("node").examples
    assert ex["h2"] < ex["h0"] and int(m.examples.iloc[0]) == int(ex.sum())


def test_one_approval_covers_the_whole_job_and_the_owner_saw_the_plan(trained: sk.fl.Job, fleet: Fleet) -> None:
    with fleet.nodes["h0"].login() as owner:
        assert owner.requests.pending == []  # five rounds, no request after the first
        req = owner.requests[trained.requests["h0"].id]
        text = "\n".join(req.plan)
        assert req.status == "approved" and req.kind == "training"
        for needle in (
            "5 round(s) of 2 local epoch(s), batches of 32",
            f"{trained.parameters:,} trained parameters",
            "# Conv2d(in_channels=1, out_channels=8",
            "add = relu + relu_1",
            "loss: cross_entropy; optimizer: SGD(lr=0.1, momentum=0.9",
            "aggregation, at the scientist: FedAvg(",
            "target: 'label'",
            "evaluation on digits/test",
            "leaves the node, each round: the trained weights",
        ):
            assert needle in text, needle
        audit = owner.audit(action="fl.fit")
        assert len(audit.to_frame()) == 5


def test_a_changed_model_loss_optimizer_or_round_count_is_a_new_request(trained: sk.fl.Job, fleet: Fleet) -> None:
    base = dict(data=fleet.pointers("train"), target="label", optimizer=sk.fl.SGD(lr=0.1, momentum=0.9), rounds=5)
    for change in ({"rounds": 6}, {"optimizer": sk.fl.SGD(lr=0.2)}, {"loss": "nll"}):
        job = sk.fl.Job(Net(), **{**base, **change})  # type: ignore[arg-type]
        reqs = job.request(reason="a variation")
        assert all(r.status == "pending" for r in reqs.values()), change
        with pytest.raises(sk.PermissionDenied, match="waiting for approval"):
            job.run(progress=False)
        # its rounds are refused on the node too, whatever the client does
        with pytest.raises(sk.PermissionDenied, match="pending"):
            fleet.clients["h0"].call(
                schema.FlFit(request=reqs["h0"].id, round=1),
                buffers=[fl_graph.to_safetensors(job._global)],
            )
    other = sk.fl.Job(mlp(), **base)  # type: ignore[arg-type]
    assert all(r.status == "pending" for r in other.request(reason="another model").values())
    with fleet.nodes["h0"].login() as owner:
        for r in owner.requests.pending:
            r.deny("not this one")


def test_a_forbidden_op_is_refused_before_training_with_the_op_named(fleet: Fleet) -> None:
    class Spectral(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.fft.fft(x).real)

    with pytest.raises(sk.OpNotAllowed, match="fft") as e:
        sk.fl.Job(Spectral(), data=fleet.pointers(), target="label")
    assert "fft" in e.value.op

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.att = nn.MultiheadAttention(64, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.att(x, x, x)[0]

    with pytest.raises(sk.OpNotAllowed, match="MultiheadAttention"):
        sk.fl.Job(Attention(), data=fleet.pointers(), target="label")


def test_run_on_mock_runs_the_whole_job_locally(fleet: Fleet) -> None:
    job = sk.fl.Job(mlp(), data=fleet.pointers(), target="label", rounds=2, evaluate=fleet.pointers("test"))
    with fleet.nodes["h0"].login() as owner:
        before = len(owner.audit(action="fl.fit").to_frame())
    h = job.run_on_mock()
    assert len(h) == 6 and set(h.status) == {"ok"} and h.accuracy.notna().all()
    assert isinstance(job.mock_model, nn.Sequential) and job.round == 0 and job.requests == {}
    with fleet.nodes["h0"].login() as owner:
        assert len(owner.audit(action="fl.fit").to_frame()) == before  # nothing ran on the node


def ancestors(pid: int) -> list[int]:
    """The process's parents, up to init (other test modules' nodes have trainers too)."""
    out = []
    while pid > 1:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            break
        pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        out.append(pid)
    return out


def test_training_runs_in_the_sandbox_and_the_node_keeps_serving(trained: sk.fl.Job, fleet: Fleet) -> None:
    """The trainer is a bubblewrap child of the node process (own user namespace), not the node."""
    node_pid = fleet.nodes["h0"].proc.pid
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if b"syft_kernel.node.trainer" in cmd and b"bwrap" not in cmd[0] and node_pid in ancestors(int(pid)):
            uid_map = Path(f"/proc/{pid}/uid_map").read_text().split()
            found.append((int(pid), status, uid_map))
    assert found, "no trainer process"
    assert any(uid_map[0] == "65534" for _, _, uid_map in found)  # uid 65534 in its own user namespace
    assert all("Seccomp:\t2" in st and "NoNewPrivs:\t1" in st for _, st, _ in found)
    assert fleet.clients["h0"].call(schema.Hello())[0]["node"] == "h0"
    assert node_pid not in [p for p, _, _ in found]


def test_fedprox_and_client_sampling(fleet: Fleet) -> None:
    job = sk.fl.Job(
        mlp(),
        data=fleet.pointers(),
        target="label",
        optimizer=sk.fl.SGD(lr=0.2),
        strategy=sk.fl.FedProx(mu=0.01, fraction=0.6, min_nodes=2, seed=3),
        rounds=3,
        evaluate=fleet.pointers("test"),
    )
    assert job.plan["proximal_mu"] == 0.01
    job.request(reason="FedProx, two nodes a round")
    fleet.approve_all()
    job.run(progress=False)
    h = job.history
    per_round = h[h.status == "ok"].groupby("round").node.count()
    assert list(per_round) == [2, 2, 2]
    assert (h.status == "not sampled").sum() == 3 and h.accuracy.notna().all()  # every node evaluates
    with fleet.nodes["h0"].login() as owner:
        plan = "\n".join(owner.requests[job.requests["h0"].id].plan)
    assert "proximal term (FedProx): mu = 0.01" in plan


def test_nan_updates_are_rejected_and_named(tmp_path: Path) -> None:
    """A node whose data makes training diverge sends NaN weights: the aggregator rejects them."""
    key, pub = write_keypair(generate_keypair("alice"), tmp_path / "users")
    parts, test = digits()
    nodes, clients = [], {}
    try:
        for name, part, scale in (("good", parts[0], 1.0), ("wild", parts[1], 1e30)):
            node = sk.start_node(tmp_path / name, name=name)
            nodes.append(node)
            part = part.copy()
            part[[f"p{i}" for i in range(64)]] *= scale
            with node.login() as owner:
                owner.users.add("alice", role="data_scientist", public_key=pub)
                owner.datasets.upload("digits", assets={"train": part}, public=LABELS)
            clients[name] = sk.login(node.connection_file, key=key)
        job = sk.fl.Job(
            mlp(),
            data={n: c.datasets["digits"]["train"] for n, c in clients.items()},
            target="label",
            optimizer=sk.fl.SGD(lr=0.1),
            rounds=2,
        )
        job.request(reason="two nodes")
        for node in nodes:
            with node.login() as owner:
                owner.requests.pending[0].approve()
        before = {k: v.clone() for k, v in job._global.items()}
        job.run(progress=False)
        h = job.history.set_index(["round", "node"])
        assert h.loc[(1, "wild"), "status"] == "rejected"
        assert "not finite" in h.loc[(1, "wild"), "reason"]
        assert h.loc[(1, "good"), "status"] == "ok"
        assert all(bool(torch.isfinite(v).all()) for v in job._global.values())
        assert any(not torch.equal(before[k], job._global[k]) for k in before)
    finally:
        for c in clients.values():
            c.close()
        for node in nodes:
            node.stop()


def test_a_node_killed_mid_round_is_dropped_and_rejoins_after_a_restart(tmp_path: Path) -> None:
    f = Fleet(tmp_path, ports=True)
    try:
        with f.nodes["h2"].login() as owner:  # h2 holds 30 times the rows: its rounds are the long ones
            big = pd.concat([f.test] * 30, ignore_index=True)
            owner.datasets.upload("big", assets={"train": big}, public=LABELS)
        data = {**f.pointers(), "h2": f.clients["h2"].datasets["big"]["train"]}
        job = sk.fl.Job(
            mlp(),
            data=data,
            target="label",
            optimizer=sk.fl.SGD(lr=0.05),
            strategy=sk.fl.FedAvg(min_nodes=2, seed=0),
            rounds=2,
            local_epochs=5,
            round_timeout=10.0,  # how long round 1 waits for the node that was killed
        )
        job.request(reason="faults")
        f.approve_all()
        done: list[BaseException | None] = []

        def first() -> None:
            try:
                job.run(rounds=1, progress=False)
                done.append(None)
            except BaseException as e:
                done.append(e)

        t = threading.Thread(target=first)
        t.start()
        victim = f.nodes["h2"]
        with victim.login() as owner:
            wait_until(
                lambda: any(
                    c["status"] == "running"
                    for c in owner.call(schema.FlStatus(request=job.requests["h2"].id))[0]["calls"]
                ),
                timeout=60,
                what="h2's round to start",
            )
            assert owner.call(schema.Hello())[0]["node"] == "h2"  # it serves while it trains
        victim.kill()  # SIGKILL, mid-round
        t.join(120)
        assert done == [None], done
        h = job.history.set_index("node")
        assert h.loc["h2", "status"] == "dropped" and "h2" in h.loc["h2", "reason"]
        assert set(h[h.status == "ok"].index) == {"h0", "h1"}
        assert job.round == 1
        # the node comes back on its port: its interrupted round is marked failed, and it trains round 2
        f.nodes["h2"] = sk.start_node(tmp_path / "h2", name="h2", port=f.ports["h2"])
        job.round_timeout = 120.0  # its trainer starts again: give it time on a busy machine
        job.run(progress=False)
        h2 = job.history[job.history["round"] == 2]
        assert set(h2[h2.status == "ok"].node) == set(NODES)
        with f.nodes["h2"].login() as owner:
            calls = owner.call(schema.FlStatus(request=job.requests["h2"].id))[0]["calls"]
        assert [(c["round"], c["status"]) for c in calls] == [(1, "failed"), (2, "done")]
        assert "node stopped" in calls[0]["error"]
    finally:
        f.close()


RESUME = """
import json, sys
import syft_kernel as sk
job = sk.fl.Job.resume(sys.argv[1])
assert job.round == 2, job.round
job.run(progress=False)
print(json.dumps({"round": job.round, "rows": len(job.history), "nodes": sorted(job.history.node.unique())}))
"""


def test_a_job_resumes_from_its_checkpoint_in_a_fresh_process(fleet: Fleet, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    job = sk.fl.Job(
        mlp(), data=fleet.pointers(), target="label", optimizer=sk.fl.SGD(lr=0.2),
        strategy=sk.fl.FedAdam(eta=0.01, seed=2), rounds=4, checkpoint=ckpt,
    )  # fmt: skip
    job.request(reason="resume me")
    fleet.approve_all()
    job.run(rounds=2, progress=False)
    saved = json.loads((ckpt / "job.json").read_text())
    assert saved["round"] == 2 and len(saved["history"]) == 6
    assert "secret" not in (ckpt / "job.json").read_text().lower()  # connection info and a key path only
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RESUME), str(ckpt)], capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"round": 4, "rows": 12, "nodes": list(NODES)}
    resumed = sk.fl.Job.resume(ckpt, model=mlp())
    assert resumed.round == 4 and accuracy(resumed.model, fleet.test) > 0.5
    with fleet.nodes["h1"].login() as owner:
        calls = owner.call(schema.FlStatus(request=job.requests["h1"].id))[0]["calls"]
    assert [(c["kind"], c["round"], c["status"]) for c in calls] == [("fit", r, "done") for r in (1, 2, 3, 4)]
    try:
        assert resumed.run(progress=False).round == 4  # nothing left to run
        with pytest.raises(sk.InvalidArgument, match="round is from 1 to 4"):  # and the node refuses more
            fleet.clients["h1"].call(
                schema.FlFit(request=job.requests["h1"].id, round=5), buffers=[fl_graph.to_safetensors(job._global)]
            )
    finally:
        for nd in resumed._nodes.values():
            nd.client.close()


def test_stopping_a_job(fleet: Fleet) -> None:
    job = sk.fl.Job(mlp(), data=fleet.pointers(), target="label", rounds=3)
    job.request(reason="stop me")
    fleet.approve_all()
    job.run(rounds=1, progress=False)
    with fleet.nodes["h1"].login() as owner:  # an owner stops it on their node
        req = owner.requests[job.requests["h1"].id]
        assert req.stop("enough").info["run_status"] == "stopped"
    job.run(rounds=1, progress=False)
    h = job.history.set_index(["round", "node"])
    assert h.loc[(2, "h1"), "status"] == "failed" and "stopped by owner: enough" in h.loc[(2, "h1"), "reason"]
    job.stop("done")
    with pytest.raises(sk.InvalidArgument, match="stopped"):
        job.run(progress=False)
    with pytest.raises(sk.PermissionDenied, match="stopped by alice: done"):
        fleet.clients["h0"].call(schema.FlFit(request=job.requests["h0"].id, round=3), buffers=[b"x"])


def test_the_queue_widget_and_the_dashboard_show_the_training_plan(trained: sk.fl.Job, fleet: Fleet) -> None:
    from syft_kernel.extension.dashboard import request_html
    from syft_kernel.widgets import RequestQueue

    rid = trained.requests["h0"].id
    with fleet.nodes["h0"].login() as owner:
        queue = RequestQueue(owner, live=False)
        row = queue.row(rid)
        assert "training request" in row.summary.value and "Federated training on digits/train" in row.summary.value
        assert "run:" in row.summary.value and "finished" in row.summary.value
        assert row.code.get_title(0).startswith("plan") and "Conv2d" in row.code.children[0].value
        assert '"nodes"' not in row.code.children[0].value  # the lines, not the graph's JSON
        queue.close()
        html = request_html(owner.requests[rid].info)
    assert "training request" in html and "loss: cross_entropy" in html and '"version"' not in html


def test_an_owner_stops_a_training_from_the_queue_widget(fleet: Fleet) -> None:
    from syft_kernel.widgets import RequestQueue

    job = sk.fl.Job(mlp(), data={"h2": fleet.pointers()["h2"]}, target="label", rounds=2)
    job.request(reason="stop me from the widget")
    fleet.approve_all()
    rid = job.requests["h2"].id
    with fleet.nodes["h2"].login() as owner:
        queue = RequestQueue(owner, live=False)
        row = queue.row(rid)
        assert row.can_stop and row.stop_button in row.children
        row.comment.value = "the study is over"
        row.stop_button.click()
        assert "stopped" in row.message.value and row.stop_button not in row.children
        assert owner.requests[rid].info["run_error"] == "stopped by owner: the study is over"
        queue.close()
    with pytest.raises(sk.PermissionDenied, match="stopped by owner"):
        fleet.clients["h2"].call(schema.FlFit(request=rid, round=1), buffers=[fl_graph.to_safetensors(job._global)])
    with pytest.raises(sk.PermissionDenied, match="the nodes refused the round: h2: failed"):  # not "retry"
        job.run(progress=False)
    row = job.history.iloc[-1]
    assert (row["round"], row.node, row.status) == (1, "h2", "failed") and "stopped by owner" in row.reason
    assert job.round == 0


def test_a_job_over_the_network_s_pointers(fleet: Fleet, tmp_path: Path) -> None:
    """The issue's way: pointers from a gateway's search, and a checkpoint that can log in again."""
    grid = sk.start_gateway(tmp_path / "grid", name="grid", auto_admit=True)
    try:
        for node in fleet.nodes.values():
            with node.login() as owner:
                owner.network.join(grid.connection_file)
                owner.network.wait(timeout=60)
        with sk.connect_network(grid.connection_file, key=fleet.key) as net:
            data = net.datasets.pointers("digits", asset="train")
            assert set(data) == set(NODES)
            job = sk.fl.Job(
                mlp(),
                data=data,
                target="label",
                optimizer=sk.fl.SGD(lr=0.2),
                rounds=1,
                evaluate=net.datasets.pointers("digits", asset="test"),
                checkpoint=tmp_path / "ckpt",
            )
            job.request(reason="over the network")
            fleet.approve_all()
            job.run(progress=False)
            assert set(job.history.status) == {"ok"} and job.history.accuracy.notna().all()
        saved = json.loads((tmp_path / "ckpt" / "job.json").read_text())
        assert {n["key"] for n in saved["nodes"].values()} == {str(fleet.key.resolve())}
    finally:
        for node in fleet.nodes.values():
            with node.login() as owner:
                owner.network.leave()
        grid.stop()
