"""Browser-test helpers: a throwaway JupyterLab server and a headless Chromium page (Playwright).

Chromium comes from Debian (`/usr/bin/chromium`); Playwright's own browser download is never used.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-results"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0

# Lab user settings written for every server: no news toast or update check (no network here).
_LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}

# Status-bar kernel item, e.g. "Python 3 (ipykernel) | Idle" (its title is "Change kernel for …").
_STATUS_JS = """() => {
  const bar = document.querySelector('#jp-main-statusbar');
  const item = bar?.querySelector('.jp-StatusBar-TextItem[title^="Change kernel"]');
  return (item || bar)?.textContent || '';
}"""
_IDLE_OR_DIALOG_JS = f"""() => {{
  if (document.querySelector('.jp-Dialog')) return 'dialog';
  return /\\bIdle\\b/.test(({_STATUS_JS})()) ? 'idle' : false;
}}"""
# Record whether any execution was seen (Busy status or a [*] prompt); the flag survives flicker.
_WATCH_JS = f"""() => {{
  const status = {_STATUS_JS};
  const busyNow = () => /\\bBusy\\b/.test(status()) || [...document.querySelectorAll(
    '.jp-Notebook .jp-InputPrompt')].some(p => p.textContent.includes('*'));
  window.__sawBusy = busyNow();
  window.__busyObserver?.disconnect();
  window.__busyObserver = new MutationObserver(() => {{ if (busyNow()) window.__sawBusy = true; }});
  window.__busyObserver.observe(document.body,
    {{subtree: true, childList: true, characterData: true}});
}}"""
_DONE_JS = f"""() => {{
  if (document.querySelector('.jp-Dialog')) return 'dialog';
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')];
  if (!window.__sawBusy || prompts.some(p => p.textContent.includes('*'))) return false;
  return /\\bIdle\\b/.test(({_STATUS_JS})()) ? 'done' : false;
}}"""


@dataclass(frozen=True)
class LabServer:
    """A running JupyterLab server started by `jupyter_lab`."""

    url: str
    token: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes]


def chromium_available() -> bool:
    """True when Debian's Chromium is installed and the `playwright` package imports."""
    return CHROMIUM.exists() and importlib.util.find_spec("playwright") is not None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _write_lab_settings(settings_dir: Path) -> None:
    """Write the fixed user settings in `_LAB_SETTINGS` under `settings_dir`."""
    for rel, values in _LAB_SETTINGS.items():
        target = settings_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it shuts its kernels down), SIGKILL after a grace."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    """Poll `url` until it answers 200; raise with the log tail if the server dies or times out."""
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{_log_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)  # polling interval: there is no event to wait on for an HTTP server
    raise TimeoutError(f"jupyter lab not ready after {SERVER_TIMEOUT_S:.0f} s:\n{_log_tail(log_path)}")


@contextlib.contextmanager
def jupyter_lab(
    root_dir: Path, env: dict[str, str] | None = None, extra_args: Sequence[str] = ()
) -> Iterator[LabServer]:
    """Run `jupyter lab` on a free loopback port serving `root_dir`; stop it on exit.

    The log goes to `root_dir/jupyter-lab.log`; Lab settings and workspaces live in
    `root_dir/.lab-state`, so a developer's own Lab state never leaks into a test.
    """
    root_dir = Path(root_dir).resolve()
    state = root_dir / ".lab-state"
    _write_lab_settings(state / "settings")
    port, token = free_port(), secrets.token_hex(16)
    log_path = root_dir / "jupyter-lab.log"
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        "--ip", "127.0.0.1", "--port", str(port),
        f"--ServerApp.token={token}", f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.port_retries=0",
        f"--LabApp.user_settings_dir={state / 'settings'}",
        f"--LabApp.workspaces_dir={state / 'workspaces'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    cmd.extend(extra_args)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=root_dir,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, f"{url}/api/status?token={token}", log_path)
        yield LabServer(url=url, token=token, port=port, log_path=log_path, proc=proc)
    finally:
        _stop(proc)


@contextlib.contextmanager
def browser_page(artifacts_dir: Path = ARTIFACTS) -> Iterator[Any]:
    """A Playwright page in headless Debian Chromium (1400x900); a failure leaves a screenshot."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            try:
                yield page
            except Exception:
                with contextlib.suppress(Exception):
                    save_screenshot(page, artifacts_dir, f"failure-{int(time.time())}")
                raise
            finally:
                context.close()
        finally:
            browser.close()


def _accept_dialog(page: Any) -> None:
    """Accept a Lab dialog (e.g. "Select Kernel": its default choice) and wait for it to close."""
    page.locator(".jp-Dialog .jp-mod-accept").first.click()
    page.locator(".jp-Dialog").wait_for(state="detached")


def _wait_state(page: Any, js: str, want: str, timeout_ms: int) -> None:
    """Wait for `js` to return `want`, accepting any dialogs met on the way."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        left = max(1, int((deadline - time.monotonic()) * 1000))
        state = page.wait_for_function(js, timeout=left).json_value()
        if state == want:
            return
        _accept_dialog(page)


def open_notebook_and_run_all(page: Any, lab: LabServer, notebook_path: str, timeout_ms: int = 120_000) -> None:
    """Open `notebook_path` (relative to the Lab root) in Lab, Run All Cells, wait until done.

    Done means the kernel was seen busy, no prompt shows `[*]`, and the status bar reads Idle.
    """
    page.goto(f"{lab.url}/lab/tree/{notebook_path}?token={lab.token}")
    _wait_state(page, _IDLE_OR_DIALOG_JS, "idle", timeout_ms)
    page.evaluate(_WATCH_JS)
    page.locator("#jp-MainMenu").get_by_role("menuitem", name="Run", exact=True).click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
    _wait_state(page, _DONE_JS, "done", timeout_ms)


def save_screenshot(page: Any, artifacts_dir: Path, name: str) -> Path:
    """Write a full-page PNG `artifacts_dir/name.png` and return its path."""
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    path = artifacts_dir / (name if name.endswith(".png") else f"{name}.png")
    page.screenshot(path=str(path), full_page=True)
    return path
