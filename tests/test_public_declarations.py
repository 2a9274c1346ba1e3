"""The owner's public declarations (``public=`` at upload): checked against the schema, stored,
shown to scientists, used for the mock and as DP bounds and group keys (issue 13, item 3)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import syft_kernel as sk
from syft_kernel import login
from syft_kernel.core import public as declarations
from syft_kernel.core.keys import generate_keypair, write_keypair
from syft_kernel.core.mock import make_mock
from syft_kernel.launcher import NodeProcess, start_node
from syft_kernel.sample_data import birth_records

PUBLIC = {
    "weight": (0.5, 6.0),
    "mother_age": (16, 50),
    "sex": ["F", "M"],
    "delivery": ["caesarean", "vaginal"],
    "day": ("2026-02-01", "2026-02-28"),
    "code": "ID-{:06d}",
    "ward": ["north", "south"],
    "seen": (pd.Timestamp("2026-02-01 08:00"), "2026-02-01T18:30:00"),
}


def _frame(high: bool, rows: int = 400) -> pd.DataFrame:
    df = birth_records(month=2, rows=rows, seed=7 if high else 8)
    rng = np.random.default_rng(1 if high else 2)
    df["code"] = pd.array([f"ID-{i:06d}" for i in rng.integers(0, 10**6, rows)], dtype="string")
    df["ward"] = rng.choice(["north", "south"], rows).astype(object)
    df["seen"] = pd.Timestamp("2026-02-01 08:00") + pd.to_timedelta(rng.integers(0, 10 * 3600, rows), unit="s")
    if high:
        df["weight"] = df["weight"].clip(upper=5.0) + 0.5
    return df


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    folder = tmp_path_factory.mktemp("public")
    proc = start_node(folder / "hospital", name="hospital")
    with proc.login() as owner:
        for name, high in (("high", True), ("low", False)):
            owner.datasets.upload(name, assets={"births": _frame(high)}, subject_column="mother_id", public=PUBLIC)
        owner.datasets.upload("plain", assets={"births": _frame(False)}, bounds={"weight": (0.5, 6.0)})
        _, pub = write_keypair(generate_keypair("alice"), folder / "users")
        owner.users.add("alice", role="data_scientist", public_key=pub)
        for name in ("high", "low", "plain"):
            owner.budget.set("alice", name, epsilon=50.0)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def alice(node: NodeProcess) -> Iterator[sk.Client]:
    with login(node.connection_file, key=node.folder.parent / "users" / "alice.key") as client:
        yield client


def test_the_mock_stays_within_the_declarations(alice: sk.Client) -> None:
    m = alice.datasets["low"].mock("births")
    assert m["weight"].between(0.5, 6.0).all() and m["weight"].dtype == np.float64
    assert m["mother_age"].between(16, 50).all() and m["mother_age"].dtype == np.int64
    assert set(m["sex"]) == {"F", "M"} and isinstance(m["sex"].dtype, pd.CategoricalDtype)
    assert set(m["delivery"]) == {"vaginal", "caesarean"}
    assert m["day"].min() >= pd.Timestamp("2026-02-01") and m["day"].max() <= pd.Timestamp("2026-02-28")
    assert (m["day"] == m["day"].dt.normalize()).all()  # declared as days: whole days
    assert m["code"].str.fullmatch(r"ID-\d{6}").all() and str(m["code"].dtype) == "string"
    assert set(m["ward"]) == {"north", "south"}
    assert m["seen"].between(pd.Timestamp("2026-02-01 08:00"), pd.Timestamp("2026-02-01 18:30")).all()
    assert m["weight"].nunique() > 50 and m["day"].nunique() > 10  # spread over the range, not one value


def test_same_schema_and_declarations_give_the_same_mock(alice: sk.Client) -> None:
    """The attacker's view: two datasets of different values, same schema and declarations."""
    pd.testing.assert_frame_equal(alice.datasets["high"].mock("births"), alice.datasets["low"].mock("births"))
    local = make_mock(
        _frame(True),
        public=declarations.check(declarations.normalize(PUBLIC), declarations.columns_of({"b": _frame(True)})),
    )
    pd.testing.assert_frame_equal(alice.datasets["high"].mock("births"), local)
    assert alice.datasets["high"].public == alice.datasets["low"].public


