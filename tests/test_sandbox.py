"""Attacks on the code-request sandbox (issue 10), each a real approved run on a real node.

The code is what a registered data scientist who read our code would submit and an owner might
approve: it rewrites the old audit hook, reads the node's keys and database through native
libraries, opens sockets, starts processes, exhausts memory, time and disk, and looks for the
previous run's leftovers. Each run fails or is harmless, within its limits, and the node keeps
serving. A node killed with SIGKILL takes its sandboxes with it; without a working bubblewrap,
code requests are refused.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import syft_kernel as sk
from syft_kernel import login
from syft_kernel.core.keys import generate_keypair, write_keypair
from syft_kernel.core.procs import pid_alive
from syft_kernel.launcher import NodeProcess, start_node
from syft_kernel.sample_data import birth_records

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/bin/bwrap") and not os.environ.get("SYFT_KERNEL_BWRAP"),
    reason="bubblewrap is not installed (make test installs it)",
)

RUN_TIMEOUT = 120.0  # s a test waits for one run


def _setup(folder: Path) -> NodeProcess:
    node = start_node(folder / "hospital", name="hospital")
    with node.login() as owner:
        owner.datasets.upload(
            "births",
            assets={
                "births": birth_records(month=2, rows=200),
                "matrix": np.arange(12, dtype=np.float64).reshape(3, 4),
                "tensor": torch.arange(6, dtype=torch.float32).reshape(2, 3),
            },
            description="Monthly birth records",
        )
        _, pub = write_keypair(generate_keypair("alice"), folder / "users")
        owner.users.add("alice", role="data_scientist", public_key=pub)
    return node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = _setup(tmp_path_factory.mktemp("sandbox"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def owner(node: NodeProcess) -> Iterator[sk.Client]:
    with node.login() as client:
        yield client


@pytest.fixture(scope="module")
def alice(node: NodeProcess) -> Iterator[sk.Client]:
    with login(node.connection_file, key=node.folder.parent / "users" / "alice.key") as client:
        yield client


def submit(alice: sk.Client, source: str, inputs: dict[str, str] | None = None) -> sk.Job:
    """File source text (with the test's paths written into it) as a code request for ``attack``."""
    ids = {}  # every run reads an asset: what a code request touches decides who may approve it
    for name, asset in (inputs or {"births": "births"}).items():
        ids[name] = alice.datasets["births"][asset].id
    info = alice.call("code.submit", {"source": source, "fn_name": "attack", "inputs": ids, "reason": "sandbox test"})[
        0
    ]
    return sk.Job(alice, info)


def run(owner: sk.Client, alice: sk.Client, source: str, inputs: dict[str, str] | None = None, **limits: float) -> Any:
    """Approve the code with ``limits`` and return its result, or the RemoteError it failed with
    as the owner reads it: the requester learns only the kind of error, the owner's audit log has
    the code's own message (which could quote private data)."""
    job = submit(alice, source, inputs)
    owner.requests[job.id].approve("ok", **limits)
    try:
        return job.result(timeout=RUN_TIMEOUT).get()
    except sk.RemoteError as e:
        entry = owner.audit(action="code.run", target=job.id)[0]["detail"]
        if entry.get("detail"):
            assert entry["detail"] not in e.message  # what alice saw does not quote it
            return sk.RemoteError(f"{e.message} [owner's audit log: {entry['detail']}]")
        return e
    finally:
        assert owner.call("hello")[0]["node"] == "hospital"  # the node keeps serving


def failure(result: Any) -> str:
    assert isinstance(result, sk.RemoteError), f"the run should have failed, it returned {result!r}"
    return str(result)


# ---------------------------------------------------------------- it works


BENIGN = """
def attack(births, matrix, tensor):
    import numpy as np
    import torch
    return {"mean": births.groupby("sex", observed=True)["weight"].mean().round(3),
            "gram": matrix @ matrix.T, "total": float(np.sum(matrix)), "tensor": tensor * 2 + torch.ones(2, 3),
            "frame": births.head(3)}
"""


@pytest.mark.timeout(180)
def test_an_approved_run_returns_its_result(owner: sk.Client, alice: sk.Client) -> None:
    out = run(owner, alice, BENIGN, {"births": "births", "matrix": "matrix", "tensor": "tensor"})
    assert not isinstance(out, Exception), out
    births = owner.datasets["births"]["births"].get()
    pd.testing.assert_series_equal(out["mean"], births.groupby("sex", observed=True)["weight"].mean().round(3))
    m = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.testing.assert_array_equal(out["gram"], m @ m.T)
    assert out["total"] == 66.0
    assert torch.equal(out["tensor"], torch.arange(6, dtype=torch.float32).reshape(2, 3) * 2 + 1)
    pd.testing.assert_frame_equal(out["frame"], births.head(3))


# ---------------------------------------------------------------- what it sees


@pytest.mark.timeout(120)
def test_rewriting_the_old_hook_globals_gains_nothing(node: NodeProcess, owner: sk.Client, alice: sk.Client) -> None:
    source = f"""
def attack(births):
    import __main__, sys
    __main__.BLOCKED_EVENTS = frozenset()
    __main__.BLOCKED_IMPORTS = frozenset()
    __main__.UID = 0
    __main__.install_seccomp = __main__.lower_limits = lambda *a: None
    return open({str(node.owner_key)!r}, "rb").read()
"""
    assert "No such file or directory" in failure(run(owner, alice, source))


@pytest.mark.timeout(120)
def test_the_node_and_the_host_are_not_visible(node: NodeProcess, owner: sk.Client, alice: sk.Client) -> None:
    folder = node.folder.resolve()
    assets = sorted(str(p) for p in (folder / "assets").rglob("*") if p.is_file())
    assert assets, "the node should hold asset files"
    secret = [
        str(folder),
        str(folder / "keys"),
        str(folder / "keys" / "owner.key"),
        str(folder / "keys" / "node.key"),
        str(folder / "node.db"),
        str(folder / "assets"),
        *assets,
        f"/proc/1/root{folder}",
        f"/proc/1/root{folder}/node.db",
        str(REPO / ".git"),
        str(REPO / "tests"),
        str(REPO.parent / "shared"),
        "/root/.bashrc",
        "/etc/passwd",
        "/etc/hostname",
        str(folder.parent / "users" / "alice.key"),
        "../../keys/owner.key",
        "../../node.db",
    ]
    source = f"""
def attack(births):
    import os
    import pyarrow
    seen = {{}}
    for path in {secret!r}:
        for how, fn in (("exists", os.path.lexists), ("listdir", os.listdir), ("open", lambda p: open(p, "rb").read(1)),
                        ("pyarrow", lambda p: pyarrow.OSFile(p).read(1))):
            try:
                r = fn(path)
                if r is not False:
                    seen[how + " " + path] = repr(r)[:80]
            except OSError:
                pass
    def ls(path):
        try:
            return sorted(os.listdir(path))
        except OSError:
            return []
    return {{"seen": seen, "root": ls("/"), "home": ls("/root"), "parent": ls({str(REPO.parent)!r}),
             "main": ls({str(REPO)!r}), "tmp": ls("/tmp"), "etc": ls("/etc"), "cwd": os.getcwd()}}
"""
    out = run(owner, alice, source)
    assert not isinstance(out, Exception), out
    assert out["seen"] == {}
    assert out["home"] == [".pyenv"] or out["home"] == []  # only the way to the Python installation
    assert out["parent"] == [REPO.name] and out["main"] == [
        "core",
        "node",
        "syft_kernel",
    ]  # our sources, not the repository
    # an empty /tmp, but for the way to our sources when the repository itself lives under /tmp
    assert out["tmp"] == ([REPO.parts[2]] if REPO.parts[1] == "tmp" else [])
    assert out["etc"] == ["ld.so.cache"] and out["cwd"] == "/tmp"
    # the top of the filesystem: system folders, plus the first folder on the way to Python and to our sources
    assert set(out["root"]) <= {
        "usr",
        "bin",
        "sbin",
        "lib",
        "lib32",
        "lib64",
        "libx32",
        "etc",
        "proc",
        "dev",
        "tmp",
        "root",
        REPO.parts[1],
        Path(sys.prefix).resolve().parts[1],
    }


@pytest.mark.timeout(120)
def test_sqlite_cannot_open_the_node_database(node: NodeProcess, owner: sk.Client, alice: sk.Client) -> None:
    for path in (str(node.folder.resolve() / "node.db"), "../../node.db"):
        source = f"""
def attack(births):
    import _sqlite3
    c = _sqlite3.connect({path!r})
    c.execute("INSERT INTO readers(object_id, user, request_id) VALUES ('o1', 'alice', 'r1')")
    c.commit()
    return 1
"""
        assert "unable to open database" in failure(run(owner, alice, source))


def test_only_the_allowed_packages_are_installed(owner: sk.Client, alice: sk.Client) -> None:
    """site-packages in the sandbox holds numpy, pandas, pyarrow, torch and what they need; the
    node's other packages (Jupyter, cryptography, the kernel's) are not there to be imported."""
    source = """
def attack(births):
    import importlib, os, sys
    found = {}
    for name in ("numpy", "pandas", "pyarrow", "msgpack", "cryptography", "jupyter_server", "IPython",
                 "ipykernel", "tornado", "playwright"):
        try:
            importlib.import_module(name)
            found[name] = True
        except ImportError:
            found[name] = False
    site = [p for p in sys.path if p.endswith("site-packages")][0]
    found["entries"] = len(os.listdir(site))
    return found
"""
    found = run(owner, alice, source)
    assert found["numpy"] and found["pandas"] and found["pyarrow"] and found["msgpack"], found
    assert not any(
        found[n] for n in ("cryptography", "jupyter_server", "IPython", "ipykernel", "tornado", "playwright")
    ), found
    assert found["entries"] < 100, found  # of the ~400 entries the node's own Python has


# ---------------------------------------------------------------- what it can reach and start


@pytest.mark.timeout(120)
def test_no_network(node: NodeProcess, owner: sk.Client, alice: sk.Client) -> None:
    tcp = next(a for a in node.connection["addresses"] if a.startswith("tcp://"))
    host, port = tcp[len("tcp://") :].rsplit(":", 1)
    source = f"""
def attack(births):
    import socket
    import zmq
    out = {{}}
    for family in (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK, socket.AF_PACKET):
        try:
            s = socket.socket(family, socket.SOCK_STREAM if family != socket.AF_NETLINK else socket.SOCK_RAW)
            s.settimeout(1)
            s.connect(({host!r}, {port}))
            out[int(family)] = "connected"
        except OSError as e:
            out[int(family)] = type(e).__name__ + ": " + str(e)
    ctx = zmq.Context()
    z = ctx.socket(zmq.DEALER)
    z.linger = 0
    z.connect({tcp!r})
    z.send_multipart([b"hello", b"{{}}"])
    out["zmq"] = "reply" if z.poll(1500) else "no reply"
    z.close()
    ctx.term()
    return out
"""
    out = run(owner, alice, source)
    assert not isinstance(out, Exception), out
    assert out.pop("zmq") == "no reply"
    assert all("connected" != v for v in out.values()), out
    assert "Address family not supported" in out[2]  # AF_INET: refused by the seccomp filter


PROCESS_ATTACKS = {
    "fork_exec": """
    import _posixsubprocess, os
    r, w = os.pipe()
    _posixsubprocess.fork_exec([b"/usr/bin/touch", b"/tmp/pwned"], [b"/usr/bin/touch"], True, (w,), None, None,
                               -1, -1, -1, -1, -1, -1, r, w, True, False, -1, None, None, None, -1, None, False)""",
    "os.fork": """
    import os
    if os.fork() == 0:
        open("/tmp/pwned", "w").close()
        os._exit(0)""",
    "os.system": """
    import os
    os.system("touch /tmp/pwned")""",
    "subprocess.run": """
    import subprocess
    subprocess.run(["/usr/bin/touch", "/tmp/pwned"])""",
    "os.posix_spawn": """
    import os
    os.posix_spawn("/usr/bin/touch", ["touch", "/tmp/pwned"], {})""",
    "os.execv": """
    import os
    os.execv("/usr/bin/touch", ["touch", "/tmp/pwned"])""",
    "raw clone": """
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(56, 17, 0, 0, 0, 0) == 0:  # clone(SIGCHLD), no glibc in the way
        os._exit(0)
    raise OSError(ctypes.get_errno(), "clone")""",
    "multiprocessing": """
    import multiprocessing
    p = multiprocessing.get_context("fork").Process(target=open, args=("/tmp/pwned", "w"))
    p.start()
    p.join()""",
}


@pytest.mark.timeout(120)
def test_no_processes(owner: sk.Client, alice: sk.Client) -> None:
    attempts = "".join(
        f"""
    try:{body.replace(chr(10) + "    ", chr(10) + "        ")}
        out[{name!r}] = "ran"
    except OSError as e:
        out[{name!r}] = e.errno
"""
        for name, body in PROCESS_ATTACKS.items()
    )
    source = f"""
def attack(births):
    import errno, os, threading, time
    out = {{}}
{attempts}
    time.sleep(0.2)
    out["pwned"] = os.path.exists("/tmp/pwned")
    done = []
    t = threading.Thread(target=lambda: done.append(sum(range(1000))))
    t.start()
    t.join()
    out["threads"] = done
    return out
"""
    out = run(owner, alice, source)
    assert not isinstance(out, Exception), out
    assert out.pop("pwned") is False
    assert out.pop("threads") == [499500]  # threads still work (numpy and torch need them)
    assert out.pop("os.system") == "ran"  # os.system returns 127: its shell never started (pwned is False)
    assert out == {name: 1 for name in PROCESS_ATTACKS if name != "os.system"}  # EPERM for each


@pytest.mark.timeout(120)
def test_a_32_bit_system_call_ends_the_run(owner: sk.Client, alice: sk.Client) -> None:
    source = """
def attack(births):
    import ctypes
    return ctypes.CDLL(None).syscall(0x40000000 | 57)  # fork through the x32 ABI, past a 64-bit-only filter
"""
    assert "a refused system call" in failure(run(owner, alice, source))


@pytest.mark.timeout(120)
def test_it_runs_as_nobody_without_capabilities(owner: sk.Client, alice: sk.Client) -> None:
    source = """
def attack(births):
    import os
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    try:
        os.setuid(0)
        setuid = "worked"
    except OSError as e:
        setuid = e.errno
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
            "caps": [int(status[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")],
            "seccomp": int(status["Seccomp"]), "no_new_privs": int(status["NoNewPrivs"]), "setuid": setuid,
            "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
"""
    out = run(owner, alice, source)
    assert not isinstance(out, Exception), out
    assert out["uid"] == out["euid"] == out["gid"] == 65534
    assert out["caps"] == [0, 0, 0, 0, 0] and out["seccomp"] == 2 and out["no_new_privs"] == 1
    assert out["setuid"] in (1, 22)  # EPERM, or EINVAL: uid 0 does not even exist in its user namespace
    assert max(out["pids"]) < 10  # its own pid namespace: bwrap's init and the run


# ---------------------------------------------------------------- limits


@pytest.mark.timeout(120)
def test_memory_bomb_ends_at_the_memory_limit(owner: sk.Client, alice: sk.Client) -> None:
    source = """
def attack(births):
    hog = []
    while True:
        hog.append(bytearray(64 * 1024 * 1024))
"""
    assert "memory limit" in failure(run(owner, alice, source, memory_mb=512))


@pytest.mark.timeout(120)
def test_an_endless_loop_ends_at_the_time_limit(owner: sk.Client, alice: sk.Client) -> None:
    started = time.monotonic()
    err = failure(run(owner, alice, "def attack(births):\n    while True:\n        pass\n", timeout=2))
    assert "longer than its 2 s limit" in err or "CPU time limit" in err
    assert time.monotonic() - started < 30


@pytest.mark.timeout(120)
def test_a_huge_file_ends_at_the_size_limit(owner: sk.Client, alice: sk.Client) -> None:
    source = """
def attack(births):
    with open("/tmp/huge", "wb") as f:
        for _ in range(100):
            f.write(b"x" * 1024 * 1024)
"""
    assert "file larger than its 5 MB output limit" in failure(run(owner, alice, source, output_mb=5))


# ---------------------------------------------------------------- one run, one sandbox


@pytest.mark.timeout(180)
def test_a_run_leaves_nothing_for_the_next(owner: sk.Client, alice: sk.Client) -> None:
    leave = """
def attack(births):
    import builtins, numpy, sys
    open("/tmp/leftover", "w").write("secret of run 1")
    numpy.leftover = builtins.leftover = "secret of run 1"
    sys.modules["leftover"] = sys
    return 1
"""
    look = """
def attack(births):
    import builtins, numpy, os, sys
    return {"file": os.path.exists("/tmp/leftover"), "tmp": os.listdir("/tmp"),
            "module": hasattr(numpy, "leftover") or hasattr(builtins, "leftover") or "leftover" in sys.modules}
"""
    assert run(owner, alice, leave) == 1
    assert run(owner, alice, look) == {"file": False, "tmp": [], "module": False}


# ---------------------------------------------------------------- the node's end is the sandbox's end


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for child, parent in parents.items():
            if parent == p and child not in out:
                out.add(child)
                todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _cpu_ticks(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11])
    except (OSError, IndexError, ValueError):
        return 0


