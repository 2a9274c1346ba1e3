"""A dataset's listing: the public metadata a node publishes to a gateway, and nothing else.

The node builds it (``listing``) from what it already shows every registered scientist (the
schema of each asset, which its mock has anyway) without the row count unless the owner made it
public; the gateway accepts only these fields (``check_listing``), so a node cannot be made to
publish a value, even by a bug of its own.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack

from .errors import InvalidArgument
from .names import check_name

LISTING_FIELDS = ("name", "description", "tags", "assets", "has_mock")
ASSET_FIELDS = ("name", "type", "columns", "dtypes", "shape", "dtype", "rows")
ASSET_TYPES = ("DataFrame", "Series", "ndarray", "Tensor")
MAX_ASSETS = 100
MAX_COLUMNS = 10_000
MAX_TAGS = 64
MAX_LISTING_BYTES = 256 * 1024  # a listing, as msgpack: a wide table's schema fits, a dump does not


def listing(dataset: dict[str, Any], rows_public: bool) -> dict[str, Any]:
    """The listing of a dataset as the node's database describes it (``Database.dataset``)."""
    assets = []
    for a in dataset["assets"]:
        shape = list(a.get("shape") or [])
        entry: dict[str, Any] = {"name": a["name"], "type": a.get("type", a.get("kind", ""))}
        if a.get("columns") is not None:
            entry["columns"] = [str(c) for c in a["columns"]]
            entry["dtypes"] = [str(d) for d in a.get("dtypes") or []]
        elif shape:
            entry["shape"] = shape[1:]  # the trailing shape: what one example looks like
        if a.get("dtype") is not None:
            entry["dtype"] = str(a["dtype"])
        if rows_public and shape:
            entry["rows"] = int(shape[0])
        assets.append(entry)
    return {
        "name": dataset["name"],
        "description": dataset.get("description", ""),
        "tags": list(dataset.get("tags", [])),
        "assets": assets,
        "has_mock": True,  # every asset has a mock: uploaded, or made from the schema
    }


def _fail(why: str) -> InvalidArgument:
    return InvalidArgument(f"the gateway accepts only public metadata: {why}")


def _text(value: Any, what: str, longest: int) -> str:
    if not isinstance(value, str) or len(value) > longest:
        raise _fail(f"{what} is a string of at most {longest} characters")
    return value


def _count(value: Any, what: str, largest: int = 2**53) -> int:
    if type(value) is not int or not 0 <= value <= largest:
        raise _fail(f"{what} is a whole number from 0 to {largest}")
    return value


def check_listing(meta: Any) -> dict[str, Any]:
    """The listing ``meta`` if it holds only the public fields, each of its kind; else raise."""
    if not isinstance(meta, dict):
        raise _fail("a listing is a map")
    extra = sorted(str(k)[:40] for k in meta if k not in LISTING_FIELDS)
    if extra:
        raise _fail(f"a listing has only {', '.join(LISTING_FIELDS)}; not {', '.join(extra)}")
    name = check_name(meta.get("name"), "dataset")
    tags = meta.get("tags", [])
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise _fail(f"tags are a list of at most {MAX_TAGS} strings")
    tags = [_text(t, "a tag", 64) for t in tags]
    assets = meta.get("assets")
    if not isinstance(assets, list) or not 0 < len(assets) <= MAX_ASSETS:
        raise _fail(f"a dataset lists from 1 to {MAX_ASSETS} assets")
    has_mock = meta.get("has_mock", False)
    if type(has_mock) is not bool:
        raise _fail("has_mock is true or false")
    out = {
        "name": name,
        "description": _text(meta.get("description", ""), "the description", 10_000),
        "tags": tags,
        "assets": [_check_asset(a) for a in assets],
        "has_mock": has_mock,
    }
    size = len(msgpack.packb(out))
    if size > MAX_LISTING_BYTES:
        raise _fail(f"the listing of {name} is {size:,} bytes, over {MAX_LISTING_BYTES:,}: fewer assets or columns")
    return out


def _check_asset(a: Any) -> dict[str, Any]:
    if not isinstance(a, dict):
        raise _fail("an asset's listing is a map")
    extra = sorted(str(k)[:40] for k in a if k not in ASSET_FIELDS)
    if extra:
        raise _fail(f"an asset has only {', '.join(ASSET_FIELDS)}; not {', '.join(extra)}")
    out: dict[str, Any] = {"name": check_name(a.get("name"), "asset")}
    if a.get("type") not in ASSET_TYPES:
        raise _fail(f"an asset's type is one of {', '.join(ASSET_TYPES)}")
    out["type"] = a["type"]
    for key in ("columns", "dtypes"):
        if key in a:
            cols = a[key]
            if not isinstance(cols, list) or len(cols) > MAX_COLUMNS:
                raise _fail(f"{key} are a list of at most {MAX_COLUMNS} strings")
            out[key] = [_text(c, f"an entry of {key}", 200) for c in cols]
    if "columns" in out and len(out.get("dtypes", [])) != len(out["columns"]):
        raise _fail("an asset has one dtype per column")
    if "shape" in a:
        shape = a["shape"]
        if not isinstance(shape, list) or len(shape) > 32:
            raise _fail("shape is a list of at most 32 sizes (the trailing shape, without the rows)")
        out["shape"] = [_count(s, "a size") for s in shape]
        if math.prod(out["shape"]) > 2**53:
            raise _fail("shape is too big")
    if "dtype" in a:
        out["dtype"] = _text(a["dtype"], "dtype", 64)
    if "rows" in a:
        out["rows"] = _count(a["rows"], "rows")
    return out