def test_declarations_are_shown_to_scientists(alice: sk.Client) -> None:
    d = alice.datasets["low"]
    assert d.public["weight"] == {"range": [0.5, 6.0]} and d.bounds["weight"] == (0.5, 6.0)
    text = repr(d)
    assert "public (declared by the owner)" in text
    assert "weight: 0.5 to 6.0" in text and "sex: one of F, M" in text and "day: 2026-02-01 to 2026-02-28" in text
    assert "ID-000000" in text


def test_a_declared_range_is_the_dp_bound_and_categories_the_keys(alice: sk.Client) -> None:
    births = alice.datasets["low"]["births"]
    assert 0.5 <= births["weight"].dp.mean(epsilon=5.0) <= 6.0  # no bounds= needed
    with pytest.raises(sk.InvalidArgument, match="within the owner's declared bounds"):
        births["weight"].dp.mean(epsilon=1.0, bounds=(0.0, 10.0))
    counts = births.dp.groupby("ward").count(epsilon=5.0)  # declared categories of a text column
    assert list(counts.index) == ["north", "south"]
    hist = births["ward"].dp.histogram(epsilon=5.0)  # the same keys for a histogram
    assert list(hist.index) == ["north", "south"]
    plain = alice.datasets["plain"]  # bounds= alone: the same stored notion
    assert plain.public == {"weight": {"range": [0.5, 6.0]}} and plain.bounds == {"weight": (0.5, 6.0)}
    assert 0.5 <= plain["births"]["weight"].dp.mean(epsilon=5.0) <= 6.0
    assert plain.mock("births")["weight"].between(0.5, 6.0).all()


BAD = [
    ({"wieght": (0.5, 6.0)}, "'wieght', which is not a column of any asset"),
    ({"sex": (0, 1)}, "numeric range, but column 'sex'"),
    ({"code": (0, 1)}, "declare its categories as a list"),
    ({"weight": (6.0, 0.5)}, "lower must be below upper"),
    ({"weight": (float("nan"), 6.0)}, "finite numbers"),
    ({"mother_age": (0.2, 0.8)}, "holds no whole number"),
    ({"weight": ["a", "b"]}, "the categories must be numbers"),
    ({"sex": ["F", "X"]}, "not among the column's own categories"),
    ({"ward": ["a", "a"]}, "distinct"),
    ({"ward": []}, "categories are a list of 1 to"),
    ({"day": ("2026-02-28", "2026-02-01")}, "must not be after the last"),
    ({"day": (0.5, 6.0)}, "give dates as ISO strings"),
    ({"weight": ("2026-02-01", "2026-02-28")}, "range of dates, but column 'weight'"),
    ({"code": "ID-{:06d}-{}"}, "not a text format"),
    ({"code": "{0.__class__}"}, "not a text format"),
    ({"weight": "ID-{}"}, "text format, but column 'weight'"),
    ({"weight": (1, 2, 3)}, "a range is a pair"),
    ({"weight": object()}, "declare a range"),
]


@pytest.mark.parametrize(("public", "message"), BAD)
def test_bad_declarations_are_refused_by_the_client(node: NodeProcess, public: dict, message: str) -> None:  # type: ignore[type-arg]
    with node.login() as owner, pytest.raises(sk.InvalidArgument, match=message.replace("(", r"\(")):
        owner.datasets.upload("bad", assets={"births": _frame(False, rows=20)}, public=public)


WIRE = [
    ({"wieght": {"range": [0.5, 6.0]}}, "not a column of any asset"),
    ({"weight": {"range": [6.0, 0.5]}}, "lower must be below upper"),
    ({"weight": {"range": [0.5, 6.0], "categories": [1]}}, "not a declaration"),
    ({"weight": {"eval": "1"}}, "not a declaration"),
    ({"weight": {"range": ["0.5", 6.0]}}, "a pair of numbers"),
    ({"day": {"dates": ["yesterday", "today"]}}, "ISO 8601"),
    ({"code": {"format": "{:099999999d}"}}, "not a text format"),
]


