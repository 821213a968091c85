"""A toolkit the tests control: tools that block on events, refuse cancellation, and so on."""

from __future__ import annotations

import os

import anyio

from conveyor import ToolContext, Toolkit

toolkit = Toolkit("testkit", description="Tools for Conveyor's own tests.")

# Tests set these to hold a tool mid-run and release it when they choose.
started = anyio.Event()
release = anyio.Event()


def reset() -> None:
    global started, release
    started = anyio.Event()
    release = anyio.Event()


@toolkit.tool
async def hold(ctx: ToolContext) -> str:
    """Run until the test releases it."""
    started.set()
    ctx.report_progress(1, 2, "holding")
    await release.wait()
    return "released"


@toolkit.tool(cancellable=False)
async def hold_uncancellable() -> str:
    """Like hold, but may not be interrupted once running."""
    started.set()
    await release.wait()
    return "released"


@toolkit.tool
def blocking_sum(numbers: list[int]) -> int:
    """A sync tool: runs in a worker thread."""
    return sum(numbers)


@toolkit.tool
def big_result(size: int) -> str:
    """Return a string of the given size."""
    return "x" * size


@toolkit.tool(read_only=True, open_world=False)
def pid() -> int:
    """The server's process id, so a test can kill the server it talks to over stdio."""
    return os.getpid()
