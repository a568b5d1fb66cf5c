"""What Sinew writes as X12 reads back as the same contract, and other X12 tools accept it."""

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from msgspec.structs import replace
from x12_samples import (
    HOSPITAL,
    SITE,
    SUPPLIER,
    acknowledgement,
    bill_only_order,
    invoice,
    purchase_order,
    ship_notice,
)

from sinew.contracts.procurement import AcknowledgementLine, PurchaseOrderLine
from sinew.x12 import (
    X12Error,
    parse_810,
    parse_850,
    parse_855,
    parse_856,
    write_810,
    write_850,
    write_855,
    write_856,
)

ENVELOPE = dict(sender_id=HOSPITAL, receiver_id=SUPPLIER, control_number=905)
DOCUMENTS = {
    "850": (write_850, parse_850, purchase_order),
    "850 bill-only": (write_850, parse_850, bill_only_order),
    "855": (write_855, parse_855, acknowledgement),
    "856": (write_856, parse_856, ship_notice),
    "810": (write_810, parse_810, invoice),
}


def segments(document: bytes) -> list[str]:
    return [line.rstrip("~") for line in document.decode().splitlines()]


@pytest.mark.parametrize("kind", DOCUMENTS)
def test_a_written_document_parses_back_to_the_same_contract(kind):
    write, parse, sample = DOCUMENTS[kind]
    original = sample()
    assert parse(write(original, **ENVELOPE), SITE) == original


@pytest.mark.parametrize("kind", DOCUMENTS)
def test_writing_is_deterministic_so_a_retried_handler_emits_the_same_bytes(kind):
    write, _, sample = DOCUMENTS[kind]
    assert write(sample(), **ENVELOPE) == write(sample(), **ENVELOPE)


@pytest.mark.parametrize("kind", DOCUMENTS)
def test_pyx12_finds_nothing_wrong_with_the_envelopes_sinew_writes(kind):
    x12file = pytest.importorskip("pyx12.x12file")
    write, _, sample = DOCUMENTS[kind]
    reader = x12file.X12Reader(io.StringIO(write(sample(), **ENVELOPE).decode()))
    assert sum(1 for _ in reader) > 6
    assert reader.pop_errors() == []


def test_pyx12_agrees_a_wrong_segment_count_is_wrong():
    # the independent check really checks: the same count the reader rejects, pyx12 rejects
    x12file = pytest.importorskip("pyx12.x12file")
    text = write_850(purchase_order(), **ENVELOPE).decode().replace("SE*18*", "SE*17*")
    reader = x12file.X12Reader(io.StringIO(text))
    list(reader)
    assert any("SE count" in error[2] for error in reader.pop_errors())
    with pytest.raises(X12Error, match="SE01 says 17 segments"):
        parse_850(text.encode(), SITE)


def test_the_850_says_what_the_supplier_needs_in_standard_segments():
    lines = segments(write_850(purchase_order(), **ENVELOPE))
    assert lines[3:9] == [
        "BEG*00*SA*PO-2025-1001**20250303",
        "CUR*BY*USD",
        "REF*DP*CC-CATHLAB",
        "REF*RQ*REQ-88812",
        "N1*SU**92*SUP-BSX",
        "N1*ST**92*LOC-CATH-STORE",
    ]
    assert "PO1*1*2*BX*1200.00**IN*ITEM-STENT-3018*VN*H7493926018300" in lines
    assert "AMT*1*2400.00" in lines
    assert lines[-5:-3] == ["CTT*2*27", "AMT*TT*3362.50"]


def test_a_bill_only_850_carries_case_lot_serial_expiry_and_revision():
    lines = segments(write_850(bill_only_order(), **ENVELOPE))
    assert lines[3] == "BEG*05*CN*PO-2025-BO-0042**20250303"
    for segment in (
        "REF*PP*2",
        "REF*ZZ*CASE-20250302-07*CASE",
        "REF*LT*LOT-A7731",
        "REF*SE*SN-PJK204411",
        "REF*ZZ*USE-90210*USAGE",
        "REF*ZZ*BOR-311*BILL ONLY REQUEST",
        "DTM*036*20270630",
    ):
        assert segment in lines


def test_an_urgent_order_is_a_rush_order():
    document = write_850(purchase_order(urgent=True), **ENVELOPE)
    assert segments(document)[3] == "BEG*00*RO*PO-2025-1001**20250303"
    assert parse_850(document, SITE).urgent


def test_what_an_850_does_not_carry_reads_back_as_the_default():
    # off_contract and requisition_line_number are the hospital's own bookkeeping; a bill-only
    # order is consigned (BEG02 CN), which leaves no room to also say "rush"
    po = purchase_order(
        bill_only=True,
        urgent=True,
        lines=(
            PurchaseOrderLine(
                line_number=1,
                item_id="ITEM-STENT-3018",
                quantity=purchase_order().lines[0].quantity,
                unit_price=Decimal("1260.00"),
                extended_amount=Decimal("2520.00"),
                off_contract=True,
                requisition_line_number=3,
            ),
        ),
        total=Decimal("2520.00"),
    )
    parsed = parse_850(write_850(po, **ENVELOPE), SITE)
    assert parsed.lines[0].off_contract is False
    assert parsed.lines[0].requisition_line_number is None
    assert parsed.bill_only and not parsed.urgent
    assert parsed.lines[0].unit_price == Decimal("1260.00")


