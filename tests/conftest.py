from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from conveyor import local_worker
from conveyor.limits import PlanLimits
from conveyor.mcp_server import build_server
from conveyor.runtime import Runtime, open_runtime
from conveyor.settings import Settings, load_settings
from tests import toolkits
from tests.databases import KINDS, fresh_database
from tests.live_server import LiveServer, live_server

ERAS = ["auto", "legacy"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True, scope="session")
def no_local_worker_outlives_the_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """stdio servers start detached local workers, made to outlive their client: stop the ones
    the tests' databases got, so that none runs on after the session."""
    yield
    for lock in tmp_path_factory.getbasetemp().glob("**/*.worker.lock"):
        info = local_worker.status(str(lock)[: -len(".worker.lock")])
        if info.running and info.pid is not None:
            os.kill(info.pid, signal.SIGKILL)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of each kind in turn (SQLite, PostgreSQL), for what every store must do
    alike: a module runs all its tests on both by overriding ``settings`` with it."""
    with fresh_database(request.param, tmp_path) as db:
        yield db


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "db": str(tmp_path / "conveyor.db"),
        "toolkits": ("conveyor_toolkits.demo:toolkit", "tests.toolkits:toolkit"),
        "entry_points": False,
        "progress_interval_seconds": 0,
        "sqlite_synchronous": "NORMAL",
        "shutdown_grace_seconds": 0,  # a held job is interrupted at once when a test's runtime closes
        "job_wait_seconds": 0,  # jobs_status answers at once unless a test asks it to wait
    }
    values.update(overrides)
    return load_settings(env={}, overrides=values)


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with open_runtime(settings) as runtime:
        yield runtime


@pytest.fixture(params=ERAS)
async def client(request: pytest.FixtureRequest, runtime: Runtime) -> AsyncIterator[Client]:
    async with Client(build_server(runtime), mode=request.param) as client:
        yield client


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[LiveServer]:
    async with live_server(settings) as server:
        yield server


FREE: PlanLimits = make_settings(Path("unused")).plan_limits()["free"]  # the free plan's limits


@pytest.fixture
def fresh_toolkit_events() -> Iterator[None]:
    """The test toolkit's events start unset, and whatever a test held is released when it ends
    (a module asks for it with ``pytest.mark.usefixtures``)."""
    toolkits.reset()
    toolkits.reset_observed()
    toolkits.reset_sync()
    yield
    toolkits.release.set()
