"""The benchmark's tools for Conveyor: the same no-op the peers serve, and a sleeper."""

from __future__ import annotations

import anyio

from conveyor import Toolkit

toolkit = Toolkit("bench", description="Benchmark tools.")


@toolkit.tool(read_only=True, open_world=False)
async def noop() -> str:
    """Do nothing."""
    return "ok"


@toolkit.tool(read_only=True, open_world=False)
async def sleep(seconds: float) -> str:
    """Sleep, then return."""
    await anyio.sleep(seconds)
    return "ok"
