"""Procurement through its public interfaces against a real nats-server: people requisition over
HTTP, the approval policy decides or routes, purchase orders are priced from the contract in
force, sent, acknowledged, received and closed, and each step is published and audited."""

from __future__ import annotations

from decimal import Decimal

import pytest
import scenario_data as scenario
from procurement_world import (
    ANA,
    DRAPE,
    GAUZE,
    GAUZE_CONTRACT,
    NURSE,
    OPERATOR,
    procurement_world,
    today,
)

pytestmark = pytest.mark.asyncio


async def test_scenario_1_po_for_two_stents_at_contract_price_is_approved(nats_server, tmp_path):
    async with procurement_world(nats_server, tmp_path) as world:
        requisition = await world.requisition((scenario.STENT, 2, "EA"))

        # 2 x 1,200.00 is within what the policy approves itself for cardiology.
        assert requisition["status"] == "approved"
        assert requisition["origin"] == "person"
        assert requisition["requested_by"] == "nina"
        assert requisition["cost_centre_id"] == scenario.CARDIOLOGY
        assert requisition["decided_by"] == "policy v1"
        assert requisition["estimated_total"] == "2400.00"
        [po_number] = requisition["po_numbers"]

        po = await world.purchase_order(po_number)
        assert po["state"] == "sent"
        assert po["supplier_id"] == scenario.MEDSUP
        assert po["order_date"] == today().isoformat()
        assert po["total"] == "2400.00"
        [line] = po["lines"]
        assert line["item_id"] == scenario.STENT
        assert line["quantity"] == {"value": "2", "uom": "EA"}
        assert line["unit_price"] == "1200.00"
        assert line["extended_amount"] == "2400.00"
        assert line["contract_number"] == scenario.CONTRACT
        assert line["supplier_part"] == "MS-DES-318"
        assert line["off_contract"] is False
        assert [h["event"] for h in po["history"]][:3] == ["created", "approved", "sent"]

        [approved_req] = await world.events("procurement.requisition.approved.v1", 1)
        assert approved_req.automatic and approved_req.approved_by == "policy v1"
        assert approved_req.policy_version == "v1"
        [approved] = await world.events("procurement.purchase-order.approved.v1", 1)
        assert approved.po_number == po_number
        assert approved.approved_by == "policy v1"
        assert approved.lines[0].unit_price == Decimal("1200.00")
        assert approved.total == Decimal("2400.00")
        [sent] = await world.events("procurement.purchase-order.sent.v1", 1)
        assert sent.po_number == po_number and sent.lines == approved.lines


async def test_an_expensive_requisition_waits_for_a_person_and_the_approval_is_audited(
    nats_server, tmp_path
):
    async with procurement_world(nats_server, tmp_path) as world:
        requisition = await world.requisition((scenario.STENT, 10, "EA"), urgent=True)
        number = requisition["requisition_id"]
        assert requisition["status"] == "pending_approval"
        assert requisition["estimated_total"] == "12000.00"
        assert requisition["approval_reasons"] == ["amount"]
        assert requisition["urgent"] is True
        assert requisition["approver_roles"] == {"amount": ["supply-chain", "materials-manager"]}
        assert requisition["po_numbers"] == []
        assert (await world.get("/v1/purchase-orders"))["total"] == 0
        waiting = await world.get("/v1/requisitions?status=pending_approval")
        assert [r["requisition_id"] for r in waiting["items"]] == [number]

        approve = f"/v1/requisitions/{number}/approve"
        status, refused = await world.post(approve, {"reason": "ok"}, token=None)
        assert status == 401
        status, refused = await world.post(approve, {"reason": "fine by me"}, token=OPERATOR)
        assert status == 403
        assert (
            "amount needs one of the roles supply-chain, materials-manager"
            in (refused["error"]["message"])
        )
        status, refused = await world.post(approve, {}, token=ANA)
        assert status == 422  # a reason is required

        status, approved = await world.post(approve, {"reason": "two cases booked Monday"})
        assert status == 200, approved
        assert approved["status"] == "approved"
        assert approved["decided_by"] == "ana"
        assert approved["decision_reason"] == "two cases booked Monday"
        audit = [
            (a["action"], a["actor"], a["reason"], a["policy_version"]) for a in approved["audit"]
        ]
        assert audit == [
            ("requested", "nina", None, None),
            (
                "routed_for_approval",
                "policy v1",
                "amount: one of supply-chain, materials-manager",
                "v1",
            ),
            ("approved", "ana", "two cases booked Monday", "v1"),
        ]
        [po_number] = approved["po_numbers"]
        po = await world.purchase_order(po_number)
        assert po["state"] == "sent" and po["total"] == "12000.00" and po["urgent"] is True

        [event] = await world.events("procurement.requisition.approved.v1", 1)
        assert (event.approved_by, event.automatic, event.reason, event.policy_version) == (
            "ana", False, "two cases booked Monday", "v1",
        )  # fmt: skip
        [po_event] = await world.events("procurement.purchase-order.approved.v1", 1)
        assert po_event.approved_by == "ana"

        status, again = await world.post(approve, {"reason": "twice"})
        assert status == 409 and again["error"]["code"] == "not_pending"


