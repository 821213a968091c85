"""``python -m bench``: every measurement, peers alternating round by round, into bench/RESULTS.md.

Each measurement runs in a fresh process (``driver.py``): Conveyor and every client of a
subprocess server under this interpreter (the project's), peers served in-process under the
peers' virtual environment. Rounds alternate the peers' order; tables show the median of the
rounds and their range.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench import peers_env, report

HERE = Path(__file__).resolve().parent
T = TypeVar("T")
SECTIONS = ("direct", "http", "roundtrip", "throughput", "postgres", "concurrency", "footprint")
DIRECT_PEERS = ("conveyor", "sdk-lowlevel", "sdk-mcpserver", "fastmcp")
ROUNDTRIP_PEERS = ("conveyor-mcp", "conveyor-engine", "fastmcp-memory", "fastmcp-redis")
THROUGHPUT_PEERS = (
    "conveyor-engine",
    "conveyor-mcp",
    "raw-sqlite",
    "raw-sqlite-batched",
    "fastmcp-memory",
    "fastmcp-redis",
)
FOOTPRINT_PEERS = ("conveyor", "sdk-lowlevel", "sdk-mcpserver", "fastmcp")
POSTGRES_PEERS = ("conveyor-pg-1", "conveyor-pg-2", "conveyor-pg-4", "raw-asyncpg")
# The protocol eras direct calls over stdio and HTTP are measured in, and the ``Client`` mode
# that speaks each: "auto" discovers the 2026-07-28 protocol (and falls back to the handshake),
# "legacy" is the 2025-11-25 initialize handshake. In memory: the 2026-07-28 era only.
ERAS = {"2026-07-28": "auto", "2025-11-25": "legacy"}
REDIS = ("127.0.0.1", 6379)
POSTGRES_URL = os.environ.get("CONVEYOR_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class Sizes:
    rounds: int
    warmup: int
    direct_seq: int
    direct_conc: int
    http_seq: int
    http_conc: int
    clients: int
    roundtrip_n: int
    roundtrip_fastmcp_n: int
    throughput_n: int
    throughput_mcp_n: int
    throughput_fastmcp_n: int
    submitters: int
    concurrency: int  # workers (Conveyor) and Docket concurrency (FastMCP) for the throughput runs
    raw_batch: int
    postgres_n: int
    postgres_concurrency: int  # each worker process's
    raw_loops: int  # asyncpg connections the raw PostgreSQL loop drives at once
    sleepers: int
    sleep_s: float
    concurrency_rounds: int
    footprint_rounds: int
    load_calls: int


FULL = Sizes(
    # Five rounds, and as many HTTP calls as the others: the machines these run on drift by 10
    # to 20% within a run, and /proc counts CPU in 10 ms ticks (see FINDINGS.md).
    rounds=5,
    warmup=100,
    direct_seq=1000,
    direct_conc=2000,
    http_seq=1000,
    http_conc=2000,
    clients=16,
    roundtrip_n=300,
    roundtrip_fastmcp_n=60,
    throughput_n=20_000,
    throughput_mcp_n=5_000,
    throughput_fastmcp_n=2_000,
    submitters=16,
    concurrency=32,
    raw_batch=100,
    postgres_n=10_000,
    postgres_concurrency=32,
    raw_loops=16,
    sleepers=10_000,
    sleep_s=1.0,
    concurrency_rounds=2,
    footprint_rounds=5,
    load_calls=1000,
)
QUICK = Sizes(
    rounds=1,
    warmup=5,
    direct_seq=40,
    direct_conc=64,
    http_seq=20,
    http_conc=32,
    clients=16,
    roundtrip_n=20,
    roundtrip_fastmcp_n=5,
    throughput_n=300,
    throughput_mcp_n=100,
    throughput_fastmcp_n=50,
    submitters=16,
    concurrency=32,
    raw_batch=50,
    postgres_n=300,
    postgres_concurrency=32,
    raw_loops=16,
    sleepers=200,
    sleep_s=0.2,
    concurrency_rounds=1,
    footprint_rounds=1,
    load_calls=32,
)


@dataclass
class Bench:
    sizes: Sizes
    conveyor_only: bool
    logs: Path
    peers_python: str = ""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    results: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    def measure(self, section: str, peer: str, spec: dict[str, Any], *, peers_venv: bool = False) -> None:
        """One run of one peer; its result is appended to the section's list for that peer."""
        python = self.peers_python if peers_venv else sys.executable
        full = {
            **spec,
            "peer": spec.get("peer", peer),
            "project_python": sys.executable,
            "peers_python": self.peers_python,
            "run_id": f"{self.run_id}-{len(self.failures)}-{time.monotonic_ns()}",
        }
        log = self.logs / f"{section}-{peer}.log"
        started = time.perf_counter()
        try:
            with open(log, "a") as errors:
                done = subprocess.run(
                    [python, str(HERE / "driver.py"), json.dumps(full)],
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    text=True,
                    timeout=900,
                    check=True,
                )
            result = json.loads(done.stdout.strip().splitlines()[-1])
        except (subprocess.SubprocessError, ValueError, IndexError) as exc:
            tail = log.read_text()[-1500:] if log.exists() else ""
            self.failures.append(f"{section}/{peer}: {exc}\n{tail}")
            print(f"bench: {section}/{peer} FAILED ({exc}); log: {log}", file=sys.stderr, flush=True)
            return
        self.results.setdefault(section, {}).setdefault(peer, []).append(result)
        print(
            f"bench: {section:<11} {peer:<28} {time.perf_counter() - started:5.1f}s",
            file=sys.stderr,
            flush=True,
        )


