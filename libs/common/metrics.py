"""Prometheus metrics every service exposes on /metrics. Labels stay bounded: contract names,
outcomes and causes, never ids."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class RuntimeMetrics:
    def __init__(self, service: str, site: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"service": service, "site": site}
        self._labels = labels
        names = list(labels)
        self.handled = Counter(
            "sinew_messages_handled",
            "Messages taken from a mailbox, by contract and outcome",
            [*names, "contract", "outcome"],
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "sinew_dead_letters",
            "Messages dead-lettered, by contract and cause",
            [*names, "contract", "cause"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "sinew_duplicates_suppressed",
            "Redelivered or republished messages the inbox absorbed",
            [*names, "contract"],
            registry=self.registry,
        )
        self.failed = Counter(
            "sinew_handler_failures",
            "Handler failures that were retried (transient or unexpected errors)",
            [*names, "contract"],
            registry=self.registry,
        )
        self.handler_seconds = Histogram(
            "sinew_handler_seconds",
            "Time a handler took for one message, inside the batch transaction",
            [*names, "contract"],
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "sinew_batch_seconds",
            "Time to apply and commit one fetched batch",
            names,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.event_age_seconds = Histogram(
            "sinew_event_age_seconds",
            "From the event's ce-time to the moment this service handled it",
            [*names, "contract"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "sinew_outbox_backlog",
            "Events committed but not yet acknowledged by JetStream",
            names,
            registry=self.registry,
        )
        self.published = Counter(
            "sinew_events_published",
            "Events the outbox relay published",
            names,
            registry=self.registry,
        )
        self.pruned = Counter(
            "sinew_rows_pruned",
            "Published outbox rows and old inbox keys removed by retention",
            [*names, "table"],
            registry=self.registry,
        )
        self.nats_connected = Gauge(
            "sinew_nats_connected", "1 while connected to NATS", names, registry=self.registry
        )

    def labels(self, metric, **extra: str):
        return metric.labels(**self._labels, **extra)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
