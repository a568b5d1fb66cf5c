"""Demand that arrives as events (replenishment signals, bill-only implants) and what suppliers
answer (acknowledgements in JSON and X12), through NATS and HTTP against a real nats-server."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import msgspec
import pytest
import scenario_data as scenario
from helpers import eventually
from procurement_world import (
    DRAPE,
    GAUZE,
    OPERATOR,
    World,
    at,
    procurement_world,
    qty,
    today,
    unique,
)

from sinew.contracts.procurement import (
    AcknowledgementLine,
    PurchaseOrder,
    PurchaseOrderAcknowledgement,
)
from sinew.contracts.replenishment import (
    ReplenishmentSignalClosed,
    ReplenishmentSignalRaised,
    ReplenishmentSignalUpdated,
)
from sinew.contracts.usage import BillOnlyRequested, ProcedureUsageVoided

pytestmark = pytest.mark.asyncio

RAISED = "replenishment.signal.raised.v1"
ACK_JSON = "ingress.po-acknowledgement.submitted.v1"
ACK_X12 = "ingress.po-acknowledgement-x12.received.v1"


def raised(site: str, signal_id: str, item_id: str, shortfall: int) -> ReplenishmentSignalRaised:
    return ReplenishmentSignalRaised(
        site=site,
        signal_id=signal_id,
        location_id=scenario.CATH_LAB,
        item_id=item_id,
        quantity=qty(shortfall),
        on_hand=qty(1),
        par_level=qty(4),
        reorder_point=qty(2),
        raised_at=at(),
    )


def updated(site: str, signal_id: str, item_id: str, shortfall: int) -> ReplenishmentSignalUpdated:
    return ReplenishmentSignalUpdated(
        site=site,
        signal_id=signal_id,
        location_id=scenario.CATH_LAB,
        item_id=item_id,
        quantity=qty(shortfall),
        on_hand=qty(0),
        updated_at=at(),
    )


def closed(site: str, signal_id: str, item_id: str) -> ReplenishmentSignalClosed:
    return ReplenishmentSignalClosed(
        site=site,
        signal_id=signal_id,
        location_id=scenario.CATH_LAB,
        item_id=item_id,
        reason="stock_adjusted",
        on_hand=qty(4),
        closed_at=at(),
    )


async def requisitions_for(world: World, signal_id: str) -> list[dict]:
    listing = await world.get("/v1/requisitions?origin=replenishment&limit=500")
    return [r for r in listing["items"] if r["replenishment_signal_id"] == signal_id]


async def test_a_replenishment_signal_becomes_one_requisition_and_one_po_however_often_it_comes(
    nats_server, tmp_path
):
    async with procurement_world(nats_server, tmp_path) as world:
        signal = raised(world.site, "SIG-1", scenario.STENT, 3)
        await world.send(RAISED, signal, event_id="sig-1-raised")
        await world.send(RAISED, signal, event_id="sig-1-raised")  # the very same event again
        await world.send(RAISED, signal, event_id="sig-1-replayed")  # republished upstream
        # Guidewires: 25 eaches short, sold in boxes of 10 under contract -> 3 boxes.
        await world.send(RAISED, raised(world.site, "SIG-GW", scenario.GUIDEWIRE, 25))
        wire = await world.wait_for_po(
            requisition_id=(await _requisition(world, "SIG-GW"))["requisition_id"]
        )
        assert wire["lines"][0]["quantity"] == {"value": "3", "uom": "BX"}
        assert wire["lines"][0]["unit_price"] == "450.00"

        [requisition] = await requisitions_for(world, "SIG-1")
        assert requisition["requested_by"] == "replenishment"
        assert requisition["status"] == "approved" and requisition["decided_by"] == "policy v1"
        [po_number] = requisition["po_numbers"]
        po = await world.purchase_order(po_number)
        assert po["lines"][0]["quantity"] == {"value": "3", "uom": "EA"}
        assert po["total"] == "3600.00"
        approved = await world.events("procurement.purchase-order.approved.v1", 2)
        assert sorted(e.po_number for e in approved) == sorted([po_number, wire["po_number"]])

        # Consumption goes on, then stock turns up: the sent order is a commitment and stands.
        await world.send(
            "replenishment.signal.updated.v1", updated(world.site, "SIG-1", scenario.STENT, 4)
        )
        await world.send(
            "replenishment.signal.closed.v1", closed(world.site, "SIG-1", scenario.STENT)
        )

        async def both_noted() -> bool:
            events = [h["event"] for h in (await world.purchase_order(po_number))["history"]]
            return "signal_updated" in events and "signal_closed" in events

        await eventually(both_noted, what="signal update and close noted on the PO")
        po = await world.purchase_order(po_number)
        assert po["state"] == "sent" and po["revision"] == 1
        notes = {h["event"]: h["note"] for h in po["history"]}
        assert notes["signal_updated"] == (
            "replenishment signal SIG-1 now asks for 4 EA; not changed: cannot change a purchase "
            "order that is sent: the supplier already has it"
        )
        assert len(await requisitions_for(world, "SIG-1")) == 1
        assert len(await world.events("procurement.purchase-order.approved.v1", 2)) == 2


async def _requisition(world: World, signal_id: str) -> dict:
    found: list[dict] = []

    async def there() -> bool:
        found[:] = await requisitions_for(world, signal_id)
        return bool(found)

    await eventually(there, what=f"a requisition for {signal_id}")
    return found[0]


async def test_a_waiting_replenishment_requisition_follows_its_signal(nats_server, tmp_path):
    async with procurement_world(nats_server, tmp_path) as world:
        # 12 stents is beyond what the policy approves itself; the shortfall then drops to 8.
        await world.send(RAISED, raised(world.site, "SIG-BIG", scenario.STENT, 12))
        waiting = await _requisition(world, "SIG-BIG")
        assert waiting["status"] == "pending_approval"
        assert waiting["estimated_total"] == "14400.00"
        await world.send(
            "replenishment.signal.updated.v1", updated(world.site, "SIG-BIG", scenario.STENT, 8)
        )
        po = await world.wait_for_po(requisition_id=waiting["requisition_id"])
        assert po["lines"][0]["quantity"] == {"value": "8", "uom": "EA"}
        shown = await world.get(f"/v1/requisitions/{waiting['requisition_id']}")
        assert shown["status"] == "approved" and shown["estimated_total"] == "9600.00"
        assert [a["action"] for a in shown["audit"]] == [
            "requested", "routed_for_approval", "changed", "approved",
        ]  # fmt: skip

        await world.send(RAISED, raised(world.site, "SIG-GONE", scenario.STENT, 20))
        gone = await _requisition(world, "SIG-GONE")
        assert gone["status"] == "pending_approval"
        await world.send(
            "replenishment.signal.closed.v1", closed(world.site, "SIG-GONE", scenario.STENT)
        )

        async def cancelled() -> bool:
            return (await _requisition(world, "SIG-GONE"))["status"] == "cancelled"

        await eventually(cancelled, what="the waiting requisition cancelled")

        # Nothing prices drapes: the approver gives the price while approving.
        await world.send(RAISED, raised(world.site, "SIG-DRAPE", DRAPE, 6))
        unpriced = await _requisition(world, "SIG-DRAPE")
        assert unpriced["lines"][0]["unit_price"] is None
        assert unpriced["lines"][0]["supplier_id"] == scenario.MEDSUP
        assert unpriced["approval_reasons"] == ["non_formulary", "off_contract"]
        approve = f"/v1/requisitions/{unpriced['requisition_id']}/approve"
        status, refused = await world.post(approve, {"reason": "needed"})
        assert status == 409 and refused["error"]["code"] == "unpriced"
        status, approved = await world.post(
            approve,
            {"reason": "quoted by phone", "lines": [{"line_number": 1, "unit_price": "3.00"}]},
        )
        assert status == 200, approved
        po = await world.purchase_order(approved["po_numbers"][0])
        assert po["lines"][0]["off_contract"] is True
        assert (po["lines"][0]["unit_price"], po["total"]) == ("3.00", "18.00")


def bill_only(site: str, request_id: str, usage_id: str, case_id: str) -> BillOnlyRequested:
    return BillOnlyRequested(
        site=site,
        request_id=request_id,
        usage_id=usage_id,
        case_id=case_id,
        procedure_code="33249",
        physician_id="DR-7",
        location_id=scenario.CATH_LAB,
        item_id=scenario.ICD,
        quantity=qty(1),
        used_at=at() - timedelta(hours=3),
        lot="L-ICD-7",
        serial=f"SN-{usage_id}",
        expiry=today() + timedelta(days=700),
        contract_number=scenario.CONTRACT,
        requested_at=at(),
    )


async def test_scenario_4_bill_only_request_becomes_a_bill_only_po_at_contract_price(
    nats_server, tmp_path
):
    async with procurement_world(nats_server, tmp_path) as world:
        request = bill_only(world.site, "BOR-1", "USE-1", "CASE-1")
        await world.send("usage.bill-only.requested.v1", request)
        await world.send("usage.bill-only.requested.v1", request)  # sent again, new event id
        po = await world.wait_for_po(bill_only="true")
        assert po["bill_only"] is True and po["case_id"] == "CASE-1"
        assert po["state"] == "sent"
        assert po["order_date"] == request.used_at.date().isoformat()
        [line] = po["lines"]
        assert (line["item_id"], line["unit_price"]) == (scenario.ICD, "18500.00")
        assert line["contract_number"] == scenario.CONTRACT
        assert line["bill_only_usage"] == {
            "bill_only_request_id": "BOR-1",
            "usage_id": "USE-1",
            "case_id": "CASE-1",
            "lot": "L-ICD-7",
            "serial": "SN-USE-1",
            "expiry": request.expiry.isoformat(),
        }
        # 18,500.00 is far beyond any band, but it was already implanted: the policy approves.
        requisition = await world.get(f"/v1/requisitions/{po['requisition_id']}")
        assert requisition["origin"] == "bill_only"
        assert requisition["decided_by"] == "policy v1"
        assert requisition["bill_only_request_id"] == "BOR-1"
        [approved] = await world.events("procurement.purchase-order.approved.v1", 1)
        assert approved.bill_only and approved.lines[0].bill_only_usage.serial == "SN-USE-1"

        # No receipt is expected: the invoice alone closes it.
        await world.approve_invoice(po, "18500.00")
        done = await world.wait_for_state(po["po_number"], "closed")
        assert done["invoiced"] is True
        [closed_event] = await world.events("procurement.purchase-order.closed.v1", 1)
        assert closed_event.reason == "bill_only_invoiced"
        assert (await world.get("/v1/purchase-orders?bill_only=true"))["total"] == 1

        # A usage withdrawn before its invoice cancels its PO; after it, a person gets a flag.
        await world.send(
            "usage.bill-only.requested.v1", bill_only(world.site, "BOR-2", "USE-2", "CASE-2")
        )
        second = await world.wait_for_po(bill_only="true", state="sent")
        await world.send("usage.procedure-usage.voided.v1", voided(world.site, "USE-2"))
        cancelled = await world.wait_for_state(second["po_number"], "cancelled")
        assert cancelled["lines"][0]["usage_voided"] is True
        [cancel_event] = await world.events("procurement.purchase-order.cancelled.v1", 1)
        assert cancel_event.cancelled_by == "usage"
        assert cancel_event.reason == "usage USE-2 voided: charted in error"

        await world.send("usage.procedure-usage.voided.v1", voided(world.site, "USE-1"))

        async def flagged() -> bool:
            history = (await world.purchase_order(po["po_number"]))["history"]
            return history[-1]["event"] == "usage_voided"

        await eventually(flagged, what="void after invoice flagged")
        late = await world.purchase_order(po["po_number"])
        assert late["state"] == "closed"
        assert late["history"][-1]["note"] == (
            "usage USE-1 voided: charted in error after the order was closed and invoiced; "
            "credit needed"
        )


def voided(site: str, usage_id: str) -> ProcedureUsageVoided:
    return ProcedureUsageVoided(
        site=site,
        usage_id=usage_id,
        source_usage_id=f"EHR-{usage_id}",
        case_id="CASE",
        location_id=scenario.CATH_LAB,
        item_id=scenario.ICD,
        quantity=qty(1),
        base_quantity=qty(1),
        bill_only=True,
        reason="charted in error",
        voided_at=at(),
    )


def acknowledgement(site: str, po: dict, *lines: AcknowledgementLine, number: str | None = None):
    return PurchaseOrderAcknowledgement(
        site=site,
        po_number=po["po_number"],
        supplier_id=po["supplier_id"],
        status="accepted_with_changes",
        lines=lines,
        acknowledgement_number=number or unique("ACK"),
        acknowledged_at=at(),
    )


async def test_scenario_5_substitutes_and_backorders_are_visible_to_the_location(
    nats_server, tmp_path
):
    async with procurement_world(nats_server, tmp_path) as world:
        requisition = await world.requisition(
            (scenario.STENT, 1, "EA"), (scenario.STENT, 1, "EA"), (scenario.STENT, 1, "EA")
        )
        po = await world.purchase_order(requisition["po_numbers"][0])
        ship_on = today() + timedelta(days=10)
        await world.send(
            ACK_JSON,
            acknowledgement(
                world.site,
                po,
                # The supplier names the approved substitute by its own part number.
                AcknowledgementLine(line_number=1, status="substituted", substitute_supplier_part="MS-DES-318-V2"),
                AcknowledgementLine(line_number=2, status="substituted", substitute_item_id=scenario.BARE_METAL_STENT),
                AcknowledgementLine(line_number=3, status="backordered", expected_ship_date=ship_on),
            ),
        )  # fmt: skip
        acknowledged = await world.wait_for_state(po["po_number"], "acknowledged")
        assert acknowledged["revision"] == 1  # nothing the hospital ordered changed

        [event] = await world.events("procurement.purchase-order.acknowledged.v1", 1)
        assert event.source_format == "json"
        assert [(ln.substitute_item_id, ln.substitution_approved) for ln in event.lines] == [
            (scenario.STENT_V2, True),
            (scenario.BARE_METAL_STENT, False),
            (None, None),
        ]

        at_location = await world.get(f"/v1/locations/{scenario.CATH_LAB}/purchase-orders")
        [open_po] = at_location["items"]
        assert open_po["po_number"] == po["po_number"]
        assert open_po["backorders"] == [
            {"line_number": 3, "item_id": scenario.STENT, "expected_ship_date": ship_on.isoformat()}
        ]
        assert open_po["substitutions"] == [
            {
                "line_number": 1,
                "item_id": scenario.STENT,
                "substitute_item_id": scenario.STENT_V2,
                "approved": True,
                "substitution_id": scenario.SUBSTITUTION,
            },
            {
                "line_number": 2,
                "item_id": scenario.STENT,
                "substitute_item_id": scenario.BARE_METAL_STENT,
                "approved": False,
                "substitution_id": None,
            },
        ]
        assert (
            "line 2 substituted by STENT-BMS-3x18 (NOT approved)"
            in acknowledged["history"][-1]["note"]
        )


async def test_acknowledged_changes_revise_the_po_but_not_its_contract_price(nats_server, tmp_path):
    async with procurement_world(nats_server, tmp_path) as world:
        requisition = await world.requisition((scenario.STENT, 2, "EA"), (GAUZE, 3, "BX"))
        po = await world.purchase_order(requisition["po_numbers"][0])
        ack = acknowledgement(
            world.site,
            po,
            AcknowledgementLine(line_number=1, status="quantity_changed", quantity=qty(1)),
            AcknowledgementLine(line_number=2, status="price_changed", unit_price=Decimal("13.00")),
            number="ACK-77",
        )
        await world.send(ACK_JSON, ack)
        await world.send(ACK_JSON, ack)  # the supplier resends it under a new event id
        [changed] = await world.events("procurement.purchase-order.changed.v1", 1)
        assert changed.revision == 2 and changed.cause == "supplier_acknowledgement"
        assert changed.lines[0].quantity == qty(1)
        assert changed.lines[1].unit_price == Decimal("12.50")  # the contract price stands
        assert changed.total == Decimal("1237.50")
        assert changed.reason == f"line 1 ({scenario.STENT}): quantity 2 -> 1 EA"

        shown = await world.purchase_order(po["po_number"])
        assert shown["state"] == "acknowledged" and shown["revision"] == 2
        assert shown["lines"][0]["ordered_base_quantity"] == "1"
        assert shown["lines"][1]["acknowledgement"]["supplier_unit_price"] == "13.00"
        notes = [h["note"] for h in shown["history"] if h["event"] == "supplier_price_not_taken"]
        assert notes == [
            f"line 2: supplier quotes 13.00, the contract price 12.50 under {'MEDSUP-GAUZE-2024'} stands"
        ]
        assert len(shown["acknowledgements"]) == 1
        assert len(await world.events("procurement.purchase-order.acknowledged.v1", 1)) == 1

        # One line received in full, the other still open.
        await world.receive(shown, (1, scenario.STENT, "1 EA", "1 EA"))
        await world.wait_for_state(po["po_number"], "partially_received")


async def test_an_acknowledgement_for_an_unknown_po_is_a_dead_letter_saying_so(
    nats_server, tmp_path
):
    async with procurement_world(nats_server, tmp_path) as world:
        requisition = await world.requisition((scenario.STENT, 1, "EA"))
        po = await world.purchase_order(requisition["po_numbers"][0])
        unknown = {**po, "po_number": "PO-TYPO-1"}
        await world.send(ACK_JSON, acknowledgement(world.site, unknown, number="ACK-9"))
        stranger = {**po, "supplier_id": "OTHERSUP"}
        await world.send(ACK_JSON, acknowledgement(world.site, stranger, number="ACK-10"))

        letters: list = []

        async def dead_lettered() -> bool:
            letters[:] = (await world.get("/v1/dead-letters"))["items"]
            return len(letters) == 2

        await eventually(dead_lettered, what="two dead letters")
        reasons = sorted(letter["reason"] for letter in letters)
        assert reasons == [
            f"acknowledgement ACK-10 from OTHERSUP: purchase order {po['po_number']} was placed "
            f"with {scenario.MEDSUP}",
            f"acknowledgement ACK-9 from MEDSUP: no purchase order PO-TYPO-1 at site {world.site}",
        ]
        assert {letter["cause"] for letter in letters} == {"invalid"}

        # Corrected by the supplier's integration team and replayed: applied once.
        fixed = msgspec.json.encode(acknowledgement(world.site, po, number="ACK-9"))
        typo = next(letter for letter in letters if "PO-TYPO-1" in letter["reason"])
        status, replayed = await world.post(
            f"/v1/dead-letters/{typo['id']}/replay", msgspec.json.decode(fixed), token=OPERATOR
        )
        assert status == 200 and replayed["results"][0]["outcome"] == "applied"
        await world.wait_for_state(po["po_number"], "acknowledged")


async def test_the_850_sent_parses_back_to_the_approved_po(nats_server, tmp_path):
    x12 = pytest.importorskip("sinew.x12")
    if not hasattr(x12, "parse_850"):
        pytest.skip("sinew.x12 has no 850 reader yet")
    async with procurement_world(nats_server, tmp_path) as world:
        await world.requisition((scenario.STENT, 2, "EA"), (GAUZE, 3, "BX"))
        [approved] = await world.events("procurement.purchase-order.approved.v1", 1)
        [sent] = await world.events("procurement.purchase-order.sent.v1", 1)
        assert sent.format == "x12"
        [document] = await world.events("procurement.purchase-order-x12.sent.v1", 1)
        assert document.headers["ce-datacontenttype"] == "application/edi-x12"
        parsed = x12.parse_850(document.data, world.site)
        # The hospital's own cross-references stay home: the 850 does not carry them.
        internal = {"requisition_line_number": None, "off_contract": False}
        expected = PurchaseOrder(
            **{f: getattr(approved, f) for f in PurchaseOrder.__struct_fields__},
        )
        expected = msgspec.structs.replace(
            expected,
            lines=tuple(msgspec.structs.replace(line, **internal) for line in expected.lines),
        )
        assert parsed == expected


async def test_an_855_acknowledgement_is_read_like_json_and_a_bad_one_is_a_dead_letter(
    nats_server, tmp_path
):
    x12 = pytest.importorskip("sinew.x12")
    if not hasattr(x12, "parse_855"):
        pytest.skip("sinew.x12 has no 855 reader yet")
    from sinew.x12.acknowledgement import write_855

    async with procurement_world(nats_server, tmp_path) as world:
        requisition = await world.requisition((scenario.STENT, 1, "EA"))
        po = await world.purchase_order(requisition["po_numbers"][0])
        ship_on = today() + timedelta(days=5)
        ack = acknowledgement(
            world.site,
            po,
            AcknowledgementLine(line_number=1, status="backordered", expected_ship_date=ship_on),
        )
        document = write_855(ack, sender_id="MEDSUP", receiver_id="SINEW", control_number=7)
        await world.send_bytes(ACK_X12, document)
        await world.send_bytes(ACK_X12, document.replace(b"BAK*", b"BAQ*", 1))
        shown = await world.wait_for_state(po["po_number"], "acknowledged")
        assert shown["backorders"][0]["expected_ship_date"] == ship_on.isoformat()
        [event] = await world.events("procurement.purchase-order.acknowledged.v1", 1)
        assert event.source_format == "x12"

        letters: list = []

        async def dead_lettered() -> bool:
            letters[:] = (await world.get("/v1/dead-letters"))["items"]
            return len(letters) == 1

        await eventually(dead_lettered, what="the bad 855 dead-lettered")
        assert letters[0]["cause"] == "malformed"
