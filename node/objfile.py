"""Values on disk in the wire format: a msgpack header (tree and buffer sizes), then the raw
buffers. Used for objects that must outlive the process (request targets, job inputs and
outputs). Reading it back only decodes plain data: nothing is unpickled."""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

from syft_kernel.core import codec

MAGIC = b"SYFTOBJ1"


def write_to(f: BinaryIO, value: Any) -> int:
    """Write ``value`` to an open binary file; return the bytes written."""
    tree, buffers = codec.encode_value(value)
    head = msgpack.packb({"tree": tree, "sizes": [memoryview(b).nbytes for b in buffers]}, use_bin_type=True)
    start = f.tell()
    f.write(MAGIC)
    f.write(struct.pack("<Q", len(head)))
    f.write(head)
    for b in buffers:
        if memoryview(b).nbytes:
            f.write(memoryview(b).cast("B"))
    f.flush()
    return f.tell() - start


def write_value(path: Path, value: Any) -> int:
    """Write ``value`` atomically (temporary name, fsync, rename); return its size in bytes."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            size = write_to(f, value)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return size


def read_value(path: Path) -> Any:
    """Read a value written by ``write_value``."""
    data = memoryview(path.read_bytes())
    if bytes(data[:8]) != MAGIC:
        raise codec.ProtocolError(f"{path.name} is not a stored object")
    (n,) = struct.unpack("<Q", data[8:16])
    head = msgpack.unpackb(data[16 : 16 + n], raw=False)
    offset = 16 + n
    buffers = []
    for size in head["sizes"]:
        buffers.append(data[offset : offset + size])
        offset += size
    return codec.decode_value(head["tree"], buffers)