def alternating(peers: tuple[str, ...], rounds: int) -> list[tuple[int, str]]:
    """Round r runs the peers starting at index r: no peer always goes first (or last)."""
    return [(r, peer) for r in range(rounds) for peer in rotated(peers, r)]


def rotated(items: tuple[T, ...], r: int) -> tuple[T, ...]:
    shift = r % len(items)
    return items[shift:] + items[:shift]


def in_peers_venv(peer: str) -> bool:
    return not peer.startswith(("conveyor", "raw-"))


def direct_key(transport: str, era: str | None = None) -> str:
    """The results' section of direct calls over ``transport`` in ``era``."""
    return f"direct-{transport}" + (f"-{era}" if era else "")


def run_direct(bench: Bench, transport: str) -> None:
    s = bench.sizes
    seq, conc = (s.http_seq, s.http_conc) if transport == "http" else (s.direct_seq, s.direct_conc)
    peers = ("conveyor",) if bench.conveyor_only else DIRECT_PEERS
    eras: tuple[str | None, ...] = (None,) if transport == "memory" else tuple(ERAS)
    spec: dict[str, Any] = {"workload": "direct", "transport": transport, "seq": seq, "conc": conc}
    spec |= {"clients": s.clients, "warmup": s.warmup}
    if transport == "http" and not bench.conveyor_only:
        spec["stack"] = conveyor_stack(bench)
    # Each round runs both eras, in alternating order, and in each the peers in rotated order.
    for r in range(s.rounds):
        for era in rotated(eras, r):
            for peer in rotated(peers, r):
                mode = {"mode": ERAS[era]} if era else {}
                # In memory the peer is served inside the driver, so the driver runs in the peer's venv.
                in_venv = transport == "memory" and peer != "conveyor"
                bench.measure(direct_key(transport, era), peer, spec | mode, peers_venv=in_venv)


def conveyor_stack(bench: Bench) -> dict[str, str]:
    """The event loop and HTTP implementation Conveyor's HTTP server runs on (as a running one
    shows): every peer is served on the same."""
    bench.measure("stack", "conveyor", {"workload": "stack"})
    runs = bench.results.pop("stack", {}).get("conveyor", [])
    found = runs[0] if runs else {"loop": "asyncio", "http": "auto"}
    bench.notes["stack"] = f"{found['loop']} + {found['http']}"
    return found


