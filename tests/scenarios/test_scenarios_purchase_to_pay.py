"""SCENARIOS.md 1, 2, 3, 5, 6, 7 and 13: from a purchase order to a paid invoice, end to end
through procurement, receiving, usage, replenishment and matching, driven only through ingress
subjects and HTTP."""

from __future__ import annotations

from decimal import Decimal

import scenario_data as scenario
from hospital import Steps
from outside_systems import (
    EXPIRY,
    STENT_PART,
    Charge,
    asn,
    dock_scan,
    each,
    hl7_dft,
    invoice,
    invoice_line,
    lot,
    payment,
    q,
    shipped,
    stent_invoice,
    stent_unit,
    substituted,
    usage_json,
    x12_810,
    x12_855,
)


async def test_scenario_01_po_based_implant_clean_match(hospital):
    north = Steps(hospital)
    start = await north.on_hand(scenario.STENT)

    po = await north.order(scenario.STENT, each(2))
    order = await north.purchase_order(po)
    (line,) = order["lines"]
    assert (line["unit_price"], line["contract_number"]) == ("1200.00", scenario.CONTRACT)
    assert order["total"] == "2400.00" and order["state"] == "sent"
    assert await hospital.events("procurement.purchase-order.approved.v1", "north", po_number=po)

    notice = asn(
        "north",
        "ASN-01",
        po,
        shipped(1, q(2), [lot("L1", "S1"), lot("L2", "S2")], supplier_part=STENT_PART),
    )
    await north.ship(notice, x12=True)
    (arrival,) = (await north.receive_asn("ASN-01"))["orders"]
    assert arrival["exceptions"] == []
    received = arrival["receipt"]["lines"]
    assert [(r["lot"], r["serial"], r["base_quantity"], r["expiry"]) for r in received] == [
        ("L1", "S1", "1", EXPIRY.isoformat()),
        ("L2", "S2", "1", EXPIRY.isoformat()),
    ]

    case = "CASE-01"
    udi_s1 = scenario.gs1_barcode(scenario.STENT_GTIN, lot="L1", serial="S1", expiry=EXPIRY)
    used = await hospital.send(
        "ehr",
        "north",
        "ingress.usage-hl7.received.v1",
        hl7_dft("MSG-01", case, [Charge("TX-01-1", udi=udi_s1)], mrn="MRN-SYN-0101"),
    )
    (usage,) = await north.usages_reach(case, 1)
    assert (usage["item_id"], usage["lot"], usage["serial"]) == (scenario.STENT, "L1", "S1")
    await hospital.wait_events("usage.procedure-usage.recorded.v1", "north", case_id=case)

    billed = await hospital.send(
        "ap",
        "north",
        "ingress.invoice.submitted.v1",
        invoice(
            "north",
            "INV-01",
            po,
            invoice_line(1, q(1), "1200.00", supplier_part=STENT_PART, lot="L1", serial="S1"),
            invoice_line(2, q(1), "1200.00", supplier_part=STENT_PART, lot="L2", serial="S2"),
        ),
    )
    approved = await north.invoice_reaches("INV-01", "approved")
    assert approved["first_pass"] is True and approved["match_type"] == "three_way"
    assert (approved["approval_basis"], approved["approved_amount"]) == ("matched", "2400.00")
    assert await north.match_exceptions(invoice=approved["invoice_id"]) == []

    paid_by = await hospital.send(
        "erp",
        "north",
        "ingress.payment.released.v1",
        payment("north", "PAY-01", ("INV-01", "2400.00")),
    )
    paid = await north.invoice_reaches("INV-01", "paid")
    assert paid["payment_id"] == "PAY-01"

    await hospital.until(
        "on-hand at CATH-LAB-1 is what it was plus 1",
        lambda: north.on_hand(scenario.STENT),
        lambda on_hand: on_hand == start + 1,
    )
    await hospital.until(
        "the PO closed once received and invoiced",
        lambda: north.purchase_order(po),
        lambda order: order["state"] == "closed",
    )

    # Every step that touched serial S1 is on the streams, in the order it happened. The invoice's
    # and the payment's events carry the correlation id their sender gave; the usage event carries
    # a pseudonym of the EHR's (its headers may hold patient identifiers).
    invoice_id = approved["invoice_id"]
    (receipt,) = await hospital.events_with_headers(
        "receiving.goods.received.v1", "north", po_number=po
    )
    (recorded,) = await hospital.events_with_headers(
        "usage.procedure-usage.recorded.v1", "north", case_id=case
    )
    (submitted,) = await hospital.events_with_headers(
        "matching.invoice.submitted.v1", "north", invoice_id=invoice_id
    )
    (matched,) = await hospital.events_with_headers(
        "matching.invoice.matched.v1", "north", invoice_id=invoice_id
    )
    (approval,) = await hospital.events_with_headers(
        "matching.invoice.approved.v1", "north", invoice_id=invoice_id
    )
    (payment_event,) = await hospital.events_with_headers(
        "matching.payment.released.v1", "north", payment_id="PAY-01"
    )
    assert "S1" in [line.serial for line in receipt[1].lines]
    assert recorded[1].serial == "S1" and recorded[1].lot == "L1"
    assert "S1" in [line.serial for line in submitted[1].lines]
    assert matched[1].first_pass and matched[1].po_number == po
    assert [p.invoice_id for p in payment_event[1].invoices] == [invoice_id]
    assert approval[1].basis == "matched"
    timeline = [receipt, recorded, submitted, matched, approval, payment_event]
    assert [t for _, _, t in timeline] == sorted(t for _, _, t in timeline)
    correlation = "sinew-correlation-id"
    assert recorded[0][correlation] not in ("", used.correlation_id)
    assert submitted[0][correlation] == billed.correlation_id
    assert matched[0][correlation] == billed.correlation_id
    assert approval[0][correlation] == billed.correlation_id
    assert payment_event[0][correlation] == paid_by.correlation_id


