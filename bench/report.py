"""Renders bench/RESULTS.md: machine, versions, one table per section, targets, findings."""

# The report is typeset prose: en dashes for ranges, multiplication signs for ratios.
# ruff: noqa: RUF001

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
import platform
import socket
import sqlite3
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.run import Bench

HERE = Path(__file__).resolve().parent
Runs = list[dict[str, Any]]
Getter = Callable[[dict[str, Any]], float]

LABELS = {
    "conveyor": "Conveyor",
    "sdk-lowlevel": "mcp SDK low-level `Server`",
    "sdk-mcpserver": "mcp SDK `MCPServer`",
    "fastmcp": "FastMCP",
    "conveyor-mcp": "Conveyor, `jobs_submit` over in-memory MCP",
    "conveyor-engine": "Conveyor, engine API",
    "fastmcp-memory": "FastMCP background task, Docket `memory://`",
    "fastmcp-redis": "FastMCP background task, Docket Redis",
    "raw-sqlite": "raw sqlite3 loop, 3 transactions per job",
    "raw-sqlite-batched": "raw sqlite3 loop, batched (the SQLite limit)",
    "conveyor-pg-1": "Conveyor on PostgreSQL, 1 worker process",
    "conveyor-pg-2": "Conveyor on PostgreSQL, 2 worker processes",
    "conveyor-pg-4": "Conveyor on PostgreSQL, 4 worker processes",
    "raw-asyncpg": "raw asyncpg loops (the PostgreSQL limit)",
}


def values(runs: Runs, get: Getter) -> list[float]:
    out = []
    for run in runs:
        with contextlib.suppress(KeyError, TypeError):
            out.append(float(get(run)))
    return [v for v in out if not math.isnan(v)]


def median(runs: Runs, get: Getter) -> float:
    found = values(runs, get)
    return statistics.median(found) if found else math.nan


def cell(runs: Runs, get: Getter, digits: int = 0) -> str:
    found = values(runs, get)
    if not found:
        return "–"
    mid = statistics.median(found)
    if len(found) == 1:
        return _num(mid, digits)
    return f"{_num(mid, digits)} ({_num(min(found), digits)}–{_num(max(found), digits)})"


def _num(value: float, digits: int) -> str:
    return "–" if math.isnan(value) else f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    return "–" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.2f}×"


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("**holds**" if ok else "**missed**")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- machine and versions --------------------------------------------------------------------------


def machine() -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    ram = math.nan
    with contextlib.suppress(OSError, StopIteration), open("/proc/meminfo") as info:
        ram = int(next(line for line in info if line.startswith("MemTotal")).split()[1]) / 1024**2
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores",
        f"- RAM: {ram:.1f} GiB",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), SQLite {sqlite3.sqlite_version}",
    ]


def load(bench: Bench) -> str:
    """Other work on the machine skews every figure: say how busy it was."""
    start = bench.notes.get("load_start", "?")
    return f"- Load average (1 min) when the run started: {start}; when it ended: {os.getloadavg()[0]:.2f}"


def versions(bench: Bench) -> list[str]:
    import conveyor

    lines = [f"- Conveyor {conveyor.__version__} with mcp {_version('mcp')}"]
    if bench.peers_python:
        from bench import peers_env

        peers = peers_env.versions()
        shown = ", ".join(f"{name} {version}" for name, version in peers.items())
        lines.append(f"- Peers' venv (`bench/.peers-venv`, pins `{'`, `'.join(peers_env.pins())}`): {shown}")
        redis = redis_version()
        if redis:
            lines.append(f"- Redis server {redis} at 127.0.0.1:6379")
    return lines


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def redis_version() -> str | None:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 6379), timeout=2) as sock:
        sock.sendall(b"INFO server\r\n")
        data = b""
        while b"redis_version:" not in data and len(data) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        for line in data.decode(errors="replace").splitlines():
            if line.startswith("redis_version:"):
                return line.split(":", 1)[1].strip()
    return None


# -- sections ----------------------------------------------------------------------------------------


ERA_MODES = {"2026-07-28": "auto", "2025-11-25": "legacy"}  # as bench.run.ERAS


