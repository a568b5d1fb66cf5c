"""Operational events every service publishes in its own domain: dead letters and their replays."""

from typing import Literal

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
