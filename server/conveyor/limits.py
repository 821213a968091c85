"""Rate limits, job concurrency and shares of long-lived capacity, per plan.

Rate limits count executions (REST ``execute_tool`` and ``jobs/submit``, MCP ``tools/call``)
in fixed one-minute windows per principal, in the job store: every server of a deployment counts
against the same limit. Concurrency is enforced by the
engine's claim: a job whose owner is at the plan's limit waits in the queue. Long-lived things
a key holds open (event streams; MCP sessions, counted where they are opened) are capped per
key below the server-wide caps, so that one key cannot take what everybody shares.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from conveyor.auth import PlanName, Principal
from conveyor.errors import RateLimitExceeded


@dataclass(frozen=True, slots=True)
class PlanLimits:
    requests_per_minute: int
    max_concurrent_jobs: int
    max_sessions: int = 32  # MCP sessions (2025-11-25, over HTTP) open at once
    max_streams: int = 32  # event streams open at once: SSE job streams, MCP listens and subscriptions


@dataclass(frozen=True, slots=True)
class RateState:
    limit: int
    remaining: int
    reset_at: int  # Unix seconds when the window ends
    allowed: bool = True

    def retry_after(self, now: float | None = None) -> int:
        return max(1, math.ceil(self.reset_at - (time.time() if now is None else now)))

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


class RateWindows(Protocol):
    """Where executions are counted: the job store's database."""

    async def hit_rate_window(
        self, principal: str, *, window_start: int, limit: int, count: int = 1
    ) -> int | None: ...

    async def peek_rate_window(self, principal: str, *, window_start: int) -> int: ...


LEASE_SHARE = 64  # a process takes at most 1/64 of a limit at once
MAX_LEASE = 256  # a key with a high limit: one write per this many executions, not per call
MAX_LEASES = 10_000


def _block(limit: int) -> int:
    """How many executions a process counts in the database at once: one for small limits (every
    count exact across processes), a block for high ones (a write per block, not per call). A
    block is counted before any of it is used, so the limit holds for the whole deployment; what
    a process has not used when the window ends is lost, at most 1/64 of the limit."""
    return max(1, min(MAX_LEASE, limit // LEASE_SHARE))


@dataclass
class _Lease:
    window: int
    left: int  # counted in the database, not used yet
    used: int  # the window's count in the database when the block was taken


class RateLimiter:
    WINDOW_SECONDS = 60

    def __init__(self, plans: dict[PlanName, PlanLimits], windows: RateWindows) -> None:
        self.plans = plans
        self.windows = windows
        self._direct_runs: dict[str, int] = {}  # principal id -> direct runs going on
        self._leases: dict[str, _Lease] = {}  # principal id -> counts this process took, not yet used

    def limits_for(self, principal: Principal) -> PlanLimits | None:
        return None if principal.plan is None else self.plans[principal.plan]

    async def hit(self, principal: Principal, *, now: float | None = None) -> RateState | None:
        """Count one execution; ``allowed`` is False (and nothing is counted) past the limit."""
        limits = self.limits_for(principal)
        if limits is None:
            return None
        window, limit = self._window(now), limits.requests_per_minute
        reset = window + self.WINDOW_SECONDS
        lease = self._lease(principal, window)
        if lease is not None:
            lease.left -= 1
            return RateState(limit, max(0, limit - lease.used + lease.left), reset)
        block = _block(limit)
        if block > 1:
            used = await self.windows.hit_rate_window(
                principal.id, window_start=window, limit=limit, count=block
            )
            if used is not None:
                if len(self._leases) >= MAX_LEASES:
                    self._leases.clear()
                self._leases[principal.id] = _Lease(window, left=block - 1, used=used)
                return RateState(limit, max(0, limit - used + block - 1), reset)
        # Near the limit (or a small one): one at a time, so that no count is left unused.
        used = await self.windows.hit_rate_window(principal.id, window_start=window, limit=limit)
        if used is None:
            return RateState(limit, 0, reset, allowed=False)
        return RateState(limit, max(0, limit - used), reset)

    async def peek(self, principal: Principal, *, now: float | None = None) -> RateState | None:
        limits = self.limits_for(principal)
        if limits is None:
            return None
        window, limit = self._window(now), limits.requests_per_minute
        lease = self._lease(principal, window)
        if lease is not None:  # no need to ask the database
            return RateState(limit, max(0, limit - lease.used + lease.left), window + self.WINDOW_SECONDS)
        used = await self.windows.peek_rate_window(principal.id, window_start=window)
        return RateState(limit, max(0, limit - used), window + self.WINDOW_SECONDS)

    def _lease(self, principal: Principal, window: int) -> _Lease | None:
        """The principal's block of counts in this window, if this process has some left."""
        lease = self._leases.get(principal.id)
        return lease if lease is not None and lease.window == window and lease.left > 0 else None

    def _window(self, now: float | None) -> int:
        now = time.time() if now is None else now
        return int(now // self.WINDOW_SECONDS) * self.WINDOW_SECONDS

    def max_concurrent_jobs(self, principal: Principal) -> int | None:
        limits = self.limits_for(principal)
        return None if limits is None else limits.max_concurrent_jobs

    @contextmanager
    def direct_run(self, principal: Principal) -> Iterator[None]:
        """Hold one of the plan's concurrent-run slots for a direct (not queued) tool run.

        Jobs over the limit wait in the queue; a direct call cannot wait, so it is refused.
        """
        limit = self.max_concurrent_jobs(principal)
        if limit is None:
            yield
            return
        running = self._direct_runs.get(principal.id, 0)
        if running >= limit:
            raise RateLimitExceeded(
                f"At most {limit} direct runs at once on the {principal.plan} plan; submit a job to queue it",
                retry_after=1,
                limit=limit,
            )
        self._direct_runs[principal.id] = running + 1
        try:
            yield
        finally:
            left = self._direct_runs[principal.id] - 1
            if left:
                self._direct_runs[principal.id] = left
            else:
                del self._direct_runs[principal.id]


class OpenStreams:
    """Event streams held open (SSE, MCP listens and resource subscriptions): at most the key's
    plan's share each, and ``total`` in all. The local stdio user (no plan) is capped by the total."""

    def __init__(self, plans: dict[PlanName, PlanLimits], *, total: int) -> None:
        self.plans = plans
        self.total = total
        self._open: dict[str, int] = {}
        self._count = 0

    def acquire(self, principal: Principal) -> None:
        """Take a slot for one stream, or raise ``RateLimitExceeded``; give it back with ``release``."""
        limit = None if principal.plan is None else self.plans[principal.plan].max_streams
        held = self._open.get(principal.id, 0)
        if limit is not None and held >= limit:
            raise RateLimitExceeded(
                f"At most {limit} event streams open at once on the {principal.plan} plan; close one first",
                retry_after=1,
                limit=limit,
            )
        if self._count >= self.total:
            raise RateLimitExceeded("The server has no event stream left; retry shortly", retry_after=1)
        self._open[principal.id] = held + 1
        self._count += 1

    def release(self, principal: Principal) -> None:
        held = self._open.get(principal.id, 0) - 1
        if held > 0:
            self._open[principal.id] = held
        else:
            self._open.pop(principal.id, None)
        self._count = max(0, self._count - 1)

    @contextmanager
    def held(self, principal: Principal) -> Iterator[None]:
        self.acquire(principal)
        try:
            yield
        finally:
            self.release(principal)