def run_roundtrip(bench: Bench) -> None:
    s = bench.sizes
    for _, peer in alternating(bench_peers(bench, ROUNDTRIP_PEERS), s.rounds):
        n = s.roundtrip_fastmcp_n if peer.startswith("fastmcp") else s.roundtrip_n
        spec = {"workload": "roundtrip", "n": n, "warmup": max(2, n // 10)}
        bench.measure("roundtrip", peer, spec, peers_venv=in_peers_venv(peer))


def run_throughput(bench: Bench) -> None:
    s = bench.sizes
    for _, peer in alternating(bench_peers(bench, THROUGHPUT_PEERS), s.rounds):
        n = {"conveyor-mcp": s.throughput_mcp_n}.get(peer, s.throughput_n)
        if peer.startswith("fastmcp"):
            n = s.throughput_fastmcp_n
        spec: dict[str, Any] = {"workload": "throughput", "n": n, "submitters": s.submitters}
        spec |= {"concurrency": s.concurrency, "synchronous": "FULL"}
        if peer == "raw-sqlite-batched":
            spec |= {"peer": "raw-sqlite", "batch": s.raw_batch}
        bench.measure("throughput", peer, spec, peers_venv=in_peers_venv(peer))


def run_postgres(bench: Bench) -> None:
    s = bench.sizes
    if not postgres_reachable():
        bench.notes["postgres"] = (
            f"no PostgreSQL answered at {POSTGRES_URL}; the PostgreSQL section was skipped"
        )
        return
    for _, peer in alternating(POSTGRES_PEERS, s.rounds):
        spec: dict[str, Any] = {"workload": "postgres", "n": s.postgres_n, "postgres_url": POSTGRES_URL}
        if peer == "raw-asyncpg":
            spec["loops"] = s.raw_loops
        else:
            spec |= {"workers": int(peer.rsplit("-", 1)[1]), "concurrency": s.postgres_concurrency}
            spec["submitters"] = s.submitters
        bench.measure("postgres", peer, spec)


def postgres_reachable() -> bool:
    import asyncio

    import asyncpg

    async def ping() -> bool:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
        await conn.close()
        return True

    try:
        return asyncio.run(ping())
    except (OSError, asyncpg.PostgresError):
        return False


def run_concurrency(bench: Bench) -> None:
    s = bench.sizes
    for _ in range(s.concurrency_rounds):
        spec = {"workload": "concurrency", "n": s.sleepers, "sleep_s": s.sleep_s, "submitters": s.submitters}
        bench.measure("concurrency", "conveyor-engine", spec)


def run_footprint(bench: Bench) -> None:
    s = bench.sizes
    peers = ("conveyor",) if bench.conveyor_only else FOOTPRINT_PEERS
    for _, peer in alternating(peers, s.footprint_rounds):
        bench.measure("footprint", peer, {"workload": "coldstart", "load_calls": s.load_calls})


def bench_peers(bench: Bench, peers: tuple[str, ...]) -> tuple[str, ...]:
    chosen = tuple(p for p in peers if not (bench.conveyor_only and in_peers_venv(p)))
    if "fastmcp-redis" in chosen and not redis_reachable():
        bench.notes["redis"] = f"no Redis answered at {REDIS[0]}:{REDIS[1]}; the Redis rows were skipped"
        chosen = tuple(p for p in chosen if p != "fastmcp-redis")
    return chosen


def redis_reachable() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(REDIS, timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")
    return False


def http_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("conveyor.http_api") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (a smoke run)")
    parser.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--conveyor-only", action="store_true", help="no peers (no peers' venv needed)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="where to write the report")
    args = parser.parse_args(argv)
    sections = tuple(args.only.split(",")) if args.only else SECTIONS
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-logs-") as logs:
        bench = Bench(QUICK if args.quick else FULL, args.conveyor_only, Path(logs))
        bench.notes["load_start"] = f"{os.getloadavg()[0]:.2f}"
        if not args.conveyor_only:
            bench.peers_python = str(peers_env.ensure())
        run_sections(bench, sections)
        elapsed = time.perf_counter() - started
        text = report.render(bench, sections, elapsed, quick=args.quick)
    args.out.write_text(text)
    print(f"bench: wrote {args.out} in {elapsed:.0f}s", file=sys.stderr)
    for failure in bench.failures:
        print(f"bench: failed: {failure}", file=sys.stderr)
    return 1 if bench.failures else 0


def run_sections(bench: Bench, sections: tuple[str, ...]) -> None:
    for section in sections:
        if section == "direct":
            run_direct(bench, "memory")
            run_direct(bench, "stdio")
        elif section == "http":
            if http_available():
                run_direct(bench, "http")
            else:
                bench.notes["http"] = "not available yet: conveyor.http_api is not importable"
        elif section == "roundtrip":
            run_roundtrip(bench)
        elif section == "throughput":
            run_throughput(bench)
        elif section == "postgres":
            run_postgres(bench)
        elif section == "concurrency":
            run_concurrency(bench)
        elif section == "footprint":
            run_footprint(bench)


if __name__ == "__main__":
    sys.exit(main())
