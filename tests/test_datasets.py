"""Datasets: upload with assets and mocks, files on disk, search, metadata, pointers to assets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import syft_kernel as sk


def test_upload_stores_each_kind_in_its_format(syft_node, published: sk.Client) -> None:  # type: ignore[no-untyped-def]
    files = sorted(p.suffix for p in (syft_node.folder / "assets").iterdir())
    # three assets and three mocks: Parquet, .npy, safetensors; no temporary files left
    assert files == [".npy", ".npy", ".parquet", ".parquet", ".safetensors", ".safetensors"]
    d = published.datasets["birth-records-feb"]
    assert d.description == "Monthly birth records"
    assert d.tags == ["#February", "#birth-records"]
    assert d.subject_column == "mother_id"
    births = d.assets["births"]
    assert births["type"] == "DataFrame" and births["shape"] == [500, 8]
    assert births["columns"][:4] == ["mother_id", "mother_age", "weeks", "weight"]
    assert d.assets["matrix"]["shape"] == [3, 4] and d.assets["tensor"]["dtype"] == "float32"


@pytest.mark.syft_shared_node
def test_owner_gets_back_exactly_what_was_uploaded(published: sk.Client, births_df: pd.DataFrame) -> None:
    d = published.datasets["birth-records-feb"]
    pd.testing.assert_frame_equal(d["births"].get(), births_df)
    assert np.array_equal(d["matrix"].get(), np.arange(12.0).reshape(3, 4))
    assert torch.equal(d["tensor"].get(), torch.arange(6, dtype=torch.float32).reshape(2, 3))


@pytest.mark.syft_shared_node
def test_generated_mock_has_the_schema_and_no_real_value(scientist: sk.Client, births_df: pd.DataFrame) -> None:
    """A generated mock follows from the schema alone: other data of the same schema gives the
    same mock, value for value (so neither its values nor the ones it lacks say anything)."""
    from syft_kernel.core.mock import make_mock

    mock = scientist.datasets["birth-records-feb"].mock("births")
    assert list(mock.columns) == list(births_df.columns)
    assert [str(t) for t in mock.dtypes] == [str(t) for t in births_df.dtypes]
    other = births_df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    for col in ("mother_id", "weight", "height", "weeks"):
        other[col] = other[col] * 2 + 1
    pd.testing.assert_frame_equal(mock, make_mock(other))
    assert set(mock["sex"].cat.categories) == {"F", "M"}  # declared categories are schema
    arr = scientist.datasets["birth-records-feb"].mock("matrix")
    assert arr.shape == (3, 4) and arr.dtype == np.float64
    assert np.array_equal(arr, make_mock(np.zeros((3, 4))))
    t = scientist.datasets["birth-records-feb"].mock("tensor")
    assert t.shape == (2, 3) and t.dtype == torch.float32


def test_a_given_mock_is_used(owner: sk.Client, births_df: pd.DataFrame) -> None:
    mock = births_df.head(3).assign(weight=[1.0, 2.0, 3.0])
    owner.datasets.upload("with-mock", assets={"births": births_df}, mock={"births": mock})
    pd.testing.assert_frame_equal(owner.datasets["with-mock"].mock("births"), mock)
    with pytest.raises(sk.InvalidArgument, match="columns"):
        owner.datasets.upload("bad-mock", assets={"births": births_df}, mock={"births": mock[["weight"]]})
    with pytest.raises(sk.InvalidArgument, match="do not exist"):
        owner.datasets.upload("bad-mock", assets={"births": births_df}, mock={"other": mock})
    assert "bad-mock" not in owner.datasets


def test_search_by_text_and_tags(published: sk.Client, births_df: pd.DataFrame, scientist: sk.Client) -> None:
    published.datasets.upload(
        "lab-results", assets={"tests": births_df[["weight"]]}, description="Blood tests", tags=["#lab"]
    )
    assert [d.name for d in scientist.datasets.search("birth")] == ["birth-records-feb"]
    assert [d.name for d in scientist.datasets.search("blood TESTS")] == ["lab-results"]
    assert [d.name for d in scientist.datasets.search(tags=["#lab"])] == ["lab-results"]
    assert [d.name for d in scientist.datasets.search("monthly", tags=["#february"])] == ["birth-records-feb"]
    assert scientist.datasets.search("nothing-like-this") == []
    assert set(scientist.datasets) == {"birth-records-feb", "lab-results"}
    assert len(scientist.datasets) == 2
    assert "birth-records-feb" in repr(scientist.datasets)


@pytest.mark.syft_shared_node
def test_pointers_to_assets_carry_public_metadata(scientist: sk.Client) -> None:
    births = scientist.datasets["birth-records-feb"]["births"]
    assert births.type == "DataFrame" and births.private
    assert births.shape == (500, 8)
    assert list(births.columns[:2]) == ["mother_id", "mother_age"]
    assert births.dtypes["weight"] == "float64"
    assert "private" in repr(births) and "weight: float64" in repr(births)
    with pytest.raises(sk.NotFound, match="no asset"):
        scientist.datasets["birth-records-feb"]["nope"]
    with pytest.raises(sk.NotFound, match="no dataset"):
        scientist.datasets["nope"]


@pytest.mark.syft_shared_node("empty")  # every case is refused: the node stays empty
@pytest.mark.parametrize("name", ["../../etc", "/etc/passwd", "a/b", "..", ".hidden", "", "x" * 200, "a b"])
def test_path_like_and_bad_names_are_refused(owner: sk.Client, births_df: pd.DataFrame, syft_node, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(sk.InvalidArgument, match="not allowed"):
        owner.datasets.upload(name, assets={"births": births_df})
    with pytest.raises(sk.InvalidArgument, match="not allowed"):
        owner.datasets.upload("ok", assets={name: births_df})
    with pytest.raises(sk.InvalidArgument):
        owner.datasets[name]
    assert list(owner.datasets) == []
    assert not any((syft_node.folder / "assets").iterdir())


def test_bad_uploads_are_refused_and_leave_nothing(owner: sk.Client, births_df: pd.DataFrame, syft_node) -> None:  # type: ignore[no-untyped-def]
    owner.datasets.upload("births", assets={"births": births_df})
    with pytest.raises(sk.InvalidArgument, match="exists already"):
        owner.datasets.upload("births", assets={"births": births_df})
    with pytest.raises(sk.InvalidArgument, match="at least one asset"):
        owner.datasets.upload("empty", assets={})
    with pytest.raises(sk.InvalidArgument, match="not a list"):
        owner.datasets.upload("scalar", assets={"x": [1, 2, 3]})
    with pytest.raises(sk.InvalidArgument, match="subject_column"):
        owner.datasets.upload("subj", assets={"b": births_df}, subject_column="nobody")
    assert len(list((syft_node.folder / "assets").iterdir())) == 2


def test_delete_removes_metadata_and_files(published: sk.Client, syft_node) -> None:  # type: ignore[no-untyped-def]
    published.datasets.delete("birth-records-feb")
    assert list(published.datasets) == []
    assert not any((syft_node.folder / "assets").iterdir())
    with pytest.raises(sk.NotFound):
        published.datasets.delete("birth-records-feb")
