"""Owner actions on users: add a data scientist or another owner by their public key."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .core import schema
from .core.errors import InvalidArgument
from .core.keys import KeyPair, public_keys_of
from .dp import Budget
from .records import Table, User

if TYPE_CHECKING:
    from .client import Client


class UsersAPI:
    """``owner.users``: add, remove and list the users of a node (owners only)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def add(
        self,
        name: str,
        role: str = "data_scientist",
        public_key: str | os.PathLike[str] | KeyPair | None = None,
        signing_key: str | None = None,
        budget: Budget | None = None,
    ) -> User:
        """Register ``name`` with a role and their public key (Z85 text, a ``.pub`` file or a KeyPair).

        Owners also need a signing key to approve requests: it comes with a ``.pub`` file or a
        KeyPair, or pass ``signing_key`` (hex) with a Z85 ``public_key``.
        """
        if public_key is None:
            raise InvalidArgument("users.add needs the user's public_key (the public_key in their NAME.pub)")
        curve, signing = public_keys_of(public_key)
        if budget is not None and not isinstance(budget, Budget):
            raise InvalidArgument("budget is an sk.Budget(epsilon=…, delta=…)")
        reply = self._client.call(
            schema.UsersAdd(
                name=name,
                role=role,
                public_key=curve,
                signing_key=signing_key or signing,
                budget=budget.to_wire() if budget is not None else None,
            )
        )[0]
        return User({**reply, "public_key": curve})

    def remove(self, name: str) -> None:
        """Remove a user: their key can no longer connect or send."""
        self._client.call(schema.UsersRemove(name=name))

    def list(self) -> Table[User]:
        """Every user of the node (a table; ``.to_frame()`` for a DataFrame)."""
        rows = [User(u) for u in self._client.call(schema.UsersList())[0]["users"]]
        return Table(rows, ("name", "role", "public_key"), f"users of {self._client.node_label}")

    def __iter__(self) -> Iterator[User]:
        return iter(self.list())

    def __repr__(self) -> str:
        return repr(self.list())

    def _repr_html_(self) -> str:
        return self.list()._repr_html_()