@pytest.mark.parametrize(("public", "message"), WIRE)
def test_bad_declarations_on_the_wire_are_refused_and_the_node_keeps_serving(
    node: NodeProcess,
    alice: sk.Client,
    public: dict,  # type: ignore[type-arg]
    message: str,
) -> None:
    from syft_kernel.core import codec, schema

    with node.login() as owner:
        enc = codec.Encoder()
        body = schema.DatasetsUpload(
            name="bad-wire",
            assets=[schema.AssetUpload(name="births", value=enc.encode(_frame(False, rows=20)))],
            public=public,
        )
        with pytest.raises(sk.InvalidArgument, match=message):
            owner.call(body, buffers=enc.buffers)
        assert "bad-wire" not in owner.datasets
    assert alice.datasets["low"].mock("births") is not None  # still serving


def test_bounds_and_public_must_agree(node: NodeProcess) -> None:
    with node.login() as owner, pytest.raises(sk.InvalidArgument, match="disagree"):
        owner.datasets.upload(
            "both", assets={"births": _frame(False, rows=20)}, public={"weight": (0.5, 6.0)}, bounds={"weight": (0, 9)}
        )


def test_the_owner_is_warned_where_values_fall_outside(node: NodeProcess) -> None:
    df = _frame(False, rows=50)
    df.loc[0, "weight"] = 9.0
    df.loc[1, "ward"] = "east"
    with node.login() as owner, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        owner.datasets.upload(
            "warned", assets={"births": df}, public={"weight": (0.5, 6.0), "ward": ["north", "south"]}
        )
    texts = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("1 value(s) of 'weight'" in t for t in texts) and any("'ward'" in t for t in texts)


def test_declarations_survive_a_restart(tmp_path: Path) -> None:
    proc = start_node(tmp_path / "node", name="node")
    with proc.login() as owner:
        owner.datasets.upload("d", assets={"births": _frame(False, rows=50)}, public=PUBLIC)
        before = owner.datasets["d"].public, owner.datasets["d"].mock("births")
    proc.stop()
    proc = start_node(tmp_path / "node", name="node")
    try:
        with proc.login() as owner:
            assert owner.datasets["d"].public == before[0]
            assert owner.datasets["d"].bounds == {"weight": (0.5, 6.0), "mother_age": (16, 50)}
            pd.testing.assert_frame_equal(owner.datasets["d"].mock("births"), before[1])
            owner.budget.set("owner", "d", epsilon=10.0)
            assert 0.5 <= owner.datasets["d"]["births"]["weight"].dp.mean(epsilon=5.0) <= 6.0  # the DP bound
    finally:
        proc.stop()


def test_the_demo_mock_looks_like_the_data(tmp_path: Path) -> None:
    """No negative weights, no mothers aged 2 or 148, no 2020 dates in February 2026 data."""
    from syft_kernel.demo import prepare_demo

    paths = prepare_demo(tmp_path, port=0)
    proc = start_node(paths["node"], name="hospital")
    try:
        with login(paths["connection"], key=paths["alice_key"]) as alice:
            d = alice.datasets["birth-records-feb"]
            m = d.mock("births")
            assert m["weight"].between(0.5, 6.0).all()
            assert m["mother_age"].between(16, 50).all()
            assert m["day"].between(pd.Timestamp("2026-02-01"), pd.Timestamp("2026-02-28")).all()
            assert m["height"].between(30, 60).all() and m["weeks"].between(24, 44).all()
            assert "weight: 0.5 to 6.0" in repr(d)
            jan = alice.datasets["birth-records-jan"].mock("births")
            assert jan["day"].max() <= pd.Timestamp("2026-01-31") and jan["day"].min() >= pd.Timestamp("2026-01-01")
    finally:
        proc.stop()


def test_make_mock_without_declarations_is_deterministic_and_plausible() -> None:
    df = pd.DataFrame({"n": np.arange(5, dtype=np.uint8), "x": np.zeros(5)})
    a, b = make_mock(df), make_mock(df.assign(x=np.ones(5)))
    pd.testing.assert_frame_equal(a, b)
    assert (a["n"] >= 0).all() and a["n"].dtype == np.uint8
