"""One measurement in a fresh process; prints its result as one JSON object on stdout.

``python bench/driver.py '<spec as JSON>'`` — run with the project's python for Conveyor and for
every client of a server in a subprocess (stdio, HTTP), and with the peers' python for the peers
served in-process. Both load ``measure.py`` from this folder, so every peer is timed alike.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import anyio  # noqa: E402
import measure  # noqa: E402

Spec = dict[str, Any]
NOOP = "bench_noop"
CONVEYOR_TOOLKIT = "bench.toolkit:toolkit"


# -- Conveyor in this process ------------------------------------------------------------------


def conveyor_settings(db: Path | str, **overrides: Any) -> Any:
    sys.path.insert(0, str(ROOT))  # for bench.toolkit
    from conveyor.logs import configure_logging
    from conveyor.settings import load_settings

    values = {"db": str(db), "toolkits": (CONVEYOR_TOOLKIT,), "entry_points": False, **overrides}
    settings = load_settings(env={}, overrides=values)
    configure_logging(settings.log_level)
    return settings


@contextlib.asynccontextmanager
async def conveyor_runtime(tmp: Path, **overrides: Any) -> AsyncIterator[Any]:
    from conveyor.runtime import open_runtime

    async with open_runtime(conveyor_settings(tmp / "conveyor.db", **overrides)) as runtime:
        yield runtime


TERMINAL = frozenset(("completed", "failed", "canceled", "timeout"))  # JobStatus is a str enum


def count_finished(runtime: Any, target: int) -> anyio.Event:
    """An event set once ``target`` jobs reached a terminal status (counted where they are published)."""
    done = anyio.Event()
    publish = runtime.events.publish
    finished = 0

    def counting_publish(job: Any, *, remote: bool = False) -> None:  # JobEvents.publish's signature
        nonlocal finished
        publish(job, remote=remote)
        if job.status in TERMINAL:
            finished += 1
            if finished >= target:
                done.set()

    runtime.events.publish = counting_publish
    return done


# -- clients -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def clients(server: Any, count: int, **options: Any) -> AsyncIterator[list[Any]]:
    from mcp import Client

    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(Client(server, **options)) for _ in range(count)]


def noop_call(client: Any, tool: str = NOOP, arguments: dict[str, Any] | None = None) -> measure.Call:
    async def call() -> None:
        result = await client.call_tool(tool, arguments or {})
        if result.is_error:
            raise RuntimeError(f"{tool} failed: {result.content}")

    return call


async def direct_calls(client_list: list[Any], spec: Spec, server_pid: int = 0) -> dict[str, Any]:
    """Sequential calls on one client, then ``spec['clients']`` clients calling at once; with the
    server in another process, also its CPU time per call: its utime + stime (``/proc``) read
    right before and right after the timed calls, divided by those calls (warm-up excluded)."""
    cpu = (lambda: measure.tree_cpu_s(server_pid)) if server_pid else None
    seq = await measure.sequential(noop_call(client_list[0]), spec["seq"], spec["warmup"], cpu)
    calls = [noop_call(client) for client in client_list]
    if len(calls) == 1:  # one connection (stdio): concurrent callers share it
        calls = calls * spec["clients"]
    conc = await measure.concurrent(calls, spec["conc"], spec["warmup"], cpu)
    # The protocol version the clients settled on: the era actually measured.
    return {"seq": seq, "conc": conc, "protocol": client_list[0].session.protocol_version}


def client_options(spec: Spec) -> dict[str, Any]:
    """``mode="auto"`` (the 2026-07-28 era, the SDK's default) or ``mode="legacy"`` (2025-11-25)."""
    return {"mode": spec.get("mode", "auto")}


# -- servers in subprocesses ----------------------------------------------------------------


def server_command(spec: Spec, transport: str, tmp: Path, port: int = 0) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if spec["peer"] == "conveyor":
        env["PYTHONPATH"] = str(ROOT)
        args = ["serve", "--db", str(tmp / "conveyor.db"), "--toolkit", CONVEYOR_TOOLKIT]
        # inline: one process, like every peer (by default a stdio server starts a local worker too)
        args += ["--worker", "inline"]
        if transport == "http":
            args += ["--http", "--port", str(port)]
        return [spec["project_python"], "-m", "conveyor", *args], env
    script = [spec["peers_python"], str(HERE / "peers_servers.py"), spec["peer"], transport]
    if transport != "http":
        return script, env
    # The event loop and HTTP implementation Conveyor's own server was seen to run on.
    stack = spec.get("stack") or {}
    return [*script, str(port), stack.get("loop", "asyncio"), stack.get("http", "auto")], env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        await anyio.sleep(0.02)
    raise RuntimeError(f"server did not listen on {port} within {timeout_s}s")


@contextlib.contextmanager
def subprocess_server(command: list[str], env: dict[str, str], log: Path) -> Any:
    with open(log, "ab") as errors:
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=errors, stderr=errors)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def conveyor_admin_key(spec: Spec, tmp: Path) -> str:
    command = [spec["project_python"], "-m", "conveyor", "keys", "create", "--role", "admin"]
    command += ["--plan", "enterprise", "--db", str(tmp / "conveyor.db"), "--toolkit", CONVEYOR_TOOLKIT]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    made = subprocess.run(command, env=env, capture_output=True, check=True, timeout=60)
    return str(json.loads(made.stdout)["key"])