@pytest.mark.timeout(180)
@pytest.mark.syft_node_may_exit  # SIGKILLs its node on purpose
def test_a_killed_node_takes_its_running_sandbox_with_it(tmp_path: Path) -> None:
    node = _setup(tmp_path)
    try:
        with node.login() as owner, login(node.connection_file, key=tmp_path / "users" / "alice.key") as alice:
            job = submit(alice, "def attack(births):\n    while True:\n        pass\n")
            owner.requests[job.id].approve("ok", timeout=600)
            deadline = time.monotonic() + 60
            sandboxes: set[int] = set()
            while time.monotonic() < deadline:
                sandboxes = {p for p in _descendants(node.proc.pid) if "syft_kernel.node.sandbox" in _cmdline(p)}
                busy = [p for p in sandboxes if "bwrap" not in _cmdline(p) and _cpu_ticks(p) > 100]
                if busy:  # the run is spinning (over 1 s of CPU time in the code's process)
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"no running sandbox under the node (found {sandboxes})")
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(pid_alive(p) for p in sandboxes):
            time.sleep(0.1)
        assert not [p for p in sandboxes if pid_alive(p)], "sandbox processes outlived the node"
    finally:
        node.kill()


# ---------------------------------------------------------------- no sandbox, no run


def _fake_bwrap(folder: Path) -> Path:
    """A 'bwrap' that isolates nothing: it runs the command as it is."""
    path = folder / "fake-bwrap"
    path.write_text('#!/bin/sh\nwhile [ $# -gt 0 ] && [ "$1" != "--" ]; do shift; done\nshift\nexec "$@"\n')
    path.chmod(stat.S_IRWXU)
    return path


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "bwrap, match",
    [
        ("/nonexistent/bwrap", "bubblewrap was not found at /nonexistent/bwrap"),
        ("/bin/false", "the sandbox did not start"),
        ("fake", "failed its self-check: it runs as uid 0"),
    ],
)
def test_without_a_working_sandbox_code_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bwrap: str, match: str
) -> None:
    if bwrap == "fake":
        bwrap = str(_fake_bwrap(tmp_path))
    monkeypatch.setenv("SYFT_KERNEL_BWRAP", bwrap)
    node = _setup(tmp_path)
    try:
        with node.login() as owner, login(node.connection_file, key=tmp_path / "users" / "alice.key") as alice:
            marker = tmp_path / "ran"
            job = submit(alice, f"def attack(births):\n    open({str(marker)!r}, 'w').close()\n    return 1\n")
            owner.requests[job.id].approve("ok")
            with pytest.raises(sk.RemoteError, match=match) as e:
                job.result(timeout=RUN_TIMEOUT)
            assert "refused" in str(e.value) and "apt-get install bubblewrap" in str(e.value)
            assert not marker.exists()
            assert owner.call("hello")[0]["node"] == "hospital"
    finally:
        node.stop()
