"""What a handler sees: the database inside the batch transaction, the incoming envelope, what
the service made of its settings at start, and `emit` to write events to the outbox in that same
transaction."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

import msgspec

from sinew.contracts.catalogue import Channel
from sinew.contracts.envelope import Envelope, derived_event_id, utc_now

_encoder = msgspec.json.Encoder(decimal_format="string")


@dataclass
class Outgoing:
    event_id: str
    subject: str
    headers: dict[str, str]
    payload: bytes


class Publications:
    """The channels a service publishes, found by message type."""

    def __init__(self, channels: list[Channel]) -> None:
        self._by_type: dict[type, list[Channel]] = {}
        self._by_name = {c.name: c for c in channels}
        for channel in channels:
            if channel.message is not None:
                self._by_type.setdefault(channel.message, []).append(channel)

    def channel_for(self, message: msgspec.Struct, name: str | None) -> Channel:
        if name is not None:
            return self._by_name[name]
        candidates = self._by_type.get(type(message), [])
        if len(candidates) != 1:
            raise LookupError(
                f"{type(message).__name__}: {len(candidates)} channels of this service carry it;"
                " name one with channel="
            )
        return candidates[0]


@dataclass
class Context:
    db: sqlite3.Connection
    envelope: Envelope
    site: str
    service: str
    traceparent: str
    publications: Publications
    # What the ids of emitted events derive from: the inbox key of the message being handled,
    # so two messages never derive the same ids, and one message always derives the same.
    id_seed: str
    # What the service derived from its settings at start (ServiceDefinition.configure), e.g.
    # usage's patient-token key: per runtime, since one process may run several sites.
    config: Any = None
    outgoing: list[Outgoing] = field(default_factory=list)

    def emit(
        self, message: msgspec.Struct, *, about: str | None = None, channel: str | None = None
    ) -> str:
        """Write an event to the outbox; it is published after the transaction commits.

        Its id derives from the message being handled, so a retried or rebuilt handler emits the
        very same ids and every consumer's inbox recognises them."""
        target = self.publications.channel_for(message, channel)
        return self._append(target, _encoder.encode(message), about)

    def _append(self, target: Channel, payload: bytes, about: str | None) -> str:
        event_id = derived_event_id(self.id_seed, len(self.outgoing))
        envelope = Envelope(
            id=event_id,
            source=f"/sinew/{self.site}/{self.service}",
            type=target.ce_type,
            time=utc_now(),
            site=self.site,
            correlation_id=self.envelope.correlation_id,
            subject=about or self.envelope.subject,
            causation_id=self.envelope.id,
            traceparent=self.traceparent,
            content_type=target.content_type,
        )
        self.outgoing.append(
            Outgoing(event_id, target.subject(self.site), envelope.headers(), payload)
        )
        return event_id

    def emit_document(self, data: bytes, *, channel: str, about: str | None = None) -> str:
        """Write a foreign-format document (an X12 850, say) to the outbox on a channel whose
        content type says what it is."""
        target = self.publications.channel_for(None, channel)
        return self._append(target, data, about)

    def flush(self) -> None:
        """Write what was emitted to the outbox table (inside the caller's transaction)."""
        now = utc_now().isoformat()
        self.db.executemany(
            "INSERT INTO sinew_outbox (event_id, subject, headers, payload, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (o.event_id, o.subject, msgspec.json.encode(o.headers).decode(), o.payload, now)
                for o in self.outgoing
            ],
        )
