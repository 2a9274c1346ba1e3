"""Which message runs next: one queue per connection, a cap per user, a fixed pool of workers.

A connection's messages run in the order they came (a client pipelines them and may rely on
that); different connections run side by side. One user can hold at most ``per_user`` workers,
so a user with a slow operation, or many connections, cannot take the node from the others;
a connection with ``per_connection`` messages waiting is told to wait for its replies.
The server's threads share one queue, under its lock.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any


class WorkQueue:
    def __init__(self, workers: int, per_user: int, per_connection: int, per_user_bytes: int = 1 << 62) -> None:
        self.workers = workers
        self.per_user = per_user
        self.per_connection = per_connection
        self.per_user_bytes = per_user_bytes
        self._waiting_bytes: Counter[str] = Counter()
        self._queues: dict[bytes, deque[Any]] = {}
        self._user_of: dict[bytes, str] = {}
        self._busy: set[bytes] = set()
        self._active: Counter[str] = Counter()
        self._ready: deque[bytes] = deque()  # connections with work waiting, oldest first
        self._lock = threading.Lock()

    def add(self, connection: bytes, user: str, item: Any, size: int = 0) -> bool:
        """Queue a message of ``size`` bytes; False if this connection has too many waiting, or
        its user too many bytes waiting (on all their connections)."""
        with self._lock:
            q = self._queues.get(connection)
            if q is None:
                q = self._queues[connection] = deque()
                self._user_of[connection] = user
            waiting = self._waiting_bytes[user]  # one message of any size may always wait
            if len(q) >= self.per_connection or (waiting and waiting + size > self.per_user_bytes):
                if not q and connection not in self._busy:
                    del self._queues[connection], self._user_of[connection]
                return False
            self._waiting_bytes[user] += size
            q.append((item, size))
            if len(q) == 1 and connection not in self._busy:
                self._ready.append(connection)
            return True

    def offer(self, connection: bytes, user: str, item: Any, size: int = 0) -> str:
        """A message just received: "run" if it may start at once (marked running, one lock
        instead of add and take), else "queued", or "refused" as ``add`` would."""
        with self._lock:
            if (
                connection not in self._queues
                and connection not in self._busy
                and self._active[user] < self.per_user
                and len(self._busy) < self.workers
            ):
                self._busy.add(connection)
                self._active[user] += 1
                self._user_of[connection] = user
                self._queues[connection] = deque()
                return "run"
        return "queued" if self.add(connection, user, item, size) else "refused"

    def take(self) -> tuple[bytes, str, Any] | None:
        """The oldest message that may start now (its connection idle, its user under the cap,
        fewer than ``workers`` running), marked running; None if none may."""
        if not self._ready:  # read without the lock: a miss is retried by the caller's loop
            return None
        with self._lock:
            if len(self._busy) >= self.workers:
                return None
            for _ in range(len(self._ready)):
                connection = self._ready.popleft()
                user = self._user_of[connection]
                if self._active[user] >= self.per_user:
                    self._ready.append(connection)  # keeps its turn among the waiting
                    continue
                item, size = self._queues[connection].popleft()
                self._waiting_bytes[user] -= size
                if self._waiting_bytes[user] <= 0:
                    del self._waiting_bytes[user]
                self._busy.add(connection)
                self._active[user] += 1
                return connection, user, item
            return None

    def done(self, connection: bytes, user: str) -> None:
        """A worker finished this connection's message: its next one may run."""
        with self._lock:
            self._busy.discard(connection)
            self._active[user] -= 1
            if self._active[user] <= 0:
                del self._active[user]
            q = self._queues.get(connection)
            if q:
                self._ready.append(connection)
            elif q is not None:
                del self._queues[connection]
                del self._user_of[connection]
