"""Code requests: submit a function for the owner to review; it runs on the node, in a separate
process with limits, only after approval. ``job.run_on_mock()`` runs it here on the mocks.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .core import schema
from .core.errors import InvalidArgument, RemoteError
from .requests import Request

if TYPE_CHECKING:
    from .client import Client
    from .pointer import Pointer


class Job(Request):
    """A code request; after approval its run's state is ``run_status`` (running, done, failed)."""

    def __init__(
        self,
        client: Client,
        info: dict[str, Any],
        fn: Callable[..., Any] | None = None,
        inputs: dict[str, Pointer] | None = None,
    ) -> None:
        super().__init__(client, info)
        self._fn = fn
        self._inputs = inputs or {}

    run_status = property(lambda self: self.info.get("run_status"))
    error = property(lambda self: self.info.get("run_error"))

    def run_on_mock(self) -> Any:
        """Run the function here, on the inputs' mocks: free, and nothing leaves the node."""
        if self._fn is None:
            raise InvalidArgument("run_on_mock needs the function object: use the Job that submit() returned")
        return self._fn(**{name: ptr.mock for name, ptr in self._inputs.items()})

    def wait_done(self, timeout: float | None = None) -> Job:
        """Wait for approval, then for the run to end (raises ``RemoteError`` if the run failed)."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        self.wait(timeout)
        while self.run_status in ("queued", "running"):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if (
                self._client.wait_event(
                    lambda e: e.get("request") == self.id and e.get("event") == "job.finished", left
                )
                is None
                and left is not None
            ):
                break
            self.refresh()
        self.refresh()
        if self.run_status == "failed":
            raise RemoteError(f"code request {self.id} failed on the node: {self.error}")
        return self

    def result(self, timeout: float | None = None) -> Pointer:
        """A pointer to the run's output; readable by you, because the owner approved this code."""
        from .pointer import Pointer

        self.wait_done(timeout)
        body, _ = self._client.call(schema.ObjectsDescribe(id=self.info["result_id"]))
        return Pointer(self._client, body["id"], body["meta"], label=f"{self.info['fn_name']}()")


class CodeAPI:
    """``client.code``: submit functions for review."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def submit(self, fn: Callable[..., Any], inputs: dict[str, Pointer], reason: str) -> Job:
        """Send ``fn``'s source with pointer inputs; the owner reviews the source before it runs."""
        try:
            source = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError):
            raise InvalidArgument(
                "submit a function defined in a file or a notebook cell (its source must be readable)"
            ) from None
        ids = {}
        for name, ptr in inputs.items():
            if getattr(ptr, "client", None) is not self._client:
                raise InvalidArgument(f"input {name!r} is not a pointer on {self._client.node_label}")
            ids[name] = ptr.id
        info = self._client.call(schema.CodeSubmit(source=source, fn_name=fn.__name__, inputs=ids, reason=reason))[0]
        return Job(self._client, info, fn, dict(inputs))

    def __getitem__(self, request_id: str) -> Job:
        return Job(self._client, self._client.call(schema.RequestsGet(id=request_id))[0])
