"""What the node reports about users, audit entries and its counters, as objects: read a field
by attribute or key, print a row or a table, and get a pandas DataFrame with ``to_frame()``.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar, overload

import pandas as pd

R = TypeVar("R", bound="Record")


class Record(Mapping[str, Any]):
    """A read-only row from the node: ``row.name`` or ``row["name"]``."""

    KIND = "record"
    SHOWN: tuple[str, ...] = ()

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_data"][name]
        except KeyError:
            raise AttributeError(f"{self.KIND} has no field {name!r} (it has {', '.join(self._data)})") from None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return dict(self._data)

    def __repr__(self) -> str:
        shown = self.SHOWN or tuple(self._data)
        return f"<{self.KIND} " + " ".join(f"{k}={_short(self._data.get(k))}" for k in shown if k in self._data) + ">"


class User(Record):
    """A user of the node: ``name``, ``role``, ``public_key`` and when they were added."""

    KIND = "user"
    SHOWN = ("name", "role")


class AuditEntry(Record):
    """One line of the audit log: ``at`` (a timestamp), ``user``, ``action``, ``target``, ``detail``."""

    KIND = "audit"
    SHOWN = ("id", "at", "user", "action", "target")


class Release(Record):
    """One DP release charged to a budget: ``at``, ``dataset``, ``query``, ``mechanism``, its
    ``epsilon`` (or ``rho``) and ``spent``, the running total on that dataset after it.
    """

    KIND = "release"
    SHOWN = ("at", "dataset", "query", "epsilon", "spent")


class Stats(Record):
    """The node's message counters: yours (``mine``) and, for owners, the whole node's."""

    KIND = "stats"
    SHOWN = ("node", "uptime", "messages", "objects")


class Table(Sequence[R], Generic[R]):
    """Rows from the node, newest first where they have a time: a list that prints as a table."""

    def __init__(self, rows: Sequence[R], columns: Sequence[str], title: str) -> None:
        self._rows = list(rows)
        self.columns = tuple(columns)
        self.title = title

    @overload
    def __getitem__(self, i: int) -> R: ...
    @overload
    def __getitem__(self, i: slice) -> list[R]: ...
    def __getitem__(self, i: int | slice) -> R | list[R]:
        return self._rows[i]

    def __len__(self) -> int:
        return len(self._rows)

    def __eq__(self, other: object) -> bool:
        return list(self) == (list(other) if isinstance(other, (Table, list)) else other)

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame (every field a column; times as timestamps)."""
        frame = pd.DataFrame([r.to_dict() for r in self._rows])
        for col in ("at", "created_at"):
            if col in frame:
                frame[col] = pd.to_datetime(frame[col], unit="s")
        return frame

    def _cells(self) -> list[list[str]]:
        return [[_short(r.get(c), c) for c in self.columns] for r in self._rows]

    def __repr__(self) -> str:
        if not self._rows:
            return f"{self.title}: none"
        cells = self._cells()
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(self.columns)]
        lines = [f"{self.title} ({len(self._rows)})", "  ".join(c.ljust(w) for c, w in zip(self.columns, widths))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self._rows:
            return f"<b>{html.escape(self.title)}</b>: none"
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in self._cells())
        return f"<b>{html.escape(self.title)}</b><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


KEYS = ("public_key", "signing_key")  # shown by their first characters, like ssh fingerprints
TIMES = ("at", "created_at", "decided_at", "added_at")  # Unix times, shown as local date and time


def _short(value: Any, column: str = "") -> str:
    if column in KEYS and isinstance(value, str):
        return value[:12] + "…"
    if column in TIMES and isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict):  # details: key=value, the short ones first
        items = sorted(value.items(), key=lambda kv: len(str(kv[1])))
        return _short(" ".join(f"{k}={_short(v)}" for k, v in items))
    if isinstance(value, float) and value > 1e9:  # a Unix time
        return datetime.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.3g}"
    text = "" if value is None else str(value)
    return text if len(text) <= 40 else text[:37] + "…"
