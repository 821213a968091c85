"""A toolkit the tests control: tools that block on events, refuse cancellation, and so on."""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

import anyio

from conveyor import RetryPolicy, ToolContext, Toolkit

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


# -- for test_mcp_jobs.py and test_engine.py ------------------------------------------

# Set by testkit_hold_observed when it is interrupted; reset_observed() makes a fresh one.
interrupted = anyio.Event()


def reset_observed() -> None:
    global interrupted
    interrupted = anyio.Event()


@toolkit.tool
async def hold_observed() -> str:
    """Like hold, but records in ``interrupted`` that it was cancelled."""
    started.set()
    try:
        await release.wait()
    except anyio.get_cancelled_exc_class():
        interrupted.set()
        raise
    return "released"


# Runs of testkit_flaky per key; tests pass a fresh key so runs never mix.
flaky_runs: dict[str, int] = {}


@toolkit.tool(idempotent=True, open_world=False, retry=RetryPolicy(max_attempts=3, backoff_ms=1))
async def flaky(key: str) -> int:
    """Fail the first run for a key and succeed after, to exercise the retry policy."""
    runs = flaky_runs[key] = flaky_runs.get(key, 0) + 1
    if runs == 1:
        raise RuntimeError(f"first run for {key} fails")
    return runs


@toolkit.tool(read_only=True, open_world=False)
def thread_ident() -> int:
    """A sync tool that answers the ident of the thread it runs in."""
    return threading.get_ident()


@toolkit.tool(task_support="required", read_only=True)
async def long(ctx: ToolContext, seconds: float = 0.05) -> dict[str, float]:
    """A long-running tool: clients must call it as a task."""
    ctx.report_progress(1, 2, "half way")
    await anyio.sleep(seconds)
    ctx.report_progress(2, 2, "done")
    return {"slept": seconds}


@toolkit.tool(task_support="forbidden")
async def quick() -> str:
    """Never runs as a task."""
    return "quick"


@toolkit.tool(cancellable=False)
def sleep_uncancellable(seconds: float) -> str:
    """A sync tool that may not be interrupted: only its timeout stops the wait for it."""
    time.sleep(seconds)
    return "slept"


# -- sync tools and cancellation (test_shared_store.py) ----------------------------------

sync_started = threading.Event()
sync_release = threading.Event()


def reset_sync() -> None:
    global sync_started, sync_release
    sync_started = threading.Event()
    sync_release = threading.Event()


@toolkit.tool
def sync_checking(ctx: ToolContext) -> str:
    """A sync tool that runs until cancelled (or released): it checks for a cancel between short steps."""
    sync_started.set()
    while not sync_release.is_set():
        ctx.check_cancelled()
        time.sleep(0.005)
    return "released"


@toolkit.tool
def sync_unchecking() -> str:
    """A sync tool that never checks for cancellation: it returns when the test releases it."""
    sync_started.set()
    sync_release.wait(30)
    return "released"


# -- many processes (test_processes.py) --------------------------------------------------


@toolkit.tool(open_world=False)
def record_run(directory: str, key: str) -> str:
    """Record this run as a file of its own (key, process, a random part), so a test counts runs."""
    (Path(directory) / f"{key}.{os.getpid()}.{secrets.token_hex(4)}").write_text("")
    return key


@toolkit.tool(open_world=False)
async def record_run_in_table(db: str, key: str, seconds: float = 0.0) -> str:
    """Record this run as a row (key, process) of the table ``runs`` in the PostgreSQL database
    ``db``, then sleep: a non-idempotent tool whose every run a test can count."""
    import asyncpg

    conn = await asyncpg.connect(db)
    try:
        await conn.execute("INSERT INTO runs (key, pid) VALUES ($1, $2)", key, os.getpid())
    finally:
        await conn.close()
    await anyio.sleep(seconds)
    return key


@toolkit.tool(idempotent=True, open_world=False)
async def idempotent_nap(seconds: float) -> float:
    """Sleep: an idempotent tool, which a lost run of is run again."""
    await anyio.sleep(seconds)
    return seconds


@toolkit.tool
async def nap(ctx: ToolContext, seconds: float) -> str:
    """Sleep, as a tool that is neither idempotent nor quick would; reports that it started."""
    ctx.report_progress(0, 1, "napping")
    await anyio.sleep(seconds)
    return "rested"


# -- what JSON cannot carry (test_strict_json.py) ------------------------------------------


@toolkit.tool(open_world=False)
async def unruly(ctx: ToolContext, kind: str) -> dict[str, object]:
    """Answer what JSON cannot carry (kind "nan" or "surrogate"), or report progress in text no
    encoder can write (kind "progress")."""
    if kind == "nan":
        return {"value": float("nan")}
    if kind == "surrogate":
        return {"text": "\ud800"}
    ctx.report_progress(1, 2, "half \udfff way")
    return {"ok": True}


@toolkit.tool
async def hold_big(size: int) -> str:
    """Like hold, then answers a string of the given size (a finish that needs room on disk)."""
    started.set()
    await release.wait()
    return "x" * size


@toolkit.tool(read_only=True)
def credential_digest(ctx: ToolContext, name: str) -> dict[str, str | None]:
    """The SHA-256 of the run's credential ``name`` (never the credential), and which it got."""
    import hashlib

    value = ctx.credentials.get(name)
    digest = hashlib.sha256(value.encode()).hexdigest() if value is not None else None
    return {"digest": digest, "names": ",".join(sorted(ctx.credentials))}