def stdio_params(spec: Spec, tmp: Path) -> Any:
    from mcp import StdioServerParameters

    command, env = server_command(spec, "stdio", tmp)
    return StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=str(ROOT))


def server_stack(pid: int) -> dict[str, str]:
    """The event loop and HTTP implementation a running uvicorn server uses, told by the native
    modules its process has mapped: uvloop's loop, httptools' parser (uvicorn's ``auto`` picks
    httptools when it can import it, else h11, which is pure Python)."""
    with open(f"/proc/{pid}/maps") as maps:
        mapped = maps.read()
    return {
        "loop": "uvloop" if "/uvloop/loop." in mapped else "asyncio",
        "http": "httptools" if "/httptools/parser/" in mapped else "h11",
    }


async def uvicorn_stack(spec: Spec, tmp: Path) -> dict[str, Any]:
    """Start Conveyor's HTTP server, let it answer one request, and report its uvicorn stack:
    what every peer is then served on."""
    import httpx2

    port = free_port()
    command, env = server_command({**spec, "peer": "conveyor"}, "http", tmp, port)
    with subprocess_server(command, env, tmp / "server.log") as process:
        await wait_for_port(port, process)
        async with httpx2.AsyncClient(timeout=60) as http:
            await http.get(f"http://127.0.0.1:{port}/mcp")  # answered once startup is over
        return server_stack(process.pid)


def server_pid() -> int:
    """The stdio server: this driver's only child process."""
    children = measure._children(os.getpid())
    return children[0] if children else 0


# -- workloads -----------------------------------------------------------------------------------


async def direct(spec: Spec, tmp: Path) -> dict[str, Any]:
    transport = spec["transport"]
    if transport == "memory":
        return await direct_in_memory(spec, tmp)
    if transport == "stdio":
        async with clients(stdio_params(spec, tmp), 1, **client_options(spec)) as one:
            pid = server_pid()
            result = await direct_calls(one, spec, pid)
            return {**result, "server": measure.tree_rss_mb(pid)}
    return await direct_http(spec, tmp)


async def direct_in_memory(spec: Spec, tmp: Path) -> dict[str, Any]:
    if spec["peer"] == "conveyor":
        from conveyor.mcp_server import build_server

        async with conveyor_runtime(tmp) as runtime, clients(build_server(runtime), spec["clients"]) as cs:
            return await direct_calls(cs, spec)
    import peers_servers

    server = peers_servers.lowlevel_of(spec["peer"], peers_servers.build(spec["peer"]))
    async with clients(server, spec["clients"]) as cs:
        return await direct_calls(cs, spec)


async def direct_http(spec: Spec, tmp: Path) -> dict[str, Any]:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    port = free_port()
    env_extra: dict[str, str] = {}
    headers: dict[str, str] = {}
    if spec["peer"] == "conveyor":
        headers["Authorization"] = f"Bearer {conveyor_admin_key(spec, tmp)}"
        env_extra["CONVEYOR_ENTERPRISE_REQUESTS_PER_MINUTE"] = str(10**9)  # measure speed, not limits
    command, env = server_command(spec, "http", tmp, port)
    with subprocess_server(command, {**env, **env_extra}, tmp / "server.log") as process:
        await wait_for_port(port, process)
        url = f"http://127.0.0.1:{port}/mcp"
        async with contextlib.AsyncExitStack() as stack:
            from mcp import Client

            client_list = []
            for _ in range(spec["clients"]):
                http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=60))
                transport = streamable_http_client(url, http_client=http)
                client_list.append(await stack.enter_async_context(Client(transport, **client_options(spec))))
            result = await direct_calls(client_list, spec, process.pid)
        served = server_stack(process.pid)
        return {**result, "server": measure.tree_rss_mb(process.pid), "stack": served}


