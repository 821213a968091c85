"""Failing storage, with real files: a database deleted or replaced under a running server, a
read-only one, a full disk. Nothing is acknowledged that was not committed, and what did complete
is recorded completed once the disk has room again. The small and read-only filesystems are
tmpfs mounts, made where the test may mount (root, as in CI); elsewhere those tests skip."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from conveyor.errors import StoreUnavailable
from conveyor.jobs.models import JobStatus
from conveyor.runtime import open_runtime
from tests import toolkits
from tests.conftest import make_settings
from tests.http_helpers import error_of
from tests.live_server import live_server
from tests.serve_process import server_env

pytestmark = pytest.mark.anyio

OWNER = "alice"


@pytest.fixture(autouse=True)
def held_tools() -> Iterator[None]:
    toolkits.reset()
    yield
    toolkits.release.set()


@contextmanager
def mounted(path: Path, *options: str) -> Iterator[Path]:
    """A tmpfs at ``path`` with these mount options, or skip the test where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.decode().strip() or 'not permitted'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem until it refuses another byte; the file that did it."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as file:  # unbuffered: nothing left to fail at close
        try:
            while True:
                file.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                file.write(b"\0")
        except OSError:
            pass
    return filler


def delete_database(db: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


class _Seen(logging.Handler):
    def __init__(self, action: str) -> None:
        super().__init__()
        self.action = action
        self.event = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "action", None) == self.action:
            self.event.set()


@contextmanager
def watching(logger: str, action: str) -> Iterator[anyio.Event]:
    seen = _Seen(action)
    log = logging.getLogger(logger)
    level = log.level
    log.addHandler(seen)
    log.setLevel(logging.INFO)
    try:
        yield seen.event
    finally:
        log.removeHandler(seen)
        log.setLevel(level)


# -- the database file goes away -----------------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_database_file_deleted_or_replaced_under_a_server_is_noticed_and_acknowledges_nothing(
    tmp_path: Path, how: str
) -> None:
    settings = make_settings(tmp_path)
    async with live_server(settings) as server, server.client(server.admin_key) as http:
        before = await http.post("/jobs/submit", json={"tool": "demo_echo", "arguments": {"text": "kept"}})
        assert before.status_code == 202
        if how == "deleted":
            delete_database(settings.db)
        else:
            shutil.copy(settings.db, tmp_path / "copy.db")
            os.replace(tmp_path / "copy.db", settings.db)
        refused = await http.post("/jobs/submit", json={"tool": "demo_echo", "arguments": {"text": "lost"}})
        health = await http.get("/healthz")
    error = error_of(refused, 503, "STORE_UNAVAILABLE")
    assert how in error["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert health.status_code == 503
    assert health.json()["status"] == "unavailable"
    assert how in health.json()["reason"]


async def test_a_missing_database_noticed_without_any_write_shows_in_health(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with live_server(settings) as server, server.client() as http:
        assert (await http.get("/healthz")).status_code == 200
        with watching("conveyor.store", "store.file_lost") as lost:
            delete_database(settings.db)
            with anyio.fail_after(5):
                await lost.wait()  # the change watch looks at the file every tick
        assert (await http.get("/healthz")).status_code == 503


async def test_a_new_database_beside_the_traces_of_an_old_one_is_said_out_loud(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with open_runtime(settings, run_workers=False):
        pass
    os.unlink(settings.db)  # its -wal and -shm stay, as an operator's rm conveyor.db leaves them
    with watching("conveyor.store", "store.created") as created:
        async with open_runtime(settings, run_workers=False):
            assert created.is_set()


# -- a database that cannot be written -------------------------------------------------------------


async def test_a_read_only_database_directory_is_one_line_at_start(tmp_path: Path) -> None:
    with mounted(tmp_path / "ro", "ro", "size=1m") as read_only:
        for command in (["serve"], ["serve", "--http", "--port", "0"], ["jobs", "list"], ["worker"]):
            for db in (read_only / "conveyor.db", read_only / "sub" / "conveyor.db"):
                run = await anyio.run_process(
                    [sys.executable, "-m", "conveyor", *command, "--db", str(db)],
                    env=server_env(),
                    stdin=subprocess.DEVNULL,
                    check=False,
                )
                stderr = run.stderr.decode()
                assert run.returncode == 2, (command, stderr)
                assert stderr.startswith("conveyor: error: "), (command, stderr)
                assert "Traceback" not in stderr
                assert len(stderr.strip().splitlines()) == 1, stderr


async def test_a_full_disk_refuses_submits_and_a_completed_run_is_recorded_once_there_is_room(
    tmp_path: Path,
) -> None:
    with mounted(tmp_path / "small", "size=2m") as small:
        settings = make_settings(small, store_write_timeout_seconds=0.5)
        async with open_runtime(settings) as runtime:
            job = await runtime.engine.submit("testkit_hold_big", {"size": 300_000}, owner=OWNER)
            with anyio.fail_after(5):
                await toolkits.started.wait()
            filler = fill(small)
            with pytest.raises(StoreUnavailable) as refused:
                await runtime.engine.submit("demo_echo", {"text": "no room"}, owner=OWNER)
            assert "full" in refused.value.message
            with watching("conveyor.jobs", "job.write_retry") as retried:
                toolkits.release.set()  # the run completes; its finish cannot be written yet
                with anyio.fail_after(10):
                    await retried.wait()
            os.unlink(filler)
            with anyio.fail_after(10):
                done = await runtime.engine.wait(job.job_id, owner=None, timeout_s=10)
            jobs, total = await runtime.engine.list(owner=None)
    assert done.status is JobStatus.COMPLETED
    assert done.result == "x" * 300_000
    assert done.attempts == 1
    assert total == 1  # the refused submit committed nothing
    assert [j.job_id for j in jobs] == [job.job_id]
