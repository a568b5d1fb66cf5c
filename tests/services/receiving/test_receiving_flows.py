"""Receiving through its public interfaces on a real nats-server: POs and master data as
procurement and items publish them, ASNs and dock scans on the ingress subjects, receipts and
exceptions over HTTP, and what it publishes read back from the RECEIVING stream.

One service (one site) serves the whole module; each test uses its own PO numbers and serials.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest
import scenario_data as scenario
from helpers import eventually, query
from receiving_world import (
    FUTURE,
    NURSE,
    PAST,
    SUTURE,
    SUTURE_HIBC_DI,
    purchase_order,
    receiving_service,
    stent_asn,
    unique,
)
from scenario_data import gs1_barcode, hibc_barcode

from sinew.contracts.common import Quantity
from sinew.contracts.items import ItemUpserted
from sinew.contracts.procurement import (
    AcknowledgedLine,
    PurchaseOrderAcknowledged,
    PurchaseOrderCancelled,
    PurchaseOrderClosed,
)
from sinew.contracts.receiving import AdvanceShipNotice, AsnReceived
from sinew.masterdata.barcodes import parse_udi
from sinew.x12 import write_856

pytestmark = pytest.mark.asyncio
STENT, GUIDEWIRE = scenario.STENT, scenario.GUIDEWIRE
_encoder = msgspec.json.Encoder(decimal_format="string")


@pytest.fixture(scope="module")
async def world(nats_server, tmp_path_factory):
    async with receiving_service(nats_server, tmp_path_factory.mktemp("receiving")) as world:
        yield world


def stent_line(serial: str, lot: str, **extra) -> dict:
    return {
        "item_id": STENT,
        "quantity": {"value": "1", "uom": "EA"},
        "lot": lot,
        "serial": serial,
        "expiry": FUTURE.isoformat(),
        **extra,
    }


def one(quantity: Quantity | dict) -> tuple:
    if isinstance(quantity, dict):
        return (Decimal(quantity["value"]), quantity["uom"])
    return (quantity.value, quantity.uom)


async def test_scenario_1_asn_then_dock_scans_receive_two_stents_with_lot_and_serial(world):
    po, asn = unique("PO"), unique("ASN")
    l1, l2, s1, s2 = unique("L1"), unique("L2"), unique("S1"), unique("S2")
    await world.approve(purchase_order(world.site, po, (STENT, 2, "EA")))
    await world.emit("ingress.asn.submitted.v1", stent_asn(world.site, asn, po, {l1: s1, l2: s2}))

    async def asn_published():
        return [
            a
            for a in await world.events("receiving.asn.received.v1", AsnReceived)
            if a.asn_number == asn
        ]

    await eventually(asn_published, what="ASN received published")
    (published,) = await asn_published()
    assert published.source_format == "json"
    assert published.orders[0].items[0].lots[0].serials == (s1,)

    # The first scan names the ASN; the second label has no expiry and names nothing: its
    # serial is found on the ASN, which also gives the expiry.
    await world.scan(
        gs1_barcode(scenario.STENT_GTIN, lot=l1, serial=s1, expiry=FUTURE), asn_number=asn
    )
    await world.scan(gs1_barcode(scenario.STENT_GTIN, lot=l2, serial=s2))
    receipts = await world.receipts_for(po, 2)
    assert sorted(
        (r.lines[0].lot, r.lines[0].serial, r.lines[0].expiry, r.asn_number) for r in receipts
    ) == [(l1, s1, FUTURE, asn), (l2, s2, FUTURE, asn)]
    for receipt in receipts:
        (line,) = receipt.lines
        assert (line.po_line_number, line.item_id) == (1, STENT)
        assert one(line.quantity) == (1, "EA") and one(line.base_quantity) == (1, "EA")
        assert (receipt.supplier_id, receipt.location_id, receipt.source) == (
            scenario.MEDSUP,
            scenario.CATH_LAB,
            "dock_scan",
        )
        assert receipt.received_by == "dock-1"

    status = await world.status(po)
    assert status["fully_received"] is True
    expected = {
        "ordered": {"value": "2", "uom": "EA"},
        "ordered_base": "2",
        "received_base": "2",
        "remaining_base": "0",
        "state": "received",
    }
    assert {key: status["lines"][0][key] for key in expected} == expected
    listed = await world.get(f"/v1/asns?po_number={po}")
    assert [a["asn_number"] for a in listed["items"]] == [asn]
    shown = await world.get(f"/v1/asns/{asn}")
    assert shown["orders"][0]["items"][0]["lots"][1]["serials"] == [s2]


async def test_an_asn_received_in_full_over_http_takes_its_lots_and_serials(world):
    po, asn = unique("PO"), unique("ASN")
    lots = {unique("LA"): unique("SA"), unique("LB"): unique("SB")}
    await world.approve(purchase_order(world.site, po, (STENT, 2, "EA")))
    await world.emit("ingress.asn.submitted.v1", stent_asn(world.site, asn, po, lots))
    await eventually(
        lambda: query(world.db, "SELECT count(*) FROM asns WHERE asn_number=?", (asn,))[0][0],
        what="ASN stored",
    )
    answer = await world.post(f"/v1/asns/{asn}/receive", {}, status=201)
    (order,) = answer["orders"]
    assert order["exceptions"] == []
    assert [(ln["lot"], ln["serial"]) for ln in order["receipt"]["lines"]] == list(lots.items())
    (receipt,) = await world.receipts_for(po, 1)
    assert (receipt.source, receipt.asn_number, receipt.received_by) == ("asn", asn, "rita")
    assert len(receipt.lines) == 2
    again = await world.post(f"/v1/asns/{asn}/receive", {}, status=409)
    assert again["error"]["code"] == "already_received"
    assert (await world.get(f"/v1/asns/{asn}"))["received_at"] is not None


async def test_scenario_7_two_received_then_the_third_later_adds_up(world):
    po = unique("PO")
    await world.approve(purchase_order(world.site, po, (STENT, 3, "EA")))
    first = await world.receive(
        po, stent_line(unique("S"), "L7"), stent_line(unique("S"), "L7"), receipt_id=unique("R")
    )
    assert first["exceptions"] == [] and len(first["receipt"]["lines"]) == 2
    line = (await world.status(po))["lines"][0]
    assert (line["received_base"], line["remaining_base"], line["state"]) == (
        "2",
        "1",
        "partially_received",
    )
    await world.receive(po, stent_line(unique("S"), "L8", po_line_number=1))
    line = (await world.status(po))["lines"][0]
    assert (line["received_base"], line["remaining_base"], line["state"]) == ("3", "0", "received")
    receipts = await world.receipts_for(po, 2)
    assert [len(r.lines) for r in receipts] == [2, 1]
    listed = await world.get(f"/v1/receipts?po_number={po}&limit=1")
    assert (listed["total"], listed["next_offset"]) == (2, 1)
    assert listed["items"][0]["receipt_id"] == first["receipt_id"]
    by_item = await world.get(
        f"/v1/receipts?po_number={po}&item={STENT}&location={scenario.CATH_LAB}"
    )
    assert by_item["total"] == 2
    elsewhere = await world.get(f"/v1/receipts?po_number={po}&location=OR-2")
    assert elsewhere["total"] == 0


async def test_the_same_receipt_posted_twice_is_received_once(world):
    po, receipt_id = unique("PO"), unique("R")
    await world.approve(purchase_order(world.site, po, (GUIDEWIRE, 5, "BX")))
    line = {"item_id": GUIDEWIRE, "quantity": {"value": "1", "uom": "BX"}, "lot": "GW"}
    first = await world.receive(po, line, receipt_id=receipt_id)
    second = await world.receive(po, line, receipt_id=receipt_id)
    assert second == first
    assert (await world.status(po))["lines"][0]["received_base"] == "10"


async def test_a_line_naming_only_its_po_line_receives_that_lines_item(world):
    po = unique("PO")
    await world.approve(purchase_order(world.site, po, (GUIDEWIRE, 5, "BX")))
    line = {"po_line_number": 1, "quantity": {"value": "2", "uom": "BX"}, "lot": "GW1"}
    receipt = await world.receive(po, line)
    assert receipt["exceptions"] == []
    assert (await world.status(po))["lines"][0]["received_base"] == "20"


async def test_scenario_13_boxes_of_ten_are_received_as_eaches(world):
    po, lot = unique("PO"), unique("GW")
    await world.approve(purchase_order(world.site, po, (GUIDEWIRE, 3, "BX")))
    await world.receive(
        po, {"item_id": GUIDEWIRE, "quantity": {"value": "2", "uom": "BX"}, "lot": lot}
    )
    # A box label scanned at the dock: its GTIN is the box level, so one scan is ten eaches.
    await world.scan(gs1_barcode(scenario.GUIDEWIRE_BOX_GTIN, lot=lot, expiry=FUTURE), po_number=po)
    receipts = await world.receipts_for(po, 2)
    assert [(one(r.lines[0].quantity), one(r.lines[0].base_quantity)) for r in receipts] == [
        ((2, "BX"), (20, "EA")),
        ((1, "BX"), (10, "EA")),
    ]
    line = (await world.status(po))["lines"][0]
    assert (line["ordered_base"], line["base_uom"], line["received_base"], line["state"]) == (
        "30",
        "EA",
        "30",
        "received",
    )


async def test_an_over_receipt_receives_the_order_and_holds_the_excess_for_a_person(world):
    po = unique("PO")
    await world.approve(purchase_order(world.site, po, (GUIDEWIRE, 2, "BX")))
    answer = await world.receive(
        po, {"item_id": GUIDEWIRE, "lot": "GW3", "quantity": {"value": "3", "uom": "BX"}}
    )
    assert one(answer["receipt"]["lines"][0]["quantity"]) == (2, "BX")
    (exception,) = answer["exceptions"]
    assert (exception["type"], exception["status"], one(exception["quantity"])) == (
        "OVER_RECEIPT",
        "open",
        (1, "BX"),
    )
    (raised,) = await world.raised(po_number=po)
    assert (raised.type, raised.exception_id, raised.po_line_number) == (
        "OVER_RECEIPT",
        exception["exception_id"],
        1,
    )
    queue = await world.get(f"/v1/exceptions?type=OVER_RECEIPT&status=open&po_number={po}")
    assert [e["exception_id"] for e in queue["items"]] == [exception["exception_id"]]

    resolve = f"/v1/exceptions/{exception['exception_id']}/resolve"
    accept = {"resolution": "accepted", "reason": "clinic wants the spare box"}
    assert (await world.http.post(resolve, json=accept)).status == 401
    forbidden = await world.post(resolve, accept, token=NURSE, status=403)
    assert forbidden["error"]["code"] == "forbidden"
    resolved = await world.post(resolve, accept)
    assert resolved["exception"]["resolution"]["resolved_by"] == "rita"
    assert one(resolved["receipt"]["lines"][0]["quantity"]) == (1, "BX")
    event = await world.resolved(exception["exception_id"])
    assert (event.resolution, event.receipt_id) == ("accepted", resolved["receipt"]["receipt_id"])
    receipts = await world.receipts_for(po, 2)
    assert sum(r.lines[0].base_quantity.value for r in receipts) == 30
    line = (await world.status(po))["lines"][0]
    assert (line["received_base"], line["state"]) == ("30", "over_received")
    again = await world.post(resolve, accept, status=409)
    assert again["error"]["code"] == "already_resolved"


async def test_a_receipt_for_an_unknown_po_is_held_and_goes_through_when_the_po_arrives(world):
    po = unique("PO")
    answer = await world.receive(po, stent_line(unique("S"), "L9"))
    assert answer["receipt"] is None
    (exception,) = answer["exceptions"]
    assert (exception["type"], exception["waiting_for"]) == ("UNKNOWN_PO", f"po:{po}")
    assert "not known here" in exception["explanation"]
    await world.get(f"/v1/purchase-orders/{po}/receiving-status", status=404)

    await world.approve(purchase_order(world.site, po, (STENT, 1, "EA")), wait=False)
    (receipt,) = await world.receipts_for(po, 1)
    assert receipt.receipt_id == answer["receipt_id"]
    event = await world.resolved(exception["exception_id"])
    assert (event.resolution, event.resolved_by, event.receipt_id) == (
        "corrected",
        "receiving",
        receipt.receipt_id,
    )
    shown = await world.get(f"/v1/exceptions/{exception['exception_id']}")
    assert shown["status"] == "resolved"


async def test_receipts_against_closed_or_cancelled_pos_are_exceptions(world):
    closed, cancelled = unique("PO"), unique("PO")
    for po in (closed, cancelled):
        await world.approve(purchase_order(world.site, po, (STENT, 2, "EA")))
    now = datetime.now(UTC)
    await world.emit(
        "procurement.purchase-order.closed.v1",
        _encoder.encode(
            PurchaseOrderClosed(
                site=world.site,
                po_number=closed,
                supplier_id=scenario.MEDSUP,
                reason="short_closed",
                closed_by="buyer",
                closed_at=now,
            )
        ),
    )
    await world.emit(
        "procurement.purchase-order.cancelled.v1",
        _encoder.encode(
            PurchaseOrderCancelled(
                site=world.site,
                po_number=cancelled,
                revision=1,
                supplier_id=scenario.MEDSUP,
                cancelled_by="buyer",
                reason="duplicate order",
                cancelled_at=now,
            )
        ),
    )
    for po, status in ((closed, "closed"), (cancelled, "cancelled")):
        await eventually(
            lambda po=po, status=status: (
                query(world.db, "SELECT status FROM purchase_orders WHERE po_number=?", (po,))
                == [(status,)]
            ),
            what=f"{po} {status}",
        )
        answer = await world.receive(po, stent_line(unique("S"), "LC"))
        assert answer["receipt"] is None
        (exception,) = answer["exceptions"]
        assert exception["type"] == "CLOSED_PO"
        assert f"is {status}" in exception["explanation"]
    assert (await world.status(cancelled))["status"] == "cancelled"
    # A person may still take in goods a closed PO no longer expects.
    exception_id = (await world.raised(po_number=closed))[0].exception_id
    accepted = await world.post(
        f"/v1/exceptions/{exception_id}/resolve",
        {"resolution": "accepted", "reason": "late delivery kept"},
    )
    assert accepted["receipt"]["po_number"] == closed
    await world.receipts_for(closed, 1)


async def test_an_expired_lot_is_held_then_returned_or_accepted(world):
    po = unique("PO")
    await world.approve(purchase_order(world.site, po, (STENT, 2, "EA")))
    returned, kept = unique("S"), unique("S")
    for serial in (returned, kept):
        await world.scan(
            gs1_barcode(scenario.STENT_GTIN, lot="OLD", serial=serial, expiry=PAST), po_number=po
        )
    raised = await world.raised(2, po_number=po, type="EXPIRED_LOT")
    assert {e.serial for e in raised} == {returned, kept}
    assert all(e.expiry == PAST for e in raised)
    assert (await world.status(po))["lines"][0]["open_exceptions"] == {"EXPIRED_LOT": 2}
    by_serial = {e.serial: e.exception_id for e in raised}
    back = await world.post(
        f"/v1/exceptions/{by_serial[returned]}/resolve",
        {"resolution": "returned_to_supplier", "reason": "expired"},
    )
    assert back["receipt"] is None
    keep = await world.post(
        f"/v1/exceptions/{by_serial[kept]}/resolve",
        {"resolution": "accepted", "reason": "for the wet lab"},
    )
    assert keep["receipt"]["lines"][0]["serial"] == kept
    (receipt,) = await world.receipts_for(po, 1)
    assert receipt.lines[0].expiry == PAST
    assert (await world.status(po))["lines"][0]["received_base"] == "1"


async def test_a_serial_received_twice_is_an_exception_and_a_repeated_scan_is_not(world):
    po, serial = unique("PO"), unique("S")
    await world.approve(purchase_order(world.site, po, (STENT, 3, "EA")))
    barcode = gs1_barcode(scenario.STENT_GTIN, lot="LD", serial=serial, expiry=FUTURE)
    scan_id = await world.scan(barcode, po_number=po)
    await world.scan(barcode, scan_id=scan_id, po_number=po)  # the scanner sent it again
    await world.scan(barcode, po_number=po)  # the same unit scanned a second time
    (duplicate,) = await world.raised(po_number=po, type="DUPLICATE_SERIAL")
    assert duplicate.serial == serial
    assert f"serial {serial} was already received" in duplicate.explanation
    assert len(await world.receipts_for(po)) == 1
    assert (await world.status(po))["lines"][0]["received_base"] == "1"


async def test_a_stent_without_its_serial_is_held_until_corrected(world):
    po, serial = unique("PO"), unique("S")
    await world.approve(purchase_order(world.site, po, (STENT, 1, "EA")))
    answer = await world.receive(po, stent_line(serial, "LM") | {"serial": None})
    (exception,) = answer["exceptions"]
    assert exception["type"] == "LOT_OR_SERIAL_MISSING"
    assert "serial is missing" in exception["explanation"]
    path = f"/v1/exceptions/{exception['exception_id']}/resolve"
    empty = await world.post(path, {"resolution": "corrected", "reason": "x"}, status=409)
    assert "at least one corrected field" in empty["error"]["message"]
    corrected = await world.post(
        path,
        {
            "resolution": "corrected",
            "reason": "serial read off the box",
            "correction": {"serial": serial},
        },
    )
    assert corrected["receipt"]["lines"][0]["serial"] == serial
    (receipt,) = await world.receipts_for(po, 1)
    assert receipt.lines[0].serial == serial


async def test_unreadable_barcodes_and_unknown_items_are_exceptions(world):
    scan_id = await world.scan("]C1 not a barcode at all")
    (unreadable,) = await world.raised(scan_id=scan_id)
    assert unreadable.type == "UNREADABLE_BARCODE"
    assert "cannot be read" in unreadable.explanation
    accept = await world.post(
        f"/v1/exceptions/{unreadable.exception_id}/resolve",
        {"resolution": "accepted", "reason": "?"},
        status=409,
    )
    assert accept["error"]["code"] == "resolution_not_possible"
    await world.post(
        f"/v1/exceptions/{unreadable.exception_id}/resolve",
        {"resolution": "dismissed", "reason": "label torn"},
    )

    # An item the master has not synchronised yet: held, and received once the item arrives.
    po, drape, gtin = unique("PO"), unique("DRAPE"), "00812345111118"
    await world.approve(purchase_order(world.site, po, (drape, 4, "EA")))
    await world.scan(gs1_barcode(gtin), po_number=po)
    (unknown,) = await world.raised(po_number=po)
    assert (unknown.type, unknown.item_id) == ("UNKNOWN_ITEM", None)
    assert f"GTIN {gtin}" in unknown.explanation
    item = ItemUpserted(
        site=world.site,
        item_id=drape,
        version=1,
        description="Drape",
        base_uom="EA",
        gtin=gtin,
        source="mdm",
        upserted_at=scenario.UPSERTED_AT,
    )
    await world.emit("items.item.upserted.v1", _encoder.encode(item))
    (receipt,) = await world.receipts_for(po, 1)
    assert (receipt.lines[0].item_id, one(receipt.lines[0].quantity)) == (drape, (1, "EA"))
    assert (await world.resolved(unknown.exception_id)).resolution == "corrected"


async def test_an_hibc_dock_scan_finds_the_open_po_line_and_is_received(world):
    po = unique("PO")
    await world.approve(purchase_order(world.site, po, (SUTURE, 5, "EA")))
    lot = next(
        lot
        for n in range(100)
        if (lot := f"SU{n}")
        and parse_udi(hibc_barcode(SUTURE_HIBC_DI, lot=lot, expiry=FUTURE)).lot == lot
    )
    await world.scan(hibc_barcode(SUTURE_HIBC_DI, lot=lot, expiry=FUTURE))  # names no PO
    (receipt,) = await world.receipts_for(po, 1)
    (line,) = receipt.lines
    assert (line.item_id, line.lot, line.expiry, one(line.base_quantity)) == (
        SUTURE,
        lot,
        FUTURE,
        (1, "EA"),
    )


async def test_the_highest_po_revision_wins(world):
    po = unique("PO")
    await world.approve(purchase_order(world.site, po, (GUIDEWIRE, 5, "BX"), revision=2))
    await world.approve(purchase_order(world.site, po, (GUIDEWIRE, 2, "BX")), wait=False)
    await world.approve(purchase_order(world.site, unique("PO"), (STENT, 1, "EA")))  # a marker
    status = await world.status(po)
    assert (status["revision"], status["lines"][0]["ordered"]) == (2, {"value": "5", "uom": "BX"})


async def test_bad_requests_get_precise_errors(world):
    line = {"item_id": STENT, "quantity": {"value": "1", "uom": "EA"}}
    missing = await world.post("/v1/receipts", {"lines": [line]}, status=422)
    assert "missing required field `po_number`" in missing["error"]["message"]
    empty = await world.post("/v1/receipts", {"po_number": "PO-X", "lines": []}, status=422)
    assert "at `$.lines`" in empty["error"]["message"]
    nothing_named = await world.post(
        "/v1/receipts", {"po_number": "PO-X", "lines": [{"quantity": line["quantity"]}]}, status=422
    )
    assert "names neither po_line_number, item_id nor gtin" in nothing_named["error"]["message"]
    zero_line = {"item_id": STENT, "quantity": {"value": "0", "uom": "EA"}}
    zero = await world.post("/v1/receipts", {"po_number": "PO-X", "lines": [zero_line]}, status=422)
    assert "$.lines[0].quantity.value must be greater than 0" in zero["error"]["message"]
    nan_line = {"item_id": STENT, "quantity": {"value": "NaN", "uom": "EA"}}
    nan = await world.post("/v1/receipts", {"po_number": "PO-X", "lines": [nan_line]}, status=422)
    assert "finite decimal, got `NaN` - at `$.lines[0].quantity.value`" in nan["error"]["message"]
    bad_filter = await world.get("/v1/exceptions?type=NOPE", status=400)
    assert bad_filter["error"]["code"] == "bad_filter"
    await world.get("/v1/exceptions/RX-NOPE", status=404)


async def test_malformed_asns_become_dead_letters_with_a_precise_reason(world):
    await world.emit("ingress.asn.submitted.v1", b'{"site": "' + world.site.encode() + b'", ')
    await world.emit(
        "ingress.asn.submitted.v1",
        _encoder.encode({"site": world.site, "asn_number": "ASN-BAD", "supplier_id": "MEDSUP"}),
    )
    zero = msgspec.json.decode(stent_asn(world.site, "ASN-ZERO", "PO-Z", {"LZ": "SZ"}))
    zero["orders"][0]["items"][0]["lots"][0]["quantity"]["value"] = "0"
    await world.emit("ingress.asn.submitted.v1", _encoder.encode(zero))

    async def dead_letters():
        listing = await world.get("/v1/dead-letters?limit=50")
        return listing["items"] if listing["total"] >= 3 else None

    await eventually(dead_letters, what="three dead letters")
    reasons = {(d["cause"], d["reason"]) for d in await dead_letters()}
    causes = sorted(cause for cause, _ in reasons)
    assert causes == ["invalid", "invalid", "malformed"]
    assert any(r.startswith("malformed JSON") for _, r in reasons)
    assert any("missing required field `orders`" in r for _, r in reasons)
    assert any(
        "$.orders[0].items[0].lots[0].quantity.value must be a number greater than 0" in r
        for _, r in reasons
    )
    assert query(world.db, "SELECT count(*) FROM asns WHERE asn_number='ASN-ZERO'") == [(0,)]


def stent_856(site: str, asn: str, po: str, lots: dict[str, str]) -> bytes:
    notice = msgspec.json.decode(stent_asn(site, asn, po, lots), type=AdvanceShipNotice)
    return write_856(notice, sender_id="MEDSUP", receiver_id="SINEW", control_number=42)


async def test_an_x12_856_is_an_asn_like_the_json_one(world):
    po, asn, lot, serial = unique("PO"), unique("ASN"), unique("LX"), unique("SX")
    await world.approve(purchase_order(world.site, po, (STENT, 1, "EA")))
    await world.emit("ingress.asn-x12.received.v1", stent_856(world.site, asn, po, {lot: serial}))

    async def asn_published():
        return [
            a
            for a in await world.events("receiving.asn.received.v1", AsnReceived)
            if a.asn_number == asn
        ]

    await eventually(asn_published, what="ASN from the 856 published")
    (published,) = await asn_published()
    assert published.source_format == "x12"
    assert published.orders[0].items[0].lots[0].serials == (serial,)
    await world.scan(gs1_barcode(scenario.STENT_GTIN, lot=lot, serial=serial))
    (receipt,) = await world.receipts_for(po, 1)
    assert (receipt.asn_number, receipt.lines[0].expiry) == (asn, FUTURE)


async def test_a_malformed_856_is_a_dead_letter_that_names_the_segment(world):
    document = stent_856(world.site, unique("ASN"), "PO-9", {"L": "S"})
    broken = re.sub(rb"SE\*\d+\*", b"SE*99*", document)
    await world.emit("ingress.asn-x12.received.v1", broken)

    async def dead_letter():
        listing = await world.get("/v1/dead-letters?limit=100")
        return next(
            (d for d in listing["items"] if d["contract"] == "ingress.asn-x12.received.v1"), None
        )

    await eventually(dead_letter, what="the 856 dead-lettered")
    found = await dead_letter()
    assert found["cause"] == "malformed"
    assert "SE01" in found["reason"]


async def test_a_scan_nothing_explains_waits_for_the_asn_that_lists_its_serial(world):
    po, asn, lot, serial = unique("PO"), unique("ASN"), unique("LW"), unique("SW")
    barcode = gs1_barcode(scenario.STENT_V2_GTIN, lot=lot, serial=serial, expiry=FUTURE)
    scan_id = await world.scan(barcode)
    (held,) = await world.raised(scan_id=scan_id)
    assert (held.type, held.serial) == ("UNKNOWN_PO", serial)
    assert "no PO was named" in held.explanation
    await world.approve(purchase_order(world.site, po, (scenario.STENT_V2, 1, "EA")))
    lots = {lot: serial}
    await world.emit(
        "ingress.asn.submitted.v1",
        stent_asn(world.site, asn, po, lots, supplier_part="MS-DES-318-V2"),
    )
    (receipt,) = await world.receipts_for(po, 1)
    assert (receipt.asn_number, receipt.lines[0].serial) == (asn, serial)
    event = await world.resolved(held.exception_id)
    assert (event.resolution, event.receipt_id) == ("corrected", receipt.receipt_id)


async def test_an_acknowledged_substitute_is_received_against_the_line_and_shown(world):
    po, serial = unique("PO"), unique("SB")
    await world.approve(purchase_order(world.site, po, (STENT, 1, "EA"), (GUIDEWIRE, 1, "BX")))
    acknowledged = PurchaseOrderAcknowledged(
        site=world.site,
        po_number=po,
        supplier_id=scenario.MEDSUP,
        status="accepted_with_changes",
        lines=(
            AcknowledgedLine(
                line_number=1,
                status="substituted",
                substitute_item_id=scenario.BARE_METAL_STENT,
                substitution_approved=True,
            ),
            AcknowledgedLine(line_number=2, status="backordered", expected_ship_date=FUTURE),
        ),
        source_format="json",
        acknowledged_at=datetime.now(UTC),
        recorded_at=datetime.now(UTC),
    )
    await world.emit("procurement.purchase-order.acknowledged.v1", _encoder.encode(acknowledged))

    async def acknowledged_lines():
        lines = (await world.status(po))["lines"]
        return lines if all(line["acknowledgement"] for line in lines) else None

    await eventually(acknowledged_lines, what="acknowledgement recorded")
    stent_ack, guidewire_ack = (line["acknowledgement"] for line in await acknowledged_lines())
    assert stent_ack["status"] == "substituted"
    assert guidewire_ack == {
        "status": "backordered",
        "expected_ship_date": FUTURE.isoformat(),
        "substitute_item_id": None,
    }
    answer = await world.receive(
        po,
        {
            "po_line_number": 1,
            "item_id": scenario.BARE_METAL_STENT,
            "lot": "B1",
            "serial": serial,
            "quantity": {"value": "1", "uom": "EA"},
        },
    )
    assert answer["exceptions"] == []
    (receipt,) = await world.receipts_for(po, 1)
    assert (receipt.lines[0].item_id, receipt.lines[0].po_line_number) == (
        scenario.BARE_METAL_STENT,
        1,
    )
    assert (await world.status(po))["lines"][0]["state"] == "received"