async def test_a_requester_cannot_approve_their_own_and_a_rejection_is_audited(
    nats_server, tmp_path
):
    async with procurement_world(nats_server, tmp_path) as world:
        requisition = await world.requisition((scenario.STENT, 10, "EA"), token=ANA)
        number = requisition["requisition_id"]
        status, refused = await world.post(f"/v1/requisitions/{number}/approve", {"reason": "x"})
        assert status == 403 and refused["error"]["code"] == "own_requisition"

        reject = f"/v1/requisitions/{number}/reject"
        status, _ = await world.post(reject, {"reason": "no"}, token=NURSE)
        assert status == 403
        status, rejected = await world.post(reject, {"reason": "par is 4; order 2"}, token=ANA)
        assert status == 200
        assert rejected["status"] == "rejected"
        assert rejected["audit"][-1] == {
            "action": "rejected",
            "actor": "ana",
            "reason": "par is 4; order 2",
            "policy_version": "v1",
            "at": rejected["decided_at"],
        }
        [event] = await world.events("procurement.requisition.rejected.v1", 1)
        assert (event.rejected_by, event.reason, event.policy_version) == (
            "ana", "par is 4; order 2", "v1",
        )  # fmt: skip
        assert (await world.get("/v1/purchase-orders"))["total"] == 0
        status, _ = await world.post(f"/v1/requisitions/{number}/approve", {"reason": "x"})
        assert status == 409


async def test_an_off_contract_line_is_flagged_and_needs_supply_chain(nats_server, tmp_path):
    async with procurement_world(nats_server, tmp_path) as world:
        line = {"item_id": DRAPE, "quantity": {"value": "20", "uom": "EA"}}
        body = {"location_id": scenario.CATH_LAB, "lines": [line]}
        status, refused = await world.post("/v1/requisitions", body, NURSE)
        # No contract prices drapes; the item master names MEDSUP as who sells them.
        assert status == 422 and refused["error"]["code"] == "no_price"
        assert refused["error"]["message"] == (
            f"line 1: no contract price for {DRAPE} from {scenario.MEDSUP} is in force on "
            f"{today()}; give unit_price to order it off contract"
        )

        line["unit_price"] = "3.10"
        status, requisition = await world.post("/v1/requisitions", body, NURSE)
        assert status == 201
        assert requisition["status"] == "pending_approval"
        assert requisition["approval_reasons"] == ["non_formulary", "off_contract"]
        [req_line] = requisition["lines"]
        assert req_line["supplier_id"] == scenario.MEDSUP
        assert req_line["off_contract"] is True and req_line["non_formulary"] is True
        assert req_line["contract_number"] is None and req_line["unit_price"] == "3.10"

        number = requisition["requisition_id"]
        status, approved = await world.post(
            f"/v1/requisitions/{number}/approve", {"reason": "no contracted drape fits"}
        )
        assert status == 200
        po = await world.purchase_order(approved["po_numbers"][0])
        [po_line] = po["lines"]
        assert po_line["off_contract"] is True
        assert po_line["contract_number"] is None
        assert (po_line["unit_price"], po_line["extended_amount"]) == ("3.10", "62.00")
        assert "off contract: line 1" in po["history"][0]["note"]


