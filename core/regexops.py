"""Regular expressions on private strings, in linear time (RE2), never by backtracking.

Python's ``re`` (which pandas uses) backtracks: ``(a+)+$`` on a long private string runs for
hours, holds the GIL, and whether it does so depends on the data. RE2 matches in time linear in
the text, so a pattern costs the same whatever it is and cannot stall the node; it has no
backreferences or lookaround, and a pattern that needs them is refused by name.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from .errors import InvalidArgument, OpNotAllowed

MAX_PATTERN = 10_000
_FLAG_PREFIX = {re.IGNORECASE: "i", re.MULTILINE: "m", re.DOTALL: "s"}


def _compile(op: str, pat: Any, flags: Any = 0, case: Any = True) -> Any:
    import re2  # google-re2

    if not isinstance(pat, str) or len(pat) > MAX_PATTERN:
        raise InvalidArgument(f"{op}: the pattern is a string of at most {MAX_PATTERN} characters")
    if not isinstance(flags, int) or isinstance(flags, bool):
        raise InvalidArgument(f"{op}: flags are re module flags (an int)")
    letters = ""
    for flag, letter in _FLAG_PREFIX.items():
        if flags & flag:
            letters += letter
            flags &= ~flag
    if flags & ~re.UNICODE:
        raise InvalidArgument(f"{op}: only re.IGNORECASE, re.MULTILINE and re.DOTALL are supported")
    if case is False and "i" not in letters:
        letters += "i"
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(f"(?{letters}){pat}" if letters else pat, options)
    except re2.error:
        raise OpNotAllowed(
            f"{op}: the pattern is not valid in RE2, the linear-time engine the node uses on private "
            "text (no backreferences such as \\1, no lookahead or lookbehind)",
            op=op,
        ) from None


def _series(strings: Any) -> pd.Series:
    return strings._orig  # the Series a StringMethods accessor was made from


def _map(s: pd.Series, fn: Any, missing: Any) -> list[Any]:
    """``fn`` on every string, ``missing`` elsewhere, and where ``fn`` fails on one string
    (text RE2 cannot take): whether an op fails as a whole must never depend on one value."""

    def one(v: Any) -> Any:
        if not isinstance(v, str):
            return missing
        try:
            return fn(v)
        except Exception:
            return missing

    return [one(v) for v in s.to_numpy(dtype=object)]


_GROUP_REF = re.compile(r"\\(\d+)|\\g<([^>]*)>")


def _check_template(op: str, rx: Any, repl: str) -> None:
    """Refuse a replacement naming a group the pattern lacks, before anything runs (RE2 would
    raise only on strings that match, which would tell whether any does)."""
    for number, name in _GROUP_REF.findall(repl):
        ref = number or name
        ok = int(ref) <= rx.groups if ref.isdigit() else ref in rx.groupindex
        if not ok:
            raise InvalidArgument(f"{op}: the replacement refers to group {ref!r}, which the pattern does not have")


def contains(strings: Any, pat: Any, case: Any = True, flags: Any = 0, na: Any = False, regex: Any = True) -> pd.Series:
    """``Series.str.contains``; missing values give ``na`` (False unless given)."""
    s = _series(strings)
    if not regex:
        return s.str.contains(pat, case=case, flags=flags, na=na, regex=False)
    rx = _compile("StringMethods.contains", pat, flags, case)
    out = _map(s, lambda v: rx.search(v) is not None, na)
    dtype = bool if isinstance(na, (bool, np.bool_)) else object
    return pd.Series(out, index=s.index, name=s.name, dtype=dtype)


def count(strings: Any, pat: Any, flags: Any = 0) -> pd.Series:
    """``Series.str.count``: non-overlapping matches; missing values give NaN."""
    s = _series(strings)
    rx = _compile("StringMethods.count", pat, flags)
    out = _map(s, lambda v: float(sum(1 for _ in rx.finditer(v))), np.nan)
    return pd.Series(out, index=s.index, name=s.name, dtype=float)


def replace(
    strings: Any, pat: Any, repl: Any, n: Any = -1, case: Any = None, flags: Any = 0, regex: Any = False
) -> pd.Series:
    """``Series.str.replace``; a regex goes through RE2, a literal through pandas."""
    s = _series(strings)
    if not regex:
        return s.str.replace(pat, repl, n=n, case=case, flags=flags, regex=False)
    if not isinstance(repl, str):
        raise OpNotAllowed("StringMethods.replace takes a string replacement", op="StringMethods.replace")
    if not isinstance(n, int) or isinstance(n, bool):
        raise InvalidArgument("StringMethods.replace: n is an int")
    rx = _compile("StringMethods.replace", pat, flags, True if case is None else case)
    _check_template("StringMethods.replace", rx, repl)
    out = _map(s, lambda v: rx.sub(repl, v, count=0 if n < 0 else n), None)
    return pd.Series(out, index=s.index, name=s.name, dtype=object)


def split(strings: Any, pat: Any = None, n: Any = -1, expand: Any = False, regex: Any = None) -> Any:
    """``Series.str.split``; a pattern of more than one character (or ``regex=True``) is a regex."""
    s = _series(strings)
    as_regex = regex is True or (regex is None and isinstance(pat, str) and len(pat) > 1)
    if not as_regex:
        return s.str.split(pat, n=n, expand=expand, regex=False)
    if expand:
        raise OpNotAllowed(
            "StringMethods.split(expand=True) with a regex: the number of columns would "
            "depend on the data; use expand=False",
            op="StringMethods.split(expand=True)",
        )
    if not isinstance(n, int) or isinstance(n, bool):
        raise InvalidArgument("StringMethods.split: n is an int")
    rx = _compile("StringMethods.split", pat)
    out = _map(s, lambda v: rx.split(v, maxsplit=0 if n < 0 else n), np.nan)
    return pd.Series(out, index=s.index, name=s.name, dtype=object)


# StringMethods.<name> → the linear-time version that runs instead of pandas' own
REGEX_METHODS = {"contains": contains, "count": count, "replace": replace, "split": split}
