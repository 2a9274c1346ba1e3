"""Attacks on what leaks out of a node without an approval (issue 11), tried as a registered
data scientist who read our code would: through a pointer's metadata, an exception's text, the
type of a result, a DP query on a cleverly derived value, or the values a mock lacks.

The strongest check is differential: two datasets, ``high`` and ``low``, have the same schema,
row count and owner declarations but different private values (different weights, names, row
counts after any filter, missing values in one only). Everything a scientist sees without an
approval (metadata, types, errors, mocks) must be the same for both; where it differed, it would
tell a private fact. Statistical checks cover what one run cannot decide (DP noise, mocks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import RawSocket

import syft_kernel as sk
from syft_kernel import login
from syft_kernel.core import codec
from syft_kernel.core.keys import generate_keypair, write_keypair
from syft_kernel.launcher import NodeProcess, start_node

ROWS = 400
BOUNDS = {"weight": [0.5, 6.0], "age": [15, 50], "height": [40.0, 60.0]}


def _patients(high: bool) -> pd.DataFrame:
    """Private data: weights all high (5-6 kg) or all low (0.5-1.5); names that differ; in
    ``high`` only, missing heights (so some ops fail on the real data alone)."""
    rng = np.random.default_rng(1 if high else 2)
    weight = rng.uniform(5.0, 6.0, ROWS) if high else rng.uniform(0.5, 1.5, ROWS)
    height = rng.uniform(45.0, 55.0, ROWS)
    if high:
        height[::7] = np.nan
    names = [f"{'Alice' if high else 'Bob'} Patient{i:03d}" for i in range(ROWS)]
    return pd.DataFrame(
        {
            "patient": rng.permutation(ROWS) + 1000,
            "name": pd.array(names, dtype="string"),
            "age": rng.integers(18, 45, ROWS),
            "weight": weight,
            "height": height,
            "ward": pd.Categorical(rng.choice(["A", "B"] if high else ["C"], ROWS), categories=["A", "B", "C"]),
        }
    )


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    folder = tmp_path_factory.mktemp("leaks")
    proc = start_node(folder / "hospital", name="hospital")
    with proc.login() as owner:
        for name, high in (("high", True), ("low", False)):
            owner.datasets.upload(
                name,
                assets={"patients": _patients(high)},
                description="patients",
                subject_column="patient",
                bounds=BOUNDS,
            )
        owner.datasets.upload(
            "arrays",
            assets={
                "x": np.arange(12, dtype=np.float64).reshape(3, 4),
                "k": np.array([3, 1, 4], dtype=np.int64),
                "wide": np.random.default_rng(0).uniform(0, 1, (400, 50)),
            },
            description="arrays",
        )
        owner.datasets.upload(
            "nosubj", assets={"patients": _patients(False)}, description="no subject column", bounds=BOUNDS
        )
        _, pub = write_keypair(generate_keypair("alice"), folder / "users")
        owner.users.add("alice", role="data_scientist", public_key=pub)
        for name in ("high", "low", "arrays", "nosubj"):
            owner.budget.set("alice", name, epsilon=1000.0, delta=1e-6)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def alice(node: NodeProcess) -> Iterator[sk.Client]:
    with login(node.connection_file, key=node.folder.parent / "users" / "alice.key") as client:
        yield client


@pytest.fixture(scope="module")
def owner(node: NodeProcess) -> Iterator[sk.Client]:
    with node.login() as client:
        yield client


def _seen(make: Callable[[Any], Any], p: Any) -> Any:
    """What the scientist learns from one attack: the pointer's metadata, or the error."""
    try:
        ptr = make(p)
        meta = dict(ptr.meta)
        return ("ok", meta)
    except sk.SyftError as e:
        return ("error", type(e).__name__, e.message)


def _same_for_both(alice: sk.Client, make: Callable[[Any], Any]) -> Any:
    high = _seen(make, alice.datasets["high"]["patients"])
    low = _seen(make, alice.datasets["low"]["patients"])
    assert high == low, f"the scientist can tell the datasets apart:\nhigh: {high}\nlow:  {low}"
    return high


def _fn(name: str, *args: Any, **kwargs: Any) -> Any:
    """A pointer to ``name(*args, **kwargs)`` run on the node, sent as a raw plan (for functions
    the client does not dispatch, like ``pandas.concat``)."""
    from syft_kernel.pointer import Pointer

    client = next(
        a
        for a in [*args, *kwargs.values(), *(x for a in args if isinstance(a, list) for x in a)]
        if isinstance(a, Pointer)
    ).client

    def enc(x: Any) -> Any:
        if isinstance(x, Pointer):
            return {"~": "ref", "id": x.id}
        if isinstance(x, list):
            return [enc(v) for v in x]
        return x

    op = {
        "kind": "function",
        "name": name,
        "args": [enc(a) for a in args],
        "kwargs": [[k, enc(v)] for k, v in kwargs.items()],
    }
    body, _ = client.call("run", {"ops": [op], "keep": [0]})
    r = body["results"][0]
    return Pointer(client, r["id"], r["meta"], name)


def _serving(alice: sk.Client) -> None:
    assert (alice.datasets["arrays"]["x"] + 1).shape == (3, 4)


# ---- 1. metadata is public only when the public schema implies it --------------------------

