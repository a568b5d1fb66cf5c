"""The actor: a service's mailboxes, its handler table, and the exactly-once batch transaction.

For each fetched batch, in ONE SQLite transaction on the database thread: every message is looked
up in the inbox (a redelivery or a republished duplicate stops there), its handler applies the
domain effect and emits events into the outbox, and the inbox records it. Then commit, then ack.
An ack lost after the commit only causes a redelivery that the inbox absorbs; a crash before the
commit leaves nothing applied. A message that can never be processed is written as a dead letter
in that same transaction, and only then terminated.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.msg import Msg

from sinew.contracts import ops
from sinew.contracts.catalogue import Catalogue, Channel, parse_subject
from sinew.contracts.common import require_finite
from sinew.contracts.envelope import Envelope, utc_now

from .context import Context, Publications
from .errors import Invalid, Transient
from .faults import fault_point
from .metrics import RuntimeMetrics
from .provision import DeliveryPolicy
from .telemetry import handling_span

log = logging.getLogger("sinew.actor")

Handler = Callable[[Any, Context], None]
CRASH_LIMIT = 2  # attempts that took the process down before a message is dead-lettered
# A parser reads a foreign-format document (HL7, X12, FHIR) into a contract Struct, given the raw
# bytes, the headers and the site of the subject; it raises Invalid with a precise reason.
Parser = Callable[[bytes, dict[str, str], str], msgspec.Struct]


@dataclass
class Delivery:
    """One message taken from a mailbox, decoded (or found undecodable) before the transaction."""

    subject: str
    stream: str
    stream_seq: int
    deliveries: int
    data: bytes
    headers: dict[str, str]
    envelope: Envelope
    channel: Channel | None
    message: msgspec.Struct | None = None
    invalid: Invalid | None = None
    msg: Msg | None = None

    @property
    def contract(self) -> str:
        return self.channel.name if self.channel else "unknown"

    @property
    def inbox_key(self) -> str:
        return inbox_key(self.channel.family if self.channel else self.subject, self.envelope.id)


def inbox_key(family: str, event_id: str) -> str:
    """What the inbox knows a message by: any major version of it, by its event id."""
    return f"{family}:{event_id}"


@dataclass
class Outcome:
    kind: str  # applied | duplicate | recorded (a command record) | dead_letter | retry
    reason: str = ""
    cause: str = ""
    handler_seconds: float = 0.0
    dead_letter_id: str | None = None


@dataclass
class Wiring:
    """What one service consumes and publishes, and which plain function handles each type."""

    service: str
    site: str
    catalogue: Catalogue
    handlers: dict[type, Handler]
    parsers: dict[str, Parser] = field(default_factory=dict)
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    # Handed to every handler as ctx.config (ServiceDefinition.configure made it from Settings).
    config: Any = None

    def __post_init__(self) -> None:
        self.consumed = {c.name: c for c in self.catalogue.consumed_by(self.service)}
        self.phi_streams = {s.name for s in self.catalogue.streams if s.phi}
        self.known_versions = {
            family: sorted(f"v{c.version}" for c in channels)
            for family, channels in self.catalogue.families(self.service).items()
        }
        self.decoders = {
            c.name: msgspec.json.Decoder(c.message)
            for c in self.consumed.values()
            if c.message is not None and c.name not in self.parsers
        }
        self.publications = Publications(self.catalogue.published_by(self.service))
        missing = [
            name
            for name, c in self.consumed.items()
            if (c.message is None and name not in self.parsers)
            or (c.message is not None and c.message not in self.handlers)
        ]
        if missing:
            raise ValueError(f"{self.service}: no handler or parser for {', '.join(missing)}")

    # -- before the transaction: on the event loop, no I/O ---------------------------------------

    def decode(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str] | None,
        *,
        stream: str,
        stream_seq: int,
        deliveries: int,
    ) -> Delivery:
        headers = dict(headers or {})
        envelope = Envelope.from_headers(headers, fallback_id=f"{stream}:{stream_seq}")
        if stream in self.phi_streams:
            envelope = _without_patient_data(envelope)
        channel = self.consumed.get(parsed.name) if (parsed := parse_subject(subject)) else None
        delivery = Delivery(
            subject, stream, stream_seq, deliveries, data, headers, envelope, channel
        )
        try:
            delivery.message = self._decode(delivery, parsed)
        except Invalid as problem:
            delivery.invalid = problem
        return delivery

    def _decode(self, delivery: Delivery, parsed) -> msgspec.Struct:
        channel = delivery.channel
        if channel is None:
            if parsed and parsed.family in self.known_versions:
                raise Invalid(
                    f"{parsed.family} v{parsed.version} is not a contract version this service "
                    f"knows (it knows {', '.join(self.known_versions[parsed.family])})",
                    "unknown_contract",
                )
            raise Invalid(
                f"no contract in the catalogue for subject {delivery.subject}", "unknown_contract"
            )
        if parsed.site != self.site:
            raise Invalid(f"subject is for site {parsed.site!r}, this is {self.site!r}")
        if len(delivery.data) > channel.max_bytes:
            raise Invalid(
                f"{len(delivery.data)} bytes exceeds the {channel.max_bytes}-byte limit of "
                f"{channel.name}",
                "oversized",
            )
        try:
            if channel.name in self.parsers:
                message = self.parsers[channel.name](delivery.data, delivery.headers, self.site)
            else:
                message = self.decoders[channel.name].decode(delivery.data)
            require_finite(delivery.data, message)
        except msgspec.ValidationError as error:
            raise Invalid(f"{channel.name}: {error}") from None
        except msgspec.DecodeError as error:
            raise Invalid(f"malformed JSON: {error}", "malformed") from None
        site = getattr(message, "site", self.site)
        if site != self.site:
            raise Invalid(f"payload site {site!r} does not match subject site {self.site!r}")
        return message

    # -- the transaction: on the database thread -------------------------------------------------

    def apply_batch(self, conn: sqlite3.Connection, deliveries: list[Delivery]) -> list[Outcome]:
        # A handler's own failure rolls back to its savepoint inside _apply_one; anything else
        # raised here (the database itself failing) rolls back the whole batch, which is naked.
        outcomes = []
        for delivery in deliveries:
            outcome = self._apply_one(conn, delivery)
            if delivery.deliveries > 1:
                conn.execute(
                    "DELETE FROM sinew_suspects WHERE stream=? AND stream_seq=?",
                    (delivery.stream, delivery.stream_seq),
                )
            outcomes.append(outcome)
        counted = {
            "messages_handled": sum(o.kind in ("applied", "dead_letter") for o in outcomes),
            "duplicates_suppressed": sum(o.kind == "duplicate" for o in outcomes),
        }
        conn.executemany(
            "INSERT INTO sinew_counters VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            [(name, n) for name, n in counted.items() if n],
        )
        return outcomes

    def note_attempt(self, conn: sqlite3.Connection, delivery: Delivery) -> Outcome | None:
        """Before a redelivered message is tried again: if earlier attempts never came back (the
        process died inside them), dead-letter it now rather than die again."""
        row = conn.execute(
            "SELECT attempts FROM sinew_suspects WHERE stream=? AND stream_seq=?",
            (delivery.stream, delivery.stream_seq),
        ).fetchone()
        crashes = row["attempts"] if row else 0
        if crashes >= CRASH_LIMIT:
            conn.execute(
                "DELETE FROM sinew_suspects WHERE stream=? AND stream_seq=?",
                (delivery.stream, delivery.stream_seq),
            )
            return self._dead_letter(
                conn,
                delivery,
                "exhausted",
                f"the service process died in {crashes} attempts at this message alone",
            )
        conn.execute(
            "INSERT INTO sinew_suspects VALUES (?, ?, 1) ON CONFLICT(stream, stream_seq)"
            " DO UPDATE SET attempts = attempts + 1",
            (delivery.stream, delivery.stream_seq),
        )
        return None

    def _apply_one(self, conn: sqlite3.Connection, delivery: Delivery) -> Outcome:
        seen = conn.execute(
            "SELECT outcome, stream, stream_seq FROM sinew_inbox WHERE key=?", (delivery.inbox_key,)
        ).fetchone()
        # A message that was dead-lettered and is then sent again (a new stream sequence, same
        # event id) is a second attempt, not a duplicate: it gets its chance.
        if seen and not (
            seen["outcome"] == "dead_letter"
            and (seen["stream"], seen["stream_seq"]) != (delivery.stream, delivery.stream_seq)
        ):
            # The record of a command this service ran over HTTP comes back once by design.
            own = delivery.channel is not None and delivery.channel.publisher == self.service
            return Outcome("recorded" if own else "duplicate")
        if delivery.invalid is not None:
            return self._dead_letter(
                conn, delivery, delivery.invalid.cause, delivery.invalid.reason
            )

        conn.execute("SAVEPOINT handler")
        started = time.perf_counter()
        try:
            context = self.run_handler(
                conn, delivery.message, delivery.envelope, delivery.contract, delivery.inbox_key
            )
        except Invalid as problem:
            conn.execute("ROLLBACK TO handler")
            conn.execute("RELEASE handler")
            return self._dead_letter(conn, delivery, problem.cause, problem.reason)
        except Exception as error:  # Transient, or a bug: retried, then dead-lettered
            conn.execute("ROLLBACK TO handler")
            conn.execute("RELEASE handler")
            reason = f"{type(error).__name__}: {error}"
            if not isinstance(error, Transient):
                log.exception("handler failed on %s", delivery.contract)
            if delivery.deliveries >= self.policy.max_deliver:
                return self._dead_letter(
                    conn,
                    delivery,
                    "exhausted",
                    f"failed {delivery.deliveries} deliveries; last error {reason}",
                )
            return Outcome("retry", reason=reason)
        conn.execute("RELEASE handler")
        elapsed = time.perf_counter() - started
        context.flush()
        self._record_inbox(conn, delivery, "applied")
        if seen:
            conn.execute(
                "UPDATE sinew_dead_letters SET status='superseded' WHERE inbox_key=? AND status='open'",
                (delivery.inbox_key,),
            )
        return Outcome("applied", handler_seconds=elapsed)

    def run_handler(
        self,
        conn: sqlite3.Connection,
        message: msgspec.Struct,
        envelope: Envelope,
        contract: str,
        id_seed: str,
    ) -> Context:
        handler = self.handlers[type(message)]
        with handling_span(
            f"{self.service} handle {contract}",
            envelope.traceparent,
            contract=contract,
            site=self.site,
        ) as traceparent:
            context = self.context(conn, envelope, traceparent, id_seed)
            handler(message, context)
        return context

    def context(
        self, conn: sqlite3.Connection, envelope: Envelope, traceparent: str, id_seed: str
    ) -> Context:
        """What a handler, a command or the runtime itself writes through, in this service."""
        return Context(
            conn,
            envelope,
            self.site,
            self.service,
            traceparent,
            self.publications,
            id_seed,
            config=self.config,
        )

    def exhaust(self, conn: sqlite3.Connection, delivery: Delivery, reason: str) -> Outcome:
        """JetStream gave up on a message this service never acknowledged: dead-letter it,
        unless its effect was committed and only the ack was lost."""
        seen = conn.execute(
            "SELECT outcome FROM sinew_inbox WHERE key=? AND stream=? AND stream_seq=?",
            (delivery.inbox_key, delivery.stream, delivery.stream_seq),
        ).fetchone()
        if seen:
            return Outcome("duplicate")
        return self._dead_letter(conn, delivery, "exhausted", reason)

    def _record_inbox(self, conn: sqlite3.Connection, delivery: Delivery, outcome: str) -> None:
        record_inbox(
            conn,
            delivery.inbox_key,
            delivery.stream,
            delivery.stream_seq,
            delivery.subject,
            outcome,
        )

    def _dead_letter(
        self, conn: sqlite3.Connection, delivery: Delivery, cause: str, reason: str
    ) -> Outcome:
        # Derived from the stream position, so a rebuild from history records the same ids.
        dead_letter_id = uuid.uuid5(
            uuid.NAMESPACE_URL, f"{delivery.stream}:{delivery.stream_seq}:{delivery.inbox_key}"
        ).hex[:12]
        recorded_at = utc_now()
        conn.execute(
            "INSERT INTO sinew_dead_letters (id, inbox_key, subject, stream, stream_seq, contract,"
            " cause, reason, deliveries, headers, payload, recorded_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                dead_letter_id,
                delivery.inbox_key,
                delivery.subject,
                delivery.stream,
                delivery.stream_seq,
                delivery.contract,
                cause,
                reason,
                delivery.deliveries,
                msgspec.json.encode(delivery.headers).decode(),
                delivery.data,
                recorded_at.isoformat(),
            ),
        )
        self._record_inbox(conn, delivery, "dead_letter")
        context = self.context(
            conn,
            delivery.envelope,
            delivery.envelope.traceparent or "",
            f"dead-letter:{dead_letter_id}",
        )
        context.emit(
            ops.DeadLetterRecorded(
                dead_letter_id=dead_letter_id,
                site=self.site,
                service=self.service,
                subject=delivery.subject,
                stream=delivery.stream,
                stream_sequence=delivery.stream_seq,
                contract=delivery.contract,
                cause=cause,
                reason=reason,
                deliveries=delivery.deliveries,
                size_bytes=len(delivery.data),
                event_id=delivery.envelope.id,
                recorded_at=recorded_at,
            ),
            channel=f"{self.service}.dead-letter.recorded.v1",
        )
        context.flush()
        return Outcome("dead_letter", reason=reason, cause=cause, dead_letter_id=dead_letter_id)


def _without_patient_data(envelope: Envelope) -> Envelope:
    """Headers a clinical sender chose (its business key, its correlation and event ids) may hold
    an MRN or an encounter number; what leaves the service keeps only stable pseudonyms of them,
    so de-duplication and correlation still work."""
    return msgspec.structs.replace(
        envelope,
        id=_pseudonym(envelope.id),
        correlation_id=_pseudonym(envelope.correlation_id),
        subject=None,
    )


def _pseudonym(value: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"sinew-clinical:{value}"))


class Mailbox:
    """One durable pull consumer: fetch a batch, apply it in one transaction, then ack."""

    def __init__(
        self,
        wiring: Wiring,
        store,
        subscription,
        stream: str,
        metrics: RuntimeMetrics,
        on_commit: Callable[[], None],
        batch_size: int = 200,
    ) -> None:
        self.wiring = wiring
        self.store = store
        self.subscription = subscription
        self.stream = stream
        self.metrics = metrics
        self.on_commit = on_commit
        self.batch_size = batch_size
        self.stopping = asyncio.Event()
        self.last_batch_at: float | None = None

    async def run(self) -> None:
        # The next batch is fetched while this one's transaction runs on the database thread.
        upcoming = asyncio.create_task(self._fetch())
        try:
            while not self.stopping.is_set():
                messages = await upcoming
                upcoming = asyncio.create_task(self._fetch())
                if messages:
                    await self.handle(messages)
        finally:
            # Fetched but not handled: redelivered after the ack wait, to this or the next start.
            upcoming.cancel()
            await asyncio.gather(upcoming, return_exceptions=True)

    async def _fetch(self) -> list[Msg]:
        try:
            return await self.subscription.fetch(self.batch_size, timeout=1.0)
        except TimeoutError:
            return []  # nothing pending: normal on a quiet stream
        except Exception as error:  # disconnected, consumer gone: keep trying
            if not self.stopping.is_set():
                log.warning("fetch from %s failed: %r", self.stream, error)
                await asyncio.sleep(1.0)
            return []

    async def handle(self, messages: list[Msg]) -> None:
        deliveries = [self._decode(m) for m in messages]
        if all(d.deliveries == 1 for d in deliveries):
            await self._apply(deliveries)
            return
        # A redelivery may mean the last attempt took the process down with it: go one message
        # at a time, noting each attempt first, so a poison message is caught on its own and
        # does not take its batch mates with it.
        for delivery in deliveries:
            if delivery.deliveries > 1:
                outcome = await self.store.transact(self.wiring.note_attempt, delivery)
                if outcome is not None:
                    self.on_commit()
                    await self._settle(delivery, outcome)
                    continue
            await self._apply([delivery])

    async def _apply(self, deliveries: list[Delivery]) -> None:
        started = time.perf_counter()
        try:
            outcomes = await self.store.transact(self.wiring.apply_batch, deliveries)
        except Exception:
            log.exception(
                "batch of %d from %s failed to commit; naking", len(deliveries), self.stream
            )
            for delivery in deliveries:
                await delivery.msg.nak(delay=self.wiring.policy.nak_delay(delivery.deliveries))
            return
        self.metrics.labels(self.metrics.batch_seconds).observe(time.perf_counter() - started)
        self.last_batch_at = time.time()
        fault_point("after_commit")
        self.on_commit()
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            await self._settle(delivery, outcome)

    def _decode(self, message: Msg) -> Delivery:
        meta = message.metadata
        delivery = self.wiring.decode(
            message.subject,
            message.data,
            message.headers,
            stream=meta.stream,
            stream_seq=meta.sequence.stream,
            deliveries=meta.num_delivered,
        )
        delivery.msg = message
        return delivery

    async def _settle(self, delivery: Delivery, outcome: Outcome) -> None:
        message, contract, m = delivery.msg, delivery.contract, self.metrics
        m.labels(m.handled, contract=contract, outcome=outcome.kind).inc()
        if outcome.kind == "applied":
            m.labels(m.handler_seconds, contract=contract).observe(outcome.handler_seconds)
            age = (utc_now() - delivery.envelope.time).total_seconds()
            m.labels(m.event_age_seconds, contract=contract).observe(max(age, 0.0))
            await message.ack()
        elif outcome.kind == "duplicate":
            m.labels(m.duplicates, contract=contract).inc()
            await message.ack()
        elif outcome.kind == "recorded":
            await message.ack()
        elif outcome.kind == "dead_letter":
            m.labels(m.dead_lettered, contract=contract, cause=outcome.cause).inc()
            log.warning(
                "dead letter %s on %s: %s", outcome.dead_letter_id, delivery.subject, outcome.reason
            )
            # term() carries no reason; +TERM with one shows in the server's advisory.
            await message._client.publish(message.reply, f"+TERM {outcome.reason}"[:1000].encode())
        else:
            m.labels(m.failed, contract=contract).inc()
            await message.nak(delay=self.wiring.policy.nak_delay(delivery.deliveries))


class ExhaustedMailbox:
    """Reads the max-deliveries advisories of this service's mailboxes (kept in a stream) and
    dead-letters each message JetStream stopped redelivering: one the service crashed on, or
    never finished within the ack wait. Without this such a message would sit unseen."""

    def __init__(
        self,
        wiring: Wiring,
        store,
        subscription,
        js,
        metrics: RuntimeMetrics,
        on_commit: Callable[[], None],
    ) -> None:
        self.wiring = wiring
        self.store = store
        self.subscription = subscription
        self.js = js
        self.metrics = metrics
        self.on_commit = on_commit
        self.stream = "ADVISORIES"
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        while not self.stopping.is_set():
            try:
                advisories = await self.subscription.fetch(50, timeout=1.0)
            except TimeoutError:
                continue
            except Exception as error:
                if not self.stopping.is_set():
                    log.warning("fetch of advisories failed: %r", error)
                    await asyncio.sleep(1.0)
                continue
            for advisory in advisories:
                try:
                    await self._dead_letter(msgspec.json.decode(advisory.data))
                except Exception:
                    log.exception("could not dead-letter from advisory %r", advisory.data[:200])
                    await advisory.nak(delay=5.0)
                    continue
                await advisory.ack()

    async def _dead_letter(self, advisory: dict) -> None:
        stream, seq, deliveries = advisory["stream"], advisory["stream_seq"], advisory["deliveries"]
        try:
            original = await self.js.get_msg(stream, seq)
        except Exception as error:  # aged out of the stream, or deleted by an operator
            log.error("message %s/%d exhausted its deliveries and is gone: %r", stream, seq, error)
            return
        delivery = self.wiring.decode(
            original.subject,
            original.data or b"",
            original.headers,
            stream=stream,
            stream_seq=seq,
            deliveries=deliveries,
        )
        reason = (
            f"JetStream stopped redelivering after {deliveries} deliveries without an ack: "
            "the service crashed or timed out while handling it"
        )
        outcome = await self.store.transact(self.wiring.exhaust, delivery, reason)
        if outcome.kind == "dead_letter":
            m = self.metrics
            m.labels(m.dead_lettered, contract=delivery.contract, cause="exhausted").inc()
            log.warning(
                "dead letter %s on %s: %s", outcome.dead_letter_id, delivery.subject, reason
            )
            self.on_commit()


def record_inbox(
    conn: sqlite3.Connection, key: str, stream: str, stream_seq: int, subject: str, outcome: str
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO sinew_inbox VALUES (?, ?, ?, ?, ?, ?)",
        (key, stream, stream_seq, subject, outcome, utc_now().isoformat()),
    )
