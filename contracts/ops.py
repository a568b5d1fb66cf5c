"""Operational events every service publishes in its own domain: dead letters and their replays,
and the changes people made over its HTTP API."""

from typing import Any, Literal

import msgspec

from .common import Code, SiteCode, UtcTime

DeadLetterCause = Literal[
    "malformed",  # not parseable in its declared format
    "invalid",  # parseable, but fails the contract (missing field, wrong type, bad value)
    "unknown_contract",  # a subject or major version this service does not know
    "oversized",  # larger than the channel allows
    "exhausted",  # a transient failure outlived max_deliver
]


class DeadLetterRecorded(msgspec.Struct, frozen=True, kw_only=True):
    """A message a service could not process. Its original bytes stay in that service's store
    (they may carry patient data); this event says where to find it and why it failed."""

    dead_letter_id: Code
    site: SiteCode
    service: Code
    subject: str
    stream: str
    stream_sequence: int
    contract: str
    cause: DeadLetterCause
    reason: str
    deliveries: int
    size_bytes: int
    event_id: str | None = None
    recorded_at: UtcTime


class DeadLetterReplayed(msgspec.Struct, frozen=True, kw_only=True):
    dead_letter_id: Code
    site: SiteCode
    service: Code
    outcome: Literal["applied", "failed_again", "already_applied"]
    reason: str | None = None
    replayed_by: str
    replayed_at: UtcTime


class CommandRecorded(msgspec.Struct, frozen=True, kw_only=True):
    """A change a person made over a service's HTTP API, as that service applied it. Kept in the
    service's own stream and read back only by that service: a rebuild from history makes the
    same change again, at the same point, with the same outcome."""

    command_id: str
    site: SiteCode
    service: Code
    command: Code  # its name in the service's table of commands
    arguments: list[Any]  # JSON values, in the order the command takes them
    recorded_at: UtcTime