ATTACKS: dict[str, Callable[[Any], Any]] = {
    # every patient name as column labels
    "names as columns": lambda p: p.set_index("name").T,
    # bisection on a weight: the columns (row labels) and the count of rows above a threshold
    "bisect weights (T)": lambda p: p[p["weight"] > 3.0].T,
    "bisect weights (rows)": lambda p: p[p["weight"] > 3.0],
    "bisect weights (one label)": lambda p: p[p["weight"] > 3.0].head(1).T,
    # a row's label as a series name
    "a name as a series name": lambda p: p.set_index("name").iloc[3],
    # dtype flips with the data: where() gives float only if something was replaced
    "where dtype": lambda p: p["age"].where(p["weight"] > 3.0),
    "where dtype (frame)": lambda p: p[["age", "patient"]].where(p["weight"] > 3.0),
    # max() of a column with missing values (NaN, a float) or without (an int)
    "max type": lambda p: p["age"].where(p["weight"] > 3.0).max(),
    # columns made from values
    "values as columns": lambda p: p["ward"].astype("string").str.split("A", expand=True),
    "dummies from values": lambda p: p.groupby("ward", observed=True)["age"].mean(),
    "value counts": lambda p: p["ward"].value_counts(),
    "unique": lambda p: p["ward"].unique(),
    "pivot of values": lambda p: p.set_index("name")[["weight"]].T,
    # a shape set by a private count
    "rows after filter": lambda p: p[p["weight"] > 3.0]["age"].to_numpy(),
    "shape of filter": lambda p: p[p["weight"] > 3.0].shape,
    # a failure on the data alone must not show as a missing shape (heights are NaN in high only)
    "shape after a real-only failure": lambda p: p["height"].astype("int64").to_numpy(),
    "shape after a failed input": lambda p: (p["height"].astype("int64").to_numpy() + 1).T,
    # a cast to category keeps the mock's categories, not the data's
    "categories of a cast": lambda p: p["ward"].astype("str").astype("category"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_metadata_is_the_same_whatever_the_private_values(alice: sk.Client, attack: str) -> None:
    seen = _same_for_both(alice, ATTACKS[attack])
    if seen[0] == "ok":
        meta = seen[1]
        assert "Alice" not in str(meta) and "Bob" not in str(meta)


def test_labels_that_come_from_values_are_not_shown(alice: sk.Client) -> None:
    p = alice.datasets["high"]["patients"]
    with pytest.raises(sk.QuotaExceeded, match="row count is public"):
        p.set_index("name").T.meta  # noqa: B018  # rows into columns, only where the row count is public
    t = p["ward"].astype("string").str.split("A", expand=True)  # columns 0, 1, …: as many as the data makes
    assert "columns" not in t.meta and "private" in t.meta["labels"]
    assert not isinstance(t.columns, pd.Index)  # a pointer to them: private like the data
    assert t.shape is not None and not isinstance(t.shape, tuple)  # a pointer: the shape is private too
    # labels from the schema stay visible
    q = p[["age", "weight"]]
    assert list(q.columns) == ["age", "weight"] and q.shape == (ROWS, 2)
    assert p["age"].mean().type == "numpy_scalar"


def test_the_type_of_a_result_is_the_mocks(alice: sk.Client, owner: sk.Client) -> None:
    """The node makes the real result take the type its mock computation has: ``ptr.mock``
    locally and ``ptr.meta`` agree, and so does the value once released."""
    for name in ("high", "low"):
        p = alice.datasets[name]["patients"]
        w = p["age"].where(p["weight"] > 3.0)
        assert w.dtype == str(w.mock.dtype)
        m = p["age"].max()
        assert m.type == "numpy_scalar" and m.dtype == str(np.asarray(m.mock).dtype)
        mine = owner.datasets[name]["patients"]
        ok = mine["age"].where(mine["weight"] > 3.0)
        try:
            assert str(ok.get().dtype) == w.dtype
        except sk.RemoteError as e:  # the data cannot take the mock's type: a private failure
            assert "could not be computed on the real data" in e.message


def test_private_numbers_cannot_set_sizes(alice: sk.Client) -> None:
    """``repeat(k)``, ``linspace(0, 1, m[2, 3])``, ``head(n)``: a private number as a size, a count
    or an axis would show in the result's shape (and its memory); refused before anything runs."""
    x, k = alice.datasets["arrays"]["x"], alice.datasets["arrays"]["k"]
    n = k[0]
    for attack in (
        lambda: x.repeat(n),
        lambda: x.repeat(k, axis=0),
        lambda: _fn("numpy.linspace", 0.0, 1.0, n),
        lambda: x.reshape(n, -1),
        lambda: x.sum(axis=n - 3),
        lambda: alice.datasets["high"]["patients"].head(n),
    ):
        with pytest.raises(sk.OpNotAllowed, match="private"):
            attack().meta  # noqa: B018
    # elementwise use of a private number is fine: it changes values, never the shape
    assert (x * n).shape == (3, 4) and np.clip(x, n, n + 1).shape == (3, 4)
    _serving(alice)


def _weight_oracle(p: Any, pid: int, t: float) -> Any:
    """The attacker's frame: fails on the data alone iff patient ``pid`` weighs more than ``t``
    (the mock's patient ids never match, so the mock never fails)."""
    low = pid - t - 1e-9
    f = (p[["patient", "weight"]] - pid).abs()
    g = f.clip(lower=[0, low], upper=[1, pid - t], axis=1).cumsum(axis=1)
    return ((g - low) ** -1.0).astype("int64").to_numpy()


def test_a_failure_cannot_be_read_from_a_shape(alice: sk.Client) -> None:
    """Bisecting one patient's weight by whether a crafted op fails on the data: every step
    gives the same metadata, whatever the weight."""
    real = _patients(False)
    pid = int(real["patient"].iloc[5])
    weight = float(real["weight"].iloc[5])
    p = alice.datasets["low"]["patients"]
    below = _seen(lambda q: _weight_oracle(q, pid, weight - 0.01), p)
    above = _seen(lambda q: _weight_oracle(q, pid, weight + 0.01), p)
    assert below == above and below[0] == "ok"


def test_a_failure_cannot_be_read_from_a_dp_refusal(alice: sk.Client) -> None:
    """The same oracle through DP: a query on a value that may have failed is refused for what
    its ops are (a cast that can fail is not row-stable), before anything is charged."""
    real = _patients(False)
    pid, weight = int(real["patient"].iloc[5]), float(real["weight"].iloc[5])
    p = alice.datasets["low"]["patients"]
    before = alice.budget.spent("low")
    seen = []
    for t in (weight - 0.01, weight + 0.01):
        z = (p["patient"] != pid).astype("float64") + (p["weight"] > t).astype("float64")
        with pytest.raises(sk.InvalidArgument) as err:
            (z**-1.0).astype("int64").dp.count(epsilon=1e-9)
        seen.append(err.value.message)
    assert seen[0] == seen[1] and "row-wise" in seen[0]
    assert alice.budget.spent("low") == before


def test_a_row_stable_value_never_fails_as_a_whole(alice: sk.Client) -> None:
    """A second review's oracles: ``where`` puts a NaN into an int column (which cannot take the
    twin's int64) and ``//`` by zero an inf, in one patient's row only when their weight passes
    ``t``. A row-stable value keeps its own dtype rather than fail, so DP releases both ways."""
    real = _patients(False)
    pid, weight = int(real["patient"].iloc[5]), float(real["weight"].iloc[5])
    p = alice.datasets["low"]["patients"]
    for make in (
        lambda t: p["age"].where(~((p["patient"] == pid) & (p["weight"] > t))),
        lambda t: p["age"] // ((p["patient"] != pid) | (p["weight"] <= t)),
    ):
        for t in (weight - 0.01, weight + 0.01):
            assert make(t).dp.count(epsilon=10.0) == pytest.approx(ROWS, abs=10)


def test_a_gap_never_changes_a_columns_type(alice: sk.Client) -> None:
    """A third review's oracles: ``where`` on an int column left it float only where it made a
    gap, so ``& 1`` then failed (a DP refusal) and ``astype("string").str.len()`` counted "18.0"
    against "18" (a DP sum 2x apart). ``where`` and ``//`` now give float64 by the op alone, on the
    twin and on the data, whatever the values."""
    real = _patients(False)
    pid, weight = int(real["patient"].iloc[5]), float(real["weight"].iloc[5])
    p = alice.datasets["low"]["patients"]

    def base(t: float) -> Any:
        return p["age"].where(~((p["patient"] == pid) & (p["weight"] > t)))

    assert base(0.0).dtype == "float64"
    lengths = []
    for t in (weight - 0.01, weight + 0.01):
        with pytest.raises(sk.RemoteError, match="fails on the mock data"):
            (base(t) & 1).meta  # noqa: B018  # on floats: refused by the mock, for both
        lengths.append(base(t).astype("string").str.len().rename("L").dp.sum(epsilon=5.0, bounds=(0, 10)))
    assert abs(lengths[0] - lengths[1]) < 30  # the noise's scale is 2; one row could move it by 10


def test_a_regex_replacement_fails_before_it_runs_or_never(alice: sk.Client) -> None:
    """RE2 raised on a missing group only for strings that matched: whether any name starts
    with "Alice" came out of a DP refusal. Now refused from the template, for both datasets."""
    for name in ("high", "low"):
        p = alice.datasets[name]["patients"]
        with pytest.raises(sk.InvalidArgument, match="group '3'"):
            p["name"].str.replace("^Alice", r"\3", regex=True).meta  # noqa: B018
        assert p["name"].str.replace("^(Alice)", r"\1!", regex=True).dp.count(epsilon=5.0) > 300


ROW_LOCAL: dict[str, Callable[[Any, Any], Any]] = {
    # each fails on the data only in the one row where the predicate holds (a fourth review)
    "fillna with text": lambda p, pred: p["weight"].where(~pred).fillna("x"),
    "where with text": lambda p, pred: p["weight"].where(~pred, "x"),
    "a reflected power": lambda p, pred: 2 ** (pred * -1),
    "text to bytes": lambda p, pred: pred.astype("string").str.replace("True", "é").astype("S"),
    "a timedelta overflow": lambda p, pred: (pred * 1e10) * pd.Timedelta(days=1),
}


@pytest.mark.parametrize("attack", list(ROW_LOCAL))
def test_a_failure_on_one_row_stays_in_that_row(alice: sk.Client, attack: str) -> None:
    """A row-stable op that fails on the data is done again on parts of its rows: the rows that
    fail alone take a default value, so one person's values change their own row only, and a DP
    query releases whether or not anything failed."""
    real = _patients(False)
    pid, weight = int(real["patient"].iloc[5]), float(real["weight"].iloc[5])
    p = alice.datasets["low"]["patients"]
    counts = []
    for t in (weight - 0.01, weight + 0.01):
        pred = (p["patient"] == pid) & (p["weight"] > t)
        counts.append(ROW_LOCAL[attack](p, pred).dp.count(epsilon=5.0))
    assert all(abs(c - ROWS) < 10 for c in counts)


def test_row_stable_ops_work_row_by_row() -> None:
    """What row-local isolation and DP's sensitivity both assume of every row-stable op: done on
    parts of the rows, it gives the parts of the whole result (no row reaches another)."""
    from syft_kernel.core import stability

    rng = np.random.default_rng(0)
    n = 60
    columns = {
        "int": pd.Series(rng.integers(-5, 5, n)),
        "float": pd.Series(np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n))),
        "bool": pd.Series(rng.random(n) < 0.5),
        "text": pd.Series(rng.choice(["ab", "Ba", " c ", "12", None], n), dtype="string"),
        "category": pd.Series(pd.Categorical(rng.choice(["a", "b"], n), categories=["a", "b", "c"])),
        "time": pd.Series(pd.to_datetime("2026-02-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s")),
    }
    calls = {
        "abs": (),
        "round": (1,),
        "clip": (0, 1),
        "isna": (),
        "notna": (),
        "fillna": (0,),
        "astype": ("float64",),
        "add": (1,),
        "eq": (1,),
        "lt": (1,),
        "isin": ([1, "ab", "a"],),
        "between": (0, 1),
        "copy": (),
        "mul": (2,),
        "where": (None,),
        "mask": (None,),
    }
    str_calls = {
        "lower": (),
        "upper": (),
        "strip": (),
        "len": (),
        "contains": ("a",),
        "startswith": ("a",),
        "slice": (0, 2),
        "get": (0,),
        "zfill": (3,),
        "pad": (3,),
        "center": (3,),
        "isdigit": (),
        "count": ("a",),
        "find": ("a",),
        "title": (),
        "replace": ("a", "x"),
    }
    dt_calls = {
        "year": None,
        "month": None,
        "day": None,
        "hour": None,
        "dayofweek": None,
        "strftime": ("%Y-%m",),
        "month_name": (),
    }
    checked = 0

    def same(f: Callable[[pd.Series], Any], s: pd.Series) -> None:
        nonlocal checked
        try:
            whole = f(s)
        except Exception:
            return  # not defined for this dtype: the mock refuses it the same way
        parts = pd.concat([f(s.iloc[:17]), f(s.iloc[17:40]), f(s.iloc[40:])])
        pd.testing.assert_series_equal(whole, parts, check_dtype=False)
        checked += 1

    for name, s in columns.items():
        for method, args in calls.items():
            assert method in stability._ROW_METHODS
            if method in ("where", "mask"):
                same(lambda x, m=method: getattr(x, m)(x.notna()), s)
            else:
                same(lambda x, m=method, a=args: getattr(x, m)(*a), s)
        if name == "text":
            for method, args in str_calls.items():
                assert method in stability._STR_METHODS
                same(lambda x, m=method, a=args: getattr(x.str, m)(*a), s)
        if name == "time":
            for attr, args in dt_calls.items():
                assert attr in stability._DT
                same(lambda x, m=attr, a=args: getattr(x.dt, m) if a is None else getattr(x.dt, m)(*a), s)
    assert checked > 80


