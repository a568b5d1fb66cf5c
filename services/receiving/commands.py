"""What people do over HTTP, each run in one transaction like a handler: receive goods against a
PO, receive an ASN in full, resolve an exception."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import msgspec

from sinew.common.context import Context
from sinew.common.http import ApiError
from sinew.contracts.common import Code, Quantity, Text, UtcTime
from sinew.contracts.items import Gtin, Lot, Serial
from sinew.contracts.procurement import LineNumber
from sinew.masterdata.replica import MasterData

from . import store
from .domain import (
    Arrival,
    Correction,
    PendingReceipt,
    ReceiptHeader,
    Resolution,
    after_resolution,
    can_resolve,
)
from .handlers import new_id, process, resolve

# A client's own receipt id doubles as its idempotency key; it is short enough for a suffix.
ClientReceiptId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]


class ReceiptLineRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    quantity: Quantity
    po_line_number: LineNumber | None = None
    item_id: Code | None = None
    gtin: Gtin | None = None
    lot: Lot | None = None
    serial: Serial | None = None
    expiry: date | None = None


class ReceiptRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    po_number: Code
    lines: Annotated[tuple[ReceiptLineRequest, ...], msgspec.Meta(min_length=1, max_length=500)]
    location_id: Code | None = None  # the PO's ship-to location when not given
    asn_number: Code | None = None
    receipt_id: ClientReceiptId | None = None
    received_at: UtcTime | None = None


class AsnReceiptRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    location_id: Code | None = None
    received_at: UtcTime | None = None


class CorrectionRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    po_number: Code | None = None
    po_line_number: LineNumber | None = None
    item_id: Code | None = None
    quantity: Quantity | None = None
    lot: Lot | None = None
    serial: Serial | None = None
    expiry: date | None = None


class ResolveRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    resolution: Resolution
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
    correction: CorrectionRequest | None = None


def _positive(quantity: Quantity | None, path: str) -> None:
    if quantity is not None and not (quantity.value.is_finite() and quantity.value > 0):
        raise ApiError(422, "invalid", f"{path}.value must be greater than 0")


def _outcome(conn, receipt_id: str | None, exception_ids: list[str]) -> dict:
    return {
        "receipt": store.receipt_view(conn, receipt_id) if receipt_id else None,
        "exceptions": [store.exception_view(store.exception_row(conn, e)) for e in exception_ids],
    }


def receive(ctx: Context, request: ReceiptRequest, received_by: Text) -> tuple[int, dict]:
    for n, line in enumerate(request.lines):
        _positive(line.quantity, f"$.lines[{n}].quantity")
        if line.po_line_number is None and line.item_id is None and line.gtin is None:
            raise ApiError(
                422, "invalid", f"$.lines[{n}] names neither po_line_number, item_id nor gtin"
            )
    key = f"request:{request.receipt_id}" if request.receipt_id else None
    if key and (answer := store.seen(ctx.db, key)) is not None:
        return 200, answer  # the same receipt sent again: answered, not received twice
    receipt_id = request.receipt_id or new_id(ctx, "GR")
    header = ReceiptHeader(
        receipt_id=receipt_id,
        po_number=request.po_number,
        location_id=request.location_id,
        source="api",
        received_by=received_by,
        received_at=request.received_at or ctx.envelope.time,
        asn_number=request.asn_number,
    )
    arrivals = tuple(
        Arrival(
            po_line_number=line.po_line_number,
            item_id=line.item_id,
            gtin=line.gtin,
            quantity=line.quantity,
            lot=line.lot,
            serial=line.serial,
            expiry=line.expiry,
        )
        for line in request.lines
    )
    received, exceptions = process(ctx, PendingReceipt(header=header, arrivals=arrivals))
    answer = {"receipt_id": receipt_id, **_outcome(ctx.db, received, exceptions)}
    if key:
        store.remember(ctx.db, key, answer)
    return 201, answer


def receive_asn(
    ctx: Context, asn_number: str, request: AsnReceiptRequest, received_by: Text
) -> dict:
    """Everything the ASN lists, received as listed: one receipt per PO, lots, serials and
    expiry taken from the ASN."""
    found = store.asn(ctx.db, asn_number)
    if found is None:
        raise ApiError(404, "not_found", f"no ASN {asn_number}")
    asn, row = found
    if row["received_at"]:
        raise ApiError(
            409, "already_received", f"ASN {asn_number} was received at {row['received_at']}"
        )
    master = MasterData(ctx.db)
    outcomes = []
    for n, shipped_order in enumerate(asn.orders):
        arrivals = []
        for shipped in shipped_order.items:
            named = Arrival(
                po_line_number=shipped.po_line_number,
                item_id=shipped.item_id,
                gtin=shipped.gtin,
                supplier_id=asn.supplier_id,
                supplier_part=shipped.supplier_part,
            )
            if shipped.item_id is None and shipped.supplier_part:
                item = master.item_by_supplier_part(asn.supplier_id, shipped.supplier_part)
                named = msgspec.structs.replace(named, item_id=item.item_id if item else None)
            if not shipped.lots:
                arrivals.append(msgspec.structs.replace(named, quantity=shipped.quantity))
            for lot in shipped.lots:
                facts = dict(lot=lot.lot, expiry=lot.expiry)
                if not lot.serials:
                    arrivals.append(msgspec.structs.replace(named, quantity=lot.quantity, **facts))
                    continue
                each = Quantity(lot.quantity.value / len(lot.serials), lot.quantity.uom)
                arrivals.extend(
                    msgspec.structs.replace(named, quantity=each, serial=serial, **facts)
                    for serial in lot.serials
                )
        if not arrivals:
            continue
        header = ReceiptHeader(
            receipt_id=new_id(ctx, "GR", str(n)),
            po_number=shipped_order.po_number,
            location_id=request.location_id or asn.ship_to_location_id,
            source="asn",
            received_by=received_by,
            received_at=request.received_at or ctx.envelope.time,
            asn_number=asn_number,
        )
        received, exceptions = process(ctx, PendingReceipt(header=header, arrivals=tuple(arrivals)))
        outcomes.append(
            {"po_number": shipped_order.po_number, **_outcome(ctx.db, received, exceptions)}
        )
    store.mark_asn_received(ctx.db, asn_number, ctx.envelope.time)
    return {"asn_number": asn_number, "orders": outcomes}


def resolve_exception(
    ctx: Context, exception_id: str, request: ResolveRequest, resolved_by: Text
) -> dict:
    row = store.exception_row(ctx.db, exception_id)
    if row is None:
        raise ApiError(404, "not_found", f"no receiving exception {exception_id}")
    if row["status"] != "open":
        raise ApiError(
            409,
            "already_resolved",
            f"{exception_id} was resolved ({row['resolution']}) by {row['resolved_by']}",
        )
    correction = (
        Correction(**msgspec.structs.asdict(request.correction)) if request.correction else None
    )
    if correction is not None:
        _positive(correction.quantity, "$.correction.quantity")
    why_not = can_resolve(row["type"], request.resolution, correction)
    if why_not:
        raise ApiError(409, "resolution_not_possible", why_not)
    pending = after_resolution(store.held(row), row["type"], request.resolution, correction)
    received, exceptions = process(ctx, pending) if pending is not None else (None, [])
    resolve(
        ctx,
        exception_id,
        row["type"],
        request.resolution,
        resolved_by,
        request.reason,
        received,
    )
    return {
        "exception": store.exception_view(store.exception_row(ctx.db, exception_id)),
        **_outcome(ctx.db, received, exceptions),
    }
