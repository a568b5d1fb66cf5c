"""Receiving's handlers: master data, purchase orders, ASNs and dock scans in; goods receipts and
receiving exceptions out. Each runs inside the runtime's transaction (a message's or an HTTP
command's); the rules themselves are in domain.py.

"Now" is always the time of the message being handled (`ctx.envelope.time`), so a service
rebuilt from stream history records the very same times.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

import msgspec

from sinew.common.context import Context
from sinew.common.errors import Invalid
from sinew.contracts.common import Quantity
from sinew.contracts.items import ItemUpserted
from sinew.contracts.procurement import (
    PurchaseOrder,
    PurchaseOrderAcknowledged,
    PurchaseOrderApproved,
    PurchaseOrderCancelled,
    PurchaseOrderChanged,
    PurchaseOrderClosed,
)
from sinew.contracts.receiving import (
    AdvanceShipNotice,
    AsnReceived,
    DockScan,
    GoodsReceived,
    ReceiptExceptionRaised,
    ReceiptExceptionResolved,
    ReceiptLine,
)
from sinew.masterdata import replica
from sinew.masterdata.barcodes import BarcodeError, gtin14, parse_udi
from sinew.masterdata.replica import MasterData
from sinew.x12 import X12Error, parse_856

from . import store
from .domain import (
    Arrival,
    Evaluation,
    PendingReceipt,
    Problem,
    ReceiptHeader,
    evaluate,
    identify,
    ordered_base,
    same_wait,
)

log = logging.getLogger("sinew.receiving")

# Who resolves an exception when the receipt it held goes through by itself.
SERVICE = "receiving"


class X12AdvanceShipNotice(AdvanceShipNotice, frozen=True, kw_only=True):
    """An ASN read from an X12 856: the same notice, kept apart so its format is recorded."""


def _now(ctx: Context) -> datetime:
    return ctx.envelope.time


def new_id(ctx: Context, prefix: str, discriminator: str = "") -> str:
    # Derived from the message (or command) being handled and what it emitted so far, so a
    # retried or rebuilt handler names its receipts and exceptions the same way.
    seed = f"{ctx.id_seed}:{prefix}:{discriminator}:{len(ctx.outgoing)}"
    return f"{prefix}-{uuid.uuid5(uuid.NAMESPACE_URL, seed).hex[:16].upper()}"


# -- the receipt flow every source shares ---------------------------------------------------------


def assess(ctx: Context, pending: PendingReceipt) -> tuple[PendingReceipt, Evaluation]:
    """The pending receipt with its PO line found where it can be, and what the rules make
    of it."""
    master = MasterData(ctx.db)
    located = locate(ctx.db, master, pending)
    po_number = located.header.po_number
    order = store.order(ctx.db, po_number) if po_number else None
    return located, evaluate(located, order, master, store.History(ctx.db))


def process(ctx: Context, pending: PendingReceipt) -> tuple[str | None, list[str]]:
    """Evaluate a pending receipt and record what it gives: the receipt id (if anything was
    received) and the ids of the exceptions raised."""
    return record(ctx, *assess(ctx, pending))


def record(
    ctx: Context, pending: PendingReceipt, evaluation: Evaluation
) -> tuple[str | None, list[str]]:
    header, now = pending.header, _now(ctx)
    receipt_id = None
    if evaluation.received:
        po_number = header.po_number
        receipt_id = store.free_receipt_id(ctx.db, header.receipt_id)
        store.insert_receipt(ctx.db, receipt_id, po_number, header, evaluation, now)
        ctx.emit(
            GoodsReceived(
                site=ctx.site,
                receipt_id=receipt_id,
                po_number=po_number,
                supplier_id=evaluation.supplier_id,
                location_id=evaluation.location_id,
                lines=tuple(
                    ReceiptLine(
                        po_line_number=line.po_line_number,
                        item_id=line.item_id,
                        quantity=line.quantity,
                        base_quantity=Quantity(line.base_quantity, line.base_uom),
                        lot=line.lot,
                        serial=line.serial,
                        expiry=line.expiry,
                        gtin=line.gtin,
                    )
                    for line in evaluation.received
                ),
                asn_number=header.asn_number,
                source=header.source,
                received_by=header.received_by,
                received_at=header.received_at,
            ),
            about=po_number,
        )
    exception_ids = [
        _raise(ctx, problem, evaluation.location_id) for problem in evaluation.problems
    ]
    return receipt_id, exception_ids


def _raise(ctx: Context, problem: Problem, location_id: str | None) -> str:
    header = problem.held.header
    exception_id = new_id(ctx, "RX")
    store.insert_exception(ctx.db, exception_id, problem, location_id, _now(ctx))
    ctx.emit(
        ReceiptExceptionRaised(
            site=ctx.site,
            exception_id=exception_id,
            type=problem.type,
            explanation=problem.explanation[:1000],
            po_number=header.po_number,
            po_line_number=problem.po_line_number,
            item_id=problem.item_id,
            quantity=problem.quantity,
            lot=problem.lot,
            serial=problem.serial,
            expiry=problem.expiry,
            receipt_id=header.receipt_id,
            asn_number=header.asn_number,
            scan_id=header.scan_id,
            raised_at=_now(ctx),
        ),
        about=header.po_number or header.scan_id or header.receipt_id,
    )
    log.info("receiving exception %s %s: %s", exception_id, problem.type, problem.explanation)
    return exception_id


def resolve(
    ctx: Context,
    exception_id: str,
    type_: str,
    resolution: str,
    resolved_by: str,
    reason: str,
    receipt_id: str | None,
) -> None:
    store.resolve_exception(
        ctx.db, exception_id, resolution, resolved_by, reason, receipt_id, _now(ctx)
    )
    ctx.emit(
        ReceiptExceptionResolved(
            site=ctx.site,
            exception_id=exception_id,
            type=type_,
            resolution=resolution,
            resolved_by=resolved_by,
            reason=reason[:1000],
            receipt_id=receipt_id,
            resolved_at=_now(ctx),
        ),
        about=exception_id,
    )


def reevaluate_waiting(ctx: Context, keys: list[str], why: str) -> None:
    """Receipts held for a PO, an item or an ASN that has now arrived go through by themselves;
    their exceptions close as corrected."""
    for row in store.open_waiting(ctx.db, keys):
        located, evaluation = assess(ctx, store.held(row))
        if not evaluation.received and same_wait(
            evaluation.problems, row["type"], row["waiting_for"]
        ):
            continue
        receipt_id, _ = record(ctx, located, evaluation)
        resolve(
            ctx,
            row["exception_id"],
            row["type"],
            "corrected",
            SERVICE,
            f"{why}; the held receipt was evaluated again",
            receipt_id,
        )


# -- finding the PO line of goods that did not name one -------------------------------------------


def _asn_item(master: MasterData, row) -> str | None:
    if row["item_id"]:
        return row["item_id"]
    if row["supplier_part"]:
        item = master.item_by_supplier_part(row["supplier_id"], row["supplier_part"])
        if item:
            return item.item_id
    if row["gtin"]:
        found = master.item_by_code(gtin=row["gtin"])
        if found:
            return found[0].item_id
    return None


def locate(conn, master: MasterData, pending: PendingReceipt) -> PendingReceipt:
    """A scan that names an ASN, or whose serial or lot an ASN lists, takes the ASN's PO line
    (and its expiry, when the barcode has none). A scan naming neither a PO nor a known ASN
    takes the oldest open PO line still awaiting the item."""
    header = pending.header
    if len(pending.arrivals) != 1 or (header.po_number and not header.asn_number):
        return pending
    (arrival,) = pending.arrivals
    if arrival.po_line_number is not None:
        return pending
    identified = identify(arrival, master)
    if isinstance(identified, str):
        return pending
    item_id = identified.item.item_id
    rows = []
    if header.asn_number:
        rows = store.asn_lines(conn, asn_number=header.asn_number)
    if not rows and arrival.serial:
        rows = store.asn_lines(conn, serial=arrival.serial)
    if not rows and arrival.lot:
        rows = store.asn_lines(conn, lot=arrival.lot)
    candidates = [
        r
        for r in rows
        if _asn_item(master, r) == item_id
        and (header.po_number is None or r["po_number"] == header.po_number)
    ]
    shipped = next(
        (r for r in candidates if arrival.lot and r["lot"] == arrival.lot),
        candidates[0] if candidates else None,
    )
    if shipped is not None:
        expiry = arrival.expiry or (
            datetime.fromisoformat(shipped["expiry"]).date() if shipped["expiry"] else None
        )
        return msgspec.structs.replace(
            pending,
            header=msgspec.structs.replace(
                header,
                po_number=shipped["po_number"],
                asn_number=header.asn_number or shipped["asn_number"],
            ),
            arrivals=(
                msgspec.structs.replace(
                    arrival, po_line_number=shipped["po_line_number"], expiry=expiry
                ),
            ),
        )
    if header.po_number:
        return pending
    awaiting = _awaiting_line(conn, master, item_id, header.location_id)
    if awaiting is None:
        return pending
    po_number, line_number = awaiting
    return msgspec.structs.replace(
        pending,
        header=msgspec.structs.replace(header, po_number=po_number),
        arrivals=(msgspec.structs.replace(arrival, po_line_number=line_number),),
    )


def _awaiting_line(
    conn, master: MasterData, item_id: str, location_id: str | None
) -> tuple[str, int] | None:
    history = store.History(conn)
    awaiting = []
    for po_number, line_number, ship_to in store.open_lines_for(conn, [item_id]):
        order = store.order(conn, po_number)
        line = order.line(line_number) if order else None
        ordered = ordered_base(line, master) if line else None
        if ordered is not None and history.received(po_number, line_number) < ordered:
            awaiting.append((ship_to != location_id, po_number, line_number))
    if not awaiting:
        return None
    # Lines shipping to where the goods were scanned first; then the oldest order.
    _, po_number, line_number = min(awaiting, key=lambda a: a[0])
    return po_number, line_number


# -- handlers -------------------------------------------------------------------------------------


def on_item(item: ItemUpserted, ctx: Context) -> None:
    if not replica.apply(ctx.db, item):
        return
    codes = [item.gtin, *(pack.gtin for pack in item.packs)]
    keys = [
        f"item:{item.item_id}",
        *(f"gtin:{gtin14(code)}" for code in codes if code),
        *([f"udi:{item.udi_di}"] if item.udi_di else []),
        *(f"part:{p.supplier_id}:{p.part_number}" for p in item.supplier_parts),
    ]
    reevaluate_waiting(ctx, keys, f"item {item.item_id} version {item.version} arrived")


def on_purchase_order(po: PurchaseOrder, ctx: Context) -> None:
    if store.keep_order(ctx.db, po, _now(ctx)):
        reevaluate_waiting(
            ctx,
            [f"po:{po.po_number}"],
            f"purchase order {po.po_number} revision {po.revision} arrived",
        )


def on_po_cancelled(cancelled: PurchaseOrderCancelled, ctx: Context) -> None:
    if store.end_order(
        ctx.db,
        cancelled.po_number,
        cancelled.supplier_id,
        "cancelled",
        cancelled.reason,
        cancelled.revision,
        _now(ctx),
    ):
        reevaluate_waiting(
            ctx, [f"po:{cancelled.po_number}"], f"{cancelled.po_number} was cancelled"
        )


def on_po_closed(closed: PurchaseOrderClosed, ctx: Context) -> None:
    if store.end_order(
        ctx.db, closed.po_number, closed.supplier_id, "closed", closed.reason, 0, _now(ctx)
    ):
        reevaluate_waiting(ctx, [f"po:{closed.po_number}"], f"{closed.po_number} was closed")


def on_po_acknowledged(acknowledged: PurchaseOrderAcknowledged, ctx: Context) -> None:
    store.keep_acknowledgement(ctx.db, acknowledged)


def _check_quantity(quantity: Quantity | None, path: str) -> None:
    if quantity is not None and not (quantity.value.is_finite() and quantity.value > 0):
        raise Invalid(f"{path}.value must be a number greater than 0, not {quantity.value}")


def on_asn(asn: AdvanceShipNotice, ctx: Context) -> None:
    source_format = "x12" if isinstance(asn, X12AdvanceShipNotice) else "json"
    for o, shipped_order in enumerate(asn.orders):
        for i, shipped in enumerate(shipped_order.items):
            path = f"$.orders[{o}].items[{i}]"
            _check_quantity(shipped.quantity, f"{path}.quantity")
            for n, lot in enumerate(shipped.lots):
                _check_quantity(lot.quantity, f"{path}.lots[{n}].quantity")
    store.keep_asn(ctx.db, asn, source_format, _now(ctx))
    fields = msgspec.structs.asdict(asn)
    ctx.emit(
        AsnReceived(**fields, source_format=source_format, recorded_at=_now(ctx)),
        about=asn.asn_number,
    )
    listed = {
        key
        for shipped_order in asn.orders
        for shipped in shipped_order.items
        for lot in shipped.lots
        for key in [*(f"serial:{s}" for s in lot.serials), *([f"lot:{lot.lot}"] if lot.lot else [])]
    }
    reevaluate_waiting(ctx, sorted(listed), f"ASN {asn.asn_number} arrived")


def scan_receipt_id(site: str, scan_id: str) -> str:
    return "GR-" + uuid.uuid5(uuid.NAMESPACE_URL, f"{site}:scan:{scan_id}").hex[:16].upper()


def on_dock_scan(scan: DockScan, ctx: Context) -> None:
    key = f"scan:{scan.scan_id}"
    if store.seen(ctx.db, key) is not None:
        # The scanner sent the same scan again under a new event id: one scan, one receipt.
        log.info("dock scan %s already handled; not received twice", scan.scan_id)
        return
    _check_quantity(scan.quantity, "$.quantity")
    header = ReceiptHeader(
        receipt_id=scan_receipt_id(ctx.site, scan.scan_id),
        po_number=scan.po_number,
        location_id=scan.location_id,
        source="dock_scan",
        received_by=scan.scanned_by or scan.device_id or "dock scanner",
        received_at=scan.scanned_at,
        asn_number=scan.asn_number,
        scan_id=scan.scan_id,
        barcode=scan.barcode,
    )
    try:
        udi = parse_udi(scan.barcode)
    except BarcodeError as error:
        pending = PendingReceipt(header=header, arrivals=(Arrival(quantity=scan.quantity),))
        problem = Problem(
            "UNREADABLE_BARCODE", f"barcode {scan.barcode!r} cannot be read: {error}", pending
        )
        receipt_id, exceptions = record(
            ctx, pending, Evaluation(location_id=scan.location_id, problems=[problem])
        )
    else:
        arrival = Arrival(
            gtin=udi.gtin,
            udi_di=None if udi.gtin else udi.device_identifier,
            quantity=scan.quantity,
            lot=udi.lot,
            serial=udi.serial,
            expiry=udi.expiry,
        )
        receipt_id, exceptions = process(ctx, PendingReceipt(header=header, arrivals=(arrival,)))
    store.remember(ctx.db, key, {"receipt_id": receipt_id, "exceptions": exceptions})


def read_856(data: bytes, headers: dict[str, str], site: str) -> X12AdvanceShipNotice:
    try:
        asn = parse_856(data, site)
    except X12Error as error:
        raise Invalid(str(error), "malformed") from None
    return X12AdvanceShipNotice(**msgspec.structs.asdict(asn))


HANDLERS = {
    **replica.HANDLERS,
    ItemUpserted: on_item,
    PurchaseOrderApproved: on_purchase_order,
    PurchaseOrderChanged: on_purchase_order,
    PurchaseOrderCancelled: on_po_cancelled,
    PurchaseOrderClosed: on_po_closed,
    PurchaseOrderAcknowledged: on_po_acknowledged,
    AdvanceShipNotice: on_asn,
    X12AdvanceShipNotice: on_asn,
    DockScan: on_dock_scan,
}