def test_isolation_keeps_every_row_but_the_failing_ones() -> None:
    """In-process: a cast that fails on one value gives the other rows their values and that
    row its dtype's default; through a ``.str`` accessor too; and when no rows can be told
    apart, every row takes the default rather than the value failing."""
    from syft_kernel.core import allowlist as al
    from syft_kernel.core import executor as ex
    from syft_kernel.core import isolation

    def args(*operands: Any) -> Any:
        a = ex._Args(None, None, ())
        a.args = list(operands)
        a.values = [ex.Value(operands[0], frozenset({"d/a"}), None, operands[0], "d/a")] + [None] * (len(operands) - 1)
        return a

    real = pd.Series(["1", "2", "x", "4"], index=[10, 11, 12, 13], dtype="string")
    twin = pd.Series([1.0, 2.0], name=None)
    out = isolation.isolate_rows(
        "method",
        "astype",
        "Series.astype",
        al.lookup("Series", "astype"),
        args(real, "float64"),
        twin,
        ex._invoke,
        ex.type_key,
    )
    assert out.tolist() == [1.0, 2.0, 0.0, 4.0] and out.index.tolist() == [10, 11, 12, 13]
    upper = isolation.isolate_rows(
        "method",
        "upper",
        "StringMethods.upper",
        al.lookup("StringMethods", "upper"),
        args(real.str),
        pd.Series(["A"], dtype="string"),
        ex._invoke,
        ex.type_key,
    )
    assert upper.tolist() == ["1", "2", "X", "4"]
    blank = isolation.all_defaults(args(real.str), pd.Series([1], dtype="int64"))
    assert blank.tolist() == [0, 0, 0, 0] and blank.index.tolist() == [10, 11, 12, 13]


