"""X12 850 purchase order: the order Sinew sends a supplier, and reads back in tests and the
demo's supplier simulator.

    BEG*00*SA*PO-1001**20250301~        purpose (00 original, 05 replace), type, PO, date
    CUR*BY*USD~
    REF*PP*2~                           revision, when above 1
    REF*DP*CC-CATH~                     cost centre
    REF*RQ*REQ-77~                      requisition
    REF*ZZ*CASE-9*CASE~                 surgical case of a bill-only order
    N1*SU**92*SUP-BSX~                  supplier, Sinew's id ("92": assigned by buyer)
    N1*ST**92*LOC-CATH~                 ship-to location
    PO1*1*2*BX*1200.00**IN*ITEM-1*VN*H7493~
    PID*F****Coronary stent 3.0 x 18 mm, box of 10~
    REF*CT*C-2025-001~                  contract
    REF*LT*... REF*SE*... DTM*036*...   a bill-only line's implant: lot, serial, expiry
    REF*ZZ*...*USAGE / *BILL ONLY REQUEST / *CASE
    AMT*1*2400.00~                      extended amount
    CTT*1*2~                            lines, hash total of quantities
    AMT*TT*2400.00~                     PO total

BEG02 is SA (stand-alone), RO (rush order: urgent) or CN (consigned order: bill-only).
"""

from datetime import UTC, datetime, time
from decimal import Decimal

from sinew.contracts.common import Quantity
from sinew.contracts.procurement import BillOnlyUsage, PurchaseOrder, PurchaseOrderLine

from .envelope import Writer, read_transaction
from .segments import (
    Cursor,
    Group,
    Segment,
    code,
    count,
    currency,
    day,
    line_number,
    one_of,
    parties,
    party_id,
    product_ids,
    real,
    text,
    unit,
)
from .validation import checked, distinct_lines, hash_total

KNOWN = frozenset({"BEG", "CUR", "REF", "DTM", "N1", "PO1", "PID", "AMT", "CTT"})
ORDER_TYPES = {"SA": "standard", "RO": "urgent", "CN": "bill_only"}
CASE, USAGE, BILL_ONLY_REQUEST = "CASE", "USAGE", "BILL ONLY REQUEST"
EXPIRY = "036"


def write_850(
    po: PurchaseOrder,
    *,
    sender_id: str,
    receiver_id: str,
    control_number: int,
    created_at: datetime | None = None,
) -> bytes:
    """The PO as an 850. ``created_at`` (ISA09/GS04) defaults to the order date at midnight UTC,
    so the same PO always gives the same bytes."""
    if not po.lines:
        raise ValueError(f"PO {po.po_number} has no lines; an 850 needs at least one PO1")
    writer = Writer("850")
    kind = "CN" if po.bill_only else "RO" if po.urgent else "SA"
    writer.add("BEG", "00" if po.revision == 1 else "05", kind, po.po_number, None, po.order_date)
    writer.add("CUR", "BY", po.currency)
    if po.revision > 1:
        writer.add("REF", "PP", po.revision)
    writer.add("REF", "DP", po.cost_centre_id)
    if po.requisition_id is not None:
        writer.add("REF", "RQ", po.requisition_id)
    if po.case_id is not None:
        writer.add("REF", "ZZ", po.case_id, CASE)
    writer.add("N1", "SU", None, "92", po.supplier_id)
    writer.add("N1", "ST", None, "92", po.ship_to_location_id)
    for line in po.lines:
        ids: list[str | None] = ["IN", line.item_id]
        if line.supplier_part is not None:
            ids += ["VN", line.supplier_part]
        writer.add(
            "PO1",
            line.line_number,
            line.quantity.value,
            line.quantity.uom,
            line.unit_price,
            None,
            *ids,
        )
        if line.description:
            writer.add("PID", "F", None, None, None, line.description)
        if line.contract_number is not None:
            writer.add("REF", "CT", line.contract_number)
        usage = line.bill_only_usage
        if usage is not None:
            if usage.lot is not None:
                writer.add("REF", "LT", usage.lot)
            if usage.serial is not None:
                writer.add("REF", "SE", usage.serial)
            writer.add("REF", "ZZ", usage.case_id, CASE)
            writer.add("REF", "ZZ", usage.usage_id, USAGE)
            writer.add("REF", "ZZ", usage.bill_only_request_id, BILL_ONLY_REQUEST)
            if usage.expiry is not None:
                writer.add("DTM", EXPIRY, usage.expiry)
        writer.add("AMT", "1", line.extended_amount)
    writer.add("CTT", len(po.lines), hash_total(line.quantity.value for line in po.lines))
    writer.add("AMT", "TT", po.total)
    return writer.interchange(
        sender_id=sender_id,
        receiver_id=receiver_id,
        control_number=control_number,
        created_at=created_at or datetime.combine(po.order_date, time(0), tzinfo=UTC),
    )