def era_title(era: str) -> str:
    return f'{era} era (`Client(..., mode="{ERA_MODES[era]}")`)'


def direct_section(bench: Bench, key: str, title: str) -> list[str]:
    """Calls/s and latency, 1 client and 16; over stdio and HTTP also the server's CPU per call
    next to its calls/s, and each peer's CPU ÷ Conveyor's."""
    results = bench.results.get(key, {})
    if not results:
        return []
    in_process = key == "direct-memory"
    clients = bench.sizes.clients
    rows = []
    mine = results.get("conveyor", [])
    for peer, runs in results.items():
        row = [LABELS[peer]]
        for mode in ("seq", "conc"):
            row.append(cell(runs, _per_s(mode)))
            if not in_process:
                row.append(cell(runs, _cpu(mode)))
            row += [cell(runs, _field(mode, "p50_ms"), 2), cell(runs, _field(mode, "p99_ms"), 2)]
        seq_ratio = ratio(median(mine, _per_s("seq")), median(runs, _per_s("seq")))
        conc_ratio = ratio(median(mine, _per_s("conc")), median(runs, _per_s("conc")))
        row.append(f"{seq_ratio} / {conc_ratio}" if peer != "conveyor" else "1 / 1")
        if not in_process:
            cpu_ratio = [
                ratio(median(runs, _cpu(mode)), median(mine, _cpu(mode))) for mode in ("seq", "conc")
            ]
            row.append(" / ".join(cpu_ratio) if peer != "conveyor" else "1 / 1")
            row.append(cell(runs, lambda r: r["server"]["peak_rss_mb"], 1))
        rows.append(row)
    cpu_header = [] if in_process else ["server CPU µs per call"]
    header = ["server", "1 client: calls/s", *cpu_header, "p50 ms", "p99 ms", f"{clients} clients: calls/s"]
    header += [*cpu_header, "p50 ms", "p99 ms", f"Conveyor ÷ this (calls/s, 1 / {clients} clients)"]
    if not in_process:
        header += [f"this CPU ÷ Conveyor CPU (1 / {clients} clients)", "server peak RSS MB"]
    return [
        f"### {title}",
        "",
        table(header, rows),
        "",
        *protocol_notes(results, key),
        *stack_note(bench, key),
    ]


def protocol_notes(results: dict[str, Runs], key: str) -> list[str]:
    """Say so where a server's clients settled on another protocol version than the era's."""
    parts = key.split("-", 2)  # direct, transport, era
    if len(parts) < 3:
        return []
    era = parts[2]
    odd = []
    for peer, runs in results.items():
        seen = sorted({str(r.get("protocol")) for r in runs} - {era})
        if seen:
            odd.append(f"{LABELS[peer]} answered in {', '.join(seen)}")
    return [f"Note: not the {era} protocol: {'; '.join(odd)}.", ""] if odd else []


def stack_note(bench: Bench, key: str) -> list[str]:
    """The uvicorn stack each HTTP server was seen to run on (the native modules it mapped)."""
    if not key.startswith("direct-http"):
        return []
    seen, every = [], set()
    for peer, runs in bench.results.get(key, {}).items():
        stacks = {f"{r['stack']['loop']} + {r['stack']['http']}" for r in runs if "stack" in r}
        every |= stacks
        seen.append(f"{LABELS[peer]} {' / '.join(sorted(stacks)) or '?'}")
    same = "." if len(every) <= 1 else " (**not the same**)."
    return [f"Event loop + HTTP implementation each server ran on: {'; '.join(seen)}{same}", ""]


def _field(mode: str, name: str) -> Getter:
    return lambda r: r[mode][name]


def _per_s(mode: str) -> Getter:
    return _field(mode, "per_s")


def _cpu(mode: str) -> Getter:
    return _field(mode, "server_cpu_us")


