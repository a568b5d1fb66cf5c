"""A small pass-through service over the real runtime, for the runtime's tests and the benchmark.

It takes `sample submitted` documents from an outside system ("sampler"), records each one, and
publishes `sample accepted`. Its table counts applications per sample id, so a test sees at once
whether anything was applied twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import msgspec

from sinew.common.config import Settings
from sinew.common.context import Context
from sinew.common.errors import Invalid, Transient
from sinew.common.service import ServiceDefinition, serve
from sinew.contracts import CATALOGUE, ops_channels
from sinew.contracts.catalogue import INGRESS, Channel, Stream
from sinew.contracts.common import Amount, Code, SiteCode, UtcTime


class SampleSubmitted(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    sample_id: Code
    value: int
    amount: Amount
    note: str | None = None


class SampleSubmittedV2(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    sample_id: Code
    value: int
    amount: Amount
    priority: int = 0


class SampleAccepted(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    sample_id: Code
    value: int
    amount: Amount
    accepted_at: UtcTime


SUBMITTED_V1 = Channel(
    INGRESS,
    "sample",
    "submitted",
    1,
    SampleSubmitted,
    "sampler",
    ("passthrough",),
    "A sample document from the sampler",
)
SUBMITTED_V2 = Channel(
    INGRESS,
    "sample",
    "submitted",
    2,
    SampleSubmittedV2,
    "sampler",
    ("passthrough",),
    "Version 2 of the sample document",
)
ACCEPTED = Channel(
    "passthrough",
    "sample",
    "accepted",
    1,
    SampleAccepted,
    "passthrough",
    ("observability",),
    "The pass-through service took a sample",
)

PARTIES = dict(
    services={"passthrough": "Runtime sample service"},
    outside_systems={"sampler": "Sample outside system"},
)
STREAMS = [Stream("PASSTHROUGH", "passthrough", "Sample service events")]
CATALOGUE_V1 = CATALOGUE.extended(
    STREAMS, [SUBMITTED_V1, ACCEPTED, *ops_channels("passthrough")], **PARTIES
)
CATALOGUE_V2 = CATALOGUE.extended(
    STREAMS, [SUBMITTED_V1, SUBMITTED_V2, ACCEPTED, *ops_channels("passthrough")], **PARTIES
)

MIGRATIONS = [
    """
    CREATE TABLE samples (
        sample_id TEXT PRIMARY KEY,
        value INTEGER NOT NULL,
        applied INTEGER NOT NULL
    )
    """,
]


def accept(sample: SampleSubmitted | SampleSubmittedV2, ctx: Context) -> None:
    note = getattr(sample, "note", None) or ""
    if note == "transient":
        raise Transient("the sample's downstream is unavailable")
    if note == "crash":
        # A poison message that takes the whole process down, as a native crash or an OOM kill
        # would; only ever sent to a sample service running as its own process.
        os.kill(os.getpid(), signal.SIGKILL)
    if note == "reject":
        raise Invalid("the sample's note asks to be rejected")
    ctx.db.execute(
        "INSERT INTO samples VALUES (?, ?, 1) ON CONFLICT(sample_id)"
        " DO UPDATE SET applied = applied + 1, value = excluded.value",
        (sample.sample_id, sample.value),
    )
    ctx.emit(
        SampleAccepted(
            site=ctx.site,
            sample_id=sample.sample_id,
            value=sample.value,
            amount=sample.amount,
            accepted_at=ctx.envelope.time,
        ),
        about=sample.sample_id,
    )


def definition(version: int = 1) -> ServiceDefinition:
    handlers = {SampleSubmitted: accept}
    if version >= 2:
        handlers[SampleSubmittedV2] = accept
    return ServiceDefinition("passthrough", "Runtime sample service", handlers, MIGRATIONS)


def catalogue(version: int = 1):
    return CATALOGUE_V2 if version >= 2 else CATALOGUE_V1


def main() -> None:
    from sinew.common import logs
    from sinew.common.provision import DeliveryPolicy

    version = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    settings = Settings.from_env("passthrough")
    logs.configure(settings.log_level, service="passthrough", site=settings.site)
    asyncio.run(
        serve(
            definition(version),
            settings,
            catalogue=catalogue(version),
            policy=DeliveryPolicy(
                max_deliver=4, backoff=[1.0, 1.0, 1.0], nak_delays=[0.2, 0.2, 0.2]
            ),
        )
    )


if __name__ == "__main__":
    main()
