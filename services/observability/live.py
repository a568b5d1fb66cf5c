"""What is polled rather than consumed: stream and consumer backlogs from JetStream, the
advisories JetStream keeps in its ADVISORIES stream, service health from $SRV.PING and each
service's own status (outbox backlog, duplicates suppressed), and the Prometheus gauges refreshed
from the recorded figures."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import Gauge

from sinew.common.natsconfig import admin_subject
from sinew.common.provision import ADVISORIES, MAX_DELIVERIES, TERMINATED
from sinew.contracts import CATALOGUE

from . import store

log = logging.getLogger("sinew.observability")

POLL_SECONDS = 3.0
PING_SECONDS = 0.5
TREND_SAMPLES = 20  # about a minute of history at the default poll


@dataclass
class Live:
    backlog: list[dict] = field(default_factory=list)
    streams: list[dict] = field(default_factory=list)
    trend: dict[tuple[str, str], deque] = field(default_factory=dict)
    services: dict[str, dict] = field(default_factory=dict)
    advisories: list[dict] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    # A site's observability user may not list other services' consumers; a refused request
    # costs a timeout, so after one refusal only its own consumers are asked for.
    may_list_consumers: bool = True
    polled_at: str | None = None
    gauges: Gauges | None = None


def live(runtime) -> Live:
    """The polled state of one running service (tests run several in one process)."""
    state = runtime.__dict__.get("observability_live")
    if state is None:
        state = runtime.__dict__["observability_live"] = Live(gauges=Gauges(runtime))
    return state


class Gauges:
    def __init__(self, runtime) -> None:
        registry = runtime.metrics.registry

        def gauge(name: str, text: str, labels: list[str]) -> Gauge:
            return Gauge(name, text, ["site", *labels], registry=registry)

        self.site = runtime.site
        self.first_pass = gauge(
            "sinew_obs_first_pass_match_ratio", "Invoices matched without any exception", []
        )
        self.open_exceptions = gauge(
            "sinew_obs_open_exceptions", "Open business exceptions", ["queue", "type"]
        )
        self.exception_amount = gauge(
            "sinew_obs_open_exception_amount", "Money at stake in open exceptions", ["queue"]
        )
        self.ageing = gauge(
            "sinew_obs_open_exceptions_over_3_days", "Open exceptions older than 3 days", ["queue"]
        )
        self.leakage = gauge(
            "sinew_obs_contract_leakage_amount", "Invoiced above contract (price variances)", []
        )
        self.awaiting_receipt = gauge(
            "sinew_obs_invoices_awaiting_receipt", "Invoices waiting for their receipt", []
        )
        self.received_not_invoiced = gauge(
            "sinew_obs_received_not_invoiced_amount", "Received value no invoice names yet", []
        )
        self.below_par = gauge(
            "sinew_obs_open_replenishment_signals", "Items at or below reorder point", []
        )
        self.dead_letters = gauge(
            "sinew_obs_open_dead_letters",
            "Open dead letters by service and cause",
            ["service", "type"],
        )
        self.pending = gauge(
            "sinew_obs_consumer_pending", "Messages not yet delivered", ["stream", "consumer"]
        )
        self.ack_pending = gauge(
            "sinew_obs_consumer_ack_pending",
            "Messages delivered, not acked",
            ["stream", "consumer"],
        )
        self.redelivered = gauge(
            "sinew_obs_consumer_redelivered", "Messages redelivered", ["stream", "consumer"]
        )
        self.stream_messages = gauge("sinew_obs_stream_messages", "Messages kept", ["stream"])
        self.feed_age = gauge(
            "sinew_obs_feed_last_event_age_seconds", "Since the last event from a feed", ["source"]
        )
        self.service_up = gauge(
            "sinew_obs_service_up", "1 while a service answers $SRV.PING", ["service"]
        )
        self.outbox_backlog = gauge(
            "sinew_obs_service_outbox_backlog",
            "Events a service committed that JetStream has not acknowledged yet",
            ["service"],
        )
        self.duplicates = gauge(
            "sinew_obs_service_duplicates_suppressed",
            "Redelivered or republished messages a service's inbox absorbed, all time",
            ["service"],
        )
        self.advisories = gauge(
            "sinew_obs_jetstream_advisories",
            "Messages JetStream stopped redelivering (max_deliveries) or a service terminated,"
            " kept in the ADVISORIES stream",
            ["kind", "stream", "consumer"],
        )

    def refresh(self, kpis: dict, feeds: dict, state: Live) -> None:
        s = self.site
        if kpis["first_pass_match_rate"] is not None:
            self.first_pass.labels(s).set(kpis["first_pass_match_rate"])
        self.open_exceptions.clear()
        self.exception_amount.clear()
        self.ageing.clear()
        for queue, figures in kpis["open_exceptions"]["by_queue"].items():
            self.exception_amount.labels(s, queue).set(float(figures["amount"]))
            ages = figures["ages"]
            self.ageing.labels(s, queue).set(ages["3_to_7_days"] + ages["over_7_days"])
        for row in kpis["open_exceptions"]["by_queue_and_type"]:
            self.open_exceptions.labels(s, row["queue"], row["type"]).set(row["count"])
        self.leakage.labels(s).set(float(kpis["contract_leakage"]["amount"]))
        self.awaiting_receipt.labels(s).set(kpis["invoices_awaiting_receipt"]["count"])
        self.received_not_invoiced.labels(s).set(float(kpis["received_not_invoiced"]["amount"]))
        self.below_par.labels(s).set(kpis["below_par"]["open_signals"])
        self.dead_letters.clear()
        for service, causes in kpis["dead_letters"]["by_service"].items():
            for cause, n in causes.items():
                self.dead_letters.labels(s, service, cause).set(n)
        for row in state.backlog:
            labels = (s, row["stream"], row["consumer"])
            self.pending.labels(*labels).set(row["pending"])
            self.ack_pending.labels(*labels).set(row["ack_pending"])
            self.redelivered.labels(*labels).set(row["redelivered"])
        for row in state.streams:
            self.stream_messages.labels(s, row["stream"]).set(row["messages"])
        for source, feed in feeds.items():
            if feed["age_seconds"] is not None:
                self.feed_age.labels(s, source).set(feed["age_seconds"])
        for name, service in state.services.items():
            self.service_up.labels(s, name).set(1 if service["up"] else 0)
            if service.get("outbox_backlog") is not None:
                self.outbox_backlog.labels(s, name).set(service["outbox_backlog"])
                self.duplicates.labels(s, name).set(service["duplicates_suppressed"])
        for row in state.advisories:
            self.advisories.labels(s, row["kind"], row["stream"], row["consumer"]).set(row["count"])


async def poll(runtime) -> None:
    state = live(runtime)
    # Stops on the service's own stop signal too: a NATS request may swallow a cancellation.
    while not runtime.stopped.is_set():
        try:
            await poll_once(runtime, state)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bad poll is logged and tried again, never fatal
            log.warning("observability poll failed: %r", error)
        try:
            await asyncio.wait_for(runtime.stopped.wait(), POLL_SECONDS)
        except TimeoutError:
            pass


async def poll_once(runtime, state: Live) -> None:
    if runtime.nc is not None and runtime.nc.is_connected:
        await _poll_jetstream(runtime, state)
        await _poll_advisories(runtime, state)
        await _ping(runtime, state)
        await _ask_status(runtime, state)
    now = datetime.now(UTC)
    kpis = await runtime.store.run(store.business_kpis, runtime.site, now)
    feeds = await runtime.store.run(store.feeds, now)
    state.polled_at = now.isoformat()
    state.gauges.refresh(kpis, feeds, state)


def _own_site(consumer: str, site: str) -> bool:
    return consumer.endswith(f"-{site}")


async def _poll_jetstream(runtime, state: Live) -> None:
    js = runtime.nc.jetstream(timeout=2)
    backlog, streams, refused = [], [], []
    own = f"observability-{runtime.site}"
    now = time.time()
    for stream in CATALOGUE.streams:
        try:
            info = await js.stream_info(stream.name)
        except Exception as error:
            refused.append(f"stream info {stream.name}: {error!r}")
            continue
        streams.append(
            {
                "stream": stream.name,
                "messages": info.state.messages,
                "bytes": info.state.bytes,
                "consumers": info.state.consumer_count,
            }
        )
        consumers = []
        if state.may_list_consumers:
            try:
                consumers = await js.consumers_info(stream.name)
            except Exception as error:
                state.may_list_consumers = False
                refused.append(f"listing consumers refused: {type(error).__name__}")
        if not state.may_list_consumers:
            try:
                consumers = [await js.consumer_info(stream.name, own)]
            except Exception:
                consumers = []  # observability does not read this stream
        for c in consumers:
            if not _own_site(c.name, runtime.site):
                continue
            row = {
                "stream": stream.name,
                "consumer": c.name,
                "pending": c.num_pending or 0,
                "ack_pending": c.num_ack_pending or 0,
                "redelivered": c.num_redelivered or 0,
            }
            history = state.trend.setdefault((stream.name, c.name), deque(maxlen=TREND_SAMPLES))
            history.append((now, row["pending"] + row["ack_pending"]))
            row["trend"] = history[-1][1] - history[0][1]
            backlog.append(row)
    if not state.may_list_consumers and not refused:
        refused.append("listing consumers refused: showing observability's own consumers only")
    state.backlog, state.streams, state.refused = backlog, streams, refused


ADVISORY_KINDS = {MAX_DELIVERIES: "max_deliveries", TERMINATED: "terminated"}


async def _poll_advisories(runtime, state: Live) -> None:
    """Advisories per consumer of this site, counted by JetStream itself (one subject per kind,
    stream and consumer): the figures survive a restart and need no state here."""
    js = runtime.nc.jetstream(timeout=2)
    try:
        info = await js.stream_info(ADVISORIES, subjects_filter="$JS.EVENT.ADVISORY.CONSUMER.>")
    except Exception as error:
        state.refused.append(f"stream info {ADVISORIES}: {error!r}")
        return
    now = time.time()
    rows = []
    for subject, count in sorted((info.state.subjects or {}).items()):
        prefix, stream, consumer = subject.rsplit(".", 2)
        if prefix not in ADVISORY_KINDS or not _own_site(consumer, runtime.site):
            continue
        kind = ADVISORY_KINDS[prefix]
        history = state.trend.setdefault((kind, stream, consumer), deque(maxlen=TREND_SAMPLES))
        history.append((now, count))
        rows.append(
            {
                "kind": kind,
                "stream": stream,
                "consumer": consumer,
                "count": count,
                "trend": history[-1][1] - history[0][1],
            }
        )
    state.advisories = rows


async def _ask_status(runtime, state: Live) -> None:
    """Each answering service's own figures: outbox backlog, duplicates its inbox absorbed,
    open dead letters (sinew.admin.<site>.<service>.status)."""

    async def ask(name: str) -> tuple[str, dict | None]:
        try:
            reply = await runtime.nc.request(
                f"{admin_subject(runtime.site, name)}.status", b"", timeout=PING_SECONDS * 2
            )
            return name, json.loads(reply.data)
        except Exception as error:
            log.info("status of %s not available: %r", name, error)
            return name, None

    up = [name for name, service in state.services.items() if service["up"]]
    for name, status in await asyncio.gather(*(ask(name) for name in up)):
        if status is not None:
            state.services[name].update(
                outbox_backlog=status["outbox_backlog"],
                duplicates_suppressed=status["duplicates_suppressed"],
                open_dead_letters=status["open_dead_letters"],
                messages_handled=status["messages_handled"],
            )


async def _ping(runtime, state: Live) -> None:
    nc = runtime.nc
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    answered: set[str] = set()
    try:
        await nc.publish("$SRV.PING", b"", reply=inbox)
        deadline = time.monotonic() + PING_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await sub.next_msg(timeout=left)
            except Exception:
                break
            pong = json.loads(message.data)
            if (pong.get("metadata") or {}).get("site") == runtime.site:
                answered.add(pong["name"])
    finally:
        await sub.unsubscribe()
    if not answered:
        # Not even this service answered its own ping: the ping itself was refused.
        state.refused.append("$SRV.PING got no answer, not even from observability: not permitted?")
    now = datetime.now(UTC).isoformat()
    for name in answered:
        state.services[name] = {"up": True, "last_seen": now}
    for name, service in state.services.items():
        if name not in answered:
            service["up"] = False
