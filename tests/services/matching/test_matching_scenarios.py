"""SCENARIOS.md 1-7 and 13 end to end: POs, receipts, usage and master data on their canonical
subjects as procurement, receiving, usage and items publish them; invoices and payments on the
ingress subjects; analysts over HTTP; what matching publishes read back from its stream."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
import scenario_data as scenario
from matching_world import (
    AP,
    NURSE,
    RECEIVING,
    SUPPLY_CHAIN,
    bill_only_line,
    invoice_line,
    matching_world,
    po_line,
    q,
    stent_invoice_line,
    stent_order_line,
)

from sinew.contracts.items import SubstitutionUpserted

pytestmark = pytest.mark.asyncio

APPROVED = "matching.invoice.approved.v1"
MATCHED = "matching.invoice.matched.v1"
RAISED = "matching.exception.raised.v1"
RESOLVED = "matching.exception.resolved.v1"


def of(events, **where):
    return [e for e in events if all(getattr(e, k) == v for k, v in where.items())]


async def test_scenario_1_clean_match_is_approved_first_pass_then_paid(nats_server, tmp_path):
    async with matching_world(nats_server, tmp_path) as world:
        await world.order("PO-1", stent_order_line())
        # Two receipts of one stent each (lots L1, L2): quantities add up per PO line.
        await world.receive("PO-1", (1, scenario.STENT, q(1), q(1)))
        await world.receive("PO-1", (1, scenario.STENT, q(1), q(1)))
        before = (await world.get("/v1/liabilities"))["suppliers"]
        assert before[0]["received_not_invoiced"] == "2400.00"
        # Fully received: no more receipts, but what was received is still to be invoiced.
        await world.close("PO-1")

        await world.invoice("INV-1001", "PO-1", stent_invoice_line())
        invoice = await world.invoice_state("INV-1001")
        assert invoice["status"] == "approved"
        assert invoice["first_pass"] is True and invoice["match_type"] == "three_way"
        assert invoice["approval_basis"] == "matched" and invoice["approved_amount"] == "2400.00"
        checks = {c["rule"]: c for c in invoice["match_runs"][-1]["checks"]}
        assert checks["price_vs_contract"]["passed"]
        assert "contract MEDSUP-2024-001" in checks["price_vs_contract"]["explanation"]
        assert checks["quantity_vs_receipt"]["expected"] == "2"

        (matched,) = await world.published(MATCHED, 1)
        assert matched.first_pass and matched.match_type == "three_way"
        assert matched.lines[0].contract_number == scenario.CONTRACT
        assert matched.lines[0].contract_unit_price == Decimal("1200.0000")
        (approved,) = await world.published(APPROVED, 1)
        assert (approved.basis, approved.approved_amount) == ("matched", Decimal("2400.00"))
        owed = (await world.get("/v1/liabilities?supplier=MEDSUP"))["suppliers"][0]
        assert owed["approved_unpaid"] == "2400.00" and owed["received_not_invoiced"] == "0.00"

        await world.pay("PAY-1", ("INV-1001", "2400.00"))
        invoice = await world.invoice_state("INV-1001")
        assert invoice["status"] == "paid" and invoice["payment_id"] == "PAY-1"
        (payment,) = await world.published("matching.payment.released.v1", 1)
        assert payment.invoices[0].invoice_id == invoice["invoice_id"]
        owed = (await world.get("/v1/liabilities"))["suppliers"][0]
        assert owed["approved_unpaid"] == "0.00"
        assert await world.exceptions() == []


async def test_scenario_2_price_variance_goes_to_supply_chain_and_is_resolved_with_audit(
    nats_server, tmp_path
):
    async with matching_world(nats_server, tmp_path) as world:
        for po in ("PO-2A", "PO-2B", "PO-2C"):
            await world.order(po, stent_order_line())
            await world.receive(po, (1, scenario.STENT, q(2), q(2)))
            await world.invoice(f"INV-{po}", po, stent_invoice_line(price="1260.00"))

        (variance,) = await world.exceptions(po="PO-2A")
        assert variance["type"] == "PRICE_VARIANCE" and variance["queue"] == "supply_chain"
        assert variance["amount_at_stake"] == "120.00"
        assert variance["contract_number"] == scenario.CONTRACT
        assert "2% or 25.00, whichever is smaller" in variance["explanation"]
        assert "2 EA x 60.00 = 120.00" in variance["explanation"]
        assert variance["sla_due_at"] > variance["raised_at"] and not variance["overdue"]
        assert (await world.invoice_state("INV-PO-2A"))["status"] == "exception"

        queues = {q["queue"]: q for q in (await world.get("/v1/queues"))["queues"]}
        assert queues["supply_chain"]["open"] == 3
        assert queues["supply_chain"]["amount_at_stake"] == "360.00"
        assert queues["supply_chain"]["age"]["under_1_day"] == 3
        assert queues["receiving"]["open"] == 0

        context = await world.get(f"/v1/exceptions/{variance['exception_id']}", SUPPLY_CHAIN)
        assert context["invoice_document"]["invoice_number"] == "INV-PO-2A"
        assert context["purchase_order"]["po_number"] == "PO-2A"
        assert [r["reference"] for r in context["receipts"]]
        assert [c["contract_number"] for c in context["contracts"]] == [scenario.CONTRACT]
        failed = [c for c in context["match"]["checks"] if not c["passed"]]
        assert {c["rule"] for c in failed} == {"price_vs_po", "price_vs_contract"}
        assert context["history"][0]["action"] == "raised"

        path = f"/v1/exceptions/{variance['exception_id']}/resolve"
        approve = {"resolution": "approved", "reason": "cardiology accepted the 2024 list price"}
        await world.post(path, approve, RECEIVING, status=403)
        await world.post(path, approve, AP, status=403)
        await world.get("/v1/queues", NURSE, status=403)
        await world.post(path, {"resolution": "approved"}, SUPPLY_CHAIN, status=422)
        resolved = await world.post(path, approve, SUPPLY_CHAIN)
        assert resolved["status"] == "resolved" and resolved["resolved_by"] == "sam.contracts"
        await world.post(path, approve, SUPPLY_CHAIN, status=409)
        invoice = await world.invoice_state("INV-PO-2A")
        assert invoice["status"] == "approved" and invoice["approved_amount"] == "2520.00"
        assert invoice["approval_basis"] == "exception_approved"

        # Reject and ask for a credit, on the other two.
        (second,) = await world.exceptions(po="PO-2B")
        credit = {"resolution": "credit_requested", "reason": "bill at contract price"}
        await world.post(f"/v1/exceptions/{second['exception_id']}/resolve", credit, SUPPLY_CHAIN)
        invoice = await world.invoice_state("INV-PO-2B")
        assert invoice["status"] == "approved" and invoice["approved_amount"] == "2400.00"
        (third,) = await world.exceptions(po="PO-2C")
        # Passed on to AP, who rejects it: both audited.
        moved = await world.post(
            f"/v1/exceptions/{third['exception_id']}/reassign",
            {"queue": "ap", "reason": "supplier disputes our PO"},
            SUPPLY_CHAIN,
        )
        assert moved["queue"] == "ap"
        reject = {"resolution": "rejected", "reason": "not the agreed price"}
        await world.post(f"/v1/exceptions/{third['exception_id']}/resolve", reject, AP)
        assert (await world.invoice_state("INV-PO-2C"))["status"] == "rejected"
        history = (await world.get(f"/v1/exceptions/{third['exception_id']}"))["history"]
        assert [(h["action"], h["by"]) for h in history] == [
            ("raised", "matching"),
            ("reassigned", "sam.contracts"),
            ("resolved", "alex.ap"),
        ]
        assert history[2]["reason"] == "not the agreed price"

        resolutions = await world.published(RESOLVED, 3)
        assert {(r.resolution, r.resolved_by) for r in resolutions} == {
            ("approved", "sam.contracts"),
            ("credit_requested", "sam.contracts"),
            ("rejected", "alex.ap"),
        }
        assert of(resolutions, resolution="credit_requested")[0].credit_amount == Decimal("120.00")
        raised = await world.published(RAISED, 3)
        assert {(r.type, r.queue, r.amount_at_stake) for r in raised} == {
            ("PRICE_VARIANCE", "supply_chain", Decimal("120.00"))
        }
        assert raised[0].policy_version == "tolerances-v1+routing-v1"
        (reassigned,) = await world.published("matching.exception.reassigned.v1", 1)
        assert (reassigned.from_queue, reassigned.to_queue) == ("supply_chain", "ap")
        approvals = await world.published(APPROVED, 2)
        assert sorted(a.approved_amount for a in approvals) == [
            Decimal("2400.00"),
            Decimal("2520.00"),
        ]
        assert all(a.basis == "exception_approved" for a in approvals)
        assert await world.events(MATCHED) == []


async def test_scenario_3_invoice_before_receipt_waits_then_matches_by_itself(
    nats_server, tmp_path
):
    async with matching_world(nats_server, tmp_path) as world:
        await world.order("PO-3", stent_order_line())
        await world.invoice("INV-3", "PO-3", stent_invoice_line())
        invoice = await world.invoice_state("INV-3")
        assert invoice["status"] == "awaiting_receipt"
        (waiting,) = await world.exceptions()
        assert (waiting["type"], waiting["queue"]) == ("AWAITING_RECEIPT", "receiving")
        assert waiting["amount_at_stake"] == "2400.00"
        owed = (await world.get("/v1/liabilities"))["suppliers"][0]
        assert owed["invoiced_not_received"] == "2400.00"

        receipt = await world.receive("PO-3", (1, scenario.STENT, q(2), q(2)))
        invoice = await world.invoice_state("INV-3")
        assert invoice["status"] == "approved" and invoice["first_pass"] is False
        assert [r["trigger"] for r in invoice["match_runs"]] == [
            "invoice INV-3 submitted",
            f"goods receipt {receipt}",
        ]
        (waited,) = await world.exceptions()
        assert waited["status"] == "resolved" and waited["resolution"] == "rematched"
        (resolved,) = await world.published(RESOLVED, 1)
        assert resolved.automatic and resolved.resolved_by == "matching"
        assert "the invoice now matches" in resolved.reason
        (matched,) = await world.published(MATCHED, 1)
        assert not matched.first_pass
        await world.published(APPROVED, 1)


async def test_scenario_4_bill_only_implant_is_matched_two_way_against_usage(nats_server, tmp_path):
    async with matching_world(nats_server, tmp_path) as world:
        await world.use("U-1", "CASE-1", scenario.ICD, "SN-1")
        await world.order(
            "PO-BO-1", bill_only_line("U-1", "CASE-1", "SN-1"), bill_only=True, case_id="CASE-1"
        )
        line = invoice_line(1, 1, "EA", "18500.00", item_id=scenario.ICD, serial="SN-1")
        await world.invoice("INV-BO-1", "PO-BO-1", line)
        invoice = await world.invoice_state("INV-BO-1")
        assert invoice["status"] == "approved" and invoice["match_type"] == "two_way"
        usage_check = next(
            c for c in invoice["match_runs"][-1]["checks"] if c["rule"] == "quantity_vs_usage"
        )
        assert "used in cases (bill-only) 1 EA (U-1)" in usage_check["explanation"]
        (matched,) = await world.published(MATCHED, 1)
        assert matched.match_type == "two_way" and matched.first_pass

        # The bill-only PO can come before matching sees the usage: the invoice waits for it.
        await world.order(
            "PO-BO-2", bill_only_line("U-2", "CASE-2", "SN-2"), bill_only=True, case_id="CASE-2"
        )
        await world.invoice("INV-BO-2", "PO-BO-2", line)
        assert (await world.invoice_state("INV-BO-2"))["status"] == "awaiting_receipt"
        (waiting,) = await world.exceptions(po="PO-BO-2")
        assert "no usage recorded yet" in waiting["explanation"]
        await world.use("U-2", "CASE-2", scenario.ICD, "SN-2")
        assert (await world.invoice_state("INV-BO-2"))["status"] == "approved"

        # A voided usage stands for nothing any more.
        await world.use("U-3", "CASE-3", scenario.ICD, "SN-3")
        await world.order(
            "PO-BO-3", bill_only_line("U-3", "CASE-3", "SN-3"), bill_only=True, case_id="CASE-3"
        )
        await world.void("U-3", "CASE-3", scenario.ICD)
        await world.invoice("INV-BO-3", "PO-BO-3", line)
        assert (await world.invoice_state("INV-BO-3"))["status"] == "awaiting_receipt"


async def test_scenario_5_approved_substitute_matches_and_an_unapproved_one_does_not(
    nats_server, tmp_path
):
    async with matching_world(nats_server, tmp_path) as world:
        await world.order("PO-5A", stent_order_line())
        await world.receive("PO-5A", (1, scenario.STENT_V2, q(2), q(2)))
        await world.invoice(
            "INV-5A", "PO-5A", invoice_line(1, 2, "EA", "1180.00", supplier_part="MS-DES-318-V2")
        )
        invoice = await world.invoice_state("INV-5A")
        assert invoice["status"] == "approved", invoice
        (matched,) = await world.published(MATCHED, 1)
        (line,) = matched.lines
        assert line.substitution_id == scenario.SUBSTITUTION
        assert (line.item_id, line.ordered_item_id) == (scenario.STENT_V2, scenario.STENT)
        assert line.contract_unit_price == Decimal("1180.0000")

        await world.order("PO-5B", stent_order_line())
        await world.receive("PO-5B", (1, scenario.BARE_METAL_STENT, q(2), q(2)))
        bare_metal = invoice_line(1, 2, "EA", "950.00", item_id=scenario.BARE_METAL_STENT)
        await world.invoice("INV-5B", "PO-5B", bare_metal)
        (refused,) = await world.exceptions(po="PO-5B")
        assert refused["type"] == "SUBSTITUTION_NOT_APPROVED"
        assert refused["queue"] == "supply_chain" and refused["amount_at_stake"] == "1900.00"
        assert "no approved substitution" in refused["explanation"]

        # Supply chain approves the substitute in the item master: the invoice re-matches.
        approval = SubstitutionUpserted(
            site=world.site,
            substitution_id="SUB-STENT-BMS",
            version=1,
            item_id=scenario.STENT,
            substitute_item_id=scenario.BARE_METAL_STENT,
            contract_number=scenario.CONTRACT,
            source="api",
            upserted_at=scenario.UPSERTED_AT,
        )
        await world.send("items.substitution.upserted.v1", approval)
        assert (await world.invoice_state("INV-5B"))["status"] == "approved"
        (refused,) = await world.exceptions(po="PO-5B")
        assert refused["resolution"] == "rematched"


async def test_scenario_6_same_invoice_by_json_and_x12_is_one_invoice_and_one_payment(
    nats_server, tmp_path
):
    async with matching_world(nats_server, tmp_path) as world:
        await world.order("PO-6", stent_order_line())
        await world.receive("PO-6", (1, scenario.STENT, q(2), q(2)))
        await world.invoice("INV-000777", "PO-6", stent_invoice_line())
        assert (await world.invoice_state("INV-000777"))["status"] == "approved"
        # The supplier's EDI sends it too, numbered its own way.
        await world.invoice_x12(
            world.invoice_document("inv 777", "PO-6", stent_invoice_line()), control_number=7
        )
        (duplicate,) = await world.exceptions()
        assert (duplicate["type"], duplicate["queue"]) == ("DUPLICATE_INVOICE", "ap")
        assert duplicate["invoice_id"] is None
        original = await world.invoice_state("INV-000777")
        assert duplicate["duplicate_of_invoice_id"] == original["invoice_id"]
        assert "(X12, 2,400.00 USD) duplicates invoice INV-000777 (JSON" in duplicate["explanation"]
        # A third copy is recorded against the same open exception, not a new one.
        await world.invoice("INV-777", "PO-6", stent_invoice_line())
        assert len(await world.exceptions()) == 1
        shown = await world.get(f"/v1/invoices/{original['invoice_id']}")
        assert [(s["source_format"], s["outcome"]) for s in shown["submissions"]] == [
            ("json", "admitted"),
            ("x12", "duplicate"),
            ("json", "duplicate"),
        ]
        assert len(await world.events("matching.invoice.submitted.v1")) == 1

        await world.pay("PAY-6A", ("INV-000777", "2400.00"))
        await world.pay("PAY-6B", ("INV 777", "2400.00"))
        assert (await world.invoice_state("INV-000777"))["payment_id"] == "PAY-6A"
        second = await world.exceptions(type="DUPLICATE_PAYMENT")
        assert len(second) == 1 and second[0]["payment_id"] == "PAY-6B"
        assert "already paid" in second[0]["explanation"]
        assert len(await world.events(APPROVED)) == 1

        # A broken 810 is a dead letter naming the segment, never an invoice.
        event_id = await world.emit("ingress.invoice-x12.received.v1", b"ISA*00*garbage~")
        await world.handled(event_id)
        (dead,) = (await world.get("/v1/dead-letters"))["items"]
        assert dead["cause"] == "malformed" and "ISA" in dead["reason"]


async def test_scenario_7_quantity_variance_goes_to_receiving_until_the_third_unit(
    nats_server, tmp_path
):
    async with matching_world(nats_server, tmp_path) as world:
        await world.order("PO-7", stent_order_line(quantity=3))
        await world.receive("PO-7", (1, scenario.STENT, q(2), q(2)))
        await world.invoice("INV-7", "PO-7", stent_invoice_line(quantity=3))
        (short,) = await world.exceptions()
        assert (short["type"], short["queue"]) == ("QUANTITY_VARIANCE", "receiving")
        assert short["amount_at_stake"] == "1200.00"
        assert "only 2 EA received" in short["explanation"]
        queues = {q["queue"]: q for q in (await world.get("/v1/queues", RECEIVING))["queues"]}
        assert queues["receiving"]["open"] == 1

        await world.receive("PO-7", (1, scenario.STENT, q(1), q(1)))
        assert (await world.invoice_state("INV-7"))["status"] == "approved"
        (short,) = await world.exceptions()
        assert short["resolution"] == "rematched"
        (resolved,) = await world.published(RESOLVED, 1)
        assert resolved.type == "QUANTITY_VARIANCE" and resolved.automatic


async def test_scenario_13_boxes_and_eaches_are_matched_through_the_item_master(
    nats_server, tmp_path
):
    async with matching_world(nats_server, tmp_path) as world:
        await world.order("PO-13", po_line(1, scenario.GUIDEWIRE, 2, "BX", "450.00"))
        await world.receive("PO-13", (1, scenario.GUIDEWIRE, q(2, "BX"), q(20, "EA")))
        await world.invoice(
            "INV-13A", "PO-13", invoice_line(1, 1, "BX", "450.00", supplier_part="MS-GW-035")
        )
        await world.invoice(
            "INV-13B", "PO-13", invoice_line(1, 10, "EA", "45.00", item_id=scenario.GUIDEWIRE)
        )
        for number in ("INV-13A", "INV-13B"):
            assert (await world.invoice_state(number))["status"] == "approved"
        # One each more than the two boxes ordered and received.
        await world.invoice(
            "INV-13C", "PO-13", invoice_line(1, 1, "EA", "45.00", item_id=scenario.GUIDEWIRE)
        )
        (over,) = await world.exceptions()
        assert over["type"] == "QUANTITY_VARIANCE" and over["amount_at_stake"] == "45.00"
        assert "invoiced on PO line 1: 21 EA" in over["explanation"]
        order = await world.get("/v1/purchase-orders/PO-13")
        (line,) = order["positions"]
        assert (line["ordered"], line["received"], line["invoiced"]) == ("20", "20", "21")


async def test_contract_and_po_corrections_re_match_a_price_variance(nats_server, tmp_path):
    async with matching_world(nats_server, tmp_path) as world:
        await world.order("PO-8", stent_order_line())
        await world.receive("PO-8", (1, scenario.STENT, q(2), q(2)))
        await world.invoice("INV-8", "PO-8", stent_invoice_line(price="1260.00"))
        (variance,) = await world.exceptions()
        assert variance["amount_at_stake"] == "120.00"

        await world.order("PO-8", stent_order_line(price="1260.00"), revision=2, changed=True)
        assert (await world.invoice_state("INV-8"))["status"] == "exception"
        (variance,) = await world.exceptions()
        assert variance["status"] == "open"
        assert [c["rule"] for c in variance["checks"]] == ["price_vs_contract"]

        corrected = scenario.medsup_contract(world.site)
        prices = tuple(
            msgspec.structs.replace(p, unit_price=Decimal("1260.00"))
            if p.item_id == scenario.STENT
            else p
            for p in corrected.prices
        )
        await world.send(
            "items.contract.upserted.v1",
            msgspec.structs.replace(corrected, version=2, prices=prices),
        )
        invoice = await world.invoice_state("INV-8")
        assert invoice["status"] == "approved"
        assert invoice["match_runs"][-1]["trigger"] == f"contract {scenario.CONTRACT} version 2"


async def test_payments_for_invoices_never_approved_are_exceptions(nats_server, tmp_path):
    async with matching_world(nats_server, tmp_path) as world:
        await world.order("PO-9", stent_order_line())
        await world.invoice("INV-9", "PO-9", stent_invoice_line())  # nothing received yet
        await world.pay("PAY-9", ("INV-9", "2400.00"), ("INV-NEVER-SEEN", "99.00"))
        await world.pay("PAY-9", ("INV-9", "2400.00"))  # the ERP resends the same payment
        unapproved = await world.exceptions(type="UNAPPROVED_PAYMENT")
        assert {(e["invoice_number"], e["queue"]) for e in unapproved} == {
            ("INV-9", "ap"),
            ("INV-NEVER-SEEN", "ap"),
        }
        assert all(e["payment_id"] == "PAY-9" for e in unapproved)
        never = next(e for e in unapproved if e["invoice_number"] == "INV-NEVER-SEEN")
        assert "never received" in never["explanation"] and never["amount_at_stake"] == "99.00"
        invoice = await world.invoice_state("INV-9")
        assert invoice["status"] == "awaiting_receipt" and invoice["payment_id"] is None
        (payment,) = await world.published("matching.payment.released.v1", 1)
        assert [a.invoice_id is None for a in payment.invoices] == [False, True]


async def test_an_invoice_without_a_usable_po_goes_to_ap_and_waits_for_the_po(
    nats_server, tmp_path
):
    async with matching_world(nats_server, tmp_path) as world:
        await world.invoice("INV-NOPO", None, stent_invoice_line())
        await world.invoice("INV-EARLY", "PO-10", stent_invoice_line())
        await world.order("PO-11", stent_order_line())
        await world.cancel("PO-11")
        await world.invoice("INV-CANCELLED", "PO-11", stent_invoice_line())
        no_po = {e["invoice_number"]: e for e in await world.exceptions(type="NO_PO")}
        assert {e["queue"] for e in no_po.values()} == {"ap"}
        assert no_po["INV-NOPO"]["amount_at_stake"] == "2400.00"
        assert "names no purchase order" in no_po["INV-NOPO"]["explanation"]
        assert "PO-11 was cancelled" in no_po["INV-CANCELLED"]["explanation"]

        # The PO it names is approved after the invoice came: it re-matches by itself.
        await world.order("PO-10", stent_order_line())
        await world.receive("PO-10", (1, scenario.STENT, q(2), q(2)))
        assert (await world.invoice_state("INV-EARLY"))["status"] == "approved"
        assert (await world.invoice_state("INV-CANCELLED"))["status"] == "exception"
