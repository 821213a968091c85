"""The ``demo`` toolkit: small tools to try Conveyor with (README, examples and tests use them)."""

from __future__ import annotations

from typing import Annotated

import anyio
from pydantic import BaseModel, Field

from conveyor import RetryPolicy, ToolContext, Toolkit

toolkit = Toolkit("demo", description="Small tools to try Conveyor with.", version="1.0.0")


@toolkit.tool(read_only=True, open_world=False)
async def echo(text: Annotated[str, Field(description="Text to send back.")]) -> str:
    """Return the text unchanged."""
    return text


class SleepResult(BaseModel):
    slept_seconds: float
    steps: int


@toolkit.tool(
    read_only=True,
    open_world=False,
    idempotent=True,
    retry=RetryPolicy(max_attempts=3, backoff_ms=200),
)
async def sleep(
    ctx: ToolContext,
    seconds: Annotated[float, Field(ge=0, le=86_400, description="How long to sleep, in seconds.")],
    steps: Annotated[int, Field(ge=1, le=10_000, description="Progress reports to send along the way.")] = 10,
) -> SleepResult:
    """Sleep for a while, reporting progress at each step. Cancellable at any moment."""
    for step in range(1, steps + 1):
        await anyio.sleep(seconds / steps)
        ctx.report_progress(step, steps, f"step {step} of {steps}")
    return SleepResult(slept_seconds=seconds, steps=steps)


class DemoFailure(Exception):
    """What demo_fail raises."""


@toolkit.tool(open_world=False, destructive=False)
async def fail(message: Annotated[str, Field(description="The error message to fail with.")]) -> None:
    """Always fail with the given message (to see how errors look)."""
    raise DemoFailure(message)


class Sum(BaseModel):
    sum: float = Field(description="a + b")


@toolkit.tool(read_only=True, open_world=False)
def add(a: float, b: float) -> Sum:
    """Add two numbers; the result is structured output."""
    return Sum(sum=a + b)