def direct_targets(bench: Bench) -> list[tuple[str, str, bool | None]]:
    """The calls/s targets (2026-07-28 era over HTTP), then server CPU per call: Conveyor's ÷ a
    peer's, at most ``goal``, with 1 client and with 16."""
    clients = f"{bench.sizes.clients} clients"
    targets: list[tuple[str, str, bool | None]] = []
    http_2026 = bench.results.get("direct-http-2026-07-28", {})
    mine = http_2026.get("conveyor", [])
    for peer, goal, label in (("fastmcp", 1.5, "FastMCP"), ("sdk-lowlevel", 0.9, "the low-level SDK server")):
        if not http_2026:
            break
        runs = http_2026.get(peer, [])
        parts, oks = [], []
        for mode, name in (("seq", "1 client"), ("conc", clients)):
            a, b = median(mine, _per_s(mode)), median(runs, _per_s(mode))
            oks.append(None if math.isnan(a) or math.isnan(b) else a / b >= goal)
            parts.append(f"{name}: {ratio(a, b)}")
        held = None if None in oks else all(bool(ok) for ok in oks)
        targets.append(
            (f"direct HTTP calls ≥ {goal}× {label} (2026-07-28 era, calls/s)", "; ".join(parts), held)
        )
    cpu_goals = (
        ("http", "2026-07-28", "sdk-lowlevel", 1.3),
        ("http", "2026-07-28", "fastmcp", 0.6),
        ("http", "2025-11-25", "sdk-lowlevel", 1.2),
        ("stdio", "2026-07-28", "sdk-lowlevel", 1.15),
        ("stdio", "2025-11-25", "sdk-lowlevel", 1.15),
    )
    for transport, era, peer, goal in cpu_goals:
        results = bench.results.get(f"direct-{transport}-{era}", {})
        if not results:
            continue
        mine, runs = results.get("conveyor", []), results.get(peer, [])
        parts, oks = [], []
        for mode, name in (("seq", "1 client"), ("conc", clients)):
            a, b = median(mine, _cpu(mode)), median(runs, _cpu(mode))
            oks.append(None if math.isnan(a) or math.isnan(b) else a / b <= goal)
            parts.append(f"{name}: {_num(a, 0)} ÷ {_num(b, 0)} µs = {ratio(a, b)}")
        held = None if None in oks else all(bool(ok) for ok in oks)
        where = "HTTP" if transport == "http" else "stdio"
        name = f"{era}, {where}: Conveyor's server CPU per call ≤ {goal}× {LABELS[peer]}'s"
        targets.append((name, "; ".join(parts), held))
    return targets


def roundtrip_section(bench: Bench) -> tuple[list[str], list[tuple[str, str, bool | None]]]:
    results = bench.results.get("roundtrip", {})
    if not results:
        return [], []
    mine = results.get("conveyor-mcp", [])
    rows = []
    for peer, runs in results.items():
        p50 = median(runs, lambda r: r["roundtrip"]["p50_ms"])
        rows.append(
            [
                LABELS[peer] + (" with `wait_seconds`" if peer == "conveyor-mcp" else ""),
                cell(runs, lambda r: r["roundtrip"]["calls"]),
                cell(runs, lambda r: r["roundtrip"]["p50_ms"], 2),
                cell(runs, lambda r: r["roundtrip"]["p99_ms"], 2),
                ratio(p50, median(mine, lambda r: r["roundtrip"]["p50_ms"])),
            ]
        )
    header = ["job round trip (in-process)", "jobs per run", "p50 ms", "p99 ms", "this p50 ÷ Conveyor p50"]
    p50 = median(mine, lambda r: r["roundtrip"]["p50_ms"])
    ok = None if math.isnan(p50) else p50 <= 2.0
    target = ("job round trip p50 ≤ 2 ms in-process (`jobs_submit` + `wait_seconds`)", f"{p50:.2f} ms", ok)
    return ["### 2. Job round trip", "", table(header, rows), ""], [target]


