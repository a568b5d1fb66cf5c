"""One recorder for every canonical event: observability reacts to nothing, it writes down what
happened, with its envelope and the business keys it names."""

from __future__ import annotations

import msgspec

from sinew.common.context import Context
from sinew.contracts import CATALOGUE
from sinew.contracts.envelope import utc_now
from sinew.masterdata import replica

from . import store

SERVICE = "observability"
CONSUMED = CATALOGUE.consumed_by(SERVICE)
_BY_TYPE: dict[type, list[str]] = {}
for _channel in CONSUMED:
    _BY_TYPE.setdefault(_channel.message, []).append(_channel.name)


class X12DocumentSeen(msgspec.Struct, frozen=True, kw_only=True):
    """An outbound X12 document noted by size only: its content is the supplier's business."""

    site: str
    size_bytes: int


def parse_x12(data: bytes, _headers: dict[str, str], site: str) -> X12DocumentSeen:
    return X12DocumentSeen(site=site, size_bytes=len(data))


def contract_of(message: msgspec.Struct, ce_type: str) -> str:
    """The channel an event came on: its ce-type says; without one, its type (and for dead
    letters, the service that recorded them)."""
    name = ce_type.removeprefix("org.sinew.")
    if name in _NAMES:
        return name
    if isinstance(message, X12DocumentSeen):
        return "procurement.purchase-order-x12.sent.v1"
    service = getattr(message, "service", None)
    candidates = _BY_TYPE.get(type(message), [])
    if service:
        candidates = [c for c in candidates if c.startswith(f"{service}.")] or candidates
    return candidates[0]


_NAMES = {c.name for c in CONSUMED}


def record(message: msgspec.Struct, ctx: Context) -> None:
    envelope = ctx.envelope
    contract = contract_of(message, envelope.type)
    payload = msgspec.to_builtins(message)
    if type(message) in replica.KINDS:
        # Kept for names on the dashboard: a manager reads "Guidewire 0.035", not an item id.
        replica.apply(ctx.db, message)
    store.record_event(
        ctx.db,
        {
            "event_id": envelope.id,
            "contract": contract,
            "subject": CATALOGUE.channel(contract).subject(ctx.site),
            "site": ctx.site,
            "source": envelope.source,
            "correlation_id": envelope.correlation_id,
            "causation_id": envelope.causation_id,
            "about": envelope.subject,
            "event_time": store.iso(envelope.time),
            "handled_at": store.iso(utc_now()),
        },
        payload,
    )


HANDLERS = {
    **{channel.message: record for channel in CONSUMED if channel.message is not None},
    X12DocumentSeen: record,
}
PARSERS = {channel.name: parse_x12 for channel in CONSUMED if channel.message is None}
