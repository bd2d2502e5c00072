"""``/metrics``: Prometheus exposition through prometheus-client.

Counters are derived from the event bus by one subscriber (:meth:`ApiMetrics.run`),
so nothing in the runtime has to know about metrics; gauges are read from the live
objects at scrape time. Each API instance has its own ``CollectorRegistry`` (no
process-global state, so two control planes in one test process do not collide).
Label values come from closed sets only, never from request input. The event loop's
lag comes from the control plane's :class:`~ironclaw.runtime.LoopLagMonitor`, read at
scrape time by a collector (the monitor keeps its own cumulative buckets).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ironclaw.contract.modelwire import FailureKind, StopKind
from ironclaw.host.modelproxy import ProviderKind
from ironclaw.runtime import EventBus, Lagged, LoopLagMonitor

if TYPE_CHECKING:
    from ironclaw.host.app import ControlPlaneHandles

CONTENT_TYPE = CONTENT_TYPE_LATEST
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
CHANGE_EVENTS = frozenset({"change.submitted", "change.decided", "change.applied",
                           "change.apply_failed", "change.expired"})
# Label values come from these closed sets only.
STOP_WORDS = frozenset(kind.value for kind in StopKind)
FAILURE_WORDS = frozenset(kind.value for kind in FailureKind)
PROVIDER_WORDS = frozenset(kind.value for kind in ProviderKind)
SUBSCRIBER_BUFFER = 8192
MAX_COUNT = 100_000


class LoopLagCollector(Collector):
    """``ironclaw_event_loop_lag_seconds`` (histogram) and its maximum, from the monitor."""

    def __init__(self, monitor: LoopLagMonitor) -> None:
        self._monitor = monitor

    def collect(self) -> Iterator[Metric]:
        snap = self._monitor.snapshot()
        yield HistogramMetricFamily(
            "ironclaw_event_loop_lag_seconds", "How late the event loop woke a task that "
            "slept a fixed interval: a stall of the loop shows as lag",
            buckets=[("+Inf" if math.isinf(bound) else repr(bound), count)
                     for bound, count in snap.buckets],
            sum_value=snap.sum_s)
        yield GaugeMetricFamily("ironclaw_event_loop_lag_max_seconds", "The largest event "
                                "loop lag since the control plane started", value=snap.max_s)


class ApiMetrics:
    def __init__(self, loop_lag: LoopLagMonitor | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        if loop_lag is not None:
            r.register(LoopLagCollector(loop_lag))
        self.received = Counter("ironclaw_messages_received", "Messages received from "
                                "channels", registry=r)
        self.routed = Counter("ironclaw_messages_routed", "Routing decisions, per wiring",
                              ["decision"], registry=r)
        self.delivered = Counter("ironclaw_messages_delivered", "Agent messages delivered "
                                 "to channels (first delivery only)", registry=r)
        self.model_calls = Counter("ironclaw_model_calls", "Model-proxy calls",
                                   ["outcome"], registry=r)
        self.model_stops = Counter("ironclaw_model_stops", "Model answers by why the model "
                                   "stopped (complete, tool_use, truncated, refused, "
                                   "filtered, unknown)", ["stop"], registry=r)
        self.model_failures = Counter("ironclaw_model_failures", "Provider error answers "
                                      "by kind", ["kind"], registry=r)
        self.providers_failing = Counter("ironclaw_model_provider_failing", "Times a "
                                         "provider was reported failing call after call",
                                         ["provider", "kind"], registry=r)
        self.changes = Counter("ironclaw_changes", "Gateway change events", ["event"],
                               registry=r)
        self.sessions_started = Counter("ironclaw_sessions_started", "Session actors "
                                        "started", registry=r)
        self.events_dropped = Counter("ironclaw_events_dropped", "Events a subscriber "
                                      "missed because it fell behind", ["subscriber"],
                                      registry=r)
        self.streams_cut = Counter("ironclaw_event_streams_dropped", "Event-stream clients "
                                   "disconnected for being too slow", registry=r)
        self.requests = Counter("ironclaw_api_requests", "API requests answered",
                                ["method", "status"], registry=r)
        self.sessions_live = Gauge("ironclaw_sessions_live", "Live session actors",
                                   registry=r)
        self.changes_pending = Gauge("ironclaw_changes_pending", "Changes waiting for a "
                                     "human decision", registry=r)
        self.questions_pending = Gauge("ironclaw_questions_pending", "Unanswered "
                                       "questions", registry=r)
        self.delivery_workers = Gauge("ironclaw_delivery_workers", "Sessions with a live "
                                      "delivery worker", registry=r)
        self.subscribers = Gauge("ironclaw_event_subscribers", "Event-bus subscribers",
                                 registry=r)
        self.bus_seq = Gauge("ironclaw_event_bus_seq", "Sequence number of the last "
                             "event published", registry=r)
        for name in ("metrics", "stream"):
            self.events_dropped.labels(subscriber=name)

    def request(self, method: str, status: int) -> None:
        self.requests.labels(method=method if method in METHODS else "OTHER",
                             status=str(status)).inc()

    def observe(self, event_type: str, event: object) -> None:
        if event_type == "message.received":
            self.received.inc()
        elif event_type == "message.routed":
            self.routed.labels(decision=str(getattr(event, "decision", "unknown"))[:32]).inc()
        elif event_type == "delivery.delivered":
            if not getattr(event, "duplicate", False):
                self.delivered.inc()
        elif event_type == "model.call":
            status = getattr(event, "status", 0)
            ok = isinstance(status, int) and 200 <= status < 400
            self.model_calls.labels(outcome="ok" if ok else "error").inc()
            stop, failure = getattr(event, "stop", ""), getattr(event, "failure", "")
            if stop in STOP_WORDS:
                self.model_stops.labels(stop=stop).inc()
            if failure in FAILURE_WORDS:
                self.model_failures.labels(kind=failure).inc()
        elif event_type == "model.provider_failing":
            provider, kind = getattr(event, "provider", ""), getattr(event, "failure", "")
            if provider in PROVIDER_WORDS and kind in FAILURE_WORDS:
                self.providers_failing.labels(provider=provider, kind=kind).inc()
        elif event_type in CHANGE_EVENTS:
            self.changes.labels(event=event_type.removeprefix("change.")).inc()
        elif event_type == "session.started":
            self.sessions_started.inc()

    async def run(self, bus: EventBus, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Count what the bus carries, until cancelled."""
        async with bus.subscribe("*", buffer_size=SUBSCRIBER_BUFFER) as subscription:
            task_status.started()
            async for item in subscription:
                if isinstance(item, Lagged):
                    self.events_dropped.labels(subscriber="metrics").inc(item.missed)
                else:
                    self.observe(item.type, item.event)

    async def render(self, handles: ControlPlaneHandles) -> bytes:
        self.sessions_live.set(len(handles.sessions.live_ids()))
        self.changes_pending.set(len(await handles.gateway.pending(MAX_COUNT)))
        self.questions_pending.set(len(await handles.questions.pending(limit=MAX_COUNT)))
        self.delivery_workers.set(handles.delivery.active_sessions)
        self.subscribers.set(handles.events.subscriber_count)
        self.bus_seq.set(handles.events.last_seq)
        return generate_latest(self.registry)
