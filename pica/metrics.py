"""A node's metrics: every name defined here, exposed at ``/metrics`` by ``prometheus_client``.

One :class:`NodeMetrics` per node, with a registry of its own (never the library's global default registry: tests
run several nodes in one process, and each must count only its own traffic). The gateway, the HTTP API and the
store's commit reports write into it; ``/metrics`` renders it with :func:`prometheus_client.generate_latest`.

The per-message instruments are this module's :class:`Histogram` and plain integer counters, not
``prometheus_client``'s own ``Histogram``/``Counter``: those take a lock on every observation (0.9 µs measured per
``observe`` here, against 0.13 µs for a bisect into a list), and everything that observes runs on the node's event
loop thread, so no lock is needed. They reach ``prometheus_client`` as metric families at scrape time
(:meth:`NodeMetrics.collect`), which also reads the gauges from their sources then: nothing is kept up to date
between scrapes. Names follow the Prometheus naming guide (base units, ``_seconds``, ``_bytes``, ``_total``); the
list with their meaning is in docs/operations.md ("Metrics").
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from pica.errors import FrameTooLarge, PayloadTooLarge, PicaError, RateLimited, TooManySessions

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The classic Prometheus text format, which every scraper reads. ``generate_latest`` writes it for names like ours
(no characters outside ``[a-zA-Z0-9_:]``), whatever media type the library version calls latest."""

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
"""Seconds: an ack on an idle node takes about 1 ms (fsync included), 5 ms at 5,000 msg/s, hundreds at saturation
(BENCHMARKS.md); a bucket per doubling-ish step from half a millisecond to ten seconds."""
COMMIT_BUCKETS: Final = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0)
"""Seconds of one transaction or its COMMIT: an fsync is 0.1-10 ms depending on the disk."""
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Write operations per commit (``sqlite.max_batch`` is 512 and ``postgres.max_batch`` 256 by default)."""
LAG_BUCKETS: Final = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
"""Seconds the event loop was late to wake the lag sampler."""

TRANSPORTS: Final = ("ws", "tcp", "mqtt", "xmpp", "http")
"""Values of the ``transport`` label: the four socket gateways and the HTTP API."""


class Histogram:
    """Counts of observations per bucket, and their sum. Observed from the event loop thread only (no lock)."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        """Per bucket, not cumulative; the last one is above every bound (``+Inf`` only)."""
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (Prometheus buckets are "le").
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip(self._bounds, self.counts, strict=False):
            total += count
            buckets.append((_bound(bound), total))
        buckets.append(("+Inf", total + self.counts[-1]))
        return buckets


def _bound(bound: float) -> str:
    return repr(float(bound))


def refusal_limit(error: PicaError) -> str | None:
    """The configuration key of the limit that refused a request, or None when ``error`` is not a refusal by a
    limit. The one place that says which errors count as refusals (``pica_refusals_total``)."""
    if isinstance(error, RateLimited):
        return error.limit or "rates"
    if isinstance(error, FrameTooLarge):
        return "limits.max_frame_bytes"
    if isinstance(error, PayloadTooLarge):
        return "limits.max_http_body_bytes"
    if isinstance(error, TooManySessions):
        return "limits.max_sessions_per_user"
    return None


@dataclass(slots=True)
class Sources:
    """Where the gauges are read at scrape time. Set by whoever owns the figure (the gateway's services, the
    composition root); the defaults describe a node with nothing connected."""

    connections: Callable[[], Mapping[str, int]] = dict
    """Open sockets per transport (``ws``, ``tcp``, ``mqtt``, ``xmpp``), authenticated or not."""
    online_users: Callable[[], int] = int
    send_queue: Callable[[], tuple[int, int]] = lambda: (0, 0)
    """Bytes written to sockets and not yet taken by the kernel: over every connection, and the largest one's."""
    sends_in_flight: Callable[[], int] = int
    store_backlog: Callable[[], int] = int
    """Write operations submitted to the store and not yet answered (SQLite's writer, PostgreSQL's write lanes)."""
    address_refusals: Callable[[], int] = int
    """Sockets refused at ``limits.max_connections_per_address`` (counted by the gateway's admission)."""
    cluster: Callable[[], Mapping[str, int]] | None = None
    """The cluster bus's figures (None outside a cluster)."""


_CLUSTER_GAUGES: Final = {
    "live_nodes": "Live nodes in the registry, as this node last read it.",
    "outbox": "Bus messages waiting for Redis (the cluster outbox's depth).",
    "subscriber_shards": "Redis shards the bus subscriber holds a connection to (1 on a single Redis; 0 while it "
                         "resubscribes).",
}
_CLUSTER_COUNTERS: Final = {
    "published": "Bus messages Redis accepted from this node.",
    "received": "Bus messages this node read (its own echoes included).",
    "dropped": "Bus messages lost here (outbox overflow, undecodable).",
    "resyncs": "Times this node told its clients to resync (after a bus outage or a lost subscription).",
    "presence_fallbacks": "Presence questions answered from this node's knowledge because Redis could not answer.",
}
_JOB_HELP: Final = {
    "queued": "Jobs waiting in the queue (the whole store's, read at each scrape).",
    "running": "Jobs claimed by a worker and not finished.",
    "dead": "Jobs that used up their attempts (pica jobs list --state dead).",
    "oldest_queued_seconds": "Age of the oldest queued job that is due.",
    "done_total": "Jobs this process's worker finished.",
    "retried_total": "Attempts this process's worker failed and scheduled again.",
    "dead_total": "Jobs this process's worker gave up on.",
}


