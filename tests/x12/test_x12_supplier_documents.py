"""Documents as suppliers' EDI systems write them, not as Sinew does: other delimiters, CRLF
line breaks, segments Sinew does not read, lots on the item level, pack levels, local times."""

from datetime import UTC, date, datetime
from decimal import Decimal

from sinew.contracts.common import Quantity
from sinew.contracts.matching import InvoiceLine
from sinew.contracts.procurement import AcknowledgementLine
from sinew.contracts.receiving import ShippedItem, ShippedLot
from sinew.x12 import parse_810, parse_855, parse_856


def interchange(group: str, *segments: str, element: str = "*", terminator: str = "~") -> bytes:
    isa = (
        "ISA*00*          *00*          *01*123456789      *ZZ*SINEWNORTH     *250303*1642*^*"
        "00501*000000777*0*P*>"
    ).replace("*", element)
    st = segments[0].split(element)[2]
    body = [*segments, element.join(["SE", str(len(segments) + 1), st])]
    gs = element.join(["GS", group, "BSXEDI", "SINEWNORTH", "20250303", "1642", "777", "X"])
    gs += element + "005010X"
    trailer = [element.join(["GE", "1", "777"]), element.join(["IEA", "1", "000000777"])]
    return (terminator + "\r\n").join([isa, gs, *body, *trailer]).encode() + terminator.encode()


def test_an_855_with_pipes_crlf_and_extra_segments_reads_into_the_contract():
    data = interchange(
        "PR",
        "ST|855|1001",
        "BAK|00|AC|PO-2025-1001|20250303||||SO-556120|20250304",
        "PER|IC|Order desk|TE|8005551234",
        "N1|SU|Boston Scientific|1|123456789",
        "N3|300 Boston Scientific Way",
        "N4|Marlborough|MA|01752",
        "PO1|1|2|BX|1200.00|PE|IN|ITEM-STENT-3018|VN|H7493926018300",
        "PID|F||||Coronary stent 3.0 x 18 mm",
        "ACK|IA|2|BX|079|20250306",
        "PO1|2|25|EA|38.50|PE|IN|ITEM-GUIDEWIRE-014",
        "ACK|IC|20|EA",
        "CTT|2|27",
        element="|",
    )
    ack = parse_855(data, "north")
    # N1*SU names the supplier by DUNS, not by Sinew's id: the sender id stands in for it
    assert ack.supplier_id == "123456789"
    assert ack.status == "accepted_with_changes"
    assert ack.acknowledgement_number == "SO-556120"
    # no DTM*097: the acknowledgment date from BAK09
    assert ack.acknowledged_at == datetime(2025, 3, 4, tzinfo=UTC)
    assert ack.lines == (
        AcknowledgementLine(
            line_number=1,
            status="accepted",
            quantity=Quantity(Decimal("2"), "BX"),
            unit_price=Decimal("1200.00"),
            expected_ship_date=date(2025, 3, 6),
        ),
        AcknowledgementLine(
            line_number=2,
            status="quantity_changed",
            quantity=Quantity(Decimal("20"), "EA"),
            unit_price=Decimal("38.50"),
        ),
    )


