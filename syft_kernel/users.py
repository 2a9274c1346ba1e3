"""Owner actions on users: add a data scientist or another owner by their public key."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .core import schema
from .core.keys import KeyPair, public_keys_of

if TYPE_CHECKING:
    from .client import Client


class UsersAPI:
    """``owner.users``: add, remove and list the users of a node (owners only)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def add(self, name: str, role: str = "data_scientist",
            public_key: str | os.PathLike[str] | KeyPair | None = None,
            signing_key: str | None = None) -> dict[str, Any]:
        """Register ``name`` with a role and their public key (Z85 text, a ``.pub`` file or a KeyPair).

        Owners also need a signing key to approve requests: it comes with a ``.pub`` file or a
        KeyPair, or pass ``signing_key`` (hex) with a Z85 ``public_key``.
        """
        if public_key is None:
            from .core.errors import InvalidArgument

            raise InvalidArgument("users.add needs the user's public_key (the public_key in their NAME.pub)")
        curve, signing = public_keys_of(public_key)
        return self._client.call(schema.UsersAdd(name=name, role=role, public_key=curve,
                                                 signing_key=signing_key or signing))[0]

    def remove(self, name: str) -> None:
        """Remove a user: their key can no longer connect or send."""
        self._client.call(schema.UsersRemove(name=name))

    def list(self) -> list[dict[str, Any]]:
        return self._client.call(schema.UsersList())[0]["users"]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.list())

    def __repr__(self) -> str:
        rows = self.list()
        width = max((len(u["name"]) for u in rows), default=4)
        lines = [f"{'name':<{width}}  role            public key"]
        lines += [f"{u['name']:<{width}}  {u['role']:<14}  {u['public_key'][:12]}…" for u in rows]
        return "\n".join(lines)