async def coldstart(spec: Spec, tmp: Path) -> dict[str, Any]:
    """Spawn the stdio server, time until its tools/list answers; then idle and loaded RSS."""
    from mcp import Client

    params = stdio_params(spec, tmp)
    started = time.perf_counter()
    async with Client(params, mode="legacy") as client:
        tools = await client.list_tools()
        ready_s = time.perf_counter() - started
        if not any(tool.name == NOOP for tool in tools.tools):
            raise RuntimeError(f"{spec['peer']} does not list {NOOP}")
        await anyio.sleep(spec.get("idle_s", 1.0))
        pid = server_pid()
        idle = measure.tree_rss_mb(pid)
        await measure.concurrent([noop_call(client)] * 16, spec["load_calls"], 0)
        loaded = measure.tree_rss_mb(pid)
    return {
        "cold_start_ms": ready_s * 1000,
        "idle_rss_mb": idle["rss_mb"],
        "peak_rss_mb": loaded["peak_rss_mb"],
    }


async def roundtrip(spec: Spec, tmp: Path) -> dict[str, Any]:
    """Submit a no-op job and wait for its result, one after another: p50/p99 per job."""
    peer = spec["peer"]
    if peer.startswith("fastmcp"):
        return await fastmcp_roundtrip(spec)
    async with conveyor_runtime(tmp) as runtime:
        if peer == "conveyor-engine":
            engine = runtime.engine

            async def engine_job() -> None:
                job = await engine.submit(NOOP, {}, owner="bench")
                job = await engine.wait(job.job_id, owner=None, timeout_s=10)
                if str(job.status) != "completed":
                    raise RuntimeError(f"job ended {job.status}")

            return {"roundtrip": await measure.sequential(engine_job, spec["n"], spec["warmup"])}
        from conveyor.mcp_server import build_server

        async with clients(build_server(runtime), 1) as (client,):

            async def mcp_job() -> None:
                arguments = {"tool": NOOP, "arguments": {}, "wait_seconds": 10}
                result = await client.call_tool("jobs_submit", arguments)
                if result.is_error or result.structured_content["status"] != "completed":
                    raise RuntimeError(f"job did not complete: {result}")

            return {"roundtrip": await measure.sequential(mcp_job, spec["n"], spec["warmup"])}


def docket_url(peer: str) -> str:
    return (
        "memory://"
        if peer.endswith("memory")
        else os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )


def fastmcp_tasks_server(peer: str, run_id: str) -> Any:
    import peers_servers

    os.environ["FASTMCP_DOCKET_NAME"] = docket_name(run_id)  # keys of this run only
    return peers_servers.fastmcp_server(docket_url(peer))


def docket_name(run_id: str) -> str:
    return f"conveyor-bench-{run_id}"


async def drop_redis_keys(spec: Spec) -> None:
    """Delete what this run left in Redis (Docket's task keys would linger for their TTL)."""
    if not spec["peer"].endswith("redis"):
        return
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(docket_url(spec["peer"]))
    try:
        batch = [key async for key in client.scan_iter(match=f"{docket_name(spec['run_id'])}*", count=1000)]
        for first in range(0, len(batch), 1000):
            await client.unlink(*batch[first : first + 1000])
    finally:
        await client.aclose()


async def fastmcp_roundtrip(spec: Spec) -> dict[str, Any]:
    from fastmcp_tasks.client import TasksClientExtension

    server = fastmcp_tasks_server(spec["peer"], spec["run_id"])
    async with clients(server._mcp_server, 1, extensions=[TasksClientExtension()]) as (client,):
        job = noop_call(client, "bench_noop_task")
        return {"roundtrip": await measure.sequential(job, spec["n"], spec["warmup"])}