def test_dp_keeps_rows_in_their_place(alice: sk.Client) -> None:
    """``sort_values(ignore_index=True)`` renumbered the rows under the old mark, and a frame plus
    a series lines the series' row labels up with the frame's columns: both let one person move
    every row. Neither is row-stable now."""
    p = alice.datasets["low"]["patients"]
    ranked = p["patient"].sort_values(ignore_index=True)
    spread = (p["weight"] * 0.0).to_frame(3) + p["weight"]
    for ptr in (p["weight"][ranked != p["patient"]], spread > 1.0):
        with pytest.raises(sk.InvalidArgument, match="row-wise"):
            ptr.dp.count(epsilon=1.0)


def _one_patient(p: Any) -> Any:
    return ((p["patient"] == 1005) & (p["weight"] > 3.0)).astype("float64")


ROWWISE_REFUSED: dict[str, Callable[[Any], Any]] = {
    # a fifth review: midnight that does not exist (a DST gap) fails on one row's day only
    "normalize across a DST gap": lambda p: (
        _one_patient(p) * pd.Timedelta(days=1) + pd.Timestamp("2018-11-03 12:00", tz="America/Sao_Paulo")
    ).dt.normalize(),
    # one row with a time of day changes how every row's date prints
    "datetimes as text": lambda p: (_one_patient(p) * pd.Timedelta(hours=1) + pd.Timestamp("2020-01-01")).astype(str),
    "durations as text": lambda p: (_one_patient(p) * pd.Timedelta(hours=1) + pd.Timedelta(days=1)).astype(str),
    # a cast by another name
    "to_numpy with a dtype": lambda p: p["name"].str.slice(0, 1).to_numpy(dtype="float64"),
    # membership in a private set selects every row by one person's value
    "isin a private set": lambda p: p[(p["age"] * 0).isin(p[p["patient"] == 1005]["age"] * 0)]["weight"],
    # text to a number fails on the first value that is not one
    "text to float": lambda p: p["name"].astype("float64"),
    # columns the data has gaps in
    "dropna of columns": lambda p: p[["age", "weight"]].dropna(axis=1)["weight"],
    # a mask over other rows: pandas refuses to align it, on the data alone
    "a mask of other rows": lambda p: p["weight"][p[p["weight"] > 3.0]["patient"] > -1],
    "two different subsets": lambda p: p[p["weight"] > 3.0]["weight"] + p[p["age"] > 30]["weight"],
}


