"""Taking a master-data change, from the MDM feed or the API: the same transaction either way.

A change newer than what is held is checked, kept at its version, published as the canonical
event and queued for the KV bucket. An older (or the same) version arriving late is ignored and
logged: replays and out-of-order feeds never roll master data back."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec
from prometheus_client import Counter

from sinew.common.context import Context
from sinew.common.errors import Invalid
from sinew.contracts.items import MasterDataUpsert
from sinew.masterdata import replica

from . import store
from .domain import (
    KINDS,
    Rejected,
    api_version,
    canonical,
    check,
    identity_of,
    is_newer,
    kind_of,
    replica_writes,
)
from .store import HeldMasterData

log = logging.getLogger("sinew.items")

# The ce-source of a bulk file import (`sinew import`) ends in this segment.
IMPORT_SOURCE_SUFFIX = "/import"


@dataclass(frozen=True)
class Accepted:
    event: Any
    notes: list[str]
    created: bool


def accept(
    ctx: Context, record: Any, *, source: str, changed_by: str | None = None
) -> Accepted | None:
    """Keep the record if it is newer than what is held; None when it is not."""
    kind, identity = kind_of(record), identity_of(record)
    held = HeldMasterData(ctx.db)
    previous = held.record(kind.name, identity)
    change = dict(kind=kind.name, record_id=identity, version=record.version, source=source)
    if previous is not None and not is_newer(previous.version, record.version):
        store.record_change(
            ctx.db,
            **change,
            outcome="stale",
            changed_by=changed_by,
            event_id=None,
            notes=[f"version {previous.version} is held"],
        )
        return None
    notes = check(record, held)
    event = canonical(record, source, ctx.envelope.time)
    replica.apply(ctx.db, event)
    if kind.name == "item":
        store.index_item(ctx.db, event)
    event_id = ctx.emit(event, about=identity)
    store.queue_kv_writes(ctx.db, replica_writes(event, previous))
    store.record_change(
        ctx.db, **change, outcome="applied", changed_by=changed_by, event_id=event_id, notes=notes
    )
    return Accepted(event, notes, created=previous is None)


def upsert_from_feed(record: Any, ctx: Context) -> None:
    source = "import" if ctx.envelope.source.rstrip("/").endswith(IMPORT_SOURCE_SUFFIX) else "mdm"
    try:
        accepted = accept(ctx, record, source=source, changed_by=ctx.envelope.source)
    except Rejected as rejected:
        # The MDM sender must fix the record: a dead letter says exactly what is wrong.
        raise Invalid(rejected.reason) from None
    if accepted is None:
        kind = kind_of(record).name
        _count_stale(ctx.site, kind)
        log.info(
            "ignored %s %s version %d: a newer or equal version is held",
            kind,
            identity_of(record),
            record.version,
        )
    elif accepted.notes:
        log.info("%s %s: %s", kind_of(record).name, identity_of(record), "; ".join(accepted.notes))


def upsert_over_api(
    ctx: Context, record: MasterDataUpsert, requested_version: int | None, changed_by: str
) -> Accepted:
    """A change from a person: the next version, unless they name a newer one themselves."""
    kind, identity = kind_of(record), identity_of(record)
    held = HeldMasterData(ctx.db).held_version(kind.name, identity)
    version = api_version(kind.name, identity, held, requested_version)
    accepted = accept(
        ctx, msgspec.structs.replace(record, version=version), source="api", changed_by=changed_by
    )
    assert accepted is not None  # the version was chosen newer than the one held
    return accepted


# -- metrics --------------------------------------------------------------------------------

_stale_versions: dict[str, Counter] = {}


def count_stale_versions(runtime) -> None:
    """Expose the late versions ignored on the runtime's /metrics (handlers see only their
    context, so the counter is found by site)."""
    _stale_versions[runtime.site] = Counter(
        "sinew_items_stale_versions_ignored",
        "Master-data records ignored because a newer or equal version was held",
        ["service", "site", "kind"],
        registry=runtime.metrics.registry,
    )


def _count_stale(site: str, kind: str) -> None:
    counter = _stale_versions.get(site)
    if counter is not None:
        counter.labels(service="items", site=site, kind=kind).inc()


# The runtime checks the channel's message type (the tagged union) has a handler, and dispatches
# on the concrete type decoded.
HANDLERS = {MasterDataUpsert: upsert_from_feed} | {
    kind.upsert: upsert_from_feed for kind in KINDS.values()
}