async def throughput(spec: Spec, tmp: Path) -> dict[str, Any]:
    peer = spec["peer"]
    if peer.startswith("raw-sqlite"):
        return raw_sqlite(spec, tmp)
    if peer.startswith("fastmcp"):
        return await fastmcp_throughput(spec)
    n, submitters = spec["n"], spec["submitters"]
    overrides = {"concurrency": spec["concurrency"]}
    async with conveyor_runtime(tmp, **overrides) as runtime, conveyor_submitter(runtime, peer) as submit:
        submitted_s, elapsed = await submit_all_until_finished(runtime, submit, n, submitters)
        memory = measure.tree_rss_mb(os.getpid())  # with the SQLite store's database process
    return {"jobs": n, "jobs_per_s": n / elapsed, "submit_per_s": n / submitted_s, **memory}


@contextlib.asynccontextmanager
async def conveyor_submitter(runtime: Any, peer: str) -> AsyncIterator[Callable[[], Awaitable[Any]]]:
    """Submits one no-op job: through the engine's API, or as ``jobs_submit`` over in-memory MCP."""
    if peer == "conveyor-engine":

        async def by_engine() -> None:
            await runtime.engine.submit(NOOP, {}, owner="bench")

        yield by_engine
        return
    from conveyor.mcp_server import build_server

    async with clients(build_server(runtime), 1) as (client,):
        keys = itertools.count()

        async def by_mcp() -> None:
            # Identical jobs: jobs_submit would answer one still queued instead of a new one, so
            # each has a key of its own, as a client that wants many identical runs passes.
            arguments = {"tool": NOOP, "arguments": {}, "idempotency_key": f"bench-{next(keys)}"}
            result = await client.call_tool("jobs_submit", arguments)
            if result.is_error:
                raise RuntimeError(f"submit failed: {result.content}")

        yield by_mcp


async def submit_all_until_finished(
    runtime: Any, submit: Callable[[], Awaitable[Any]], n: int, submitters: int
) -> tuple[float, float]:
    """``n`` submits from ``submitters`` tasks at once; seconds until all were submitted, and
    until all were finished (as the runtime heard of their ends)."""
    done = count_finished(runtime, n)
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for share in _shares(n, submitters):
            tg.start_soon(_repeat, submit, share)
    submitted_s = time.perf_counter() - started
    with anyio.fail_after(600):
        await done.wait()
    return submitted_s, time.perf_counter() - started


async def _repeat(call: Callable[[], Awaitable[Any]], times: int) -> None:
    for _ in range(times):
        await call()


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def fastmcp_throughput(spec: Spec) -> dict[str, Any]:
    """Submit N task calls from 16 clients, wait until the tool ran N times and the last task of
    each submitter reads completed."""
    from fastmcp_tasks.client import TasksClientExtension, _send_get

    n, submitters = spec["n"], spec["submitters"]
    server = fastmcp_tasks_server(spec["peer"], spec["run_id"])
    ran = 0
    all_ran = anyio.Event()

    @server.tool(name="bench_count_task", task=True)
    async def count_task() -> str:
        nonlocal ran
        ran += 1
        if ran >= n:
            all_ran.set()
        return "ok"

    last_ids: list[str] = []
    async with clients(server._mcp_server, submitters, extensions=[TasksClientExtension()]) as cs:

        async def submit(client: Any, times: int) -> None:
            task_id = ""
            for _ in range(times):
                created = await client.session.call_tool(
                    name="bench_count_task", arguments={}, allow_claimed=True
                )
                task_id = created.task_id
            last_ids.append(task_id)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for client, share in zip(cs, _shares(n, submitters), strict=True):
                tg.start_soon(submit, client, share)
        submitted_s = time.perf_counter() - started
        with anyio.fail_after(600):
            await all_ran.wait()
            for client, task_id in zip(cs, last_ids, strict=False):
                # FastMCP's tasks are polled (tasks/get): there is no event to wait on.
                while (await _send_get(client.session, task_id)).status != "completed":  # noqa: ASYNC110
                    await anyio.sleep(0.005)
        elapsed = time.perf_counter() - started
    return {"jobs": n, "jobs_per_s": n / elapsed, "submit_per_s": n / submitted_s, **measure.rss_mb()}