@pytest.mark.parametrize("attack", list(ROWWISE_REFUSED))
def test_dp_refuses_what_could_fail_or_mix_rows(alice: sk.Client, attack: str) -> None:
    """Refused the same way for both datasets: by DP (not row-wise), or by the mock already."""
    seen = []
    for name in ("high", "low"):
        with pytest.raises((sk.InvalidArgument, sk.RemoteError)) as err:
            ROWWISE_REFUSED[attack](alice.datasets[name]["patients"]).dp.count(epsilon=1.0)
        seen.append((type(err.value).__name__, err.value.message))
        assert "row-wise" in err.value.message or "fails on the mock data" in err.value.message
    assert seen[0] == seen[1]


def test_a_request_does_not_show_the_size_of_private_data(alice: sk.Client) -> None:
    sizes = []
    for name in ("high", "low"):
        p = alice.datasets[name]["patients"]
        target = p[p["weight"] > 1.0]["weight"]
        body, _ = alice.call("requests.create", {"id": target.id, "reason": "sizes"})
        sizes.append(body.get("size"))
    assert sizes == [None, None]


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, sk.Client]]:
    """A node whose owner set a 1 MiB quota: the attacker fills it with public values of known
    size and watches where a private value tips it over."""
    import json

    from syft_kernel.node.nodedir import init_node

    folder = tmp_path_factory.mktemp("tight")
    init_node(folder / "hospital", "hospital", host="127.0.0.1", port=0)
    cfg = json.loads((folder / "hospital" / "node.json").read_text())
    cfg["limits"] = {"quota_mb": 1, "plan_timeout_s": 0.1}
    (folder / "hospital" / "node.json").write_text(json.dumps(cfg))
    proc = start_node(folder / "hospital", name="hospital")
    with proc.login() as owner:
        for name, high in (("high", True), ("low", False)):
            owner.datasets.upload(name, assets={"patients": _patients(high)}, subject_column="patient", bounds=BOUNDS)
        _, pub = write_keypair(generate_keypair("alice"), folder / "users")
        owner.users.add("alice", role="data_scientist", public_key=pub)
    client = login(proc.connection_file, key=folder / "users" / "alice.key")
    try:
        yield proc, client
    finally:
        client.close()
        proc.stop()


def _room_left(client: sk.Client) -> int:
    """The largest public float64 array (in elements) the scientist can still store: bisected."""
    lo, hi = 0, 1 << 17
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            body, _ = client.call(
                "run",
                {
                    "ops": [{"kind": "function", "name": "numpy.linspace", "args": [0.0, 1.0, mid], "kwargs": []}],
                    "keep": [0],
                },
            )
            client.call("del", {"ids": [body["results"][0]["id"]]})
            lo = mid
        except sk.QuotaExceeded:
            hi = mid
    return lo


def test_a_quota_refusal_does_not_tell_a_private_size(tight: tuple[NodeProcess, sk.Client]) -> None:
    """The attacker holds a filtered frame (its real size is its private row count), then finds
    how much room is left: the same for both datasets, since private values count by their
    public size."""
    _, alice = tight
    rooms = []
    for name in ("high", "low"):
        p = alice.datasets[name]["patients"]
        held = p[p["weight"] > 3.0]["weight"]
        held.meta  # noqa: B018
        rooms.append(_room_left(alice))
        del held
    assert rooms[0] == rooms[1] and rooms[0] > 0


def test_allowlisted_shapes_do_not_depend_on_values() -> None:
    """Every op whose result shape the node publishes gives the same shape for different values
    of the same input shape (``one_hot`` without ``num_classes`` did not: its width was the max)."""
    import torch

    from syft_kernel.core import shapes
    from syft_kernel.core.executor import _module_function

    def call(label: str, x: Any) -> Any:
        owner, _, name = label.partition(".")
        if owner in ("numpy", "torch"):
            fn = _module_function(label)
            if name == "where":  # the elementwise form (the one-argument form is nonzero: not listed)
                return fn(x > 0, x, x)
            if label in shapes._FROM_SHAPES:
                return fn([x, x]) if label.endswith(("concatenate", "stack", "cat", "hstack", "vstack")) else fn(x, x)
            try:
                return fn(x)
            except TypeError:  # a binary function
                return fn(x, x)
        if owner in ("ndarray", "Tensor"):
            attr = getattr(x, name)
            return attr() if callable(attr) else attr
        return None

    rng = np.random.default_rng(0)
    checked = 0
    for label in sorted(shapes._FROM_TARGET | shapes._BROADCAST | shapes._FROM_SHAPES):
        owner = label.split(".")[0]
        for make in (lambda: rng.integers(0, 10, (4, 4)), lambda: rng.normal(size=(4, 4))):
            a, b = make(), make()
            if owner in ("Tensor", "torch"):
                a, b = torch.from_numpy(a), torch.from_numpy(b)
            try:
                ra, rb = call(label, a), call(label, b)
            except Exception:
                continue
            if ra is None:
                continue
            sa = (
                tuple(getattr(ra, "shape", ()) or ())
                if not isinstance(ra, tuple)
                else tuple(getattr(r, "shape", ()) for r in ra)
            )
            sb = (
                tuple(getattr(rb, "shape", ()) or ())
                if not isinstance(rb, tuple)
                else tuple(getattr(r, "shape", ()) for r in rb)
            )
            assert sa == sb, f"{label}: {sa} vs {sb}"
            checked += 1
    assert checked > 100


