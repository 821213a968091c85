"""The ``ToolContext`` a tool receives: progress, steps, logging, cancellation and the run's
credentials."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import anyio
import anyio.from_thread

from conveyor.errors import Canceled
from conveyor.progress import Progress, ProgressRelay
from conveyor.secret_arguments import redacted_fields

logger = logging.getLogger("conveyor.tool")


class ToolContext:
    """Handed to a tool that declares a parameter annotated ``ToolContext``.

    Safe to use from async tools and from sync tools (which run in a worker thread).
    """

    def __init__(
        self,
        *,
        tool: str,
        relay: ProgressRelay | None = None,
        job_id: str | None = None,
        trace_id: str | None = None,
        cancel: threading.Event | None = None,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self.tool = tool
        # The run's own secrets (``credentials`` on a submit or a call): for the tool to use,
        # never to return or log.
        self.credentials: Mapping[str, str] = MappingProxyType(dict(credentials or {}))
        self.job_id = job_id
        self.trace_id = trace_id
        self.step_results: list[dict[str, Any]] = []
        self.state: Any = None  # what the toolkit's lifespan yielded
        self.settings: Any = None  # the toolkit's own settings ([toolkit_settings.<toolkit>]), if it has some
        self._relay = relay
        self._cancel = cancel
        self._loop_thread = threading.get_ident()

    def report_progress(
        self,
        current: float,
        total: float | None = None,
        message: str | None = None,
        *,
        step: str | None = None,
    ) -> None:
        """Report how far the tool has come; cheap enough to call in a tight loop."""
        if self._relay is None:
            return
        self._call_in_loop(self._relay.offer, Progress(current, total, message, step))

    def record_step(self, name: str, result: Any = None) -> None:
        """Keep a named intermediate result on the job (``step_results``)."""
        self.step_results.append({"step": name, "result": result})

    def log(self, message: str, *, level: int = logging.INFO, **fields: Any) -> None:
        # The message is redacted of secret arguments as the record is made; the fields join it after.
        fields = redacted_fields(fields)
        logger.log(
            level, message, extra={"action": "tool.log", "tool": self.tool, "job_id": self.job_id, **fields}
        )

    def check_cancelled(self) -> None:
        """Raise if the run was cancelled or timed out: a sync tool cannot be interrupted by
        Python, so a long one calls this now and then to stop early when asked to."""
        if self._cancel is not None and self._cancel.is_set():
            raise Canceled()
        if threading.get_ident() != self._loop_thread:
            anyio.from_thread.check_cancelled()  # the timeout, or a direct call's cancellation

    def _call_in_loop(self, func: Any, *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            func(*args)
        else:
            anyio.from_thread.run_sync(func, *args)