async def test_scenario_02_price_variance(hospital):
    north = Steps(hospital)
    variances = {}
    for case in ("approve", "credit"):
        po = await north.order(scenario.STENT, each(2))
        await north.receive(
            po,
            stent_unit(f"L02-{case}", f"S02-{case}-1"),
            stent_unit(f"L02-{case}", f"S02-{case}-2"),
        )
        number = f"INV-02-{case}"
        await hospital.send(
            "ap",
            "north",
            "ingress.invoice.submitted.v1",
            stent_invoice("north", number, po, 2, "1260.00"),
        )
        waiting = await north.invoice_reaches(number, "exception")
        (variance,) = await north.match_exceptions(invoice=waiting["invoice_id"])
        assert (variance["type"], variance["queue"]) == ("PRICE_VARIANCE", "supply_chain")
        assert variance["contract_number"] == scenario.CONTRACT
        assert variance["amount_at_stake"] == "120.00"
        assert variance["status"] == "open"
        variances[case] = (number, variance)
    raised = await hospital.events(
        "matching.exception.raised.v1",
        "north",
        exception_id=variances["approve"][1]["exception_id"],
    )
    assert raised[0].amount_at_stake == Decimal("120.00") and raised[0].queue == "supply_chain"

    # The contracts analyst decides; AP does not own this queue.
    number, variance = variances["approve"]
    resolve = f"/v1/exceptions/{variance['exception_id']}/resolve"
    decision = {"resolution": "approved", "reason": "2024 list price agreed with cardiology"}
    await hospital.post("matching", "north", resolve, decision, role="ap", expect=403)
    await hospital.post("matching", "north", resolve, decision, role="supply-chain")
    accepted = await north.invoice_reaches(number, "approved")
    assert accepted["approval_basis"] == "exception_approved"
    assert accepted["approved_amount"] == "2520.00"

    number, variance = variances["credit"]
    credit = {"resolution": "credit_requested", "reason": "bill us the contract price"}
    await hospital.post(
        "matching",
        "north",
        f"/v1/exceptions/{variance['exception_id']}/resolve",
        credit,
        role="supply-chain",
    )
    short_paid = await north.invoice_reaches(number, "approved")
    assert short_paid["approved_amount"] == "2400.00"

    # Both decisions are audited: who, when, why, in the exception's history and on the stream.
    for (_, variance), reason in zip(
        variances.values(), (decision["reason"], credit["reason"]), strict=True
    ):
        shown = await hospital.get(
            "matching", "north", f"/v1/exceptions/{variance['exception_id']}", role="supply-chain"
        )
        assert [(h["action"], h["by"]) for h in shown["history"]] == [
            ("raised", "matching"),
            ("resolved", "sam.contracts"),
        ]
        assert shown["history"][1]["reason"] == reason and shown["history"][1]["at"]
        (event,) = await hospital.wait_events(
            "matching.exception.resolved.v1", "north", exception_id=variance["exception_id"]
        )
        assert (event.resolved_by, event.reason, event.automatic) == (
            "sam.contracts",
            reason,
            False,
        )
    (credited,) = await hospital.events(
        "matching.exception.resolved.v1",
        "north",
        exception_id=variances["credit"][1]["exception_id"],
    )
    assert credited.resolution == "credit_requested"
    assert credited.credit_amount == Decimal("120.00")