def throughput_section(bench: Bench) -> tuple[list[str], list[tuple[str, str, bool | None]]]:
    results = bench.results.get("throughput", {})
    if not results:
        return [], []
    jobs_s: Getter = lambda r: r["jobs_per_s"]  # noqa: E731
    mine = median(results.get("conveyor-engine", []), jobs_s)
    rows = []
    for peer, runs in results.items():
        n = int(values(runs, lambda r: r["jobs"])[0]) if runs else 0
        peak = cell(runs, lambda r: r["peak_rss_mb"], 1)
        rows.append([LABELS[peer], f"{n:,}", cell(runs, jobs_s), ratio(mine, median(runs, jobs_s)), peak])
    header = ["", "jobs", "jobs/s (submitted and completed)", "Conveyor engine ÷ this", "peak RSS MB"]
    raw_each = median(results.get("raw-sqlite", []), jobs_s)
    raw_limit = median(results.get("raw-sqlite-batched", []), jobs_s)
    targets: list[tuple[str, str, bool | None]] = [
        (
            "≥ 3,000 jobs/s on SQLite (engine API)",
            f"{mine:,.0f} jobs/s",
            None if math.isnan(mine) else mine >= 3000,
        ),
        (
            "≥ 40% of the raw SQLite limit (batched loop)",
            f"{_pct(mine, raw_limit)} of {raw_limit:,.0f} jobs/s",
            None if math.isnan(mine) or math.isnan(raw_limit) else mine >= 0.4 * raw_limit,
        ),
        (
            "(for reference) ≥ 40% of the raw loop at 3 transactions per job",
            f"{_pct(mine, raw_each)} of {raw_each:,.0f} jobs/s",
            None if math.isnan(mine) or math.isnan(raw_each) else mine >= 0.4 * raw_each,
        ),
    ]
    return ["### 3. Job throughput", "", table(header, rows), ""], targets


def postgres_section(bench: Bench) -> tuple[list[str], list[tuple[str, str, bool | None]]]:
    results = bench.results.get("postgres", {})
    if not results:
        note = bench.notes.get("postgres")
        return (["### 3b. Job throughput on PostgreSQL", "", f"Note: {note}.", ""] if note else []), []
    jobs_s: Getter = lambda r: r["jobs_per_s"]  # noqa: E731
    raw = median(results.get("raw-asyncpg", []), jobs_s)
    rows = []
    for peer, runs in results.items():
        n = int(values(runs, lambda r: r["jobs"])[0]) if runs else 0
        rows.append([LABELS[peer], f"{n:,}", cell(runs, jobs_s), _pct(median(runs, jobs_s), raw)])
    header = ["", "jobs", "jobs/s (submitted and completed)", "this ÷ the raw loops"]
    best = max(
        (median(results.get(p, []), jobs_s) for p in ("conveyor-pg-1", "conveyor-pg-2", "conveyor-pg-4")),
        default=math.nan,
    )
    target = (
        "(for reference) PostgreSQL: the best worker count's share of the raw asyncpg limit",
        f"{_pct(best, raw)} of {raw:,.0f} jobs/s",
        None,
    )
    return ["### 3b. Job throughput on PostgreSQL", "", table(header, rows), ""], [target]


def _pct(a: float, b: float) -> str:
    return "–" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.0%}"


def concurrency_section(bench: Bench) -> tuple[list[str], list[tuple[str, str, bool | None]]]:
    runs = bench.results.get("concurrency", {}).get("conveyor-engine", [])
    if not runs:
        return [], []
    s = bench.sizes
    header = ["", "completion s", "of which submitting s", "peak RSS MB", "start delay p50 ms"]
    header += ["start delay p99 ms", "completed"]
    row = [
        f"Conveyor, {s.sleepers:,} jobs sleeping {s.sleep_s:g} s, concurrency {s.sleepers:,}",
        cell(runs, lambda r: r["completion_s"], 2),
        cell(runs, lambda r: r["submit_s"], 2),
        cell(runs, lambda r: r["peak_rss_mb"], 1),
        cell(runs, lambda r: r["start_delay_p50_ms"]),
        cell(runs, lambda r: r["start_delay_p99_ms"]),
        cell(runs, lambda r: r["completed"]),
    ]
    peak = max(values(runs, lambda r: r["peak_rss_mb"]), default=math.nan)
    target = (
        f"{s.sleepers:,} concurrent sleeping jobs within 300 MB RSS",
        f"peak {peak:.0f} MB (worst round)",
        None if math.isnan(peak) else peak <= 300,
    )
    return ["### 4. Concurrency", "", table(header, [row]), ""], [target]