@dataclass(slots=True, eq=False)  # hashable by identity: the registry keeps its collectors in a dict
class NodeMetrics:
    """Everything one node counts. The counters are plain attributes, incremented in place by the gateway."""

    frames_in: int = 0
    messages_acked: int = 0
    slow_consumers: int = 0
    connections_opened: int = 0
    sessions_over_limit: int = 0
    """Sessions closed (``session_overflow = "oldest"``) or refused (``"refuse"``) by ``max_sessions_per_user``."""
    connects_waited: int = 0
    """Socket authentications that waited for their turn under ``limits.connects_per_second``."""
    errors: dict[tuple[str, str], int] = field(default_factory=dict)
    """(error code, transport) → errors reported to clients: ``error`` frames and HTTP error responses."""
    refusals: dict[str, int] = field(default_factory=dict)
    """Limit (its configuration key) → requests, frames or sockets it refused."""

    send_ack: dict[str, Histogram] = field(
        default_factory=lambda: {name: Histogram(LATENCY_BUCKETS) for name in TRANSPORTS})
    """Per transport: a send received → its ack written (after the durable commit)."""
    delivery: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    """The commit's answer on this node's event loop → the message written to a recipient's socket."""
    commit_operations: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    commit_seconds: Histogram = field(default_factory=lambda: Histogram(COMMIT_BUCKETS))
    commit_fsync_seconds: Histogram = field(default_factory=lambda: Histogram(COMMIT_BUCKETS))
    http: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    """(method, route template) → request durations. Routes are the router's templates, never raw paths."""
    loop_lag: Histogram = field(default_factory=lambda: Histogram(LAG_BUCKETS))
    sources: Sources = field(default_factory=Sources)
    gateway: bool = True
    """False for a ``pica worker`` process (``metrics.worker_port``): its job figures and its process only."""
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=False))
    _jobs: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        self.registry.register(self)
        # The process's CPU, memory and file descriptors, the interpreter's version and its garbage collector: what
        # an operator asks first, for free (read at scrape time from /proc and gc).
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    # ------------------------------------------------------------------------------------------ recording

    def error(self, error: PicaError, transport: str) -> None:
        """An error told to a client (an ``error`` frame, an HTTP error response, a refused MQTT request)."""
        key = (error.code, transport)
        self.errors[key] = self.errors.get(key, 0) + 1
        limit = refusal_limit(error)
        if limit is not None:
            self.refused(limit)

    def refused(self, limit: str) -> None:
        self.refusals[limit] = self.refusals.get(limit, 0) + 1

    def send_ack_for(self, transport: str) -> Histogram:
        histogram = self.send_ack.get(transport)
        if histogram is None:
            histogram = self.send_ack[transport] = Histogram(LATENCY_BUCKETS)
        return histogram

    def observe_commit(self, operations: int, seconds: float, commit_seconds: float) -> None:
        """A write transaction of the store (``pica.store.base.CommitObserver``)."""
        self.commit_operations.observe(operations)
        self.commit_seconds.observe(seconds)
        self.commit_fsync_seconds.observe(commit_seconds)

    def observe_http(self, method: str, route: str, seconds: float) -> None:
        key = (method, route)
        histogram = self.http.get(key)
        if histogram is None:
            histogram = self.http[key] = Histogram(LATENCY_BUCKETS)
        histogram.observe(seconds)

    async def sample_loop_lag(self, interval: float) -> None:
        """Until cancelled: how late the event loop wakes a task that asked to sleep ``interval`` seconds. Every
        callback that holds the loop (a big sync page, a fan-out, a slow handler) shows here as lag."""
        while True:
            start = time.monotonic()
            await asyncio.sleep(interval)
            self.loop_lag.observe(max(0.0, time.monotonic() - start - interval))

    # ------------------------------------------------------------------------------------------ exposition

    def render(self, jobs: Mapping[str, float] | None = None) -> bytes:
        """The registry in the Prometheus text format; ``jobs``: the job queue's figures, read by the caller (the
        store read is asynchronous, a collector is not)."""
        self._jobs = jobs
        try:
            return generate_latest(self.registry)
        finally:
            self._jobs = None

    def collect(self) -> Iterator[Metric]:
        if self.gateway:
            yield from self._counters()
            yield from self._histograms()
            yield from self._gauges()
            yield from self._cluster()
        if self._jobs is not None:
            yield from job_families(self._jobs)

    def _counters(self) -> Iterator[Metric]:
        for name, doc, value in (
            ("pica_connections_opened", "Socket connections accepted.", self.connections_opened),
            ("pica_frames_in", "Frames (and MQTT packets) received from clients.", self.frames_in),
            ("pica_messages_acked", "Sends acknowledged (socket acks, HTTP sends), duplicates included.",
             self.messages_acked),
            ("pica_slow_consumers", "Connections cut as slow consumers (4002).", self.slow_consumers),
            ("pica_connections_refused", "Sockets refused at limits.max_connections_per_address.",
             self.sources.address_refusals()),
            ("pica_sessions_over_limit", "Sessions closed or refused at limits.max_sessions_per_user.",
             self.sessions_over_limit),
            ("pica_connects_waited", "Socket authentications that waited for their turn under "
             "limits.connects_per_second.", self.connects_waited),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        errors = CounterMetricFamily("pica_errors", "Errors told to clients, by code and transport.",
                                     labels=["code", "transport"])
        for (code, transport), count in sorted(self.errors.items()):
            errors.add_metric([code, transport], count)
        yield errors
        refusals = CounterMetricFamily("pica_refusals", "Requests, frames and sockets refused by a limit, by the "
                                       "limit's configuration key.", labels=["limit"])
        refused = dict(self.refusals)
        address = self.sources.address_refusals()
        if address:
            refused["limits.max_connections_per_address"] = address
        for limit, count in sorted(refused.items()):
            refusals.add_metric([limit], count)
        yield refusals

    def _histograms(self) -> Iterator[Metric]:
        send_ack = HistogramMetricFamily("pica_send_ack_seconds", "A send received to its ack written (after the "
                                         "durable commit), by transport.", labels=["transport"])
        for transport, histogram in self.send_ack.items():
            send_ack.add_metric([transport], histogram.cumulative(), histogram.sum)
        yield send_ack
        for name, doc, histogram in (
            ("pica_delivery_seconds", "A message's commit answered on the event loop to the message written to a "
             "recipient's socket (one observation per recipient device on this node).", self.delivery),
            ("pica_store_commit_operations", "Write operations per store transaction (group commit).",
             self.commit_operations),
            ("pica_store_commit_seconds", "One store transaction, BEGIN to the end of COMMIT.", self.commit_seconds),
            ("pica_store_commit_fsync_seconds", "The COMMIT statement alone: SQLite's fsync or PostgreSQL's WAL "
             "flush.", self.commit_fsync_seconds),
            ("pica_event_loop_lag_seconds", "How late the event loop woke the lag sampler.", self.loop_lag),
        ):
            family = HistogramMetricFamily(name, doc)
            family.add_metric([], histogram.cumulative(), histogram.sum)
            yield family
        http = HistogramMetricFamily("pica_http_request_duration_seconds", "HTTP requests, by method and route "
                                     "template (WebSocket upgrades excluded).", labels=["method", "route"])
        for (method, route), histogram in sorted(self.http.items()):
            http.add_metric([method, route], histogram.cumulative(), histogram.sum)
        yield http

    def _gauges(self) -> Iterator[Metric]:
        sources = self.sources
        connections = GaugeMetricFamily("pica_connections", "Open socket connections, by transport.",
                                        labels=["transport"])
        counts = sources.connections()
        for transport in TRANSPORTS[:4]:
            connections.add_metric([transport], counts.get(transport, 0))
        yield connections
        total, largest = sources.send_queue()
        for name, doc, value in (
            ("pica_online_users", "Users with at least one authenticated connection here.", sources.online_users()),
            ("pica_send_queue_bytes", "Bytes written to client sockets and not yet sent by the kernel.", total),
            ("pica_send_queue_max_bytes", "The largest of one connection (cut at limits.max_outbound_bytes).",
             largest),
            ("pica_sends_in_flight", "Socket sends submitted and not yet acked.", sources.sends_in_flight()),
            ("pica_store_write_queue", "Write operations submitted to the store and not yet answered.",
             sources.store_backlog()),
        ):
            yield GaugeMetricFamily(name, doc, value=value)

    def _cluster(self) -> Iterator[Metric]:
        if self.sources.cluster is None:
            return
        stats = self.sources.cluster()
        for key, doc in _CLUSTER_GAUGES.items():
            yield GaugeMetricFamily(f"pica_cluster_{key}", doc, value=stats.get(key, 0))
        for key, doc in _CLUSTER_COUNTERS.items():
            yield CounterMetricFamily(f"pica_cluster_{key}", doc, value=stats.get(key, 0))


def job_families(jobs: Mapping[str, float]) -> Iterator[Metric]:
    """``pica_jobs_*``: the queue's gauges and a worker's counters (``*_total``), from ``SideWork.stats``."""
    for key, value in jobs.items():
        doc = _JOB_HELP.get(key, "The job queue.")
        if key.endswith("_total"):
            yield CounterMetricFamily(f"pica_jobs_{key.removesuffix('_total')}", doc, value=value)
        else:
            yield GaugeMetricFamily(f"pica_jobs_{key}", doc, value=value)


