"""Running approved code requests, each in its own operating-system sandbox, with limits.

The node's own process never runs submitted code. A run goes to a bubblewrap sandbox
(``sandbox.py`` is the child): own user namespace (uid 65534, no capabilities), own pid, IPC
and network namespaces (no network at all), a filesystem with only Python, its packages and an
empty private ``/tmp`` (never the node folder, its keys, database or assets), a seccomp filter
(no new processes or programs), and time, CPU, memory and file-size limits. Inputs go in and the
result comes out through pipes in the wire format; nothing is unpickled and no job folder is
written. Where no such sandbox can be had, runs are refused, never run weaker.

One sandbox per node is kept ready (started, runtime imported, waiting for its job); each is
used for exactly one run and then discarded, and the next is started at once. All sandboxes are
started from one long-lived thread: ``--die-with-parent`` (``PR_SET_PDEATHSIG``) fires when the
*thread* that started bwrap ends, so this ties every sandbox to the node process itself, and a
node that dies, even by SIGKILL, takes its sandboxes with it.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import queue
import signal
import site
import struct
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syft_kernel.core.errors import InvalidArgument
from syft_kernel.core.executor import Value, check_result, type_key

from . import sandbox

log = logging.getLogger("syft_kernel.node.jobs")

DEFAULT_LIMITS = {"timeout": 60.0, "memory_mb": 4096, "output_mb": 1024}
BWRAP_ENV = "SYFT_KERNEL_BWRAP"  # the bubblewrap binary (default: bwrap on PATH, /usr/bin/bwrap)
PRESTART_ENV = "SYFT_KERNEL_SANDBOX_PRESTART"  # "0": keep no sandbox ready (saves ~120 MB; runs start cold)
INSTALL = "apt-get install bubblewrap"
TMP_MB = 1024  # the private /tmp of a run (a tmpfs: memory)
START_TIMEOUT = 120.0  # s for a sandbox to start and import its runtime
STDERR_TAIL = 64 * 1024  # bytes of the code's stderr kept (the rest is read and dropped)
MiB = 1024 * 1024


@dataclass
class JobOutcome:
    ok: bool
    value: Value | None = None
    error: str = ""  # for the requester: says why, never quotes what the code printed or raised
    detail: str = ""  # for the owner's audit log only: the code's own error text and last output


def _redacted(text: str, sending: bool) -> str:
    """What the requester learns of a failed run: the kind of error, not its text."""
    parts = [p.strip() for p in text.split(":")]
    kinds = [p for p in parts if p.isidentifier() and p[:1].isupper()]  # an exception's class name
    kind = kinds[0] if kinds else "an error"
    what = f"the code's result could not be sent ({kind})" if sending else f"the code raised {kind}"
    return (
        f"{what}; its message and output could describe private data, so only the data owner's "
        "audit log has them (they can tell you what went wrong)"
    )


def check_limits(limits: Any) -> dict[str, float]:
    """Merge the owner's limits with the defaults; refuse nonsense."""
    out: dict[str, float] = dict(DEFAULT_LIMITS)
    if limits:
        if not isinstance(limits, dict):
            raise InvalidArgument("limits are a map")
        for k, v in limits.items():
            if k not in DEFAULT_LIMITS or not isinstance(v, (int, float)) or not 0 < v <= 10**6:
                raise InvalidArgument(f"limit {k!r} must be one of {', '.join(DEFAULT_LIMITS)} with a positive value")
            out[k] = float(v)
    return out


class SandboxUnavailable(Exception):
    """No sandbox that isolates as it must: the run is refused."""


def _refused(why: str) -> str:
    return (
        f"code requests run only in an operating-system sandbox, and {why}: the run was refused "
        f"(the code never runs without the sandbox). Install bubblewrap with `{INSTALL}` "
        "(user namespaces must be enabled), or point the node's "
        f"{BWRAP_ENV} at a working bwrap"
    )


def bwrap_path() -> str:
    if os.environ.get(BWRAP_ENV):
        return os.environ[BWRAP_ENV]
    import shutil

    return shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin") or "/usr/bin/bwrap"