def footprint_section(bench: Bench) -> tuple[list[str], list[tuple[str, str, bool | None]]]:
    results = bench.results.get("footprint", {})
    if not results:
        return [], []
    start: Getter = lambda r: r["cold_start_ms"]  # noqa: E731
    mine = median(results.get("conveyor", []), start)
    rows = []
    for peer, runs in results.items():
        rows.append(
            [
                LABELS[peer],
                cell(runs, start),
                ratio(mine, median(runs, start)),
                cell(runs, lambda r: r["idle_rss_mb"], 1),
                cell(runs, lambda r: r["peak_rss_mb"], 1),
            ]
        )
    header = ["server (stdio)", "cold start to first tools/list, ms", "Conveyor ÷ this", "idle RSS MB"]
    header.append(f"peak RSS MB after {bench.sizes.load_calls:,} calls")
    bare = median(results.get("sdk-lowlevel", []), start)
    ok = None if math.isnan(mine) or math.isnan(bare) else mine <= 1.2 * bare
    target = ("cold start ≤ 1.2× the bare SDK (`import mcp.server` low-level server)", ratio(mine, bare), ok)
    return ["### 5. Footprint", "", table(header, rows), ""], [target]


# -- the document ------------------------------------------------------------------------------------


def render(bench: Bench, sections: tuple[str, ...], elapsed_s: float, *, quick: bool) -> str:
    s = bench.sizes
    out = [
        "# Conveyor benchmarks",
        "",
        f"Written by `python -m bench{' --quick' if quick else ''}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f" in {elapsed_s / 60:.1f} min; sections: {', '.join(sections)}. "
        f"Each figure is the median of {s.rounds} rounds (min–max in brackets) unless a table says otherwise; "
        "rounds alternate the peers' order, and every run is a fresh process.",
        "",
        "## Machine",
        "",
        *machine(),
        load(bench),
        *versions(bench),
        "",
        "## How it is measured",
        "",
        *method(bench),
        "",
    ]
    targets: list[tuple[str, str, bool | None]] = []
    body = ["## Results", ""]
    body += direct_section(bench, "direct-memory", "1a. Direct tool calls, in memory, 2026-07-28 era")
    body += direct_section(
        bench, "direct-stdio-2026-07-28", f"1b. Direct tool calls, stdio, {era_title('2026-07-28')}"
    )
    body += direct_section(
        bench, "direct-stdio-2025-11-25", f"1c. Direct tool calls, stdio, {era_title('2025-11-25')}"
    )
    if "http" in bench.notes:
        body += ["### 1d. Direct tool calls, streamable HTTP", "", bench.notes["http"], ""]
    for letter, era in (("d", "2026-07-28"), ("e", "2025-11-25")):
        title = f"1{letter}. Direct tool calls, streamable HTTP, {era_title(era)}"
        body += direct_section(bench, f"direct-http-{era}", title)
    targets += direct_targets(bench)
    for build in (
        roundtrip_section,
        throughput_section,
        postgres_section,
        concurrency_section,
        footprint_section,
    ):
        lines, found = build(bench)
        body += lines
        targets += found
    if "redis" in bench.notes:
        body += [f"Note: {bench.notes['redis']}.", ""]
    out += [
        "## Targets",
        "",
        table(["target", "measured", ""], [[t, m, verdict(ok)] for t, m, ok in targets]),
        "",
    ]
    out += body
    if bench.failures:
        out += ["## Failed runs", "", *[f"- `{f.splitlines()[0]}`" for f in bench.failures], ""]
    findings = HERE / "FINDINGS.md"
    if findings.exists():
        out += [findings.read_text().rstrip(), ""]
    return "\n".join(out)