async def test_scenario_13_boxes_of_ten_priced_per_box_received_in_eaches_then_closed(
    nats_server, tmp_path
):
    async with procurement_world(nats_server, tmp_path) as world:
        requisition = await world.requisition((GAUZE, 3, "BX"))
        po = await world.purchase_order(requisition["po_numbers"][0])
        [line] = po["lines"]
        # 1.25 each under contract, 10 to the box: 12.50 a box.
        assert line["quantity"] == {"value": "3", "uom": "BX"}
        assert (line["unit_price"], line["extended_amount"]) == ("12.50", "37.50")
        assert line["contract_number"] == GAUZE_CONTRACT
        assert (line["ordered_base_quantity"], line["base_uom"]) == ("30", "EA")

        await world.receive(po, (1, GAUZE, "2 BX", "20 EA"))
        partly = await world.wait_for_state(po["po_number"], "partially_received")
        assert partly["lines"][0]["received_base_quantity"] == "20"
        receipt = await world.receive(po, (1, GAUZE, "10 EA", "10 EA"))
        received = await world.wait_for_state(po["po_number"], "received")
        assert received["lines"][0]["received_base_quantity"] == "30"
        assert receipt in [r["receipt_id"] for r in received["receipts"]]

        await world.approve_invoice(po, "37.50")
        closed = await world.wait_for_state(po["po_number"], "closed")
        assert closed["invoiced"] is True
        [event] = await world.events("procurement.purchase-order.closed.v1", 1)
        assert event.reason == "fully_received"
        states = [h["state"] for h in closed["history"]]
        assert states[:2] == ["draft", "approved"]
        assert ["sent", "partially_received", "received"] == [
            s for s in dict.fromkeys(states) if s in ("sent", "partially_received", "received")
        ]


async def test_illegal_transitions_over_http_are_409_with_the_reason(nats_server, tmp_path):
    async with procurement_world(nats_server, tmp_path) as world:
        first = await world.requisition((scenario.STENT, 2, "EA"))
        po = await world.purchase_order(first["po_numbers"][0])
        await world.receive(po, (1, scenario.STENT, "1 EA", "1 EA"))
        await world.wait_for_state(po["po_number"], "partially_received")
        cancel = f"/v1/purchase-orders/{po['po_number']}/cancel"
        status, refused = await world.post(cancel, {"reason": "not needed"}, token=NURSE)
        assert status == 403
        status, refused = await world.post(cancel, {"reason": "not needed"})
        assert status == 409
        assert refused["error"] == {
            "code": "illegal_transition",
            "message": "cannot cancel a purchase order that is partially_received: goods were "
            "already received against it; close it short",
        }
        status, closed = await world.post(
            f"/v1/purchase-orders/{po['po_number']}/close", {"reason": "second stent not needed"}
        )
        assert status == 200 and closed["state"] == "closed"
        [event] = await world.events("procurement.purchase-order.closed.v1", 1)
        assert (event.reason, event.closed_by) == ("short_closed", "ana")

        second = await world.requisition((scenario.STENT, 1, "EA"))
        number = second["po_numbers"][0]
        status, cancelled = await world.post(
            f"/v1/purchase-orders/{number}/cancel", {"reason": "case postponed"}
        )
        assert status == 200 and cancelled["state"] == "cancelled"
        assert cancelled["audit"][-1]["reason"] == "case postponed"
        status, refused = await world.post(
            f"/v1/purchase-orders/{number}/cancel", {"reason": "again"}
        )
        assert status == 409
        [event] = await world.events("procurement.purchase-order.cancelled.v1", 1)
        assert (event.po_number, event.cancelled_by) == (number, "ana")

        listing = await world.get(
            f"/v1/purchase-orders?state=cancelled&supplier_id={scenario.MEDSUP}"
        )
        assert [p["po_number"] for p in listing["items"]] == [number]
        missing = await world.http.get("/v1/purchase-orders/PO-NOPE")
        assert missing.status == 404
