"""The sandboxed child that runs one approved code request, and the pipe format it speaks.

``jobs.py`` starts ``python -I -m syft_kernel.node.sandbox`` inside bubblewrap (own user,
mount, pid, network, IPC and UTS namespaces; uid 65534; no capabilities; a filesystem holding
only Python, its packages and an empty ``/tmp``). The child imports numpy, pandas and pyarrow,
installs a seccomp filter (no new processes, no programs, no sockets but AF_UNIX, no ptrace),
checks itself and says hello; then it waits on stdin for its one job: a header and the inputs in
the wire format (``objfile``'s framing, no pickle). It lowers its own limits to the job's (it can
lower them, never raise them again), runs the source the owner approved, writes the result to
the result pipe and exits. The code's errors and prints go to stderr as text.

Nothing here is a security boundary by itself: the kernel enforces the namespaces, the seccomp
filter and the rlimits, so code that rewrites this module's globals gains nothing.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import sys
from typing import Any, BinaryIO

# The child's exit codes for failures it can name (bwrap reports a signal as 128 + its number).
EXIT_ERROR, EXIT_MEMORY, EXIT_FILE_SIZE, EXIT_RESULT = 1, 3, 4, 5
MAX_HEADER = 1 << 20
UID = 65534


# ---------------------------------------------------------------- the pipe format (both sides)


def read_exact(f: BinaryIO, n: int) -> bytearray:
    """``n`` bytes from a pipe, or EOFError if it ends first."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = f.readinto(view[got:])  # type: ignore[attr-defined]
        if not k:
            raise EOFError(f"the pipe ended after {got} of {n} bytes")
        got += k
    return buf


def send_json(f: BinaryIO, obj: Any) -> None:
    data = json.dumps(obj).encode()
    f.write(struct.pack("<I", len(data)) + data)
    f.flush()


def recv_json(f: BinaryIO, limit: int = MAX_HEADER) -> Any:
    (n,) = struct.unpack("<I", read_exact(f, 4))
    if n > limit:
        raise ValueError(f"a {n}-byte header is larger than {limit} bytes")
    return json.loads(bytes(read_exact(f, n)))


class _Counted:
    """A pipe with ``tell()`` (bytes written so far), which ``objfile.write_to`` asks for."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.n = f, 0

    def write(self, b: Any) -> int:
        self.f.write(b)
        self.n += memoryview(b).nbytes
        return memoryview(b).nbytes

    def tell(self) -> int:
        return self.n

    def flush(self) -> None:
        self.f.flush()


def send_value(f: BinaryIO, value: Any) -> int:
    """Write one value in ``objfile``'s format (msgpack tree, then raw buffers)."""
    from .objfile import write_to

    return write_to(_Counted(f), value)  # type: ignore[arg-type]


def recv_value(f: BinaryIO, max_bytes: int | None = None) -> Any:
    """Read one value written by ``send_value``; refuse one over ``max_bytes`` before reading it."""
    import msgpack

    from syft_kernel.core import codec

    from .objfile import MAGIC

    if bytes(read_exact(f, 8)) != MAGIC:
        raise codec.ProtocolError("the pipe does not carry a value")
    (n,) = struct.unpack("<Q", read_exact(f, 8))
    if max_bytes is not None and n > max_bytes:
        raise OverflowError(f"the value's header alone is {n} bytes")
    head = msgpack.unpackb(bytes(read_exact(f, n)), raw=False)
    sizes = head.get("sizes") if isinstance(head, dict) else None
    if not isinstance(sizes, list) or not all(isinstance(s, int) and s >= 0 for s in sizes):
        raise codec.ProtocolError("the value's header has no buffer sizes")
    if max_bytes is not None and n + sum(sizes) > max_bytes:
        raise OverflowError(f"the value is {n + sum(sizes)} bytes")
    buffers = [read_exact(f, s) if s else bytearray() for s in sizes]
    return codec.decode_value(head["tree"], buffers)


# ---------------------------------------------------------------- inside the sandbox


def install_seccomp() -> None:
    """A syscall filter for this process and all its threads (irrevocable): threads may still
    start (numpy, torch), nothing else. clone3 says ENOSYS so glibc falls back to clone, whose
    flags the filter can see."""
    import socket

    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)  # 32-bit / x32 system calls end the process
    f.set_attr(sc.Attr.CTL_TSYNC, 1)  # threads started by the imports get the filter too
    f.set_attr(sc.Attr.CTL_NNP, 1)
    for name in (
        "execve",
        "execveat",
        "fork",
        "vfork",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "unshare",
        "setns",
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "io_uring_setup",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "keyctl",
        "add_key",
        "request_key",
        "kexec_load",
        "init_module",
        "finit_module",
        "delete_module",
    ):
        f.add_rule(sc.ERRNO(errno.EPERM), name)
    clone_thread = 0x00010000
    f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, clone_thread, 0))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    f.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), "socket", sc.Arg(0, sc.NE, socket.AF_UNIX))
    f.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), "socketpair", sc.Arg(0, sc.NE, socket.AF_UNIX))
    f.load()