def test_the_855_uses_the_ack_codes_suppliers_use():
    lines = segments(write_855(acknowledgement(), **ENVELOPE))
    assert lines[3] == "BAK*00*AC*PO-2025-1001*20250303****SO-556120*20250303"
    assert lines[4] == "DTM*097*20250303*164205*UT"
    for segment in (
        "ACK*IA*2*BX",
        "ACK*IB*25*EA*068*20250320",
        "PO1*3***41.00",
        "ACK*IP",
        "ACK*IS*1*BX****VN*H7493926020300*IN*ITEM-STENT-3020",
        "ACK*IQ*3*BX",
        "ACK*IR",
        "MSG*Discontinued",
    ):
        assert segment in lines


@pytest.mark.parametrize(
    ("status", "code"), [("accepted", "AK"), ("rejected", "RJ"), ("accepted_with_changes", "AC")]
)
def test_an_855_without_lines_acknowledges_the_whole_order(status, code):
    ack = acknowledgement(status=status, lines=())
    document = write_855(ack, **ENVELOPE)
    assert segments(document)[3].startswith(f"BAK*00*{code}*PO-2025-1001")
    assert parse_855(document, SITE) == ack


def test_a_long_note_runs_over_several_msg_segments_and_reads_back_whole():
    note = "Backordered: " + "the manufacturer recalled lot L23A0917 and replaces it. " * 15
    ack = acknowledgement(
        lines=(AcknowledgementLine(line_number=1, status="backordered", note=note[:1000]),)
    )
    document = write_855(ack, **ENVELOPE)
    assert sum(line.startswith("MSG*") for line in segments(document)) == 4
    assert parse_855(document, SITE) == ack


def test_the_856_nests_shipment_order_item_and_lot_levels():
    lines = segments(write_856(ship_notice(), **ENVELOPE))
    levels = [line for line in lines if line.startswith("HL*")]
    # shipment 1, order 2, the stents 3 with their two lots 4 and 5, the guidewires 6
    assert levels == [
        "HL*1**S*1",
        "HL*2*1*O*1",
        "HL*3*2*I*1",
        "HL*4*3*I*0",
        "HL*5*3*I*0",
        "HL*6*2*I*0",
    ]
    assert "LIN*1*IN*ITEM-STENT-3018*VN*H7493926018300*UK*00812345678901" in lines
    assert "DTM*036*20270131" in lines
    assert sum(line.startswith("REF*SE*") for line in lines) == 10
    assert "CTT*6" in lines


def test_the_810_states_amounts_in_cents_where_x12_says_so():
    lines = segments(write_810(invoice(), **ENVELOPE))
    assert "TDS*2140760*2135000" in lines
    assert "SAC*C*D240***4500" in lines
    assert "TXI*TX*12.60" in lines
    assert "ITD*01*3****20250409******NET30" in lines
    assert "IT1*1*2*BX*1200.00**IN*ITEM-STENT-3018*VN*H7493926018300*UK*00812345678901*PL*1" in (
        lines
    )


def test_an_invoice_line_whose_amount_is_not_quantity_times_price_cannot_be_written():
    sample = invoice()
    wrong = replace(sample.lines[0], extended_amount=Decimal("2300.00"))
    with pytest.raises(X12Error) as caught:
        write_810(replace(sample, lines=(wrong, *sample.lines[1:])), **ENVELOPE)
    assert str(caught.value) == (
        "an 810 line carries no amount of its own, so line 1's extended amount 2300.00 must be "
        "quantity x unit price (2400.00) (segment 8 (IT1))"
    )


def test_data_holding_the_usual_delimiters_is_written_with_other_ones():
    po = purchase_order()
    tricky = replace(po.lines[0], description="Stent 3.0*18 mm ~ box:10 ^new^")
    po = replace(po, lines=(tricky, *po.lines[1:]))
    document = write_850(po, **ENVELOPE)
    assert document.startswith(b"ISA|00|")
    assert (document[82:83], document[103:106]) == (b"{", b"|>'")  # ISA11, ISA16, terminator
    assert parse_850(document, SITE) == po


def test_a_control_character_in_the_data_is_refused_with_its_place():
    po = purchase_order()
    line = replace(po.lines[0], description="Stent\nbox of 10")
    with pytest.raises(X12Error) as caught:
        write_850(replace(po, lines=(line, *po.lines[1:])), **ENVELOPE)
    assert str(caught.value) == (
        "PID05 holds a control character, which X12 cannot carry: 'Stent\\nbox of 10' "
        "(segment 11 (PID))"
    )
    assert (caught.value.segment_index, caught.value.segment_id, caught.value.element) == (
        11,
        "PID",
        "PID05",
    )


def test_times_travel_in_utc_to_the_second():
    ack = acknowledgement(
        acknowledged_at=datetime.fromisoformat("2025-03-03T11:42:05.250000-05:00")
    )
    parsed = parse_855(write_855(ack, **ENVELOPE), SITE)
    assert parsed.acknowledged_at == datetime(2025, 3, 3, 16, 42, 5, tzinfo=UTC)
