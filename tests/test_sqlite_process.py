"""The SQLite store's database process: it lives exactly as long as its server, and a server whose
database process dies gets a coded error for what was in flight and a new process for what
follows. Real processes, a real file."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from conveyor import runtime as runtime_module
from conveyor.errors import ErrorCode, StoreUnavailable
from conveyor.jobs.models import NewJob
from conveyor.jobs.sqlite_store import SQLiteJobStore
from conveyor.runtime import database_started_early, open_runtime
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio

# A server in miniature: opens the store, says its database process's pid, waits to be killed.
HOLDER = """
import sys, anyio
from conveyor.jobs.sqlite_store import SQLiteJobStore

async def main():
    store = SQLiteJobStore(sys.argv[1])
    await store.open()
    print(store._process.pid, flush=True)
    await anyio.sleep_forever()

anyio.run(main)
"""


async def first_failure(call: Callable[[], Awaitable[object]]) -> Exception:
    """Call until a call fails (the death is noticed by a call in flight, or by the next one)."""
    while True:
        try:
            await call()
        except Exception as exc:
            return exc


def exited_within(pid: int, timeout_s: float) -> bool:
    """Whether process ``pid`` (not ours to wait for) ends within ``timeout_s``: a pidfd becomes
    readable when it does."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([handle], [], [], timeout_s)
        return bool(readable)
    finally:
        os.close(handle)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="pidfd_open is Linux's")
async def test_the_database_process_ends_with_a_server_that_is_killed(tmp_path: Path) -> None:
    command = [sys.executable, "-c", HOLDER, str(tmp_path / "conveyor.db")]
    async with await anyio.open_process(command, stderr=None) as holder:
        try:
            assert holder.stdout is not None
            said = b""
            with anyio.fail_after(30):
                while not said.endswith(b"\n"):
                    said += await holder.stdout.receive()
            child = int(said)
            assert not exited_within(child, 0)
            holder.kill()  # no shutdown at all: the child sees its input end
            assert await anyio.to_thread.run_sync(exited_within, child, 10)
        finally:
            with contextlib.suppress(ProcessLookupError):  # killed above, unless a check failed first
                holder.kill()


async def test_the_database_process_ignores_a_terminals_interrupt(tmp_path: Path) -> None:
    # Ctrl-C reaches the whole process group; the server closes the store after its last writes.
    store = SQLiteJobStore(tmp_path / "conveyor.db")
    await store.open()
    try:
        assert store._process is not None
        assert store._process.pid is not None
        os.kill(store._process.pid, signal.SIGINT)
        os.kill(store._process.pid, signal.SIGTERM)
        job = await store.insert(NewJob(tool="demo_echo", arguments={}, owner="alice"))
        assert job is not None
        assert await store.get(job.job_id) == job
    finally:
        await store.close()


async def test_closing_the_store_ends_its_database_process(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "conveyor.db")
    await store.open()
    assert store._process is not None
    assert store._process.pid is not None
    pid = store._process.pid
    await store.close()
    assert exited_within(pid, 0) if hasattr(os, "pidfd_open") else True
    with pytest.raises(RuntimeError, match="not open"):
        await store.get("job_x")


async def test_a_dead_database_process_fails_what_was_in_flight_with_a_coded_error_and_is_replaced(
    tmp_path: Path,
) -> None:
    store = SQLiteJobStore(tmp_path / "conveyor.db")
    await store.open()
    try:
        kept = await store.insert(NewJob(tool="demo_echo", arguments={"n": 1}, owner="alice"))
        assert kept is not None
        assert store._process is not None
        assert store._process.pid is not None
        first = store._process.pid
        os.kill(first, signal.SIGKILL)  # the out-of-memory killer, or a user's pkill
        with anyio.fail_after(10):
            caught = await first_failure(lambda: store.get(kept.job_id))
            assert isinstance(caught, StoreUnavailable)
            assert caught.code is ErrorCode.STORE_UNAVAILABLE
            assert "database process exited" in str(caught)
            # The next call runs on a new process, and everything committed is there.
            assert await store.get(kept.job_id) == kept
        assert store._process.pid not in (None, first)
    finally:
        await store.close()


async def test_a_database_process_started_early_is_the_runtimes_and_is_closed_if_no_runtime_takes_it(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    async with database_started_early(settings):
        early = runtime_module._started_early[settings.db]
        assert early._process is not None
        assert early._process.pid is not None
        async with open_runtime(settings, run_workers=False) as runtime:
            assert runtime.engine.store is early  # the process started early serves the runtime
            assert await runtime.engine.store.get("job_none") is None
    untaken = make_settings(tmp_path / "other")
    async with database_started_early(untaken):
        never_taken = runtime_module._started_early[untaken.db]
        assert never_taken._process is not None
        pid = never_taken._process.pid
    assert untaken.db not in runtime_module._started_early
    assert never_taken._process is None  # closed on the way out
    assert pid is not None
    assert exited_within(pid, 5) if hasattr(os, "pidfd_open") else True