def test_a_time_limit_does_not_tell_how_long_the_data_took(tight: tuple[NodeProcess, sk.Client]) -> None:
    """A sixth review: 300 ops whose real work is slow only when one patient's weight passes t
    (their failures are isolated row by row) ran past a 0.1 s limit for one answer only. The
    limit now counts public work (the twins), so the plan runs, or not, the same both ways."""
    _, alice = tight
    real = _patients(False)
    pid, weight = int(real["patient"].iloc[5]), float(real["weight"].iloc[5])
    p = alice.datasets["low"]["patients"]
    outcomes = []
    for t in (weight - 0.01, weight + 0.01):
        q = ((p["patient"] == pid) & (p["weight"] > t)) * -1
        ops = [{"kind": "op", "name": "pow", "args": [2, {"~": "ref", "id": q.id}], "kwargs": []}] * 300
        try:
            alice.call("run", {"ops": ops, "keep": [299]})
            outcomes.append("ran")
        except sk.QuotaExceeded as e:
            outcomes.append(f"stopped at {e.data.get('op_index')}")
    assert outcomes == ["ran", "ran"]


def test_a_request_never_quotes_a_value_it_cannot_store(alice: sk.Client, owner: sk.Client) -> None:
    """A sixth review: a column that mixes text and numbers only on the data could not be
    written when a request was filed, and the codec's error quoted the value (a name, a weight).
    Now the request is filed on a value that failed; only the owner's audit log says why."""
    real = _patients(False)
    pid = int(real["patient"].iloc[5])
    p = alice.datasets["low"]["patients"]
    mixed = p["name"].where(p["patient"] == pid, 0)
    req = mixed.request(reason="a mixed column")
    assert req.status == "pending" and "Bob" not in str(req)
    assert owner.audit(user="alice", action="object.unstorable")


def test_what_an_owners_decision_tells_the_requester(alice: sk.Client, owner: sk.Client) -> None:
    """A seventh review: the decision event carried the owner's view of the request, with the
    byte size of a denied filter (its private row count). Now the requester's own view; and a
    reply's handling time is the owner's to see only."""
    p = alice.datasets["low"]["patients"]
    target = p[p["weight"] > 1.0][["weight"]]
    req = target.request(reason="sizes, through the event")
    owner.requests[req.id].deny(reason="no")
    event = alice.wait_event(lambda e: e.get("request") == req.id and e.get("event") == "request.decided", 30)
    assert event is not None and event["info"]["size"] is None
    header_ms = []  # the reply header, as it arrives (on a raw socket with each one's key)
    for client in (alice, owner):
        raw = RawSocket(client.connection, client.key)
        try:
            header, _, _ = raw.ask(codec.pack_message({"id": 1, "type": "hello"}, {}))
        finally:
            raw.close()
        header_ms.append("ms" in header)
    assert header_ms == [False, True]


def test_an_approved_plan_draws_the_same_rows_every_run(alice: sk.Client) -> None:
    """``sample(5)`` without a seed released a fresh draw each run of one approved plan."""
    p = alice.datasets["low"]["patients"]
    with pytest.raises(sk.InvalidArgument, match="random_state"):
        p["weight"].sample(5).meta  # noqa: B018
    assert p["weight"].sample(5, random_state=1).dtype == "float64"


def test_a_plan_review_shows_how_its_inputs_were_made(alice: sk.Client, owner: sk.Client) -> None:
    """The mean of one patient's weight read like a cohort's mean: its input was shown as in0."""
    p = alice.datasets["low"]["patients"]
    one = p[p["patient"] == 1005]["weight"]

    @sk.plan
    def mean(x: Any) -> Any:
        return x.mean()

    req = mean.request(one, reason="mean weight of the cohort")
    plan = owner.requests[req.id].plan
    assert any("in0 is made by" in line for line in plan) and any("1005" in line for line in plan)


def test_deleting_a_dataset_deletes_what_was_derived_from_it(tmp_path: Any) -> None:
    """Values derived from a deleted dataset answered DP queries (and requests) for a new
    dataset uploaded under its name, charged to the new budget."""
    proc = start_node(tmp_path / "h", name="h")
    try:
        with proc.login() as owner:
            owner.datasets.upload("d", assets={"t": _patients(False)}, subject_column="patient", bounds=BOUNDS)
            _, pub = write_keypair(generate_keypair("alice"), tmp_path / "users")
            owner.users.add("alice", role="data_scientist", public_key=pub)
            owner.budget.set("alice", "d", epsilon=100.0)
            with login(proc.connection_file, key=tmp_path / "users" / "alice.key") as alice:
                old = alice.datasets["d"]["t"]["weight"] * 1.0
                old.meta  # noqa: B018
                pending = (old + 1).request(reason="before the deletion")
                owner.datasets.delete("d")
                owner.datasets.upload("d", assets={"t": _patients(True)}, subject_column="patient", bounds=BOUNDS)
                owner.budget.set("alice", "d", epsilon=100.0)
                with pytest.raises(sk.NotFound):
                    old.dp.sum(epsilon=1.0)
                assert alice.requests[pending.id].status == "denied"
    finally:
        proc.stop()


def test_private_numbers_nested_in_lists_cannot_set_sizes(alice: sk.Client) -> None:
    x, k = alice.datasets["arrays"]["x"], alice.datasets["arrays"]["k"]
    n = k[0]
    for attack in (lambda: x.repeat([n, n, n], axis=0), lambda: x.reshape([n, -1])):
        with pytest.raises(sk.OpNotAllowed, match="private value inside a list"):
            attack().meta  # noqa: B018


# ---- 2. errors carry no private data -------------------------------------------------------

