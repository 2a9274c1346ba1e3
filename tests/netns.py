"""A private L2 network of Linux network namespaces, so tests can run nodes "on separate hosts".

``with Lan(["gateway", "h1", "sci"]) as lan:`` makes one namespace per host and a hidden switch
namespace holding a bridge; each host gets a veth (``eth0``) whose peer is a bridge port, and an
address in one /24. Nothing is added to the test process's own namespace: every address, route
and interface lives in a namespace the fixture made, and all of them go on exit, after the
processes started in them. Needs root; ``Lan.unavailable()`` says why a machine cannot.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

#: Every ``ip`` command is given this long (seconds) before it counts as failed.
IP_TIMEOUT = 10.0
#: How long processes get between SIGTERM and SIGKILL on exit (seconds, for all of them at once).
TERM_TIMEOUT = 5.0
#: Namespace names: ``sk<pid>-<lan>`` is a LAN's switch, ``sk<pid>-<lan>-<host>`` its hosts,
#: ``sk<pid>-probe`` the availability probe. The pid says whether the owner is still alive.
NAME_RE = re.compile(r"^sk(?P<pid>\d+)-(?:\d+(?:-[a-z0-9_-]+)?|probe)$")
#: How long to wait for a killed command's pipes to reach end of file before closing them.
PIPE_TIMEOUT = 2.0
#: Host names become part of namespace names.
HOST_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MAX_HOSTS = 200


class LanError(RuntimeError):
    """An ``ip`` command failed or timed out, or the machine cannot make namespaces."""


def ip_binary() -> str | None:
    """The ``ip`` binary (``/usr/sbin`` may be missing from PATH)."""
    return shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if os.access(p, os.X_OK)), None)


def ip(*args: str, timeout: float = IP_TIMEOUT, check: bool = True) -> str:
    """Run ``ip ARGS`` bounded by ``timeout``; return stdout, raise ``LanError`` if it fails."""
    binary = ip_binary()
    if binary is None:
        raise LanError("the `ip` command (iproute2) is not installed")
    try:
        done = subprocess.run(
            [binary, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as e:
        raise LanError(f"`ip {' '.join(args)}` did not finish in {timeout} s") from e
    if check and done.returncode != 0:
        raise LanError(f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def list_namespaces() -> list[str]:
    """The names ``ip netns list`` shows (any owner)."""
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def namespace_pids(ns: str) -> list[int]:
    """The processes living in namespace ``ns`` (``ip netns pids``)."""
    return [int(p) for p in ip("netns", "pids", ns, check=False).split() if p.isdigit()]


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as dead: here pid 1 may never reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return not re.search(r"^State:\s+[ZX]", status, re.M)


def _kill_namespace_processes(ns: str, timeout: float = 2.0) -> None:
    """SIGKILL whatever still lives in ``ns`` and wait (bounded) until it is gone."""
    deadline = time.monotonic() + timeout
    while (
        pids := [p for p in namespace_pids(ns) if p != os.getpid() and pid_alive(p)]
    ) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def remove_leftovers() -> list[str]:
    """Delete this fixture's namespaces whose owning pid is dead (a crashed run); return them."""
    removed = []
    for ns in list_namespaces():
        m = NAME_RE.match(ns)
        if not m or int(m["pid"]) == os.getpid() or pid_alive(int(m["pid"])):
            continue
        _kill_namespace_processes(ns)
        ip("netns", "delete", ns, check=False)
        removed.append(ns)
    return removed


def _close_pipes(proc: subprocess.Popen[Any]) -> None:
    """Close the pipes this process holds to ``proc`` (a ResourceWarning otherwise)."""
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None and not pipe.closed:
            pipe.close()


