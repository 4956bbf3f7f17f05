"""The Prometheus metrics of one server (GET /metrics), in a registry of its own rather than prometheus_client's
global one, so that a process (the tests) may build many apps.

    lxmert_requests_total{endpoint, status}    requests answered, by route ("unmatched": no route) and status
    lxmert_stage_seconds{stage}                 decode (a request's image), detector and lxmert (a batch),
                                                total (an API request, end to end)
    lxmert_batch_size{stage}                    requests per detector or LXMERT batch
    lxmert_queue_depth{stage}                   requests waiting for the device, per stage
    lxmert_requests_in_flight                   API requests being answered
    lxmert_cache_hits_total, lxmert_cache_misses_total, lxmert_cache_entries
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .batching import STAGES
from .cache import RegionCache

# Seconds: a cached LXMERT pass on a GPU takes milliseconds, a CPU detector pass on a large batch seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    """The metrics of one app; `render()` is the text of GET /metrics."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, cache: RegionCache, queue_depth: Callable[[str], int]):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lxmert_requests", "HTTP requests answered", ["endpoint", "status"], registry=self.registry
        )
        self.stage_seconds = Histogram(
            "lxmert_stage_seconds",
            "seconds per stage: decode (one image), detector and lxmert (one batch), total (one API request)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "lxmert_batch_size", "requests per batch", ["stage"], buckets=BATCH_BUCKETS, registry=self.registry
        )
        depth = Gauge("lxmert_queue_depth", "requests waiting for the device", ["stage"], registry=self.registry)
        for stage in STAGES:
            depth.labels(stage).set_function(lambda stage=stage: queue_depth(stage))
        self.in_flight = Gauge("lxmert_requests_in_flight", "API requests being answered", registry=self.registry)
        self.registry.register(_CacheCollector(cache))

    def observe_batch(self, stage: str, size: int, seconds: float) -> None:
        self.batch_size.labels(stage).observe(size)
        self.stage_seconds.labels(stage).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _CacheCollector:
    """The cache's own counts, read when scraped (one count, kept by the cache)."""

    def __init__(self, cache: RegionCache):
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("lxmert_cache_hits", "region cache hits (the detector skipped)", self.cache.hits)
        yield CounterMetricFamily("lxmert_cache_misses", "region cache misses", self.cache.misses)
        yield GaugeMetricFamily("lxmert_cache_entries", "images whose regions the cache holds", len(self.cache))
