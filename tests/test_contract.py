"""The API of DESIGN.md's contract: ``sk.Budget`` given at ``users.add``, one ``budget`` name,
one ``audit`` name, and users, audit entries and stats as objects with reprs and DataFrames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import syft_kernel as sk
from syft_kernel.core.keys import generate_keypair, write_keypair


def test_a_budget_given_with_the_user_covers_every_dataset_now_and_later(tmp_path: Path) -> None:
    node = sk.start_node(tmp_path / "h", name="h")
    try:
        with node.login() as owner:
            owner.datasets.upload("before", assets={"x": np.arange(100.0)})
            key, pub = write_keypair(generate_keypair("alice"), tmp_path / "users")
            added = owner.users.add(
                "alice", role="data_scientist", public_key=pub, budget=sk.Budget(epsilon=1.0, delta=1e-6)
            )
            assert (added.name, added.role) == ("alice", "data_scientist") and "alice" in repr(added)
            owner.datasets.upload("after", assets={"x": np.arange(100.0)})
            owner.budget.set("alice", "after", sk.Budget(epsilon=2.0))  # one dataset's own budget
            with pytest.raises(sk.InvalidArgument, match="epsilon is a non-negative"):
                owner.users.add("bob", public_key=generate_keypair("bob").public, budget=sk.Budget(epsilon=-1))
            with pytest.raises(sk.InvalidArgument, match="for a data scientist"):
                owner.users.add(
                    "carol", role="owner", public_key=generate_keypair("carol"), budget=sk.Budget(epsilon=1.0)
                )
            assert "bob" not in {u.name for u in owner.users}
        with sk.login(node.connection_file, key=key) as alice:
            assert alice.budget.left("before") == pytest.approx(1.0)
            assert alice.budget["before"]["delta"] == pytest.approx(1e-6)
            assert alice.budget.left("after") == pytest.approx(2.0)
            alice.datasets["before"]["x"].dp.count(epsilon=0.25)
            assert alice.budget.left("before") == pytest.approx(0.75)
        node.stop()
        node = sk.start_node(tmp_path / "h", name="h")  # the default survives a restart
        with node.login() as owner:
            owner.datasets.upload("later", assets={"x": np.arange(10.0)})
            assert {b["dataset"]: b["epsilon"] for b in owner.budget.of("alice")["budgets"]} == {
                "before": 1.0,
                "after": 2.0,
                "later": 1.0,
            }
            owner.users.remove("alice")
            owner.datasets.upload("last", assets={"x": np.arange(10.0)})
            assert "last" not in {b["dataset"] for b in owner.budget.of("alice")["budgets"]}
    finally:
        node.stop()


def test_users_audit_and_stats_are_objects_with_tables(tmp_path: Path) -> None:
    node = sk.start_node(tmp_path / "h", name="h")
    try:
        with node.login() as owner:
            key, pub = write_keypair(generate_keypair("alice"), tmp_path / "users")
            owner.users.add("alice", public_key=pub)
            users = owner.users.list()
            assert sorted(u.name for u in users) == ["alice", "owner"]
            frame = users.to_frame()
            assert isinstance(frame, pd.DataFrame) and set(frame["role"]) == {"owner", "data_scientist"}
            assert "alice" in repr(owner.users) and "data_scientist" in repr(users)
            assert users[0]["name"] == users[0].name  # a field by key or by attribute
            owner.datasets.upload("d", assets={"x": np.arange(5.0)})
            (owner.datasets["d"]["x"] + 1).get()
            log = owner.audit
            assert log[0]["action"] == log[0].action and len(log) >= 2
            uploads = owner.audit(action="datasets.upload")
            assert [e.target for e in uploads] == ["d"] and "datasets.upload" in repr(uploads)
            assert isinstance(uploads.to_frame()["at"].iloc[0], pd.Timestamp)
            stats = owner.stats()
            assert stats["mine"]["hello"] >= 1 and stats.node == "h" and "stats" in repr(stats)
        with sk.login(node.connection_file, key=key) as alice:
            with pytest.raises(sk.Unauthorized, match="for data owners"):
                alice.audit  # noqa: B018
            assert not hasattr(alice, "budgets") and not hasattr(alice, "audit_log")  # one name each
    finally:
        node.stop()
