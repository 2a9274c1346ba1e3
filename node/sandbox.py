"""The child process that runs one approved code request: ``python -m syft_kernel.node.sandbox DIR``.

Started only by ``jobs.py``, only for code an owner approved, never inside the node's process.
The parent sets time, CPU and memory limits; here an audit hook refuses writes, deletions,
process creation, sockets, ctypes, and reads outside the Python installation, before the
reviewed source is compiled and called. The result goes back in the wire format (no pickle).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

BLOCKED_EVENTS = frozenset({
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg",
    "subprocess.Popen", "pty.spawn", "os.remove", "os.unlink", "os.rename", "os.replace", "os.rmdir",
    "os.mkdir", "os.chmod", "os.chown", "os.truncate", "os.link", "os.symlink", "os.utime", "os.chdir",
    "shutil.rmtree", "shutil.copyfile", "shutil.move", "socket.connect", "socket.bind", "socket.sendto",
    "socket.sendmsg", "socket.getaddrinfo", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata",
    "ctypes.addressof", "ctypes.call_function", "sys._getframe", "sys.setprofile", "sys.settrace",
    "sys.addaudithook", "code.__new__", "marshal.loads", "pickle.find_class", "cpython.run_command",
    "webbrowser.open", "urllib.Request", "glob.glob", "os.listdir", "os.scandir",
})
BLOCKED_IMPORTS = frozenset({"ctypes", "_ctypes", "socket", "_socket", "subprocess", "multiprocessing",
                             "pty", "signal", "mmap", "fcntl", "resource", "shutil", "tempfile"})
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class Refused(PermissionError):
    pass


def install_guard(readable: list[str]) -> None:
    """Refuse anything but computing: an audit hook, so it covers every library too."""
    roots = tuple(os.path.realpath(r) + os.sep for r in readable)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in BLOCKED_EVENTS:
            raise Refused(f"{event} is not allowed in a code request")
        if event == "import" and args and str(args[0]).split(".")[0] in BLOCKED_IMPORTS:
            raise Refused(f"import {args[0]} is not allowed in a code request")
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE_FLAGS)
            if writing:
                raise Refused(f"writing files ({path}) is not allowed in a code request")
            if isinstance(path, (str, bytes)) and not os.path.realpath(os.fsdecode(path)).startswith(roots):
                raise Refused(f"reading {os.fsdecode(path)} is not allowed in a code request")

    sys.addaudithook(hook)


def main(job_dir: str) -> int:
    from syft_kernel.node.objfile import read_value, write_to

    folder = Path(job_dir)
    spec = json.loads((folder / "job.json").read_text())
    inputs = {name: read_value(folder / f"input-{i}.bin") for i, name in enumerate(spec["inputs"])}
    if spec.get("uses_torch"):
        import torch  # noqa: F401  (loaded before the guard: it reads its own files)
    import numpy  # noqa: F401
    import pandas  # noqa: F401

    out = open(folder / "output.bin", "wb")  # opened before the guard; the code cannot reopen it
    readable = sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, *(p for p in sys.path if p and "site-packages" in p)})
    install_guard(readable)
    namespace: dict[str, Any] = {"__name__": "__code_request__"}
    # The source was reviewed and approved by the data owner; this is the only place it runs.
    exec(compile(spec["source"], f"<code request {spec['request_id']}>", "exec"), namespace)  # noqa: S102
    result = namespace[spec["fn_name"]](**inputs)
    write_to(out, result)
    out.close()
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1])
    except MemoryError:
        print("MemoryError: the code used more memory than the owner allowed", file=sys.stderr)
        sys.exit(3)
    except BaseException as e:  # report the code's own error as text, for the owner and requester
        import traceback

        traceback.print_exc(limit=-3, file=sys.stderr)
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code)
