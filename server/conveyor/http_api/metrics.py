"""``GET /metrics``: Prometheus text exposition, written by hand (no client library needed)."""

from __future__ import annotations

import bisect
from collections import defaultdict

from conveyor.events import JobEvents
from conveyor.jobs.models import Job, JobStatus
from conveyor.jobs.store import JobStore

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds

    def render(self, name: str, labels: str) -> list[str]:
        lines, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {running}')
        lines.append(f"{name}_sum{{{labels}}} {self.total}")
        lines.append(f"{name}_count{{{labels}}} {running}")
        return lines


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.request_seconds: dict[str, Histogram] = {}
        self.runs: dict[tuple[str, str], Histogram] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # Labels come from a bounded set: a client inventing HTTP methods must not grow the series.
        method = method if method in KNOWN_METHODS else "OTHER"
        self.requests[(method, route, status)] += 1
        self.request_seconds.setdefault(route, Histogram(REQUEST_BUCKETS)).observe(seconds)

    def observe_job(self, job: Job) -> None:
        if job.status.terminal and job.execution_time_ms is not None:
            key = (job.tool, str(job.status))
            self.runs.setdefault(key, Histogram(RUN_BUCKETS)).observe(job.execution_time_ms / 1000)

    async def collect_jobs(self, events: JobEvents) -> None:
        """Runs for the app's lifetime in its task group, watching the ends of the runs this process did."""
        with events.subscribe(local_only=True) as changes:
            while True:
                self.observe_job(await changes.next())

    async def render(self, store: JobStore) -> str:
        counts = await store.count_by_status()
        lines = [
            "# HELP conveyor_jobs Jobs in the store by status.",
            "# TYPE conveyor_jobs gauge",
            *(f'conveyor_jobs{{status="{status}"}} {counts.get(status, 0)}' for status in JobStatus),
            "# HELP conveyor_queue_depth Jobs waiting to run.",
            "# TYPE conveyor_queue_depth gauge",
            f"conveyor_queue_depth {counts.get(JobStatus.QUEUED, 0)}",
            "# HELP conveyor_job_run_seconds How long finished job runs took, by tool and final status.",
            "# TYPE conveyor_job_run_seconds histogram",
        ]
        for (tool, outcome), histogram in sorted(self.runs.items()):
            lines += histogram.render(
                "conveyor_job_run_seconds", f'tool="{_escape(tool)}",status="{outcome}"'
            )
        lines += [
            "# HELP conveyor_http_requests_total HTTP requests by method, route and status.",
            "# TYPE conveyor_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            lines.append(
                f'conveyor_http_requests_total{{method="{method}",route="{_escape(route)}",status="{status}"}} {n}'
            )
        lines += [
            "# HELP conveyor_http_request_seconds HTTP request durations by route.",
            "# TYPE conveyor_http_request_seconds histogram",
        ]
        for route, histogram in sorted(self.request_seconds.items()):
            lines += histogram.render("conveyor_http_request_seconds", f'route="{_escape(route)}"')
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
