"""Asset files: Parquet for frames, ``.npy`` for arrays, safetensors for tensors.

Each file is written to a temporary name in ``assets/``, fsynced and renamed, so a node killed
mid-upload leaves either the whole file or none. File names are random ids, never user input.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from syft_kernel.core.errors import InvalidArgument
from syft_kernel.core.executor import type_key

KINDS = {"DataFrame": "frame", "Series": "frame", "ndarray": "array", "Tensor": "tensor"}
SUFFIX = {"frame": ".parquet", "array": ".npy", "tensor": ".safetensors"}


def kind_of(value: Any) -> str:
    """The storage kind of an asset value, or an error naming what is accepted."""
    kind = KINDS.get(type_key(value))
    if kind is None:
        raise InvalidArgument(
            f"an asset is a pandas DataFrame or Series, a numpy ndarray or a torch tensor, not a {type(value).__name__}"
        )
    return kind


def write_asset(folder: Path, value: Any) -> tuple[str, str]:
    """Write ``value`` atomically under ``folder``; return (kind, file name)."""
    kind = kind_of(value)
    name = uuid.uuid4().hex + SUFFIX[kind]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=SUFFIX[kind])
    os.close(fd)
    try:
        if kind == "frame":
            frame = value.to_frame() if isinstance(value, pd.Series) else value
            frame = frame.copy(deep=False)
            frame.columns = [str(c) for c in frame.columns]
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=True), tmp)
        elif kind == "array":
            if value.dtype.kind not in "biufcmM":
                raise InvalidArgument(f"arrays of dtype {value.dtype} cannot be stored; use a numeric dtype")
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(value), allow_pickle=False)
        else:
            from safetensors.torch import save_file

            save_file({"tensor": value.detach().cpu().contiguous()}, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
        _fsync_dir(folder)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return kind, name


def read_asset(folder: Path, kind: str, name: str, series: bool = False) -> Any:
    """Load an asset written by ``write_asset`` (arrays memory-mapped, never unpickled)."""
    path = folder / name
    if kind == "frame":
        df = pq.read_table(path).to_pandas()
        return df.iloc[:, 0] if series else df
    if kind == "array":
        # still backed by the file, but a plain ndarray: memmap's Python hooks slow every op
        return np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)
    if kind == "tensor":
        from safetensors.torch import load_file

        return load_file(str(path))["tensor"]
    raise InvalidArgument(f"unknown asset kind {kind!r}")


def remove_unreferenced(folder: Path, keep: set[str]) -> int:
    """Delete files a crash left behind (temporary uploads, assets no row refers to)."""
    removed = 0
    for p in folder.iterdir():
        if p.name not in keep:
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
