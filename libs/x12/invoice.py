"""X12 810 invoice: a supplier's bill, read into the same InvoiceSubmission as the JSON channel.

    BIG*20250310*INV-7001**PO-1001~          invoice date, number, PO date, PO number
    CUR*SE*USD~
    N1*SU**92*SUP-BSX~                       supplier (Sinew's id, "92")
    ITD*01*3*****20250409*****NET30~         ITD06 due date, ITD12 payment terms
    IT1*1*2*BX*1200.00**IN*ITEM-1*VN*H7493*UK*00812345678901*PL*1~   PL: the PO line
    PID*F****Coronary stent 3.0 x 18 mm, box of 10~
    REF*LT*L2301~  REF*SE*S0001~             lot, serial
    TDS*253000*240000~                       total, subtotal (N2: implied cents)
    TXI*TX*100.00~                           tax
    SAC*C*D240***2000~                       freight (N2)
    CTT*1*2~                                 lines, hash total of quantities

An 810 line has no amount of its own: the extended amount is quantity x unit price. When TDS02
is absent the subtotal is the sum of the lines.
"""

from datetime import UTC, datetime, time
from decimal import Decimal

from sinew.contracts.common import Quantity
from sinew.contracts.matching import InvoiceLine, InvoiceSubmission

from .envelope import Cents, Writer, read_transaction
from .errors import X12Error
from .segments import (
    Cursor,
    Segment,
    cents,
    code,
    count,
    currency,
    day,
    line_number,
    parties,
    party_id,
    product_ids,
    real,
    text,
    unit,
)
from .validation import checked, distinct_lines, hash_total

KNOWN = frozenset(
    {"BIG", "CUR", "REF", "N1", "ITD", "DTM", "IT1", "TXI", "PID", "TDS", "SAC", "CTT"}
)
FREIGHT = "D240"
ZERO = Decimal("0.00")


def write_810(
    invoice: InvoiceSubmission,
    *,
    sender_id: str,
    receiver_id: str,
    control_number: int,
    created_at: datetime | None = None,
) -> bytes:
    """``created_at`` (ISA09/GS04) defaults to the invoice date at midnight UTC."""
    if not invoice.lines:
        raise ValueError(f"invoice {invoice.invoice_number} has no lines; an 810 needs an IT1")
    writer = Writer("810")
    writer.add("BIG", invoice.invoice_date, invoice.invoice_number, None, invoice.po_number)
    writer.add("CUR", "SE", invoice.currency)
    writer.add("N1", "SU", None, "92", invoice.supplier_id)
    if invoice.due_date is not None or invoice.payment_terms is not None:
        # ITD01 basic terms from ITD02 the invoice date; ITD06 net due date; ITD12 the terms
        terms = [None] * 12
        terms[0:2], terms[5], terms[11] = ["01", "3"], invoice.due_date, invoice.payment_terms
        writer.add("ITD", *terms)
    for line in invoice.lines:
        product = _extended(line.quantity.value, line.unit_price)
        if product != line.extended_amount:
            raise X12Error(
                f"an 810 line carries no amount of its own, so line {line.line_number}'s "
                f"extended amount {line.extended_amount} must be quantity x unit price "
                f"({product})",
                segment_index=writer.next_index,
                segment_id="IT1",
            )
        ids: list[str | int] = []
        for qualifier, value in (
            ("IN", line.item_id),
            ("VN", line.supplier_part),
            ("UK", line.gtin),
            ("PL", line.po_line_number),
        ):
            if value is not None:
                ids += [qualifier, value]
        writer.add(
            "IT1",
            line.line_number,
            line.quantity.value,
            line.quantity.uom,
            line.unit_price,
            None,
            *ids,
        )
        if line.description:
            writer.add("PID", "F", None, None, None, line.description)
        if line.lot is not None:
            writer.add("REF", "LT", line.lot)
        if line.serial is not None:
            writer.add("REF", "SE", line.serial)
    writer.add("TDS", Cents(invoice.total), Cents(invoice.subtotal))
    if invoice.tax:
        writer.add("TXI", "TX", invoice.tax)
    if invoice.freight:
        writer.add("SAC", "C", FREIGHT, None, None, Cents(invoice.freight))
    writer.add("CTT", len(invoice.lines), hash_total(line.quantity.value for line in invoice.lines))
    return writer.interchange(
        sender_id=sender_id,
        receiver_id=receiver_id,
        control_number=control_number,
        created_at=created_at or datetime.combine(invoice.invoice_date, time(0), tzinfo=UTC),
    )


