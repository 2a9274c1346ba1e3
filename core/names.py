"""Names of users, datasets and assets: checked the same way by the node and the dashboard."""

from __future__ import annotations

import re
from typing import Any

from .codec import short_repr
from .errors import InvalidArgument

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(name: Any, what: str) -> str:
    """Names of users, datasets and assets: letters, digits, ``_ . -``; never a path."""
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise InvalidArgument(
            f"{what} name {short_repr(name)} is not allowed: use letters, digits, '_', '.', '-' "
            "(up to 128 characters, starting with a letter or digit, no '..')"
        )
    return name
