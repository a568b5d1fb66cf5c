"""The receipt rules on plain data: no NATS, no SQLite. The item master and the receipt history
are in-memory fakes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import scenario_data as scenario

from sinew.contracts.common import Quantity
from sinew.masterdata.barcodes import gtin14
from sinew.masterdata.rules import approved_substitution
from sinew.services.receiving.domain import (
    Arrival,
    Correction,
    Order,
    OrderLine,
    PendingReceipt,
    ReceiptHeader,
    after_resolution,
    can_resolve,
    evaluate,
)

RECEIVED_AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


class FakeItems:
    def __init__(self, *items, substitutions=()) -> None:
        self.items = {item.item_id: item for item in items}
        self.substitutions = list(substitutions)

    def item(self, item_id):
        return self.items.get(item_id)

    def item_by_code(self, *, gtin=None, udi_di=None):
        for item in self.items.values():
            if gtin and item.gtin and gtin14(item.gtin) == gtin14(gtin):
                return item, item.base_uom
            for pack in item.packs:
                if gtin and pack.gtin and gtin14(pack.gtin) == gtin14(gtin):
                    return item, pack.uom
            if udi_di and item.udi_di == udi_di:
                return item, None
        return None

    def item_by_supplier_part(self, supplier_id, part_number):
        for item in self.items.values():
            if any(
                p.supplier_id == supplier_id and p.part_number == part_number
                for p in item.supplier_parts
            ):
                return item
        return None

    def substitution(self, item_id, substitute_item_id, on):
        return approved_substitution(self.substitutions, item_id, substitute_item_id, on)


class FakeHistory:
    def __init__(self, received=None, serials=()) -> None:
        self._received = received or {}
        self._serials = set(serials)

    def received(self, po_number, line_number):
        return Decimal(self._received.get((po_number, line_number), 0))

    def serial_received(self, item_id, serial):
        return (item_id, serial) in self._serials


ITEMS = FakeItems(
    scenario.stent(),
    scenario.stent_v2(),
    scenario.guidewire(),
    substitutions=[scenario.stent_substitution()],
)


def order(*lines: OrderLine, status: str = "open") -> Order:
    return Order("PO-1", 1, scenario.MEDSUP, scenario.CATH_LAB, status, lines)


STENTS = OrderLine(1, scenario.STENT, Quantity(Decimal(2), "EA"))
GUIDEWIRE_BOXES = OrderLine(1, scenario.GUIDEWIRE, Quantity(Decimal(3), "BX"))


def pending(*arrivals: Arrival, po_number: str | None = "PO-1", waived=()) -> PendingReceipt:
    header = ReceiptHeader(
        receipt_id="GR-1",
        po_number=po_number,
        location_id=None,
        source="api",
        received_by="ana",
        received_at=RECEIVED_AT,
    )
    return PendingReceipt(header=header, arrivals=arrivals, waived=tuple(waived))


def stent(serial: str, lot: str = "L1", expiry: date | None = date(2028, 1, 31)) -> Arrival:
    return Arrival(
        item_id=scenario.STENT,
        quantity=Quantity(Decimal(1), "EA"),
        lot=lot,
        serial=serial,
        expiry=expiry,
    )


def boxes(n: int | str, uom: str = "BX") -> Arrival:
    return Arrival(item_id=scenario.GUIDEWIRE, quantity=Quantity(Decimal(n), uom), lot="GW1")


def test_two_stents_with_lots_and_serials_are_received_against_their_line():
    outcome = evaluate(
        pending(stent("S1", "L1"), stent("S2", "L2")), order(STENTS), ITEMS, FakeHistory()
    )
    assert outcome.problems == []
    assert [(r.po_line_number, r.lot, r.serial, r.base_quantity) for r in outcome.received] == [
        (1, "L1", "S1", 1),
        (1, "L2", "S2", 1),
    ]
    assert outcome.location_id == scenario.CATH_LAB  # the PO's ship-to when none was given
    assert outcome.supplier_id == scenario.MEDSUP


def test_receipts_in_boxes_count_in_eaches():
    outcome = evaluate(pending(boxes(2)), order(GUIDEWIRE_BOXES), ITEMS, FakeHistory())
    (line,) = outcome.received
    assert line.quantity == Quantity(Decimal(2), "BX")
    assert line.base_quantity == 20


def test_a_partial_receipt_then_the_rest_is_cumulative():
    history = FakeHistory({("PO-1", 1): 20})  # 2 of 3 boxes already received
    outcome = evaluate(pending(boxes(10, "EA")), order(GUIDEWIRE_BOXES), ITEMS, history)
    assert outcome.problems == []
    assert outcome.received[0].base_quantity == 10


def test_an_unknown_unit_is_an_unknown_item_problem_not_a_crash():
    outcome = evaluate(pending(boxes(1, "PK")), order(GUIDEWIRE_BOXES), ITEMS, FakeHistory())
    (problem,) = outcome.problems
    assert problem.type == "UNKNOWN_ITEM"
    assert "has no unit of measure PK" in problem.explanation
    assert problem.waiting_for == f"item:{scenario.GUIDEWIRE}"


def test_over_receipt_receives_up_to_the_order_and_holds_the_excess():
    history = FakeHistory({("PO-1", 1): 10})
    outcome = evaluate(pending(boxes(3)), order(GUIDEWIRE_BOXES), ITEMS, history)
    (received,) = outcome.received
    assert (received.quantity, received.base_quantity) == (Quantity(Decimal(2), "BX"), 20)
    (excess,) = outcome.problems
    assert excess.type == "OVER_RECEIPT"
    assert excess.quantity == Quantity(Decimal(1), "BX")
    assert excess.held.arrivals[0].quantity == Quantity(Decimal(1), "BX")
    assert "10 EA already received" in excess.explanation


def test_an_excess_that_is_not_whole_boxes_is_counted_in_eaches():
    history = FakeHistory({("PO-1", 1): 25})
    outcome = evaluate(pending(boxes(1)), order(GUIDEWIRE_BOXES), ITEMS, history)
    assert outcome.received[0].quantity == Quantity(Decimal(5), "EA")
    assert outcome.problems[0].quantity == Quantity(Decimal(5), "EA")


def test_two_lines_of_one_receipt_count_against_the_same_po_line():
    outcome = evaluate(
        pending(stent("S1"), stent("S2"), stent("S3")), order(STENTS), ITEMS, FakeHistory()
    )
    assert [r.serial for r in outcome.received] == ["S1", "S2"]
    assert [(p.type, p.serial) for p in outcome.problems] == [("OVER_RECEIPT", "S3")]


def test_an_accepted_over_receipt_is_received_whole():
    history = FakeHistory({("PO-1", 1): 2})
    outcome = evaluate(pending(stent("S3"), waived=["OVER_RECEIPT"]), order(STENTS), ITEMS, history)
    assert outcome.problems == []
    assert outcome.received[0].serial == "S3"


def test_an_expired_lot_is_held():
    outcome = evaluate(
        pending(stent("S1", expiry=date(2026, 3, 1))), order(STENTS), ITEMS, FakeHistory()
    )
    assert [p.type for p in outcome.problems] == ["EXPIRED_LOT"]
    assert outcome.received == []
    assert "expired on 2026-03-01, before it was received on 2026-03-02" in (
        outcome.problems[0].explanation
    )


def test_a_lot_expiring_on_the_day_it_is_received_is_not_expired():
    outcome = evaluate(
        pending(stent("S1", expiry=date(2026, 3, 2))), order(STENTS), ITEMS, FakeHistory()
    )
    assert outcome.problems == []


def test_a_serial_received_before_is_a_duplicate():
    history = FakeHistory(serials=[(scenario.STENT, "S1")])
    outcome = evaluate(pending(stent("S1")), order(STENTS), ITEMS, history)
    assert [p.type for p in outcome.problems] == ["DUPLICATE_SERIAL"]
    assert outcome.received == []


def test_a_serial_twice_in_one_receipt_is_a_duplicate():
    outcome = evaluate(pending(stent("S1"), stent("S1")), order(STENTS), ITEMS, FakeHistory())
    assert len(outcome.received) == 1
    assert [(p.type, p.serial) for p in outcome.problems] == [("DUPLICATE_SERIAL", "S1")]


def test_lot_and_serial_controlled_items_need_both():
    bare = Arrival(item_id=scenario.STENT, quantity=Quantity(Decimal(1), "EA"))
    outcome = evaluate(pending(bare), order(STENTS), ITEMS, FakeHistory())
    (problem,) = outcome.problems
    assert problem.type == "LOT_OR_SERIAL_MISSING"
    assert "lot and serial controlled" in problem.explanation
    two_under_one_serial = Arrival(
        item_id=scenario.STENT, quantity=Quantity(Decimal(2), "EA"), lot="L1", serial="S1"
    )
    outcome = evaluate(pending(two_under_one_serial), order(STENTS), ITEMS, FakeHistory())
    assert outcome.problems[0].type == "LOT_OR_SERIAL_MISSING"
    assert "one serial names one unit" in outcome.problems[0].explanation


def test_closed_cancelled_and_unknown_orders():
    for status in ("closed", "cancelled"):
        outcome = evaluate(pending(stent("S1")), order(STENTS, status=status), ITEMS, FakeHistory())
        assert [p.type for p in outcome.problems] == ["CLOSED_PO"]
        assert status in outcome.problems[0].explanation
    outcome = evaluate(pending(stent("S1")), None, ITEMS, FakeHistory())
    (problem,) = outcome.problems
    assert (problem.type, problem.waiting_for) == ("UNKNOWN_PO", "po:PO-1")
    waived = pending(stent("S1"), waived=["CLOSED_PO"])
    assert evaluate(waived, order(STENTS, status="closed"), ITEMS, FakeHistory()).received


def test_a_line_number_the_po_does_not_have_waits_for_a_po_change():
    arrival = Arrival(po_line_number=7, item_id=scenario.GUIDEWIRE, quantity=Quantity(1, "BX"))
    (problem,) = evaluate(pending(arrival), order(GUIDEWIRE_BOXES), ITEMS, FakeHistory()).problems
    assert (problem.type, problem.waiting_for) == ("UNKNOWN_PO", "po:PO-1")
    assert "has no line 7" in problem.explanation


def test_items_are_found_by_gtin_pack_gtin_and_supplier_part():
    by_box = Arrival(gtin=scenario.GUIDEWIRE_BOX_GTIN, lot="GW1")  # one of the pack scanned
    by_part = Arrival(
        supplier_id=scenario.MEDSUP,
        supplier_part="MS-GW-035",
        quantity=Quantity(Decimal(1), "BX"),
        lot="GW1",
    )
    outcome = evaluate(pending(by_box, by_part), order(GUIDEWIRE_BOXES), ITEMS, FakeHistory())
    assert [(r.item_id, r.quantity.uom, r.base_quantity) for r in outcome.received] == [
        (scenario.GUIDEWIRE, "BX", 10),
        (scenario.GUIDEWIRE, "BX", 10),
    ]
    unknown = Arrival(gtin="00812345999992", lot="X")
    (problem,) = evaluate(pending(unknown), order(STENTS), ITEMS, FakeHistory()).problems
    assert (problem.type, problem.waiting_for) == ("UNKNOWN_ITEM", "gtin:00812345999992")


def test_an_approved_substitute_counts_against_the_ordered_line_and_another_does_not():
    v2 = Arrival(item_id=scenario.STENT_V2, quantity=Quantity(1, "EA"), lot="L9", serial="V2-1")
    outcome = evaluate(pending(v2), order(STENTS), ITEMS, FakeHistory())
    assert [(r.item_id, r.po_line_number) for r in outcome.received] == [(scenario.STENT_V2, 1)]
    bare_metal = FakeItems(*ITEMS.items.values(), scenario.bare_metal_stent())
    other = Arrival(
        po_line_number=1,
        item_id=scenario.BARE_METAL_STENT,
        quantity=Quantity(1, "EA"),
        lot="B1",
        serial="B-1",
    )
    (problem,) = evaluate(pending(other), order(STENTS), bare_metal, FakeHistory()).problems
    assert problem.type == "UNKNOWN_ITEM"
    assert "is not an approved substitute" in problem.explanation


def test_without_a_po_an_unknown_item_is_said_first():
    unknown = Arrival(gtin="00812345999992", lot="X")
    (problem,) = evaluate(pending(unknown, po_number=None), None, ITEMS, FakeHistory()).problems
    assert problem.type == "UNKNOWN_ITEM"
    (problem,) = evaluate(pending(stent("S1"), po_number=None), None, ITEMS, FakeHistory()).problems
    assert (problem.type, problem.waiting_for) == ("UNKNOWN_PO", "serial:S1")


def test_which_resolutions_fit_which_exceptions():
    assert can_resolve("OVER_RECEIPT", "accepted", None) is None
    assert "correct it or dismiss it" in can_resolve("UNKNOWN_PO", "accepted", None)
    assert "at least one" in can_resolve("LOT_OR_SERIAL_MISSING", "corrected", Correction())
    assert can_resolve("UNREADABLE_BARCODE", "dismissed", None) is None
    held = pending(Arrival(item_id=scenario.STENT, quantity=Quantity(1, "EA"), lot="L1"))
    corrected = after_resolution(
        held, "LOT_OR_SERIAL_MISSING", "corrected", Correction(serial="S7")
    )
    assert corrected.arrivals[0].serial == "S7"
    assert evaluate(corrected, order(STENTS), ITEMS, FakeHistory()).received[0].serial == "S7"
    accepted = after_resolution(held, "EXPIRED_LOT", "accepted", None)
    assert accepted.waived == ("EXPIRED_LOT",)
    assert after_resolution(held, "EXPIRED_LOT", "returned_to_supplier", None) is None
