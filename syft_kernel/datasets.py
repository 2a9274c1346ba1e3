"""Datasets on a node: upload (owners), list and search, metadata, mocks, asset pointers."""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .core import codec, schema
from .core import public as declarations
from .core.errors import NotFound

if TYPE_CHECKING:
    from .client import Client
    from .pointer import Pointer


class Dataset:
    """Public metadata of one dataset; ``dataset["asset"]`` is a pointer to that asset."""

    def __init__(self, client: Client, info: dict[str, Any]) -> None:
        self._client = client
        self.info = info
        self.name: str = info["name"]
        self.description: str = info.get("description", "")
        self.tags: list[str] = list(info.get("tags", []))
        self.subject_column: str | None = info.get("subject_column")
        self.assets: dict[str, dict[str, Any]] = {a["name"]: a for a in info.get("assets", [])}
        self.owners: list[str] = list(info.get("owners", []))
        self.policy: dict[str, Any] = dict(info.get("policy", {"kind": "single"}))
        self.public: dict[str, dict[str, Any]] = dict(info.get("public") or {})
        """The owner's public declarations per column (ranges, dates, categories, text formats)."""
        self.bounds: dict[str, tuple[float, float]] = {k: (v[0], v[1]) for k, v in info.get("bounds", {}).items()}
        """The declared numeric ranges: the DP bounds of those columns."""

    def __getitem__(self, asset: str) -> Pointer:
        from .pointer import Pointer

        if asset not in self.assets:
            raise NotFound(f"dataset {self.name!r} has no asset {asset!r}; it has {', '.join(self.assets)}")
        body, _ = self._client.call(schema.AssetPointer(dataset=self.name, asset=asset))
        return Pointer(self._client, body["id"], body["meta"], label=f"{self.name}/{asset}")

    def mock(self, asset: str) -> Any:
        """The asset's mock: same schema, synthetic values; free to look at."""
        return self._client.datasets.mock(self.name, asset)

    def __contains__(self, asset: object) -> bool:
        return asset in self.assets

    def __repr__(self) -> str:
        lines = [
            f"Dataset {self.name!r} on {self._client.node_label}",
            f"  {self.description}" if self.description else "",
            f"  tags: {' '.join(self.tags)}" if self.tags else "",
        ]
        for a in self.assets.values():
            shape = tuple(a["shape"]) if a.get("shape") is not None else "?"
            cols = f" columns: {', '.join(map(str, a['columns']))}" if a.get("columns") else ""
            lines.append(f"  asset {a['name']!r}: {a['type']} {shape}{cols}")
        if self.public:
            lines.append("  public (declared by the owner):")
            lines.extend(f"    {line}" for line in declarations.describe(self.public))
        return "\n".join(line for line in lines if line)


