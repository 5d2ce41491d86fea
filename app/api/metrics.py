"""Prometheus metrics, one registry per app (no process-global state)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from app.edge import Edge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("http_requests_total", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency by route", ["route"],
                                 buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
                                 registry=r)
        self.upstream_calls = Counter("upstream_calls_total", "Calls to upstream APIs by source and status",
                                      ["source", "status"], registry=r)
        self.upstream_latency = Histogram("upstream_call_duration_seconds", "Upstream call latency", ["source"],
                                          registry=r)
        self.cycle = Histogram("ingest_cycle_duration_seconds", "Duration of one refresh cycle",
                               buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.tokens = Gauge("tokens_tracked", "Tokens in the latest version", registry=r)
        self.seq = Gauge("store_seq", "Latest version number", registry=r)
        self.connections = Gauge("stream_connections", "Open SSE and WebSocket connections", ["kind"], registry=r)
        self.queue_bytes = Gauge("stream_queue_bytes", "Bytes waiting in outgoing stream queues", registry=r)
        self.dropped_clients = Counter("stream_dropped_slow_clients_total", "Clients closed for being too slow",
                                       ["kind"], registry=r)
        self.query_cache_bytes = Gauge("query_cache_bytes", "Bytes held by the query cache and the hot first pages",
                                       registry=r)
        self.frame_cache_bytes = Gauge("stream_frame_cache_bytes", "Bytes held by the streams' shared frames: "
                                       "each view's frames of its current version and the compressed WebSocket "
                                       "frames", registry=r)
        self.skipped_items = Gauge("upstream_items_skipped", "Malformed upstream items skipped since the leader "
                                   "started, by source (from its cycle summary)", ["source"], registry=r)
        self.fast_path = Gauge("stream_fast_path_available", "1 where live deltas can be written straight onto "
                               "the server's transport (app.streams.direct), by connection kind", ["kind"], registry=r)
        self.direct_writes = Gauge("stream_deltas_written_directly", "Live deltas the fast path wrote since start, "
                                   "by connection kind", ["kind"], registry=r)

    def watch_edge(self, edge: Edge) -> None:
        """Export the counters of the HTTP edge (app.edge) this app is served behind."""
        self.registry.register(EdgeCollector(edge))

    def observe_call(self, source: str, status: str, seconds: float) -> None:
        self.upstream_calls.labels(source, status).inc()
        self.upstream_latency.labels(source).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class EdgeCollector(Collector):
    """The edge's own counters, read when /metrics is scraped (they live in the server's protocol objects,
    which close connections before the app ever sees a request)."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        closed = CounterMetricFamily("http_edge_connections_closed", "Connections the HTTP edge closed before "
                                     "they were a request, by reason", labels=["reason"])
        for reason, count in (("refused", self.edge.refused), ("evicted", self.edge.evicted),
                              ("timed_out", self.edge.timed_out), ("headers_too_large", self.edge.too_large)):
            closed.add_metric([reason], count)
        yield closed
        yield GaugeMetricFamily("http_edge_waiting_connections", "Connections without a complete request "
                                "(new, or idle between requests)", value=len(self.edge.waiting))