def parse_850(data: bytes, site: str) -> PurchaseOrder:
    transaction = read_transaction(data, "850")
    cursor = transaction.cursor(KNOWN)
    beg = cursor.take("BEG", "after ST")
    one_of(beg, 1, {"00": "original", "05": "replace"}, required=True)
    kind = one_of(beg, 2, ORDER_TYPES, required=True)
    po_number = code(beg, 3, required=True)
    order_date = day(beg, 5, required=True)
    heading = cursor.group("heading", (("CUR", 1), ("REF", None), ("DTM", None)))
    cur = heading.one("CUR")
    revision = 1
    revision_ref = heading.one("REF", "PP")
    if revision_ref is not None:
        revision = count(revision_ref, 2, required=True) or 0
        if revision < 1:
            raise revision_ref.error(f"REF02 must be a revision from 1, found {revision}", 2)
    cost_centre = heading.reference("DP")
    if cost_centre is None:
        raise beg.error("expected REF*DP (cost centre) in the heading, found none")
    names = parties(cursor, (("REF", None),))
    supplier_id, ship_to = party_id(names.get("SU")), party_id(names.get("ST"))
    if supplier_id is None or ship_to is None:
        missing = "N1*SU (supplier)" if supplier_id is None else "N1*ST (ship to)"
        raise cursor.peek().error(f"expected {missing} with N103 92 before PO1, found none")

    lines = [_line(cursor)]
    while cursor.at("PO1"):
        lines.append(_line(cursor))
    distinct_lines(lines)
    ctt = cursor.take("CTT", "after the last PO1 loop")
    summary = cursor.group("CTT loop", (("AMT", None),))
    cursor.finish("the CTT loop")
    _check_totals(ctt, lines)
    total = summary.one("AMT", "TT")
    if total is None:
        raise ctt.error("expected AMT*TT (PO total) after CTT, found none")

    return checked(
        PurchaseOrder(
            site=site,
            po_number=po_number,
            revision=revision,
            supplier_id=supplier_id,
            order_date=order_date,
            cost_centre_id=cost_centre,
            ship_to_location_id=ship_to,
            currency=currency(cur, 2) if cur else "USD",
            lines=tuple(line for line, _ in lines),
            total=real(total, 2, required=True),
            requisition_id=heading.reference("RQ"),
            bill_only=kind == "bill_only",
            case_id=heading.labelled(CASE),
            urgent=kind == "urgent",
        )
    )


def _line(cursor: Cursor) -> tuple[PurchaseOrderLine, Segment]:
    po1 = cursor.take("PO1", "after the heading: an 850 needs at least one line")
    body = cursor.group("PO1 loop", (("PID", None), ("REF", None), ("DTM", None), ("AMT", None)))
    ids = product_ids(po1, 6)
    item_id = ids.code("item")
    if item_id is None:
        raise po1.error("expected the buyer's item number (IN) among PO106-PO125, found none", 6)
    extended = body.one("AMT", "1")
    if extended is None:
        raise po1.error("expected AMT*1 (extended amount) in the PO1 loop, found none")
    description = body.one("PID", "F")
    line = PurchaseOrderLine(
        line_number=line_number(po1, 1, required=True),
        item_id=item_id,
        quantity=Quantity(real(po1, 2, required=True), unit(po1, 3)),
        unit_price=real(po1, 4, required=True),
        extended_amount=real(extended, 2, required=True),
        description=text(description, 5) if description else None,
        supplier_part=ids.code("part"),
        contract_number=body.reference("CT"),
        bill_only_usage=_bill_only_usage(po1, body),
    )
    return line, po1


def _bill_only_usage(po1: Segment, body: Group) -> BillOnlyUsage | None:
    usage = {label: body.labelled(label) for label in (CASE, USAGE, BILL_ONLY_REQUEST)}
    implant = {"lot": body.reference("LT"), "serial": body.reference("SE")}
    expiry = body.date(EXPIRY)
    if not any(usage.values()):
        if any(implant.values()) or expiry is not None:
            raise po1.error(
                "a lot, serial or expiry (REF*LT, REF*SE, DTM*036) belongs to a bill-only line, "
                "which needs REF*ZZ CASE, USAGE and BILL ONLY REQUEST; found none of them"
            )
        return None
    missing = [label for label, value in usage.items() if value is None]
    if missing:
        raise po1.error(
            f"a bill-only line needs REF*ZZ labelled {', '.join(usage)}; "
            f"found no {', '.join(missing)}"
        )
    return BillOnlyUsage(
        bill_only_request_id=usage[BILL_ONLY_REQUEST],
        usage_id=usage[USAGE],
        case_id=usage[CASE],
        lot=implant["lot"],
        serial=implant["serial"],
        expiry=expiry,
    )


def _check_totals(ctt: Segment, lines: list[tuple[PurchaseOrderLine, Segment]]) -> None:
    stated = count(ctt, 1, required=True)
    if stated != len(lines):
        raise ctt.error(f"CTT01 says {stated} lines, the purchase order has {len(lines)}", 1)
    stated_quantity = real(ctt, 2)
    quantity: Decimal = hash_total(line.quantity.value for line, _ in lines)
    if stated_quantity is not None and stated_quantity != quantity:
        raise ctt.error(
            f"CTT02 says the quantities add up to {stated_quantity}, the lines add up to "
            f"{quantity}",
            2,
        )
