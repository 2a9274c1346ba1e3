"""``owner.audit``: the node's audit log (every get, release, approval, denial, code run, DP
release), newest first; call it to filter: ``owner.audit(action="approve", user="alice")``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .core import schema
from .records import AuditEntry, Table

if TYPE_CHECKING:
    from .client import Client

COLUMNS = ("id", "at", "user", "action", "target", "detail")


class AuditLog(Table[AuditEntry]):
    """The newest 1,000 entries (read from the node on first use), and filters by calling it."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._loaded = False
        super().__init__([], COLUMNS, f"audit log of {client.node_label}")

    def __call__(
        self,
        user: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> Table[AuditEntry]:
        """Entries by user, action (get, release, approve, deny, code.run, dp.release, …), target
        and time (``since``, a Unix time), newest first (owners only).
        """
        body = schema.AuditList(user=user, action=action, target=target, since=since, limit=limit)
        rows = [AuditEntry(e) for e in self._client.call(body)[0]["entries"]]
        what = ", ".join(f"{k}={v}" for k, v in (("user", user), ("action", action), ("target", target)) if v)
        return Table(rows, COLUMNS, f"audit log of {self._client.node_label}" + (f" ({what})" if what else ""))

    def load(self) -> AuditLog:
        """Read the newest entries from the node, once."""
        if not self._loaded:
            self._rows = list(self())
            self._loaded = True
        return self

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        return self.load()._rows[i]

    def __len__(self) -> int:
        return len(self.load()._rows)

    def to_frame(self):  # type: ignore[no-untyped-def]
        """The entries as a DataFrame (``at`` as timestamps)."""
        return Table.to_frame(self.load())

    def __repr__(self) -> str:
        return Table.__repr__(self.load())