def raw_sqlite(spec: Spec, tmp: Path) -> dict[str, Any]:
    """The SQLite limit: Conveyor's schema and statements, a plain sqlite3 loop, WAL.

    Per job: the insert, the claim and the finish, each in its own transaction (as a job's life
    needs them), or ``batch`` jobs' statements per transaction."""
    sys.path.insert(0, str(ROOT / "server"))
    from conveyor.jobs.queries import load_migrations, load_queries

    queries = load_queries("sqlite")
    db = sqlite3.connect(tmp / "raw.db", isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {spec['synchronous']}")
    for _, script in load_migrations("sqlite"):
        db.executescript(script)
    batch = spec.get("batch", 1)
    n = spec["n"]
    started = time.perf_counter()
    for first in range(0, n, batch):
        jobs = [f"job_{first + i:032x}" for i in range(min(batch, n - first))]
        _raw_phase(db, queries["insert_job"], [_raw_insert(job) for job in jobs])
        claimed = _raw_phase(db, queries["claim_next_job"], [_raw_claim() for _ in jobs])
        _raw_phase(db, queries["finish_job"], [_raw_finish(row) for row in claimed])
    elapsed = time.perf_counter() - started
    done = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'completed'").fetchone()[0]
    if done != n:
        raise RuntimeError(f"raw loop completed {done} of {n} jobs")
    return {"jobs": n, "jobs_per_s": n / elapsed, "batch": batch}


def _raw_phase(db: sqlite3.Connection, sql: str, params: list[dict[str, Any]]) -> list[Any]:
    """One transaction: one job's statement, or ``batch`` jobs' (the batched loop)."""
    db.execute("BEGIN IMMEDIATE")
    rows = [row for values in params for row in db.execute(sql, values).fetchall()]
    db.execute("COMMIT")
    return rows


class _Params(dict[str, Any]):
    def __missing__(self, key: str) -> None:  # columns a migration added take their NULL default
        return None


def _raw_insert(job_id: str) -> _Params:
    now = int(time.time() * 1000)
    return _Params(
        job_id=job_id, tool=NOOP, arguments="{}", owner="bench", queue="default", created_at=now, kind="job"
    )


def _raw_claim() -> _Params:
    now = int(time.time() * 1000)
    return _Params(worker="raw", tools=json.dumps([NOOP]), now=now, lease_expires_at=now + 30_000)


def _raw_pg_claim() -> _Params:
    return _Params(_raw_claim(), tools=[NOOP], origin="raw", limit=1)


def _raw_finish(claimed: Any) -> _Params:
    # The claim's row says which attempt runs: the finish is fenced by it, as the engine's is.
    now = int(time.time() * 1000)
    return _Params(
        job_id=claimed["job_id"], attempt=claimed["attempts"], status="completed", now=now, result='"ok"'
    )


async def concurrency(spec: Spec, tmp: Path) -> dict[str, Any]:
    """N jobs of a tool that sleeps, all running at once (concurrency = N)."""
    n = spec["n"]
    async with conveyor_runtime(tmp, concurrency=n) as runtime:
        arguments = {"seconds": spec["sleep_s"]}

        async def submit() -> None:
            await runtime.engine.submit("bench_sleep", arguments, owner="bench")

        submitted_s, elapsed = await submit_all_until_finished(runtime, submit, n, spec["submitters"])
        memory = measure.tree_rss_mb(os.getpid())  # with the SQLite store's database process
    with sqlite3.connect(tmp / "conveyor.db") as db:
        rows = db.execute("SELECT started_at - created_at, status FROM jobs").fetchall()
    delays = [float(delay) for delay, _ in rows]
    completed = sum(1 for _, status in rows if status == "completed")
    return {
        "jobs": n,
        "completed": completed,
        "completion_s": elapsed,
        "submit_s": submitted_s,
        "start_delay_p50_ms": measure.percentile(delays, 50),
        "start_delay_p99_ms": measure.percentile(delays, 99),
        **memory,
    }


# -- PostgreSQL: worker processes on one queue, and the raw asyncpg limit ---------------------------


@contextlib.asynccontextmanager
async def fresh_postgres(spec: Spec) -> AsyncIterator[str]:
    """A schema of its own in the benchmark's PostgreSQL, migrated, dropped afterwards."""
    import asyncpg

    from conveyor.jobs.postgres_store import migrate

    schema = f"bench_{spec['run_id'].replace('-', '_')}"
    url = f"{spec['postgres_url']}{'&' if '?' in spec['postgres_url'] else '?'}search_path={schema}"
    await migrate(url)
    try:
        yield url
    finally:
        conn = await asyncpg.connect(spec["postgres_url"])
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def postgres(spec: Spec, tmp: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "server"))
    async with fresh_postgres(spec) as url:
        if spec["peer"] == "raw-asyncpg":
            return await raw_asyncpg(spec, url)
        return await postgres_workers(spec, url, tmp)