def _status() -> dict[str, str]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def self_check(probes: list[str]) -> dict[str, Any]:
    """What the parent checks before it sends a job: who we are, what we can see and reach."""
    st = _status()
    with open("/proc/self/net/dev") as f:
        interfaces = sorted(line.split(":")[0].strip() for line in f.readlines()[2:])
    return {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "gid": os.getgid(),
        "cap_eff": int(st.get("CapEff", "1"), 16),
        "cap_prm": int(st.get("CapPrm", "1"), 16),
        "cap_bnd": int(st.get("CapBnd", "1"), 16),
        "no_new_privs": int(st.get("NoNewPrivs", "0")),
        "seccomp": int(st.get("Seccomp", "0")),
        "interfaces": interfaces,
        "visible": [p for p in probes if os.path.lexists(p)],
        "pid": os.getpid(),
    }


def _vm_size() -> int:
    return int(_status()["VmSize"].split()[0]) * 1024


def lower_limits(limits: dict[str, float]) -> None:
    """The job's limits, soft = hard so they cannot be raised again. Memory and CPU are counted
    on top of what the runtime (Python, numpy, pandas, …) already holds and has spent."""
    import resource

    def lower(which: int, value: int) -> None:
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))

    used = resource.getrusage(resource.RUSAGE_SELF)
    lower(resource.RLIMIT_CPU, int(used.ru_utime + used.ru_stime + limits["timeout"]) + 2)
    lower(resource.RLIMIT_AS, _vm_size() + int(limits["memory_mb"] * 1024 * 1024))
    lower(resource.RLIMIT_FSIZE, int(limits["output_mb"] * 1024 * 1024))
    lower(resource.RLIMIT_CORE, 0)
    lower(resource.RLIMIT_NOFILE, 256)


def _fail(code: int, message: str) -> None:
    try:
        sys.stderr.write(message.rstrip() + "\n")
        sys.stderr.flush()
    finally:
        os._exit(code)


def main(argv: list[str]) -> None:
    torch_first = "--torch" in argv
    probes = argv[argv.index("--") + 1 :] if "--" in argv else []
    # fd 1 becomes stderr (the code's prints); the result goes out on a private copy of it
    result = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    jobs = os.fdopen(os.dup(0), "rb")
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)

    import numpy  # noqa: F401  (the runtime every job gets, imported before the job arrives)
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401

    from syft_kernel.core import codec

    if torch_first:
        import torch  # noqa: F401
    # one small round trip through the codec loads what decoding inputs needs, before the job
    tree, buffers = codec.encode_value([pandas.DataFrame({"a": [1.0], "b": ["x"]}), numpy.zeros(2), pandas.Series([1])])
    codec.decode_value(tree, [bytearray(memoryview(b).cast("B")) for b in buffers])
    install_seccomp()
    send_json(result, {"hello": self_check(probes)})

    job = recv_json(jobs)
    if job.get("torch"):
        import torch  # noqa: F401,F811  (before the limits: the runtime, not the job's memory)
    lower_limits(job["limits"])
    inputs = {name: recv_value(jobs) for name in job["inputs"]}
    jobs.close()
    namespace: dict[str, Any] = {"__name__": "__code_request__"}
    # The source was reviewed and approved by the data owner; this is the only place it runs.
    exec(compile(job["source"], f"<code request {job['request_id']}>", "exec"), namespace)  # noqa: S102
    value = namespace[job["fn_name"]](**inputs)
    try:
        send_value(result, value)
    except Exception as e:
        _fail(EXIT_RESULT, f"the code's result could not be sent: {type(e).__name__}: {e}")
    result.close()
    os._exit(0)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except MemoryError:
        _fail(EXIT_MEMORY, "MemoryError: the code used more memory than the owner allowed")
    except BaseException as e:  # the code's own error, as text for the owner and the requester
        if isinstance(e, OSError) and e.errno == errno.EFBIG:
            _fail(EXIT_FILE_SIZE, "the code wrote a file larger than its output limit")
        import traceback

        try:
            traceback.print_exc(limit=-3, file=sys.stderr)
        except BaseException:
            pass
        _fail(EXIT_ERROR, f"{type(e).__name__}: {e}")