def _probe() -> str | None:
    """Really make (and remove) a namespace with a bridge and a veth; the failure, if any."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux, not {sys.platform}"
    if os.geteuid() != 0:
        return f"network namespaces need root (euid {os.geteuid()})"
    if ip_binary() is None:
        return "the `ip` command (iproute2) is not installed"
    ns = f"sk{os.getpid()}-probe"
    steps: list[tuple[str, ...]] = [
        ("netns", "add", ns),
        ("-n", ns, "link", "add", "br0", "type", "bridge"),
        ("-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"),
        ("-n", ns, "link", "set", "v0", "master", "br0"),
        ("-n", ns, "link", "set", "br0", "up"),
        ("netns", "exec", ns, str(ip_binary()), "link", "set", "lo", "up"),  # a mount namespace too
    ]
    try:
        ip("netns", "delete", ns, check=False)  # a probe of an earlier process with this pid
        for step in steps:
            ip(*step)
    except LanError as e:
        return f"cannot make a network namespace with a veth and a bridge here: {e}"
    finally:
        try:
            ip("netns", "delete", ns, check=False)
        except LanError:
            pass
    return None


class Lan:
    """One /24 of hosts, each in its own network namespace, joined by a bridge in another one."""

    _unavailable: tuple[str | None] | None = None  # the probe's answer, once per process
    _count = 0  # LANs made by this process: part of the namespace names

    def __init__(self, hosts: Sequence[str], subnet: str | None = None, term_timeout: float = TERM_TIMEOUT) -> None:
        """Plan a LAN of ``hosts`` (names like ``h1``) on ``subnet`` (a /24; random if None);
        on exit its processes get ``term_timeout`` seconds between SIGTERM and SIGKILL."""
        hosts = list(hosts)
        if not hosts or len(hosts) > MAX_HOSTS:
            raise ValueError(f"give 1 to {MAX_HOSTS} hosts, not {len(hosts)}")
        for h in hosts:
            if not HOST_RE.match(h):
                raise ValueError(f"host name {h!r} not allowed: use [a-z][a-z0-9_-]*, at most 32 characters")
        if len(set(hosts)) != len(hosts):
            raise ValueError(f"host names repeat: {hosts}")
        if subnet is None:  # not `random`: the test suite seeds it, so every run would pick the same
            subnet = f"10.{100 + secrets.randbelow(151)}.{secrets.randbelow(256)}.0/24"
        self.network = ipaddress.IPv4Network(subnet)
        if self.network.prefixlen != 24:
            raise ValueError(f"subnet must be a /24, not {subnet}")
        self.hosts: tuple[str, ...] = tuple(hosts)
        self.term_timeout = term_timeout
        Lan._count += 1
        self.switch = f"sk{os.getpid()}-{Lan._count}"
        self.processes: list[subprocess.Popen[Any]] = []
        self._leaders: set[int] = set()  # pids of processes started as their own group's leader
        self._made: list[str] = []  # namespaces created so far, to delete
        self._closed = False

    # ---- availability --------------------------------------------------------------------------

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this machine cannot make namespaces (for ``pytest.skip``), or None if it can."""
        if cls._unavailable is None:
            cls._unavailable = (_probe(),)
        return cls._unavailable[0]

    # ---- set up and tear down ------------------------------------------------------------------

    def __enter__(self) -> Lan:
        """Make the namespaces, the bridge, the veths and the addresses."""
        reason = self.unavailable()
        if reason:
            raise LanError(reason)
        remove_leftovers()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        """Stop every process started here, then delete every namespace."""
        self.close(raise_errors=et is None)

    def _add_namespace(self, ns: str) -> None:
        """``ip netns add`` one namespace, remembered for deletion, with ``lo`` up."""
        ip("netns", "add", ns)
        self._made.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")

    def _build(self) -> None:
        """Switch namespace with ``br0``, then per host: namespace, veth pair, address, links up."""
        sw = self.switch
        self._add_namespace(sw)
        ip("-n", sw, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        ip("-n", sw, "link", "set", "br0", "up")
        for i, host in enumerate(self.hosts):
            ns = self.namespace(host)
            self._add_namespace(ns)
            port = f"p{i}"  # the bridge port, in the switch namespace; the veth is born there
            ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", sw, "link", "set", port, "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{self.address(host)}/{self.network.prefixlen}", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")

    def close(self, raise_errors: bool = True) -> None:
        """Idempotent tear-down: SIGTERM, SIGKILL after ``term_timeout``, then delete namespaces."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        self._stop_processes()
        for ns in reversed(self._made):  # hosts first (that removes their veths), the switch last
            try:
                _kill_namespace_processes(ns)
                ip("netns", "delete", ns)
            except LanError as e:
                errors.append(str(e))
        self._made.clear()
        if errors and raise_errors:
            raise LanError("; ".join(errors))

    def _stop_processes(self) -> None:
        """SIGTERM every process (group) started here; SIGKILL what is left after the wait; close
        the pipes to them."""
        running = [p for p in self.processes if p.poll() is None]
        for p in running:
            self._signal(p, signal.SIGTERM)
        deadline = time.monotonic() + self.term_timeout
        for p in running:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in running:  # the group too: a child may outlive its leader
            self._signal(p, signal.SIGKILL)
            try:
                p.wait(IP_TIMEOUT)  # SIGKILL cannot be refused: a short wait
            except subprocess.TimeoutExpired:
                pass
        for p in self.processes:
            _close_pipes(p)

    def _signal(self, p: subprocess.Popen[Any], sig: signal.Signals) -> None:
        """Signal ``p``'s process group if it leads one (``popen`` makes it so), else ``p``."""
        try:
            if p.pid in self._leaders:
                os.killpg(p.pid, sig)
            elif p.poll() is None:
                p.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass

    # ---- using it ------------------------------------------------------------------------------

    def _known(self, host: str) -> int:
        """The index of ``host``; a KeyError naming the LAN's hosts if it has no such host."""
        if host not in self.hosts:
            raise KeyError(f"no host {host!r} in this LAN: {', '.join(self.hosts)}")
        return self.hosts.index(host)

    def _check(self, host: str) -> None:
        """Refuse an unknown host or a LAN that is not (or no longer) up."""
        self._known(host)
        if self._closed or not self._made:
            raise LanError("the LAN is not up: use it inside `with Lan(...) as lan:`")

    def namespace(self, host: str) -> str:
        """The network namespace name of ``host`` (for ``ip netns exec``)."""
        self._known(host)
        return f"{self.switch}-{host}"

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of this LAN: the switch's, then the hosts'."""
        return [self.switch, *(self.namespace(h) for h in self.hosts)]

    def address(self, host: str) -> str:
        """The IPv4 address of ``host`` (host ``i`` is ``.10 + i``)."""
        return str(self.network.network_address + 10 + self._known(host))

    def argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` inside ``host``'s namespace."""
        binary = ip_binary()
        assert binary is not None
        return [binary, "netns", "exec", self.namespace(host), *argv]

    def popen(self, host: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in ``host``'s namespace (its own process group); killed on exit."""
        self._check(host)
        kw.setdefault("start_new_session", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc: subprocess.Popen[Any] = subprocess.Popen(self.argv(host, argv), **kw)
        self.processes.append(proc)
        if kw["start_new_session"]:
            self._leaders.add(proc.pid)
        return proc

    def run(self, host: str, argv: Sequence[str], timeout: float = 30.0, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``host``'s namespace to the end (text, captured); kill it on timeout."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        input_ = kw.pop("input", None)
        if input_ is not None:
            kw["stdin"] = subprocess.PIPE
        proc = self.popen(host, argv, **kw)
        try:
            out, err = proc.communicate(input_, timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal(proc, signal.SIGKILL)
            try:
                proc.communicate(timeout=PIPE_TIMEOUT)
            except subprocess.TimeoutExpired:  # a descendant in a session of its own holds the pipes
                _close_pipes(proc)
                proc.wait(PIPE_TIMEOUT)
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def run_python(self, host: str, code: str, timeout: float = 30.0, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ``python -c code`` (this interpreter) in ``host``'s namespace; stdout and stderr."""
        return self.run(host, [sys.executable, "-c", code], timeout=timeout, **kw)


# ---- syft-kernel servers on the LAN -------------------------------------------------------------

CLI = [sys.executable, "-m", "syft_kernel.cli"]


@dataclass
class LanServer:
    """A syft-kernel server (a node or a gateway) inside one host's namespace."""

    host: str
    folder: Path
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def connection_file(self) -> Path:
        """The server's connection file (its address is the host's LAN address)."""
        return self.folder / "connection.json"

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait for a clean stop, SIGKILL after ``timeout``; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return int(self.proc.returncode)


@dataclass
class LanNode(LanServer):
    """A node served by ``syft-kernel node serve`` inside one host's namespace."""

    @property
    def owner_key(self) -> Path:
        """The first owner's secret key file."""
        return self.folder / "keys" / "owner.key"


@dataclass
class LanGateway(LanServer):
    """A gateway served by ``syft-kernel gateway serve`` inside one host's namespace."""


def _init(argv: Sequence[str], folder: Path, timeout: float) -> None:
    """Run an ``init`` command (files only) in ``folder``'s parent; ``LanError`` if it fails."""
    made = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=folder.parent)
    if made.returncode != 0:
        raise LanError(f"`{' '.join(argv[3:5])} {folder}` failed ({made.returncode}): {made.stderr.strip()}")


def _serve(
    lan: Lan, host: str, argv: Sequence[str], folder: Path, timeout: float
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``argv`` in ``host``'s namespace, logging next to ``folder``; return once its
    connection file has a pid (the server writes it once its sockets are bound)."""
    log = folder.with_name(folder.name + ".log")
    with log.open("ab") as out:
        proc = lan.popen(host, argv, stdout=out, stderr=subprocess.STDOUT, cwd=folder.parent)
    deadline = time.monotonic() + timeout
    while "pid" not in json.loads((folder / "connection.json").read_text()):
        if proc.poll() is not None:
            raise LanError(f"{folder} exited ({proc.returncode}):\n{log.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            raise LanError(f"{folder} did not serve in {timeout} s:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    return proc, log


def serve_node(
    lan: Lan,
    host: str,
    folder: Path,
    name: str | None = None,
    port: int = 5555,
    settings: Sequence[str] = (),
    timeout: float = 60.0,
) -> LanNode:
    """Make node folder ``folder`` for ``host``'s address and ``port`` (unless it exists), serve
    it inside ``host``'s namespace (``--no-ipc``, then ``settings`` such as
    ``--NodeConfig.heartbeat_s=0.3``), and return once it serves.

    ``node init`` runs in the test's namespace: it only writes files. Both commands run in
    ``folder``'s parent, so a checkout's ``syft_kernel/`` in the current directory is not
    imported instead of the installed package.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if not (folder / "connection.json").exists():
        args = ["--name", name or host, "--host", lan.address(host), "--port", str(port)]
        _init([*CLI, "node", "init", str(folder), *args], folder, timeout)
    argv = [*CLI, "node", "serve", str(folder), "--no-ipc", *settings]
    return LanNode(host, folder, *_serve(lan, host, argv, folder, timeout))


def serve_gateway(
    lan: Lan,
    host: str,
    folder: Path,
    name: str = "grid",
    port: int = 5600,
    settings: Sequence[str] = (),
    timeout: float = 60.0,
) -> LanGateway:
    """Make gateway folder ``folder`` for ``host``'s address and ``port`` (unless it exists),
    serve it inside ``host``'s namespace (with ``settings`` such as
    ``--GatewayConfig.offline_after_s=1.5``; the operator admits nodes), and return once it serves.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if not (folder / "gateway.db").exists():
        args = ["--name", name, "--host", lan.address(host), "--port", str(port)]
        _init([*CLI, "gateway", "init", str(folder), *args], folder, timeout)
    argv = [*CLI, "gateway", "serve", str(folder), *settings]
    return LanGateway(host, folder, *_serve(lan, host, argv, folder, timeout))