def readonly_roots() -> list[str]:
    """What the child must see, read-only: the Python prefix (its site-packages included) and,
    for this package, only the source folders the child imports (an editable install points
    into the repository: its folders, never its root)."""
    wanted = {sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages()}
    for name in ("syft_kernel", "syft_kernel.node", "syft_kernel.core"):
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            continue
        if spec is not None and spec.submodule_search_locations:
            wanted.update(spec.submodule_search_locations)
    real = sorted({os.path.realpath(p) for p in wanted if p and os.path.isdir(p)})
    out: list[str] = []
    for p in real:  # a folder inside one already bound (or inside /usr) is bound with it
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in ["/usr", *out]):
            out.append(p)
    return out


# the distributions a code request may import, with everything they require
SANDBOX_DISTRIBUTIONS = ("numpy", "pandas", "pyarrow", "torch", "safetensors", "msgpack", "pyzmq", "pyseccomp")


@functools.lru_cache(maxsize=1)
def site_packages_view() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """For each site-packages folder, the entries the child may see: the files of the allowed
    distributions and of what they require (from their installed metadata), and this package's
    editable-install finder. The rest of site-packages (Jupyter, cryptography, …) stays hidden."""
    import importlib.metadata as md
    import re

    seen: dict[str, Any] = {}
    todo = list(SANDBOX_DISTRIBUTIONS)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            seen[key] = dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        todo += [re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0] for req in dist.requires or [] if "extra ==" not in req]
    tops = {str(f).split("/")[0] for dist in seen.values() for f in dist.files or []}
    views = []
    for folder in site.getsitepackages():
        if not os.path.isdir(folder):
            continue
        names = set(os.listdir(folder))
        allowed = {t for t in tops if t in names and t not in ("..", "") and not t.endswith(".pth")}
        allowed |= {n for n in names if n.startswith("__editable__") and "syft_kernel" in n}
        if "syft_kernel" in names:  # a regular (not editable) install of this package
            allowed.add("syft_kernel")
        views.append((os.path.realpath(folder), tuple(sorted(allowed))))
    return tuple(views)


@functools.lru_cache(maxsize=8)
def bwrap_version(bwrap: str) -> tuple[int, ...]:
    """``bwrap --version`` as numbers; () if it does not say."""
    import subprocess

    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10).stdout
        return tuple(int(x) for x in out.split()[-1].split("."))
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return ()


def sandbox_command(
    bwrap: str, roots: list[str], probes: list[str], torch: bool, module: str = "syft_kernel.node.sandbox"
) -> list[str]:
    """The bwrap command line of one sandbox running ``module`` (a code run, or a trainer)."""
    cmd = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        str(sandbox.UID),
        "--gid",
        str(sandbox.UID),
        "--hostname",
        "sandbox",
        "--clearenv",
    ]
    if bwrap_version(bwrap) >= (0, 8):  # older ones lack it; the seccomp filter refuses new namespaces anyway
        cmd.insert(3, "--disable-userns")
    for k, v in (
        ("PATH", "/usr/bin:/bin"),
        ("HOME", "/tmp"),
        ("TMPDIR", "/tmp"),
        ("LANG", "C.UTF-8"),
        ("OMP_NUM_THREADS", "1"),
        ("PYTHONHASHSEED", "0"),
        # Arrow's default pool (mimalloc) reserves a GiB of address space on first use,
        # which RLIMIT_AS would count as the code's memory: the system allocator does not
        ("ARROW_DEFAULT_MEMORY_POOL", "system"),
    ):
        cmd += ["--setenv", k, v]
    cmd += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--remount-ro",
        "/dev",
        "--size",
        str(TMP_MB * MiB),
        "--tmpfs",
        "/tmp",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    if os.path.exists("/etc/ld.so.cache"):  # the dynamic loader's index: all it takes of /etc
        cmd += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for root in roots:
        cmd += ["--ro-bind", root, root]
    for folder, entries in site_packages_view():  # over the prefix: only the allowed packages
        cmd += ["--tmpfs", folder]
        for entry in entries:
            path = os.path.join(folder, entry)
            cmd += ["--ro-bind", path, path]
        cmd += ["--remount-ro", folder]
    cmd += [
        "--remount-ro",
        "/",
        "--chdir",
        "/tmp",
        "--",
        os.path.realpath(sys.executable),
        "-I",
        "-B",
        "-m",
        module,
    ]
    if torch:
        cmd.append("--torch")
    return [*cmd, "--", *probes]