class DatasetsAPI(Mapping[str, Dataset]):
    """``client.datasets``: a read-only mapping of name → Dataset, plus search and (owners) upload."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._mocks: dict[tuple[str, str], Any] = {}

    def search(self, query: str = "", tags: builtins.list[str] | None = None) -> builtins.list[Dataset]:
        """Datasets whose name, description, tags or asset names hold every word of ``query``,
        and that carry all ``tags``.
        """
        body, _ = self._client.call(schema.DatasetsList(query=query, tags=list(tags or [])))
        return [Dataset(self._client, d) for d in body["datasets"]]

    def list(self) -> list[Dataset]:
        """Every dataset on the node (public metadata only)."""
        return self.search()

    def __getitem__(self, name: str) -> Dataset:
        body, _ = self._client.call(schema.DatasetsGet(name=name))
        return Dataset(self._client, body)

    def __iter__(self) -> Iterator[str]:
        return iter([d.name for d in self.list()])

    def __len__(self) -> int:
        return len(self.list())

    def mock(self, dataset: str, asset: str, timeout: float | None = None) -> Any:
        """An asset's mock (fetched once, then cached); ``timeout`` bounds the wait for the node."""
        key = (dataset, asset)
        if key not in self._mocks:
            body, buffers = self._client.call(schema.DatasetsMock(dataset=dataset, asset=asset), timeout=timeout)
            self._mocks[key] = codec.decode_value(body["value"], buffers)
        return self._mocks[key]

    def upload(
        self,
        name: str,
        assets: dict[str, Any],
        mock: dict[str, Any] | None = None,
        description: str = "",
        tags: builtins.list[str] | None = None,
        subject_column: str | None = None,
        owners: builtins.list[str] | None = None,
        policy: Any = None,
        bounds: dict[str, tuple[float, float]] | None = None,
        max_rows_per_subject: int = 1,
        subject_limit: float = 0.0,
        public: dict[str, Any] | None = None,
    ) -> Dataset:
        """Publish a dataset (owners). Assets stay private on the node; each gets a mock, the one
        given in ``mock`` or one generated from its schema with synthetic values. ``owners``
        (default: you) decide requests under ``policy`` (default one owner; ``sk.Consensus()``,
        ``sk.Threshold(k)``). ``bounds`` declares public value ranges per column for DP queries;
        ``max_rows_per_subject`` bounds how many rows one ``subject_column`` value may contribute;
        ``subject_limit`` caps each subject's own privacy loss per scientist (an individual
        privacy filter: a subject who reached it stops contributing to later answers).

        ``public`` declares what anyone may know about a column, per column name (it applies to
        every asset with that column): a range ``(lower, upper)`` of numbers or of dates (ISO
        strings or Timestamps; a date alone covers its whole day), a list of categories, or a text
        format such as ``"ID-{:06d}"``. They are shown with the dataset, the mock is generated from
        them, a numeric range is that column's DP bound (``bounds`` is the same notion) and
        declared categories are its public group keys. They are checked against the schema, never
        the values; you get a warning here (your data stay with you) where values fall outside.
        """
        enc = codec.Encoder()
        mock = mock or {}
        unknown = set(mock) - set(assets)
        if unknown:
            from .core.errors import InvalidArgument

            raise InvalidArgument(f"mocks given for assets that do not exist: {', '.join(sorted(unknown))}")
        declared = declarations.normalize(public, bounds)
        declared = declarations.check(declared, declarations.columns_of(assets))
        _warn_outside(assets, declared)
        items = [
            schema.AssetUpload(name=k, value=enc.encode(v), mock=enc.encode(mock[k]) if k in mock else None)
            for k, v in assets.items()
        ]
        body = schema.DatasetsUpload(
            name=name,
            assets=items,
            description=description,
            tags=list(tags or []),
            subject_column=subject_column,
            owners=owners,
            policy=policy.to_wire() if policy is not None else None,
            public=declared,
            max_rows_per_subject=max_rows_per_subject,
            subject_limit=subject_limit,
        )
        info, _ = self._client.call(body, buffers=enc.buffers)
        return Dataset(self._client, info)

    def delete(self, name: str) -> None:
        """Remove a dataset and its files (owners)."""
        self._client.call(schema.DatasetsDelete(name=name))
        self._mocks = {k: v for k, v in self._mocks.items() if k[0] != name}

    def _ipython_display_(self) -> None:
        from .display import show
        from .widgets import DatasetSearch

        show(self, self._client, "datasets", lambda: DatasetSearch(self._client))

    def __repr__(self) -> str:
        return datasets_table(self.list(), self._client.node_label)


def _warn_outside(assets: dict[str, Any], declared: dict[str, dict[str, Any]]) -> None:
    """Warn the owner (whose client holds the data) where values fall outside the declarations:
    DP clamps them to the range and the mock never shows them. Nothing of this is sent.
    """
    import warnings

    import pandas as pd

    for aname, value in assets.items():
        frame = value.to_frame() if isinstance(value, pd.Series) and value.name is not None else value
        if not isinstance(frame, pd.DataFrame):
            continue
        for col in frame.columns:
            decl = declared.get(str(col))
            if decl is None:
                continue
            s = frame[col].dropna()
            if "range" in decl:
                lo, hi = decl["range"]
                out = int(((s < lo) | (s > hi)).sum())
            elif "dates" in decl:
                first, last, days = declarations.date_range(decl)
                stamps = pd.to_datetime(s)
                if stamps.dt.tz is not None:
                    stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
                end = pd.Timestamp(last) + (pd.Timedelta(days=1) if days else pd.Timedelta(0))
                out = int(((stamps < pd.Timestamp(first)) | (stamps >= end if days else stamps > end)).sum())
            elif "categories" in decl:
                out = int((~s.astype(object).isin(decl["categories"])).sum())
            else:
                continue
            if out:
                warnings.warn(
                    f"{out} value(s) of {col!r} in {aname!r} fall outside what you declare public "
                    f"({declarations.describe({str(col): decl})[0]}): DP queries clamp or drop them and the "
                    "mock never shows them; widen the declaration if that is not what you mean",
                    UserWarning,
                    stacklevel=3,
                )


def datasets_table(rows: builtins.list[Dataset], node: str) -> str:
    """Datasets as a text table (terminals, and the search widget's text fallback)."""
    if not rows:
        return f"no datasets on {node}"
    width = max(len(d.name) for d in rows)
    lines = [f"{'name':<{width}}  {'assets':<24}  tags / description"]
    for d in rows:
        assets = ", ".join(d.assets)[:24]
        lines.append(f"{d.name:<{width}}  {assets:<24}  {' '.join(d.tags)}  {d.description[:60]}")
    return "\n".join(lines)