async def test_scenario_03_invoice_before_receipt(hospital):
    north = Steps(hospital)
    po = await north.order(scenario.STENT, each(2))
    dead_letters = (await hospital.get("matching", "north", "/v1/dead-letters"))["total"]

    await hospital.send(
        "ap",
        "north",
        "ingress.invoice.submitted.v1",
        stent_invoice("north", "INV-03", po, 2, "1200.00"),
    )
    waiting = await north.invoice_reaches("INV-03", "awaiting_receipt")
    (held,) = await north.match_exceptions(invoice=waiting["invoice_id"])
    assert (held["type"], held["queue"], held["status"]) == (
        "AWAITING_RECEIPT",
        "receiving",
        "open",
    )
    assert (await hospital.get("matching", "north", "/v1/dead-letters"))["total"] == dead_letters

    await north.receive(po, stent_unit("L03", "S03-1"), stent_unit("L03", "S03-2"))
    matched = await north.invoice_reaches("INV-03", "approved")
    assert matched["approval_basis"] == "matched" and matched["approved_amount"] == "2400.00"
    (rematched,) = await north.match_exceptions(invoice=matched["invoice_id"])
    assert rematched["status"] == "resolved"
    (event,) = await hospital.wait_events(
        "matching.exception.resolved.v1", "north", exception_id=held["exception_id"]
    )
    assert (event.resolution, event.automatic, event.resolved_by) == ("rematched", True, "matching")
    assert await hospital.events(
        "matching.invoice.matched.v1", "north", invoice_id=matched["invoice_id"]
    )


async def acknowledge_substitute(hospital, north, number, po, part, *, approved: bool) -> None:
    """The supplier's 855 says it will ship another product; procurement checks the
    substitution against the item master and shows it to the requesting location."""
    await hospital.send(
        "supplier",
        "north",
        "ingress.po-acknowledgement-x12.received.v1",
        x12_855(substituted("north", number, po, part)),
    )
    order = await hospital.until(
        f"acknowledgement {number} applied",
        lambda: north.purchase_order(po),
        lambda order: order["substitutions"],
    )
    (substitution,) = order["substitutions"]
    assert substitution["approved"] is approved
    if approved:
        assert substitution["substitution_id"] == scenario.SUBSTITUTION


