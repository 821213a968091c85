"""``GET /metrics``: Prometheus exposition through ``prometheus-client``.

Each app has its own ``CollectorRegistry`` (not the library's global one), so several apps in one
process, as in the tests, never share or collide on a series. Job gauges are read from the store at
scrape time, so they count every process's jobs; run durations are those of the runs this process did.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from conveyor.events import JobEvents
from conveyor.jobs.models import Job, JobStatus
from conveyor.jobs.store import JobStore

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class JobCounts:
    """A custom collector: the store's jobs by status as of the scrape (set just before it)."""

    def __init__(self) -> None:
        self.counts: dict[JobStatus, int] = {}

    def describe(self) -> list[Metric]:  # so registering does not call collect()
        return list(self._families({}))

    def collect(self) -> Iterator[Metric]:
        return self._families(self.counts)

    def _families(self, counts: dict[JobStatus, int]) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("conveyor_jobs", "Jobs in the store by status.", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([str(status)], counts.get(status, 0))
        yield jobs
        yield GaugeMetricFamily(
            "conveyor_queue_depth", "Jobs waiting to run.", value=counts.get(JobStatus.QUEUED, 0)
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._jobs = JobCounts()
        self.registry.register(self._jobs)
        self._runs = Histogram(
            "conveyor_job_run_seconds",
            "How long finished job runs took, by tool and final status.",
            ["tool", "status"],
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self._requests = Counter(
            "conveyor_http_requests",
            "HTTP requests by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._request_seconds = Histogram(
            "conveyor_http_request_seconds",
            "HTTP request durations by route.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        # Label children by key: the request path skips labels()' checks and string conversions.
        self._request_counters: dict[tuple[str, str, int], Counter] = {}
        self._request_timers: dict[str, Histogram] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # Labels come from a bounded set: a client inventing HTTP methods must not grow the series.
        method = method if method in KNOWN_METHODS else "OTHER"
        key = (method, route, status)
        counter = self._request_counters.get(key)
        if counter is None:
            counter = self._request_counters[key] = self._requests.labels(method, route, str(status))
        counter.inc()
        timer = self._request_timers.get(route)
        if timer is None:
            timer = self._request_timers[route] = self._request_seconds.labels(route)
        timer.observe(seconds)

    def observe_job(self, job: Job) -> None:
        if job.status.terminal and job.execution_time_ms is not None:
            self._runs.labels(job.tool, str(job.status)).observe(job.execution_time_ms / 1000)

    async def collect_jobs(self, events: JobEvents) -> None:
        """Runs for the app's lifetime in its task group, watching the ends of the runs this process did."""
        with events.subscribe(local_only=True) as changes:
            while True:
                self.observe_job(await changes.next())

    async def render(self, store: JobStore) -> str:
        counts = await store.count_by_status()
        # No await between setting the counts and rendering: a concurrent scrape cannot mix them up.
        self._jobs.counts = counts
        return generate_latest(self.registry).decode()
