"""The contract catalogue: every subject, who may publish it, who consumes it, where it is kept.

This is the single source of truth. The JSON Schemas, the AsyncAPI document, the stream and
consumer declarations and the NATS permissions are all generated from it (`just contracts`), and
the runtime provisions and binds consumers from it.

Subject scheme, everywhere: ``sinew.<domain>.<site>.<entity>.<event>.v<major>``. Outside systems
write only to the ``ingress`` domain; each service writes only its own domain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

ROOT = "sinew"
INGRESS = "ingress"

SERVICES: dict[str, str] = {
    "items": "Item master, suppliers, contracts, substitutions, locations, cost centres",
    "procurement": "Requisitions, approvals, purchase orders, supplier acknowledgements",
    "receiving": "Advance ship notices and goods receipts",
    "usage": "Clinical consumption and the lot/serial traceability index",
    "matching": "Supplier invoices, matching, exception queues and payment status",
    "replenishment": "On-hand per location, par levels and replenishment signals",
    "observability": "Metrics, backlogs, dead letters, timelines and the dashboard",
}

# Outside systems get one NATS user per site, allowed to publish only their own ingress subjects.
OUTSIDE_SYSTEMS: dict[str, str] = {
    "mdm": "Master data management feed (items, suppliers, contracts, locations)",
    "ehr": "EHR and procedure documentation systems",
    "ap": "AP automation SaaS",
    "supplier": "Supplier network / EDI gateway",
    "erp": "ERP payments",
    "warehouse": "Warehouse management system",
    "dock": "Dock and point-of-use scanners",
}

JSON = "application/json"
HL7V2 = "application/hl7-v2"
FHIR_JSON = "application/fhir+json"
X12 = "application/edi-x12"

DEFAULT_MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class Stream:
    name: str
    domain: str
    description: str
    # Ingress keeps the raw documents for audit and replay; canonical streams keep history so a
    # service can rebuild its database from them.
    max_age_days: int = 400
    duplicate_window_seconds: int = 120
    # Set on a stream that takes only these publishers' channels of its domain: the EHR's raw
    # documents carry patient identifiers, so they get a stream of their own that only the usage
    # service may read.
    publishers: tuple[str, ...] = ()
    # Holds patient identifiers: only the services that consume it may read it, operators not.
    phi: bool = False


@dataclass(frozen=True)
class Channel:
    """One subject family: a message type at one major version, on every site."""

    domain: str
    entity: str
    event: str
    version: int
    message: type | None  # a msgspec Struct; None for documents in a foreign format (HL7, X12)
    publisher: str
    consumers: tuple[str, ...]
    summary: str
    content_type: str = JSON
    max_bytes: int = DEFAULT_MAX_BYTES
    # Outside systems that read this channel (the supplier network reads purchase orders, the
    # warehouse reads replenishment signals); each gets a durable consumer of its own.
    readers: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.domain}.{self.entity}.{self.event}.v{self.version}"

    @property
    def family(self) -> str:
        """The name without its version: every major version of one message."""
        return f"{self.domain}.{self.entity}.{self.event}"

    @property
    def ce_type(self) -> str:
        return f"org.sinew.{self.name}"

    @property
    def is_ingress(self) -> bool:
        return self.domain == INGRESS

    def subject(self, site: str) -> str:
        return f"{ROOT}.{self.domain}.{site}.{self.entity}.{self.event}.v{self.version}"

    def any_version(self, site: str) -> str:
        return f"{ROOT}.{self.domain}.{site}.{self.entity}.{self.event}.*"


@dataclass(frozen=True)
class ParsedSubject:
    domain: str
    site: str
    entity: str
    event: str
    version: int

    @property
    def name(self) -> str:
        return f"{self.domain}.{self.entity}.{self.event}.v{self.version}"

    @property
    def family(self) -> str:
        return f"{self.domain}.{self.entity}.{self.event}"


def parse_subject(subject: str) -> ParsedSubject | None:
    parts = subject.split(".")
    if len(parts) != 6 or parts[0] != ROOT or not parts[5].startswith("v"):
        return None
    try:
        version = int(parts[5][1:])
    except ValueError:
        return None
    return ParsedSubject(parts[1], parts[2], parts[3], parts[4], version)


@dataclass
class Catalogue:
    streams: list[Stream]
    channels: list[Channel]
    services: dict[str, str] = field(default_factory=lambda: dict(SERVICES))
    outside_systems: dict[str, str] = field(default_factory=lambda: dict(OUTSIDE_SYSTEMS))

    def __post_init__(self) -> None:
        self._by_name = {c.name: c for c in self.channels}
        self._stream_of = {c.name: self._place(c) for c in self.channels}
        problems = list(self._problems())
        if problems:
            raise ValueError("contract catalogue is inconsistent:\n  " + "\n  ".join(problems))

    def _problems(self) -> Iterable[str]:
        if len(self._by_name) != len(self.channels):
            yield "two channels share a name"
        parties = set(self.services) | set(self.outside_systems)
        for channel in self.channels:
            if self._stream_of[channel.name] is None:
                yield f"{channel.name}: no stream holds domain {channel.domain!r}"
            if channel.publisher not in parties:
                yield f"{channel.name}: unknown publisher {channel.publisher!r}"
            if channel.is_ingress != (channel.publisher in self.outside_systems):
                yield f"{channel.name}: only outside systems publish ingress, only services the rest"
            if not channel.is_ingress and channel.domain != channel.publisher:
                yield f"{channel.name}: a service publishes only in its own domain"
            for consumer in channel.consumers:
                if consumer not in self.services:
                    yield f"{channel.name}: consumer {consumer!r} is not a service"
            for reader in channel.readers:
                if reader not in self.outside_systems:
                    yield f"{channel.name}: reader {reader!r} is not an outside system"
            if channel.content_type == JSON and channel.message is None:
                yield f"{channel.name}: a JSON channel needs a message type"

    def channel(self, name: str) -> Channel:
        return self._by_name[name]

    def find(self, subject: str) -> Channel | None:
        parsed = parse_subject(subject)
        return self._by_name.get(parsed.name) if parsed else None

    def _place(self, channel: Channel) -> Stream | None:
        streams = [s for s in self.streams if s.domain == channel.domain]
        dedicated = [s for s in streams if channel.publisher in s.publishers]
        shared = [s for s in streams if not s.publishers]
        return (dedicated or shared or [None])[0]

    def stream_for(self, channel: Channel) -> Stream:
        return self._stream_of[channel.name]

    def stream_subjects(self, stream: Stream) -> list[str]:
        """A domain held by one stream takes all of it; a domain split between streams (ingress)
        lists each channel family, so no two streams claim the same subject."""
        if len([s for s in self.streams if s.domain == stream.domain]) == 1:
            return [f"{ROOT}.{stream.domain}.>"]
        return sorted(
            {c.any_version("*") for c in self.channels if self._stream_of[c.name] == stream}
        )

    def consumed_by(self, service: str) -> list[Channel]:
        return [c for c in self.channels if service in c.consumers]

    def read_by(self, system: str) -> list[Channel]:
        return [c for c in self.channels if system in c.readers]

    def published_by(self, party: str) -> list[Channel]:
        return [c for c in self.channels if c.publisher == party]

    def families(self, service: str) -> dict[str, list[Channel]]:
        """Consumed channels grouped by family, so a newer major version can be recognised."""
        grouped: dict[str, list[Channel]] = {}
        for channel in self.consumed_by(service):
            grouped.setdefault(channel.family, []).append(channel)
        return grouped

    def extended(self, streams: list[Stream], channels: list[Channel], **parties) -> Catalogue:
        """A copy with more streams and channels, for a sample or test service."""
        services = {**self.services, **parties.get("services", {})}
        outside = {**self.outside_systems, **parties.get("outside_systems", {})}
        return Catalogue(self.streams + streams, self.channels + channels, services, outside)