async def test_scenario_05_approved_substitution(hospital):
    north = Steps(hospital)
    po = await north.order(scenario.STENT, each(1))
    await acknowledge_substitute(hospital, north, "ACK-05-V2", po, "MS-DES-318-V2", approved=True)
    substitute = shipped(1, q(1), [lot("L05-V2", "S05-V2")], supplier_part="MS-DES-318-V2")
    await north.ship(asn("north", "ASN-05-V2", po, substitute))
    (arrival,) = (await north.receive_asn("ASN-05-V2"))["orders"]
    assert arrival["exceptions"] == []
    assert arrival["receipt"]["lines"][0]["item_id"] == scenario.STENT_V2
    await hospital.send(
        "ap",
        "north",
        "ingress.invoice.submitted.v1",
        invoice(
            "north",
            "INV-05-V2",
            po,
            invoice_line(1, q(1), "1180.00", supplier_part="MS-DES-318-V2"),
        ),
    )
    approved = await north.invoice_reaches("INV-05-V2", "approved")
    assert approved["approval_basis"] == "matched"
    (matched,) = await hospital.wait_events(
        "matching.invoice.matched.v1", "north", invoice_id=approved["invoice_id"]
    )
    (line,) = matched.lines
    assert (line.item_id, line.ordered_item_id) == (scenario.STENT_V2, scenario.STENT)
    assert line.substitution_id == scenario.SUBSTITUTION
    assert line.contract_unit_price == scenario.STENT_V2_PRICE

    # A substitute nobody approved: receiving does not take it in, matching routes the invoice
    # to supply chain.
    po = await north.order(scenario.STENT, each(1))
    await acknowledge_substitute(hospital, north, "ACK-05-BMS", po, "MS-BMS-318", approved=False)
    unapproved = shipped(1, q(1), [lot("L05-BMS", "S05-BMS")], supplier_part="MS-BMS-318")
    await north.ship(asn("north", "ASN-05-BMS", po, unapproved))
    (arrival,) = (await north.receive_asn("ASN-05-BMS"))["orders"]
    assert arrival["receipt"] is None
    assert [e["type"] for e in arrival["exceptions"]] == ["UNKNOWN_ITEM"]
    await hospital.send(
        "ap",
        "north",
        "ingress.invoice.submitted.v1",
        invoice(
            "north", "INV-05-BMS", po, invoice_line(1, q(1), "950.00", supplier_part="MS-BMS-318")
        ),
    )
    refused = await north.invoice_reaches("INV-05-BMS", "exception")
    found = await north.match_exceptions(
        invoice=refused["invoice_id"], type="SUBSTITUTION_NOT_APPROVED"
    )
    (not_approved,) = found
    assert (not_approved["queue"], not_approved["status"]) == ("supply_chain", "open")
    assert not_approved["amount_at_stake"] == "950.00"


async def test_scenario_06_duplicate_invoice(hospital):
    north = Steps(hospital)
    po = await north.order(scenario.STENT, each(1))
    await north.receive(po, stent_unit("L06", "S06"))
    document = stent_invoice("north", "INV-06", po, 1, "1200.00")
    await hospital.send("ap", "north", "ingress.invoice.submitted.v1", document)
    original = await north.invoice_reaches("INV-06", "approved")

    for _ in range(2):  # the supplier's EDI gateway sends it too, and then once more
        await hospital.send(
            "supplier", "north", "ingress.invoice-x12.received.v1", x12_810(document)
        )

    async def submissions() -> list:
        return (await north.invoice("INV-06"))["submissions"]

    seen = await hospital.until("three submissions of INV-06", submissions, lambda s: len(s) == 3)
    assert [(s["source_format"], s["outcome"]) for s in seen] == [
        ("json", "admitted"),
        ("x12", "duplicate"),
        ("x12", "duplicate"),
    ]
    listed = await hospital.get("matching", "north", "/v1/invoices?number=INV-06", role="ap")
    assert listed["total"] == 1
    duplicates = [
        e
        for e in await north.match_exceptions(type="DUPLICATE_INVOICE")
        if e["duplicate_of_invoice_id"] == original["invoice_id"]
    ]
    assert len(duplicates) == 1 and duplicates[0]["queue"] == "ap"
    assert (
        len(
            await hospital.events("matching.invoice.submitted.v1", "north", invoice_number="INV-06")
        )
        == 1
    )

    # The ERP pays it, then releases a second payment for the same invoice: paid once.
    await hospital.send(
        "erp",
        "north",
        "ingress.payment.released.v1",
        payment("north", "PAY-06-A", ("INV-06", "1200.00")),
    )
    await north.invoice_reaches("INV-06", "paid")
    await hospital.send(
        "erp",
        "north",
        "ingress.payment.released.v1",
        payment("north", "PAY-06-B", ("INV-06", "1200.00")),
    )
    (twice,) = await hospital.until(
        "the second payment flagged",
        lambda: north.match_exceptions(type="DUPLICATE_PAYMENT", invoice=original["invoice_id"]),
        lambda found: len(found) == 1,
    )
    assert twice["queue"] == "ap" and twice["payment_id"] == "PAY-06-B"
    paid = await north.invoice("INV-06")
    assert [(p["payment_id"], p["outcome"]) for p in paid["payments"]] == [
        ("PAY-06-A", "paid"),
        ("PAY-06-B", "duplicate"),
    ]
    assert paid["status"] == "paid" and paid["payment_id"] == "PAY-06-A"