def method(bench: Bench) -> list[str]:
    s = bench.sizes
    return [
        "- Every server serves the same no-op tool, `bench_noop` (no arguments, returns the text `ok`), "
        "and is driven by the same client: the mcp SDK's `Client` (mcp 2.3.0 in both environments), "
        "timed by the same code (`bench/measure.py`, loaded by path in both).",
        f"- Direct calls: {s.direct_seq:,} calls one after another on one client, then {s.direct_conc:,} calls "
        f"from {s.clients} clients at once ({s.http_seq:,} and {s.http_conc:,} over HTTP), after "
        f"{s.warmup} warm-up calls. In memory: one `Client` per client on the server object (the SDK's direct "
        f"in-process path). stdio: the server is a subprocess; a stdio server has one client, so the "
        f"{s.clients} callers share that connection. HTTP: uvicorn on 127.0.0.1, {s.clients} separate "
        "clients; Conveyor with an admin API key (Bearer) and its rate limit lifted. Client and server share the "
        "machine's cores, so over stdio and HTTP the client's own cost is part of every calls/s figure.",
        "- Protocol eras: over stdio and HTTP every server is measured in both, in the same round: "
        '2026-07-28 (`Client(..., mode="auto")`, the SDK\'s default: discovery, no handshake) and 2025-11-25 '
        '(`mode="legacy"`: the initialize handshake and a session). Each table says so if a server\'s clients '
        "settled on another version. In memory: the 2026-07-28 era.",
        "- Server CPU per call (stdio and HTTP): the server process's own utime + stime from "
        "`/proc/<pid>/stat` (its children's added, if any), read right before and right after the timed calls "
        "and divided by them (warm-up calls excluded). Unlike calls/s, the shared client does not blur it. "
        "/proc counts in 10 ms ticks: at these sizes that is within 1–2%.",
        "- How the peers are served over HTTP: each as its own documentation shows, with its documented "
        "defaults (`stateless_http=False`, `json_response=False`, endpoint `/mcp`): the SDK's low-level `Server` and its "
        "`MCPServer` through `streamable_http_app()`, FastMCP through `http_app()`. Every server runs under "
        "the same uvicorn settings as `conveyor serve --http` (`Server.serve` under `anyio.run`, "
        '`log_config=None`, `access_log=False`, `lifespan="on"`, `timeout_graceful_shutdown=5`, a pre-bound '
        "IPPROTO_TCP socket with a backlog of 2,048) and on the event loop and HTTP implementation Conveyor's "
        "server is seen to run on (from the native modules its process maps), "
        f"here {bench.notes.get('stack', 'not probed (no peers)')}; each HTTP table says what every server ran on.",
        "- Job round trip: one job after another, submitted and awaited: Conveyor's `jobs_submit` with "
        "`wait_seconds` through an in-memory client (and, for reference, the engine API directly); FastMCP: a "
        "`task=True` no-op called through the same `Client` with FastMCP's tasks client extension, which polls "
        "`tasks/get` until the task completes.",
        f"- Job throughput: {s.throughput_n:,} no-op jobs from {s.submitters} concurrent submitters, timed until "
        f"every one completed. Conveyor runs with concurrency {s.concurrency} and `sqlite_synchronous=FULL` "
        f"(its default); FastMCP with Docket concurrency {s.concurrency}, {s.throughput_fastmcp_n:,} tasks "
        "(counted when the tool ran, then the last task of each submitter read back as completed). "
        "The raw loop uses Conveyor's own schema and statements (insert, claim, finish) on a plain sqlite3 "
        f"connection in WAL mode with the same `synchronous`, either one transaction per statement or "
        f"{s.raw_batch} jobs per transaction.",
        f"- Job throughput on PostgreSQL: {s.postgres_n:,} no-op jobs submitted through the engine API by "
        f"{s.submitters} concurrent submitters in a process that runs no jobs, and run by 1, 2 or 4 "
        f"`conveyor worker` processes (concurrency {s.postgres_concurrency} each), all on one PostgreSQL "
        "database; timed until the submitting process heard (LISTEN/NOTIFY) that every job completed. "
        f"The raw loops: {s.raw_loops} asyncpg connections at once, each running Conveyor's own statements "
        "(insert, claim, finish; one transaction each) on the same schema, job after job.",
        f"- Concurrency: {s.sleepers:,} jobs of a tool that sleeps {s.sleep_s:g} s, submitted through the engine "
        f"with concurrency {s.sleepers:,}; completion from the first submit to the last finish; RSS of the whole "
        "process and of its SQLite database process (VmHWM, summed); start delay = started_at − created_at of each job row.",
        "- Footprint: the stdio server is spawned and timed until its `tools/list` answers (initialize "
        f"included); idle RSS 1 s later; peak RSS (VmHWM) after {s.load_calls:,} calls from 16 callers. "
        "Every RSS and CPU figure of a server or an engine counts its child processes too (Conveyor's "
        "SQLite database process).",
    ]