ERRORS: dict[str, Callable[[Any], Any]] = {
    "typo in a column": lambda p: p["wieght"],
    "a name as a key": lambda p: p.set_index("name").T["Alice Patient003"],
    "another name": lambda p: p.set_index("name").loc["Bob Patient003"],
    "past the rows": lambda p: p[p["weight"] > 3.0].iloc[300],
    "first of a filter": lambda p: p[p["weight"] > 3.0]["weight"].iloc[0],
    "reshape a filter": lambda p: p[p["weight"] > 3.0]["weight"].to_numpy().reshape(7, -1),
    "cast NaN to int": lambda p: p["height"].astype("int64"),
    "to_numeric of text": lambda p: p["name"].astype(str).str.slice(0, 5).astype("float64"),
    "an empty mean": lambda p: p[p["weight"] > 100.0]["weight"].mean(),
}


@pytest.mark.parametrize("attack", list(ERRORS))
def test_errors_are_the_same_whatever_the_private_values(alice: sk.Client, attack: str) -> None:
    seen = _same_for_both(alice, ERRORS[attack])
    assert "Alice" not in str(seen) or attack == "a name as a key"  # the key is the scientist's own text
    assert "Bob" not in str(seen) or attack == "another name"
    _serving(alice)


def test_an_error_says_it_failed_on_the_mock(alice: sk.Client) -> None:
    p = alice.datasets["high"]["patients"]
    with pytest.raises(sk.RemoteError, match="wieght") as err:
        p["wieght"].meta  # noqa: B018
    assert "mock" in err.value.message  # the scientist can reproduce it on ptr.mock


def test_a_failure_on_the_real_data_alone_stays_private(alice: sk.Client, owner: sk.Client) -> None:
    """Heights are missing in ``high`` only: ``astype("int64")`` fails there and not on the mock.
    The scientist sees the same pointer for both; the owner sees the failure and its reason."""
    p = alice.datasets["high"]["patients"]
    bad = p["height"].astype("int64")
    good = alice.datasets["low"]["patients"]["height"].astype("int64")
    assert {k: v for k, v in bad.meta.items()} == {k: v for k, v in good.meta.items()}
    with pytest.raises(sk.PermissionDenied):
        bad.get()
    later = (bad + 1).sum()  # work goes on, on a value that failed: nothing tells
    assert later.type == "numpy_scalar"
    mine = owner.datasets["high"]["patients"]["height"].astype("int64")
    with pytest.raises(sk.RemoteError, match="could not be computed on the real data") as err:
        mine.get()
    assert "IntCastingNaNError" in err.value.message or "NaN" in err.value.message  # the owner reads why
    entry = owner.audit(user="alice", action="op.failed")[0]
    assert "NaN" in entry["detail"]["error"] or "non-finite" in entry["detail"]["error"]
    # a DP query cannot tell them apart either: a cast that can fail on some values is not
    # row-stable, so both are refused for what the op is, not for what the data did
    refusals = []
    for ptr in (bad, good):
        with pytest.raises(sk.InvalidArgument) as err:
            ptr.dp.mean(epsilon=1.0)
        refusals.append(err.value.message)
    assert refusals[0] == refusals[1] and "row-wise" in refusals[0]


def test_types_and_callables_are_refused_as_arguments(alice: sk.Client) -> None:
    p = alice.datasets["high"]["patients"]
    for attack in (lambda: p[str], lambda: p["age"].map(str), lambda: p.groupby(int), lambda: p["age"].agg(float)):
        with pytest.raises(sk.SyftError, match="type"):
            attack().meta  # noqa: B018
    assert p["age"].astype(float).dtype == "float64" and p["age"].astype("int32").dtype == "int32"
    assert p[["age"]].astype({"age": float}).dtypes.tolist() == ["float64"]
    _serving(alice)


# ---- 3. DP is really DP ---------------------------------------------------------------------

UNSTABLE: dict[str, Callable[[Any], Any]] = {
    "a repeated row": lambda p: p["weight"].iloc[[3] * 20_000],
    "a repeated row (loc)": lambda p: p.loc[[3] * 5_000, "weight"],
    "reset_index": lambda p: p.reset_index(drop=True)["weight"],
    "a broadcast row": lambda p: p["weight"] * 0 + p["weight"].iloc[3],
    "concat with itself": lambda p: _fn("pandas.concat", [p, p])["weight"],
    "a self merge": lambda p: p.merge(p, on="ward")["weight_x"],
    "filter by an aggregate": lambda p: p[p["weight"] > p["weight"].mean()]["weight"],
    "sort then head": lambda p: p.sort_values("weight")["weight"].head(10),
    "shifted": lambda p: p["weight"].shift(1),
    "cumulative": lambda p: p["weight"].cumsum(),
    "a new index": lambda p: p.set_index("ward")["weight"],
    "a groupby result": lambda p: p.groupby("ward", observed=True)["weight"].mean(),
}


@pytest.mark.parametrize("attack", list(UNSTABLE))
def test_dp_refuses_values_that_are_not_row_wise(alice: sk.Client, attack: str) -> None:
    p = alice.datasets["high"]["patients"]
    before = alice.budget.spent("high")
    with pytest.raises(sk.InvalidArgument, match="row-wise|row by row"):
        UNSTABLE[attack](p).dp.mean(epsilon=1.0, bounds=(0.5, 6.0))
    assert alice.budget.spent("high") == before  # refused before anything was charged


