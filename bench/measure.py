"""Measurement code shared by every peer: the same loops, clocks and statistics for all.

Stdlib and anyio only, so both virtual environments (the project's and the peers') load this
very file, by path, and time Conveyor and its peers the same way.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

Call = Callable[[], Awaitable[Any]]
CpuClock = Callable[[], float]  # CPU seconds a server has used so far (read from /proc)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; ``values`` need not be sorted."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(
    latencies_s: Sequence[float], elapsed_s: float, cpu_s: float | None = None
) -> dict[str, float]:
    """Calls per second and p50/p99 latency in milliseconds; with ``cpu_s`` (the CPU a server
    used during the timed calls), also its CPU microseconds per call."""
    summary = {
        "calls": len(latencies_s),
        "per_s": len(latencies_s) / elapsed_s if elapsed_s > 0 else math.nan,
        "p50_ms": percentile(latencies_s, 50) * 1000,
        "p99_ms": percentile(latencies_s, 99) * 1000,
    }
    if cpu_s is not None:
        summary["server_cpu_us"] = cpu_s / len(latencies_s) * 1e6 if latencies_s else math.nan
    return summary


async def timed_calls(call: Call, count: int) -> list[float]:
    """Run ``call`` ``count`` times in a row; the latency of each, in seconds."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - started)
    return latencies


async def sequential(call: Call, count: int, warmup: int, cpu: CpuClock | None = None) -> dict[str, float]:
    """``count`` calls one after another, after ``warmup`` untimed ones; with ``cpu``, the
    server's CPU is read right before and right after the timed calls (warm-up excluded)."""
    await timed_calls(call, warmup)
    cpu_before = cpu() if cpu else 0.0
    started = time.perf_counter()
    latencies = await timed_calls(call, count)
    elapsed = time.perf_counter() - started
    return latency_summary(latencies, elapsed, cpu() - cpu_before if cpu else None)


async def concurrent(
    calls: Sequence[Call], count: int, warmup: int, cpu: CpuClock | None = None
) -> dict[str, float]:
    """``len(calls)`` callers at once (one per client), ``count`` calls in all, split evenly;
    ``cpu`` as for ``sequential``."""
    per_caller = max(1, count // len(calls))
    async with anyio.create_task_group() as tg:
        for call in calls:
            tg.start_soon(timed_calls, call, max(1, warmup // len(calls)))
    results: list[list[float]] = []

    async def caller(call: Call) -> None:
        results.append(await timed_calls(call, per_caller))

    cpu_before = cpu() if cpu else 0.0
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for call in calls:
            tg.start_soon(caller, call)
    elapsed = time.perf_counter() - started
    cpu_s = cpu() - cpu_before if cpu else None
    return latency_summary([lat for chunk in results for lat in chunk], elapsed, cpu_s)


def rss_mb(pid: int | None = None) -> dict[str, float]:
    """Resident set size now and at its peak (VmHWM), in MB, of ``pid`` (default: this process)."""
    path = f"/proc/{pid or os.getpid()}/status"
    values = {}
    with open(path) as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return {"rss_mb": values.get("VmRSS", math.nan), "peak_rss_mb": values.get("VmHWM", math.nan)}


def tree_rss_mb(pid: int) -> dict[str, float]:
    """RSS of a process and its children (a server may fork workers), current and peak summed."""
    total = {"rss_mb": 0.0, "peak_rss_mb": 0.0}
    for member in [pid, *_children(pid)]:
        try:
            sample = rss_mb(member)
        except OSError:
            continue
        total["rss_mb"] += sample["rss_mb"]
        total["peak_rss_mb"] += sample["peak_rss_mb"]
    return total


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live children."""
    total = 0.0
    for member in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{member}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            direct = [int(child) for child in children.read().split()]
    except OSError:
        return found
    for child in direct:
        found += [child, *_children(child)]
    return found


def median_min_max(values: Sequence[float]) -> tuple[float, float, float]:
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return (math.nan, math.nan, math.nan)
    return (statistics.median(clean), min(clean), max(clean))