def parse_810(data: bytes, site: str) -> InvoiceSubmission:
    transaction = read_transaction(data, "810")
    cursor = transaction.cursor(KNOWN)
    big = cursor.take("BIG", "after ST")
    invoice_date = day(big, 1, required=True)
    invoice_number = code(big, 2, required=True)
    day(big, 3)
    if big.get(7) == "CR":
        raise big.error("BIG07 CR is a credit memo; Sinew reads invoices", 7)
    heading = cursor.group("heading", (("CUR", 1), ("REF", None)))
    cur = heading.one("CUR")
    names = parties(cursor, (("REF", None),))
    terms = cursor.group("heading", (("ITD", None), ("DTM", None))).one("ITD")

    lines = [_line(cursor, first=True)]
    while cursor.at("IT1"):
        lines.append(_line(cursor))
    distinct_lines([(line, it1) for line, it1, _ in lines])

    tds = cursor.take("TDS", "after the last IT1 loop")
    taxes = cursor.group("summary", (("TXI", None),)).all("TXI")
    freight = ZERO
    while cursor.at("SAC"):
        sac = cursor.take("SAC", "")
        taxes += cursor.group("SAC loop", (("TXI", None),)).all("TXI")
        freight += _freight(sac)
    ctt = cursor.optional("CTT")
    cursor.finish("the summary")
    if ctt is not None:
        _check_totals(ctt, lines)
    if not taxes:
        taxes = [txi for _, _, line_taxes in lines for txi in line_taxes]
    tax = sum((real(txi, 2, required=True) or ZERO for txi in taxes), ZERO)

    invoice_lines = tuple(line for line, _, _ in lines)
    subtotal = cents(tds, 2)
    if subtotal is None:
        subtotal = sum((line.extended_amount for line in invoice_lines), ZERO)
    return checked(
        InvoiceSubmission(
            site=site,
            supplier_id=party_id(names.get("SU")) or transaction.sender_id,
            invoice_number=invoice_number,
            invoice_date=invoice_date,
            currency=currency(cur, 2) if cur else "USD",
            lines=invoice_lines,
            subtotal=subtotal,
            freight=freight,
            tax=tax,
            total=cents(tds, 1, required=True),
            po_number=code(big, 4),
            due_date=day(terms, 6) if terms else None,
            payment_terms=code(terms, 12) if terms else None,
        )
    )


def _line(cursor: Cursor, first: bool = False) -> tuple[InvoiceLine, Segment, list[Segment]]:
    it1 = cursor.take("IT1", "after the heading: an 810 needs at least one line" if first else "")
    body = cursor.group("IT1 loop", (("TXI", None), ("PID", None), ("REF", None), ("DTM", None)))
    ids = product_ids(it1, 6)
    quantity = real(it1, 2, required=True)
    unit_price = real(it1, 4, required=True)
    assert quantity is not None and unit_price is not None
    description = body.one("PID", "F")
    line = InvoiceLine(
        line_number=line_number(it1, 1, required=True),
        quantity=Quantity(quantity, unit(it1, 3)),
        unit_price=unit_price,
        extended_amount=_extended(quantity, unit_price),
        item_id=ids.code("item"),
        supplier_part=ids.code("part"),
        gtin=ids.gtin(),
        description=text(description, 5) if description else None,
        po_line_number=ids.line_number("po_line"),
        lot=_one_of_two(it1, "lot", body.reference("LT"), ids.code("lot")),
        serial=_one_of_two(it1, "serial", body.reference("SE"), ids.code("serial")),
    )
    return line, it1, body.all("TXI")


def _one_of_two(it1: Segment, what: str, from_ref: str | None, from_ids: str | None) -> str | None:
    if from_ref is not None and from_ids is not None and from_ref != from_ids:
        raise it1.error(f"the REF says {what} {from_ref!r}, the IT1 says {from_ids!r}")
    return from_ref or from_ids


def _extended(quantity: Decimal, unit_price: Decimal) -> Decimal:
    # Keep the price's decimal places when the product fits them: 2.5 x 1200.00 is 3000.00.
    product = quantity * unit_price
    exponent = unit_price.as_tuple().exponent
    if isinstance(exponent, int) and exponent < 0:
        fitted = product.quantize(Decimal(1).scaleb(exponent))
        if fitted == product:
            return fitted
    return product


def _freight(sac: Segment) -> Decimal:
    indicator = sac.get(1)
    if indicator == "N":
        return ZERO
    if indicator != "C" or sac.get(2) != FREIGHT:
        raise sac.error(
            f"SAC {indicator}*{sac.get(2)}: an invoice submission has freight (SAC*C*D240) "
            "and tax (TXI) beside its lines, no other charge or allowance",
            2,
        )
    return cents(sac, 5, required=True) or ZERO


def _check_totals(ctt: Segment, lines: list[tuple[InvoiceLine, Segment, list[Segment]]]) -> None:
    stated = count(ctt, 1, required=True)
    if stated != len(lines):
        raise ctt.error(f"CTT01 says {stated} lines, the invoice has {len(lines)}", 1)
    stated_quantity = real(ctt, 2)
    quantity = hash_total(line.quantity.value for line, _, _ in lines)
    if stated_quantity is not None and stated_quantity != quantity:
        raise ctt.error(
            f"CTT02 says the quantities add up to {stated_quantity}, the lines add up to "
            f"{quantity}",
            2,
        )