def test_dp_cannot_move_a_value_between_subjects(alice: sk.Client) -> None:
    """Row labels tell DP's subjects apart: renaming them (``rename({a: b, b: a})``) would copy
    one patient's weight into 60 other patients' rows, or (without a subject column) duplicate
    labels would align one row against all 400. Both are refused as not row-wise."""
    real = _patients(False)
    pid = int(real["patient"].iloc[5])
    p = alice.datasets["low"]["patients"]
    one = p["weight"].where(p["patient"] == pid, 0.0)
    moved = one.rename({5: 6, 6: 5}) + one.rename({5: 7, 7: 5})
    q = alice.datasets["nosubj"]["patients"]
    dup = q["weight"] + (q["weight"] * 0.0).rename({i: 5 for i in range(ROWS)})
    for ptr in (moved.rename("weight"), dup.rename("weight")):
        with pytest.raises(sk.InvalidArgument, match="row-wise"):
            ptr.dp.sum(epsilon=1.0, bounds=(0.5, 6.0))
    assert 0.5 <= p["weight"].rename("kg").dp.mean(epsilon=10.0, bounds=(0.5, 6.0)) <= 6.0  # a name is fine


def test_dp_keys_never_come_from_the_value_queried(alice: sk.Client) -> None:
    """A cast to category would make every name a public group key."""
    for name in ("high", "low"):
        p = alice.datasets[name]["patients"]
        with pytest.raises(sk.InvalidArgument):
            p.astype({"name": "category"}).dp.groupby("name").count(epsilon=1.0)
        keys = p[["ward"]].astype("str").astype("category")
        with pytest.raises(sk.InvalidArgument):
            keys.dp.groupby("ward").count(epsilon=1.0)


def test_dp_on_a_wide_array_counts_each_row_once(alice: sk.Client) -> None:
    """A (400, 50) array: one row adds 50 values to a flattened sum, not one."""
    with pytest.raises(sk.InvalidArgument, match="one column"):
        alice.datasets["arrays"]["wide"].dp.sum(epsilon=1.0, bounds=(0.0, 1.0))
    col = alice.datasets["arrays"]["wide"][:, 3]
    assert abs(col.dp.sum(epsilon=10.0, bounds=(0.0, 1.0)) - 200) < 40


def test_dp_runs_on_row_wise_transformations(alice: sk.Client) -> None:
    p = alice.datasets["high"]["patients"]
    heavy = p[(p["weight"] > 5.5) & (p["age"] >= 18)]
    assert 0.5 <= heavy["weight"].clip(0.5, 6.0).dp.mean(epsilon=50.0) <= 6.0
    assert heavy.dp.count(epsilon=50.0) == pytest.approx(float((_patients(True)["weight"] > 5.5).sum()), abs=5)
    kilos = (p["weight"] * 1000).rename("grams")
    assert 500 <= kilos.dp.mean(epsilon=50.0, bounds=(500.0, 6000.0)) <= 6000
    assert p.dp.groupby("ward").count(epsilon=50.0).index.tolist() == ["A", "B", "C"]


def test_group_keys_are_public_and_distinct(alice: sk.Client) -> None:
    p = alice.datasets["high"]["patients"]
    for keys in (["A", "A"], [1, 1.0], [1, True], [float("nan")]):
        with pytest.raises(sk.InvalidArgument, match="distinct|finite"):
            p["age"].dp.histogram(categories=keys, epsilon=1.0)
    with pytest.raises(sk.InvalidArgument, match="public keys"):
        p.dp.groupby("name").count(epsilon=1.0)  # names are values, not declared keys


def test_declared_bounds_are_enforced(alice: sk.Client) -> None:
    p = alice.datasets["high"]["patients"]
    with pytest.raises(sk.InvalidArgument, match="declared bounds"):
        p["weight"].dp.mean(epsilon=1.0, bounds=(0.0, 1e9))
    assert 0.5 <= p["weight"].dp.mean(epsilon=10.0, bounds=(1.0, 6.0)) <= 6.0  # narrower is fine


def test_dp_noise_has_the_scale_its_epsilon_promises(alice: sk.Client) -> None:
    """Statistical: 200 Laplace counts at epsilon = 1 on a row-wise filter spread as Laplace(1/1)
    does (std sqrt(2)); the repeated-row trick that once gave an exact mean is refused above."""
    p = alice.datasets["low"]["patients"]
    rows = p[p["weight"] > 1.0]
    releases = np.array([rows.dp.count(epsilon=1.0) for _ in range(200)])
    truth = float((_patients(False)["weight"] > 1.0).sum())
    assert abs(releases.mean() - truth) < 0.6  # unbiased (the mean of 200 has std 0.1)
    assert 1.0 < releases.std() < 2.0  # sqrt(2) = 1.41 for Laplace(scale 1)


# ---- 4. mocks do not depend on real values --------------------------------------------------


def test_mocks_are_the_same_for_different_data(alice: sk.Client) -> None:
    """Same schema, row count and declarations: the same mock, value for value. So the values a
    mock lacks (once redrawn where they equalled real ones) tell nothing."""
    high = alice.datasets["high"]["patients"].mock
    low = alice.datasets["low"]["patients"].mock
    pd.testing.assert_frame_equal(high, low)


def test_mocks_follow_the_declarations(alice: sk.Client) -> None:
    mock = alice.datasets["high"]["patients"].mock
    real = _patients(True)
    for column, (lo, hi) in BOUNDS.items():
        assert mock[column].between(lo, hi).all(), column
    # statistical: the mock's weights spread over the declared range, not where the data is
    assert mock["weight"].min() < 1.0 and mock["weight"].max() > 5.5
    assert abs(mock["weight"].mean() - 3.25) < 0.3 and abs(real["weight"].mean() - 5.5) < 0.1
    assert set(mock["ward"].cat.categories) == {"A", "B", "C"} and set(mock["ward"]) == {"A", "B", "C"}
    assert not set(mock["name"]) & set(real["name"])
    assert list(mock.dtypes) == list(real.dtypes)


def test_still_serving(alice: sk.Client) -> None:
    _serving(alice)