async def postgres_workers(spec: Spec, url: str, tmp: Path) -> dict[str, Any]:
    """``workers`` ``conveyor worker`` processes; this process submits through the engine (it runs
    no jobs) and counts the ends its change listener hears."""
    from conveyor.runtime import open_runtime

    n, workers = spec["n"], spec["workers"]
    # The harness's own settings (CONVEYOR_BENCH_*) are none of the worker's: it refuses unknown ones.
    env = {name: value for name, value in os.environ.items() if not name.startswith("CONVEYOR_")}
    env |= {"PYTHONPATH": str(ROOT), "CONVEYOR_ENTRY_POINTS": "false"}
    command = [spec["project_python"], "-m", "conveyor", "worker", "--db", url, "--toolkit", CONVEYOR_TOOLKIT]
    command += ["--concurrency", str(spec["concurrency"])]
    with contextlib.ExitStack() as stack:
        processes = [
            stack.enter_context(subprocess_server(command, env, tmp / f"worker-{index}.log"))
            for index in range(workers)
        ]
        settings = conveyor_settings(url)
        async with open_runtime(settings, run_workers=False) as runtime:
            with anyio.fail_after(60):
                # Other processes starting: their rows in the workers table are all there is to see.
                while len(await runtime.engine.store.live_workers(since=0)) < workers:
                    if any(process.poll() is not None for process in processes):
                        raise RuntimeError(f"a worker exited at start; see {tmp}/worker-*.log")
                    await anyio.sleep(0.05)

            async def submit() -> None:
                await runtime.engine.submit(NOOP, {}, owner="bench")

            submitted_s, elapsed = await submit_all_until_finished(runtime, submit, n, spec["submitters"])
            completed = (await runtime.engine.store.count_by_status())[_completed()]
    if completed != n:
        raise RuntimeError(f"{completed} of {n} jobs completed")
    return {"jobs": n, "workers": workers, "jobs_per_s": n / elapsed, "submit_per_s": n / submitted_s}


def _completed() -> Any:
    from conveyor.jobs.models import JobStatus

    return JobStatus.COMPLETED


async def raw_asyncpg(spec: Spec, url: str) -> dict[str, Any]:
    """The PostgreSQL limit: Conveyor's schema and statements (insert, claim, finish, each its own
    transaction), driven by ``loops`` asyncpg connections at once, nothing else in between."""
    import asyncpg

    from conveyor.jobs.postgres_store import Statement
    from conveyor.jobs.queries import load_queries

    queries = {name: Statement(sql) for name, sql in load_queries("postgres").items()}
    insert, claim, finish = queries["insert_job"], queries["claim_jobs"], queries["finish_job"]
    n, loops = spec["n"], spec["loops"]
    counter = itertools.count()

    async def loop(jobs: int) -> None:
        conn = await asyncpg.connect(url)
        try:
            for _ in range(jobs):
                job_id = f"job_{next(counter):032x}"
                await conn.fetchrow(insert.text, *insert.args(_Params(_raw_insert(job_id), origin="raw")))
                # A claim may find every queued row held by the other loops' claims (SKIP LOCKED):
                # as many jobs are queued as claims are to come, so it looks again.
                while (row := await conn.fetchrow(claim.text, *claim.args(_raw_pg_claim()))) is None:
                    pass
                await conn.fetchrow(finish.text, *finish.args(_Params(_raw_finish(row), origin="raw")))
        finally:
            await conn.close()

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for share in _shares(n, loops):
            tg.start_soon(loop, share)
    elapsed = time.perf_counter() - started
    conn = await asyncpg.connect(url)
    try:
        done = await conn.fetchval("SELECT COUNT(*) FROM jobs WHERE status = 'completed'")
    finally:
        await conn.close()
    if done != n:
        raise RuntimeError(f"raw loop completed {done} of {n} jobs")
    return {"jobs": n, "loops": loops, "jobs_per_s": n / elapsed}


WORKLOADS = {
    "direct": direct,
    "stack": uvicorn_stack,
    "postgres": postgres,
    "coldstart": coldstart,
    "roundtrip": roundtrip,
    "throughput": throughput,
    "concurrency": concurrency,
}


async def run(spec: Spec) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        try:
            return await WORKLOADS[spec["workload"]](spec, Path(tmp))
        finally:
            await drop_redis_keys(spec)


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = anyio.run(run, spec)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