def check_hello(hello: dict[str, Any]) -> list[str]:
    """What is wrong with a sandbox, from its own report (empty: it isolates as it must)."""
    bad = []
    if hello.get("uid") != sandbox.UID or hello.get("euid") != sandbox.UID:
        bad.append(f"it runs as uid {hello.get('uid')}, not {sandbox.UID}")
    if hello.get("cap_eff") or hello.get("cap_prm") or hello.get("cap_bnd"):
        bad.append("it holds capabilities")
    if hello.get("no_new_privs") != 1 or hello.get("seccomp") != 2:
        bad.append("its seccomp filter is not in place")
    if set(hello.get("interfaces", ["?"])) - {"lo"}:
        bad.append(f"it sees network interfaces {hello.get('interfaces')}")
    if hello.get("visible"):
        bad.append(f"it sees the node's files ({', '.join(hello['visible'])})")
    return bad


class _Spawner:
    """Starts every sandbox from one thread that lives as long as the node process."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[tuple[list[str], Future[Any]]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def submit(self, cmd: list[str]) -> Future[Any]:
        fut: Future[Any] = Future()
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="sandbox-spawner", daemon=True)
                self.thread.start()
        self.jobs.put((cmd, fut))
        return fut

    def _loop(self) -> None:
        import subprocess

        while True:
            cmd, fut = self.jobs.get()
            try:
                fut.set_result(
                    subprocess.Popen(
                        cmd,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        env={"PATH": "/usr/bin:/bin"},
                        cwd="/",
                        start_new_session=True,
                        close_fds=True,
                    )
                )
            except BaseException as e:  # reported to whoever waits for this sandbox
                fut.set_exception(e)


_SPAWNER = _Spawner()


class Sandbox:
    """One sandboxed child, for one run."""

    def __init__(self, cmd: list[str] | None, torch: bool, broken: str | None = None, cold: bool = True) -> None:
        self.torch = torch
        self.cold = cold
        self.broken = broken
        self.hello: dict[str, Any] | None = None
        self.proc: Any = None
        self.expired = False
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._drain: threading.Thread | None = None
        self._killed = False
        self._future = _SPAWNER.submit(cmd) if cmd is not None and broken is None else None
        if self._future is not None:  # killed before bwrap was even started: end it once it is
            self._future.add_done_callback(lambda f: self._killed and self.kill())

    # ---- starting
    def ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the child has imported its runtime and passed its self-check."""
        with self._lock:
            if self.hello is None and self.broken is None:
                self._start(timeout)
        if self.broken is not None:
            raise SandboxUnavailable(self.broken)

    def _start(self, timeout: float) -> None:
        assert self._future is not None
        try:
            self.proc = self._future.result(timeout)
        except (FileNotFoundError, PermissionError) as e:
            self.broken = _refused(f"bubblewrap could not be started ({e.strerror}: {e.filename})")
            return
        except Exception as e:
            self.broken = _refused(f"the sandbox could not be started ({type(e).__name__}: {e})")
            return
        self._drain = threading.Thread(target=self._read_stderr, name="sandbox-stderr", daemon=True)
        self._drain.start()
        timer = threading.Timer(timeout, self.kill)
        timer.start()
        try:
            reply = sandbox.recv_json(self.proc.stdout)
            self.hello = reply["hello"]
        except (EOFError, ValueError, KeyError, TypeError, struct.error):
            self.close()
            why = self.stderr_lines()[-1:] or [f"exit code {self.proc.returncode}"]
            self.broken = _refused(f"the sandbox did not start ({why[0][:300]})")
            return
        finally:
            timer.cancel()
        bad = check_hello(self.hello)
        if bad:
            self.close()
            self.broken = _refused(f"the sandbox failed its self-check: {'; '.join(bad)}")

    def _read_stderr(self) -> None:
        fd = self.proc.stderr.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self._tail += chunk
            if len(self._tail) > STDERR_TAIL:
                del self._tail[: len(self._tail) - STDERR_TAIL]

    def stderr_lines(self) -> list[str]:
        return [s for s in self._tail.decode(errors="replace").splitlines() if s.strip()]

    def alive(self) -> bool:
        return self.broken is None and (self.proc is None or self.proc.poll() is None)

    def kill(self) -> None:
        """End the sandbox: bwrap and, through its pid namespace, everything in it."""
        self._killed = True
        proc = self.proc
        if proc is None and self._future is not None and self._future.done() and self._future.exception() is None:
            proc = self._future.result()
        if proc is None or proc.poll() is not None:
            return
        for send in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
            try:
                send()
            except OSError:
                pass

    def close(self) -> None:
        """Kill, reap and close the pipes (after a run, or when the sandbox failed)."""
        self.kill()
        if self.proc is None:
            return
        try:
            self.proc.wait(10)
        except Exception:  # still there after SIGKILL: nothing more to do from here
            log.warning("sandbox process %d did not end after SIGKILL", self.proc.pid)
        if self._drain is not None:
            self._drain.join(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass

    def _expire(self) -> None:
        self.expired = True
        self.kill()

    # ---- the run
    def run(
        self, request_id: str, source: str, fn_name: str, inputs: dict[str, Value], limits: dict[str, float]
    ) -> JobOutcome:
        self.ready()
        proc = self.proc
        names = list(inputs)
        header = {
            "request_id": request_id,
            "source": source,
            "fn_name": fn_name,
            "inputs": names,
            "limits": limits,
            "torch": any(type_key(v.value) == "Tensor" for v in inputs.values()),
        }
        timer = threading.Timer(limits["timeout"], self._expire)
        timer.start()
        value: Any = None
        got, failure = False, ""
        try:
            try:
                sandbox.send_json(proc.stdin, header)
                for name in names:
                    sandbox.send_value(proc.stdin, inputs[name].value)
                proc.stdin.close()
            except OSError:  # the child has ended; its exit status says why
                pass
            try:
                value, got = sandbox.recv_value(proc.stdout, int(limits["output_mb"] * MiB)), True
            except EOFError:
                pass
            except OverflowError:
                failure = f"the code's result is larger than its {limits['output_mb']:g} MB output limit"
                self.kill()
            except Exception as e:
                failure = f"the code's result could not be read: {e}"
                self.kill()
            code = proc.wait()
        finally:
            timer.cancel()
            self.close()
        if self.expired:
            return JobOutcome(
                False, error=f"the code ran longer than its {limits['timeout']:g} s limit and was stopped"
            )
        if failure:
            return JobOutcome(False, error=failure)
        if code != 0:
            why = self._why(code, limits)
            if code in (sandbox.EXIT_ERROR, sandbox.EXIT_RESULT) or not why.startswith("the code"):
                # the code's own message or output, computed on private data: the owner's to read
                return JobOutcome(
                    False,
                    error=_redacted(why, code == sandbox.EXIT_RESULT),
                    detail="\n".join(self.stderr_lines()[-20:])[-4000:] or why,
                )
            return JobOutcome(False, error=why)
        if not got:
            return JobOutcome(False, error="the code's process ended without a result")
        try:
            check_result(value, f"{fn_name}()")
        except Exception as e:
            return JobOutcome(False, error=f"the code's result could not be read: {e}")
        lineage = frozenset().union(*(v.lineage for v in inputs.values())) if inputs else frozenset()
        return JobOutcome(True, Value(value, lineage, None))

    def _why(self, code: int, limits: dict[str, float]) -> str:
        lines = self.stderr_lines()
        if lines:
            log.info("code run stderr (last lines):\n%s", "\n".join(lines[-20:])[-2000:])
        if code == sandbox.EXIT_MEMORY:
            return f"the code ran out of its {limits['memory_mb']:g} MB memory limit"
        if code == sandbox.EXIT_FILE_SIZE:
            return f"the code wrote a file larger than its {limits['output_mb']:g} MB output limit"
        if code in (sandbox.EXIT_ERROR, sandbox.EXIT_RESULT) and lines:
            return lines[-1][:2000]
        if code > 128:
            sig = code - 128
            why = {
                9: "killed (time or memory limit)",
                24: "CPU time limit",
                25: "output size limit",
                11: "crashed (segmentation fault)",
                6: "aborted",
                31: "a refused system call",
            }.get(sig, f"signal {sig}")
            return f"the code's process ended: {why}"
        return lines[-1][:2000] if lines else f"the code's process ended with exit code {code}"


def new_sandbox(node_folder: Path, torch: bool, cold: bool = True, module: str = "syft_kernel.node.sandbox") -> Sandbox:
    """A sandbox (started in the background) running ``module``, or one that says why it cannot be."""
    bwrap = bwrap_path()
    if not os.access(bwrap, os.X_OK):
        return Sandbox(None, torch, _refused(f"bubblewrap was not found at {bwrap}"))
    roots = readonly_roots()
    inside = [r for r in ["/usr", *roots] if node_folder.is_relative_to(r)]
    if inside:
        return Sandbox(
            None,
            torch,
            _refused(f"the node folder {node_folder} is inside {inside[0]}, which the sandbox must see"),
        )
    probes = [str(node_folder), str(node_folder / "node.db"), str(node_folder / "keys")]
    return Sandbox(sandbox_command(bwrap, roots, probes, torch, module), torch, cold=cold)


class JobRunner:
    """Runs approved code, one sandbox per run, on background threads so the node keeps serving;
    keeps one sandbox started and waiting so a run starts at once."""

    def __init__(self, node_folder: Path, on_done: Callable[[str, JobOutcome], None], prestart: bool = False) -> None:
        self.node_folder = Path(node_folder).resolve()
        self.on_done = on_done
        self.threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._ready: Sandbox | None = None
        self._torch = False  # once a run used torch, ready sandboxes import it beforehand
        if prestart:
            self.prestart()

    def _new(self, cold: bool) -> Sandbox:
        return new_sandbox(self.node_folder, self._torch, cold)

    def prestart(self) -> None:
        """Have one sandbox started and waiting (its self-check runs now, in the background)."""
        if os.environ.get(PRESTART_ENV, "1") == "0":
            return
        with self._lock:
            if self._ready is not None and self._ready.alive():
                return
            sb = self._ready = self._new(cold=False)

        def check() -> None:
            try:
                sb.ready()
            except SandboxUnavailable as e:
                log.warning("%s", e)

        threading.Thread(target=check, name="sandbox-check", daemon=True).start()

    def _take(self, torch: bool) -> Sandbox:
        if torch:
            self._use_torch()
        with self._lock:
            sb, self._ready = self._ready, None
        if sb is None or not sb.alive():
            sb = self._new(cold=True)
        self.prestart()  # the next run's sandbox starts now
        return sb

    def start(
        self, request_id: str, source: str, fn_name: str, inputs: dict[str, Value], limits: dict[str, float]
    ) -> None:
        failed = next((name for name, v in inputs.items() if v.failed is not None), None)
        if failed is not None:  # approved already: the requester may learn that it failed
            self.on_done(
                request_id, JobOutcome(False, error=f"input {failed!r}: {inputs[failed].failed.public_text()}")
            )  # type: ignore[union-attr]
            return
        sb = self._take(any(type_key(v.value) == "Tensor" for v in inputs.values()))

        def work() -> None:
            nonlocal sb
            try:
                try:
                    sb.ready()
                except SandboxUnavailable:
                    if sb.cold:
                        raise
                    log.warning("the ready sandbox failed; trying a fresh one")
                    sb = self._new(cold=True)
                outcome = sb.run(request_id, source, fn_name, inputs, limits)
            except SandboxUnavailable as e:
                log.error("code request %s refused: %s", request_id, e)
                outcome = JobOutcome(False, error=str(e))
            except Exception as e:  # never lose a run: it ends as a failure with the reason
                log.exception("job %s failed to run", request_id)
                outcome = JobOutcome(False, error=f"the node could not run the code: {e}")
            finally:
                sb.close()
            if outcome.ok and outcome.value is not None and type_key(outcome.value.value) == "Tensor":
                self._use_torch()
            self.on_done(request_id, outcome)
            self.threads.pop(request_id, None)

        t = threading.Thread(target=work, name=f"job-{request_id}", daemon=True)
        self.threads[request_id] = t
        t.start()

    def _use_torch(self) -> None:
        """Runs here use torch: ready sandboxes import it beforehand from now on."""
        with self._lock:
            stale = None if self._torch else self._ready
            self._torch = True
            if stale is not None and not stale.torch:
                self._ready = None
        if stale is not None and not stale.torch:
            stale.close()
            self.prestart()

    def close(self) -> None:
        with self._lock:
            sb, self._ready = self._ready, None
        if sb is not None:
            sb.close()
