"""The envelope every message carries in its NATS headers.

CloudEvents attributes use the NATS protocol binding's ``ce-`` prefix; Sinew adds the site, the
correlation id (one per business transaction) and the causation id (the event that caused this
one). ``traceparent`` is W3C trace context, and ``Nats-Msg-Id`` is the event id so that JetStream
drops a republished duplicate.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

SPEC_VERSION = "1.0"

CE_ID = "ce-id"
CE_SOURCE = "ce-source"
CE_TYPE = "ce-type"
CE_TIME = "ce-time"
CE_SUBJECT = "ce-subject"
CE_SPECVERSION = "ce-specversion"
CE_DATACONTENTTYPE = "ce-datacontenttype"
SITE = "sinew-site"
CORRELATION_ID = "sinew-correlation-id"
CAUSATION_ID = "sinew-causation-id"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
MSG_ID = "Nats-Msg-Id"

HEADER_DOCS: dict[str, str] = {
    CE_ID: "Event id (UUID); unique per event, equal to Nats-Msg-Id",
    CE_SOURCE: "Who produced the event, e.g. /sinew/north/usage or /ehr/north",
    CE_TYPE: "Contract name, e.g. org.sinew.usage.procedure-usage.recorded.v1",
    CE_TIME: "When the event happened, RFC 3339 UTC",
    CE_SUBJECT: "Business key the event is about (PO number, case id, invoice number)",
    CE_SPECVERSION: "CloudEvents spec version, 1.0",
    CE_DATACONTENTTYPE: "Payload media type; application/json unless the channel says otherwise",
    SITE: "Site code, equal to the site token of the subject",
    CORRELATION_ID: "One id for the whole business transaction, carried through every hop",
    CAUSATION_ID: "Id of the event that caused this one",
    TRACEPARENT: "W3C trace context",
    MSG_ID: "JetStream de-duplication id, equal to ce-id",
}


def new_event_id() -> str:
    return str(uuid.uuid4())


def derived_event_id(causation_id: str, ordinal: int) -> str:
    """The id of the n-th event caused by one message: the same on every retry or rebuild."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sinew:{causation_id}:{ordinal}"))


def utc_now() -> datetime:
    return datetime.now(UTC)


class Envelope(msgspec.Struct, frozen=True):
    id: str
    source: str
    type: str
    time: datetime
    site: str
    correlation_id: str
    subject: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    content_type: str = "application/json"

    def headers(self) -> dict[str, str]:
        headers = {
            CE_SPECVERSION: SPEC_VERSION,
            CE_ID: self.id,
            CE_SOURCE: self.source,
            CE_TYPE: self.type,
            CE_TIME: self.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            CE_DATACONTENTTYPE: self.content_type,
            SITE: self.site,
            CORRELATION_ID: self.correlation_id,
            MSG_ID: self.id,
        }
        if self.subject:
            headers[CE_SUBJECT] = self.subject
        if self.causation_id:
            headers[CAUSATION_ID] = self.causation_id
        if self.traceparent:
            headers[TRACEPARENT] = self.traceparent
        return headers

    @classmethod
    def from_headers(cls, headers: dict[str, str] | None, fallback_id: str) -> Envelope:
        """Read what an outside system sent; missing attributes get safe defaults."""
        headers = headers or {}
        event_id = headers.get(CE_ID) or headers.get(MSG_ID) or fallback_id
        try:
            time = datetime.fromisoformat(headers[CE_TIME].replace("Z", "+00:00"))
            if time.tzinfo is None:
                time = time.replace(tzinfo=UTC)
        except (KeyError, ValueError):
            time = utc_now()
        return cls(
            id=event_id,
            source=headers.get(CE_SOURCE, "unknown"),
            type=headers.get(CE_TYPE, ""),
            time=time,
            site=headers.get(SITE, ""),
            correlation_id=headers.get(CORRELATION_ID) or event_id,
            subject=headers.get(CE_SUBJECT),
            causation_id=headers.get(CAUSATION_ID),
            traceparent=headers.get(TRACEPARENT),
            content_type=headers.get(CE_DATACONTENTTYPE, "application/json"),
        )
