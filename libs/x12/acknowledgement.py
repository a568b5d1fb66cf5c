"""X12 855 purchase order acknowledgment: the supplier's answer to a PO, line by line.

    BAK*00*AC*PO-1001*20250301****SO-88*20250302~   purpose, ack type, PO, PO date, -, -, -,
                                                    seller's order number, ack date
    DTM*097*20250302*142500*UT~                     when the acknowledgment was made
    N1*SU**92*SUP-BSX~
    PO1*1***1150.00~                                line; PO104 the price the supplier charges
    ACK*IB*2*BX*068*20250320**VN*H7494*IN*ITEM-2~  status, quantity, ship date, substitute
    N9*L1*NOTE~ MSG*...~                            a note on the line
    CTT*1~

BAK02: AD/AK/AT accepted, AC accepted with changes, RD/RJ rejected.
ACK01: IA/AR accepted, IQ quantity changed, IP price changed, IC changed (quantity when ACK02
says one, else price), IB/DR backordered, IS substituted, IR/ID rejected.
"""

from datetime import UTC, date, datetime, time

from sinew.contracts.common import Quantity
from sinew.contracts.procurement import AcknowledgementLine, PurchaseOrderAcknowledgement

from .envelope import Writer, read_transaction, write_moment
from .segments import (
    Cursor,
    Segment,
    code,
    count,
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
from .validation import checked, distinct_lines

KNOWN = frozenset({"BAK", "CUR", "REF", "DTM", "N1", "PO1", "PID", "ACK", "N9", "MSG", "CTT"})
ACKNOWLEDGMENT_TYPES = {
    "AD": "accepted",  # with detail, no change
    "AK": "accepted",  # no detail, no change
    "AT": "accepted",
    "AC": "accepted_with_changes",
    "RD": "rejected",  # with detail
    "RJ": "rejected",  # no detail
}
LINE_STATUSES = {
    "IA": "accepted",
    "AR": "accepted",  # accepted and released for shipment
    "IQ": "quantity_changed",
    "IP": "price_changed",
    "IC": "changed",  # decided by what the ACK carries, below
    "IB": "backordered",
    "DR": "backordered",  # date rescheduled
    "IS": "substituted",
    "IR": "rejected",
    "ID": "rejected",  # deleted
}
WRITTEN_STATUSES = {
    "accepted": "IA",
    "quantity_changed": "IQ",
    "price_changed": "IP",
    "backordered": "IB",
    "substituted": "IS",
    "rejected": "IR",
}
SHIP_DATES = ("068", "079")  # current schedule ship, promised for shipment
CREATED = "097"  # transaction creation
MSG_WIDTH = 264  # MSG01 holds at most 264 characters; a longer note takes several


def write_855(
    acknowledgement: PurchaseOrderAcknowledgement,
    *,
    sender_id: str,
    receiver_id: str,
    control_number: int,
    po_date: date | None = None,
    created_at: datetime | None = None,
) -> bytes:
    """``po_date`` fills BAK04, which X12 requires and the acknowledgement does not carry; it
    defaults to the acknowledgement's own date."""
    ack = acknowledgement
    writer = Writer("855")
    if ack.status == "accepted_with_changes":
        kind = "AC"
    elif ack.status == "accepted":
        kind = "AD" if ack.lines else "AK"
    else:
        kind = "RD" if ack.lines else "RJ"
    acknowledged_on = ack.acknowledged_at.astimezone(UTC).date()
    writer.add(
        "BAK",
        "00",
        kind,
        ack.po_number,
        po_date or acknowledged_on,
        None,
        None,
        None,
        ack.acknowledgement_number,
        acknowledged_on,
    )
    write_moment(writer, CREATED, ack.acknowledged_at)
    writer.add("N1", "SU", None, "92", ack.supplier_id)
    for line in ack.lines:
        writer.add("PO1", line.line_number, None, None, line.unit_price)
        quantity = line.quantity
        substitute: list[str | None] = []
        if line.substitute_supplier_part is not None:
            substitute += ["VN", line.substitute_supplier_part]
        if line.substitute_item_id is not None:
            substitute += ["IN", line.substitute_item_id]
        writer.add(
            "ACK",
            WRITTEN_STATUSES[line.status],
            quantity.value if quantity else None,
            quantity.uom if quantity else None,
            "068" if line.expected_ship_date else None,
            line.expected_ship_date,
            None,
            *substitute,
        )
        if line.note:
            writer.add("N9", "L1", "NOTE")
            for start in range(0, len(line.note), MSG_WIDTH):
                writer.add("MSG", line.note[start : start + MSG_WIDTH])
    if ack.lines:
        writer.add("CTT", len(ack.lines))
    return writer.interchange(
        sender_id=sender_id,
        receiver_id=receiver_id,
        control_number=control_number,
        created_at=created_at or ack.acknowledged_at,
    )


def parse_855(data: bytes, site: str) -> PurchaseOrderAcknowledgement:
    transaction = read_transaction(data, "855")
    cursor = transaction.cursor(KNOWN)
    bak = cursor.take("BAK", "after ST")
    text(bak, 1, required=True)
    status = one_of(bak, 2, ACKNOWLEDGMENT_TYPES, required=True)
    po_number = code(bak, 3, required=True)
    day(bak, 4, required=True)  # the PO's date: checked, not kept
    acknowledged_on = day(bak, 9)
    heading = cursor.group("heading", (("CUR", 1), ("REF", None), ("DTM", None)))
    names = parties(cursor, (("REF", None),))
    supplier_id = party_id(names.get("SU")) or transaction.sender_id

    lines = []
    while cursor.at("PO1"):
        lines.append(_line(cursor))
    distinct_lines(lines)
    ctt = cursor.optional("CTT")
    cursor.finish("the last PO1 loop" if ctt is None else "CTT")
    if ctt is not None:
        stated = count(ctt, 1, required=True)
        if stated != len(lines):
            raise ctt.error(f"CTT01 says {stated} lines, the acknowledgment has {len(lines)}", 1)

    # When: the creation DTM, else BAK09 (a date), else the functional group's date and time.
    acknowledged_at = heading.moment(CREATED)
    if acknowledged_at is None and acknowledged_on is not None:
        acknowledged_at = datetime.combine(acknowledged_on, time(0), tzinfo=UTC)
    return checked(
        PurchaseOrderAcknowledgement(
            site=site,
            po_number=po_number,
            supplier_id=supplier_id,
            status=status,
            lines=tuple(line for line, _ in lines),
            acknowledgement_number=code(bak, 8),
            acknowledged_at=acknowledged_at or transaction.created_at,
        )
    )


def _line(cursor: Cursor) -> tuple[AcknowledgementLine, Segment]:
    po1 = cursor.take("PO1", "")
    cursor.group("PO1 loop", (("PID", None), ("REF", None), ("DTM", None)))
    number = line_number(po1, 1, required=True)
    ack = cursor.take("ACK", f"in the PO1 loop of line {number}: every line needs a status")
    cursor.group("ACK loop", (("DTM", None),))
    if cursor.at("ACK"):
        raise cursor.peek().error(
            f"expected one ACK for line {number}, found a second: Sinew keeps one status per "
            "line, so send a partial backorder as IB with the quantity backordered"
        )
    note = None
    if cursor.at("N9"):
        cursor.take("N9", "")
        messages = cursor.group("N9 loop", (("MSG", None),)).all("MSG")
        note = "".join(text(msg, 1) or "" for msg in messages) or None
        if note is not None and len(note) > 1000:
            raise messages[0].error(f"the note on line {number} is longer than 1000 characters")

    quantity_value = real(ack, 2)
    if (quantity_value is None) != (not ack.get(3)):
        given, missing = (2, 3) if quantity_value is not None else (3, 2)
        raise ack.error(f"ACK{given:02d} needs ACK{missing:02d}", missing)
    quantity = Quantity(quantity_value, unit(ack, 3)) if quantity_value is not None else None
    unit_price = real(po1, 4)
    status = one_of(ack, 1, LINE_STATUSES, required=True)
    if status == "changed":
        if quantity is not None:
            status = "quantity_changed"
        elif unit_price is not None:
            status = "price_changed"
        else:
            raise ack.error(
                "ACK01 IC says the line changed, but neither ACK02 (quantity) nor PO104 "
                "(price) says how",
                1,
            )
    ship_date = None
    qualifier = ack.get(4)
    if qualifier or ack.get(5):
        when = day(ack, 5, required=True)
        if qualifier in SHIP_DATES:
            ship_date = when
        elif not qualifier:
            raise ack.error("ACK05 needs ACK04, the kind of date", 4)
    substitute = product_ids(ack, 7)
    return (
        AcknowledgementLine(
            line_number=number,
            status=status,
            quantity=quantity,
            unit_price=unit_price,
            expected_ship_date=ship_date,
            substitute_item_id=substitute.code("item"),
            substitute_supplier_part=substitute.code("part"),
            note=note,
        ),
        po1,
    )