async def test_scenario_07_quantity_variance(hospital):
    north = Steps(hospital)
    po = await north.order(scenario.STENT, each(3))
    await north.receive(po, stent_unit("L07", "S07-1"), stent_unit("L07", "S07-2"))
    await hospital.send(
        "ap",
        "north",
        "ingress.invoice.submitted.v1",
        stent_invoice("north", "INV-07", po, 3, "1200.00"),
    )
    short = await north.invoice_reaches("INV-07", "exception")
    (variance,) = await north.match_exceptions(invoice=short["invoice_id"])
    assert (variance["type"], variance["queue"]) == ("QUANTITY_VARIANCE", "receiving")
    assert variance["amount_at_stake"] == "1200.00"

    await north.receive(po, stent_unit("L07", "S07-3"))
    matched = await north.invoice_reaches("INV-07", "approved")
    assert matched["approved_amount"] == "3600.00" and matched["approval_basis"] == "matched"
    (event,) = await hospital.wait_events(
        "matching.exception.resolved.v1", "north", exception_id=variance["exception_id"]
    )
    assert (event.resolution, event.automatic) == ("rematched", True)


async def test_scenario_13_unit_of_measure(hospital):
    north = Steps(hospital)
    po = await north.order(scenario.GUIDEWIRE, {"value": "2", "uom": "BX"})
    (line,) = (await north.purchase_order(po))["lines"]
    assert line["quantity"] == {"value": "2", "uom": "BX"} and line["unit_price"] == "450.00"
    assert line["ordered_base_quantity"] == "20"

    box = scenario.gs1_barcode(scenario.GUIDEWIRE_BOX_GTIN, lot="GW13", expiry=EXPIRY)
    for n in (1, 2):  # two boxes scanned at the dock, each a box of 10
        await hospital.send(
            "dock",
            "north",
            "ingress.dock-scan.scanned.v1",
            dock_scan("north", f"SCAN-13-{n}", box, po),
        )
    receipts = await hospital.until(
        "both boxes received",
        lambda: hospital.get("receiving", "north", f"/v1/receipts?po_number={po}"),
        lambda found: found["total"] == 2,
    )
    for receipt in receipts["items"]:
        (received,) = receipt["lines"]
        assert received["quantity"] == {"value": "1", "uom": "BX"}
        assert received["base_quantity"] == "10"

    case = "CASE-13"
    await hospital.send(
        "ehr",
        "north",
        "ingress.usage.recorded.v1",
        usage_json(
            "north",
            "U-13",
            case,
            mrn="MRN-SYN-1301",
            quantity=q(5),
            gtin=scenario.GUIDEWIRE_GTIN,
            lot="GW13",
        ),
    )
    await north.usages_reach(case, 1)
    (recorded,) = await hospital.wait_events(
        "usage.procedure-usage.recorded.v1", "north", case_id=case
    )
    assert (recorded.quantity, recorded.base_quantity) == (q(5), q(5))
    await hospital.until(
        "15 EA of lot GW13 left at CATH-LAB-1",
        lambda: north.on_hand(scenario.GUIDEWIRE, lot="GW13"),
        lambda on_hand: on_hand == 15,
    )

    await hospital.send(
        "ap",
        "north",
        "ingress.invoice.submitted.v1",
        invoice(
            "north", "INV-13", po, invoice_line(1, q(2, "BX"), "450.00", supplier_part="MS-GW-035")
        ),
    )
    approved = await north.invoice_reaches("INV-13", "approved")
    assert approved["first_pass"] is True and approved["approved_amount"] == "900.00"
    (matched,) = await hospital.wait_events(
        "matching.invoice.matched.v1", "north", invoice_id=approved["invoice_id"]
    )
    assert matched.lines[0].base_quantity == q(20)