def test_an_856_with_packs_and_lots_on_the_item_level_reads_into_the_contract():
    data = interchange(
        "SH",
        "ST*856*0001",
        "BSN*00*ASN-77120*20250305*0930*0001",
        "HL*1**S",
        "TD1*CTN25*2",
        "TD5*B*2*UPSN",
        "REF*BM*BOL-55120",
        "REF*2I*1Z999AA10123456784",
        "DTM*011*20250305*0930*ED",
        "N1*SF*Boston Scientific DC*1*123456789",
        "N1*SU**92*SUP-BSX",
        "N1*ST*North Hospital Dock A*92*LOC-DOCK-A",
        "N3*1 Hospital Drive",
        "HL*2*1*O",
        "PRF*PO-2025-1001***20250303",
        "HL*3*2*P",
        "MAN*GM*00100012345678901234",
        "HL*4*3*I",
        "LIN*1*VN*H7493926018300*UK*00812345678901*LT*L23A0917*SN*SN000001",
        "SN1**1*EA",
        "DTM*036*20270131",
        "HL*5*3*I",
        "LIN*1*VN*H7493926018300*UK*00812345678901",
        "SN1**1*EA",
        "REF*LT*L23A0917",
        "REF*SE*SN000002",
        "DTM*036*20270131",
        "HL*6*2*I",
        "LIN*2*VN*M0014190",
        "SN1**25*EA",
        "CTT*3",
    )
    asn = parse_856(data, "north")
    assert asn.supplier_id == "SUP-BSX"
    assert asn.ship_to_location_id == "LOC-DOCK-A"
    assert asn.carrier == "UPSN"  # the SCAC, as there is no routing text
    assert asn.tracking_number == "1Z999AA10123456784"
    assert asn.shipped_at == datetime(2025, 3, 5, 13, 30, tzinfo=UTC)  # 09:30 EDT
    assert asn.expected_at is None
    [order] = asn.orders
    assert order.po_number == "PO-2025-1001"
    stent = dict(po_line_number=1, supplier_part="H7493926018300", gtin="00812345678901")
    assert order.items == (
        ShippedItem(
            quantity=Quantity(Decimal("1"), "EA"),
            **stent,
            lots=(
                ShippedLot(
                    quantity=Quantity(Decimal("1"), "EA"),
                    lot="L23A0917",
                    expiry=date(2027, 1, 31),
                    serials=("SN000001",),
                ),
            ),
        ),
        ShippedItem(
            quantity=Quantity(Decimal("1"), "EA"),
            **stent,
            lots=(
                ShippedLot(
                    quantity=Quantity(Decimal("1"), "EA"),
                    lot="L23A0917",
                    expiry=date(2027, 1, 31),
                    serials=("SN000002",),
                ),
            ),
        ),
        ShippedItem(
            quantity=Quantity(Decimal("25"), "EA"), po_line_number=2, supplier_part="M0014190"
        ),
    )


def test_an_810_without_subtotal_or_summary_tax_adds_up_its_lines():
    data = interchange(
        "IN",
        "ST*810*0001",
        "BIG*20250310*INV-300551*20250303*PO-2025-1001",
        "REF*IA*VEND-5521",
        "N1*RE*Boston Scientific Remit*1*123456789",
        "N1*SU**92*SUP-BSX",
        "ITD*05*3****20250409*30",
        "DTM*011*20250305",
        "IT1*1*2.5*BX*1200.00*PE*VN*H7493926018300*IN*ITEM-STENT-3018",
        "TXI*ST*8.25",
        "PID*F****Coronary stent 3.0 x 18 mm",
        "IT1*2*3*EA*33.333*PE*VN*M0014190*LT*L998",
        "TXI*ST*4.35",
        "TDS*310262",
        "CAD*M****UPSN",
        "SAC*N*D240",
        terminator="~",
    )
    bill = parse_810(data, "north")
    assert bill.supplier_id == "SUP-BSX"
    assert bill.invoice_date == date(2025, 3, 10)
    assert bill.po_number == "PO-2025-1001"
    assert (bill.due_date, bill.payment_terms) == (date(2025, 4, 9), None)
    assert bill.lines == (
        InvoiceLine(
            line_number=1,
            quantity=Quantity(Decimal("2.5"), "BX"),
            unit_price=Decimal("1200.00"),
            extended_amount=Decimal("3000.00"),
            item_id="ITEM-STENT-3018",
            supplier_part="H7493926018300",
            description="Coronary stent 3.0 x 18 mm",
        ),
        InvoiceLine(
            line_number=2,
            quantity=Quantity(Decimal("3"), "EA"),
            unit_price=Decimal("33.333"),
            extended_amount=Decimal("99.999"),
            supplier_part="M0014190",
            lot="L998",
        ),
    )
    assert bill.subtotal == Decimal("3099.999")
    assert bill.tax == Decimal("12.60")
    assert bill.freight == Decimal("0.00")
    assert bill.total == Decimal("3102.62")
