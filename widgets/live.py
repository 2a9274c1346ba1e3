"""Live updates for widgets: a background connection that hears the node's pushed events and
notices when the node goes away and comes back.

The watcher listens on the user's own connection (the client's socket is shared by its
threads: waiting for events never blocks the kernel or the user's calls) from one thread per
client, however many views are open.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from syft_kernel.core.errors import SyftError

if TYPE_CHECKING:
    from syft_kernel.client import Client

log = logging.getLogger(__name__)
Listener = Callable[[dict[str, Any]], None]
PING_EVERY = 2.0  # seconds without any event before the watcher checks the node is still there
PING_TIMEOUT = 3.0

_watchers: weakref.WeakKeyDictionary[Any, NodeWatcher] = weakref.WeakKeyDictionary()
_watchers_lock = threading.Lock()


def node_gone(client: Any) -> bool:
    """Whether the node's folder was deleted (its connection file is gone): it will not come back."""
    path = getattr(client, "connection_path", None)
    return path is not None and not path.exists()


def session_closed_text(label: str) -> str:
    return f"this session was closed (client.close()): log in again (sk.login(…)) to see {label} live"


def down_text(label: str, gone: bool, since: float | None, what: str = "showing the last figures") -> str:
    """What a view says when its node stops answering (or was deleted: then nothing is promised)."""
    at = f" since {time.strftime('%H:%M:%S', time.localtime(since))}" if since else ""
    if gone:
        return f"{label} was deleted (its folder is gone){at}: {what}; nothing here will update again"
    return f"{label} is not answering{at}; {what}; this view recovers when it is back"


class NodeWatcher:
    """Calls its listeners with each event the node pushes to this user, and with
    ``{"event": "node.down"}`` / ``{"event": "node.up"}`` when the node stops and starts answering
    (``"gone": True`` on a node whose folder was deleted), and ``{"event": "session.closed"}``
    once when the client is closed (then it stops)."""

    def __init__(self, client: Client) -> None:
        self._client = weakref.ref(client)
        self.connection = client.connection
        self.key = client.key
        self.address = client.address
        self.label = client.node_label
        self.up = True
        self.down_since: float | None = None
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def of(cls, client: Client) -> NodeWatcher:
        """The one watcher for this client (its thread runs while it has listeners)."""
        with _watchers_lock:
            watcher = _watchers.get(client)
            if watcher is None:
                watcher = _watchers[client] = cls(client)
            return watcher

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns the function that removes it (the watcher stops with the last)."""
        with self._lock:
            self._listeners.append(listener)
            self._stop.clear()  # a thread on its way out sees this under the lock and carries on
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"syft-watch-{self.label}", daemon=True)
                self._thread.start()

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
                if not self._listeners:
                    self._stop.set()

        return unsubscribe

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join(PING_TIMEOUT + 2)

    def _should_stop(self) -> bool:
        """Checked by the thread each turn; deciding to end and forgetting the thread is one step
        under the lock, so a listener subscribing meanwhile always gets a running thread."""
        with self._lock:
            if self._stop.is_set():
                self._thread = None
                client = self._client()
                if client is not None:
                    client.unwatch()
                return True
            return False

    # ---- the thread
    def _emit(self, event: dict[str, Any]) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # one broken view must not stop the others hearing events
                log.exception("a widget failed to handle %s", event.get("event"))

    def _set_up(self, up: bool) -> None:
        if up == self.up:
            return
        self.up = up
        self.down_since = None if up else time.time()
        event: dict[str, Any] = {"event": "node.up" if up else "node.down", "node": self.label}
        if not up:
            client = self._client()
            event["gone"] = client is not None and node_gone(client)
            del client
        self._emit(event)

    def _closed(self) -> None:
        """The user closed the client: tell the views once, then end."""
        self._stop.set()
        self._emit({"event": "session.closed", "node": self.label})

    def _run(self) -> None:
        """Listen on the user's own connection (``client.watch``: every event, none taken from
        those who wait for one) and ping the node when it has been quiet."""
        announced = False
        while not self._should_stop():
            client = self._client()
            if client is None:  # the client is gone: nothing left to update
                self._stop.set()
                continue
            if client.closed:  # the user logged out: the views say so
                self._closed()
                continue
            try:
                if not announced:
                    # the node pushes only to connections it has heard from: whatever happened
                    # before this listener came was missed, so views reload once now
                    announced, self.up, self.down_since = True, True, None
                    self._emit({"event": "node.up", "node": self.label})
                events = client.watch(PING_EVERY)
                if events:
                    self._set_up(True)
                    for event in events:
                        self._emit(event)
                    continue
                client.call("hello", timeout=PING_TIMEOUT)  # also re-registers us after a node restart
                self._set_up(True)
            except SyftError:
                if client.closed:
                    self._closed()
                    continue
                self._set_up(False)
                self._stop.wait(0.5)
            except Exception:  # anything else: say the node is unreachable and try again
                if client.closed:  # closed under us: the user logged out
                    self._closed()
                    continue
                log.exception("the live connection to %s failed; trying again", self.label)
                self._set_up(False)
                self._stop.wait(1.0)
            finally:
                del client
