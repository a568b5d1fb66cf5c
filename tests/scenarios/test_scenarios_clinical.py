"""SCENARIOS.md 4, 8, 9 and 10: what happens in the cath lab reaches procurement, stock and the
traceability index: a consigned implant bought after the case, a usage of an item the item
master does not know yet, replenishment up to par, and a recall."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import msgspec
import scenario_data as scenario
from hospital import Steps
from outside_systems import (
    EXPIRY,
    Charge,
    counted,
    each,
    fhir_device,
    fhir_procedure,
    gtin14,
    hl7_dft,
    invoice,
    invoice_line,
    q,
    stent_udi,
    stent_unit,
    stock_count,
    usage_json,
    x12_810,
)

from sinew.contracts.items import ItemUpserted


async def test_scenario_04_bill_only_implant(hospital):
    north = Steps(hospital)
    case = "CASE-04"
    icd_on_shelf = await north.on_hand(scenario.ICD)
    udi = scenario.hibc_barcode(scenario.ICD_HIBC_DI, serial="SN-ICD-04", expiry=EXPIRY)
    device = fhir_device("icd", udi=udi, lot="LICD-04", serial="SN-ICD-04")
    await hospital.send(
        "ehr",
        "north",
        "ingress.usage-fhir.received.v1",
        fhir_procedure("PROC-04", case, [device], mrn="MRN-SYN-0401"),
    )
    (usage,) = await north.usages_reach(case, 1)
    (recorded,) = await hospital.wait_events(
        "usage.procedure-usage.recorded.v1", "north", case_id=case
    )
    assert recorded.bill_only and recorded.consignment and recorded.item_id == scenario.ICD
    (request,) = await hospital.wait_events("usage.bill-only.requested.v1", "north", case_id=case)
    assert (request.lot, request.serial) == ("LICD-04", "SN-ICD-04")
    assert request.contract_number == scenario.CONTRACT

    async def bill_only_orders() -> list[dict]:
        listed = await hospital.get(
            "procurement", "north", "/v1/purchase-orders?bill_only=true&limit=500"
        )
        return [po for po in listed["items"] if po["case_id"] == case]

    (order,) = await hospital.until(
        "a bill-only PO for the case", bill_only_orders, lambda found: len(found) == 1
    )
    order = await north.purchase_order(order["po_number"])
    po = order["po_number"]
    (line,) = order["lines"]
    assert order["bill_only"] is True and order["state"] == "sent"
    assert (line["item_id"], line["unit_price"]) == (scenario.ICD, "18500.00")
    assert line["contract_number"] == scenario.CONTRACT and line["off_contract"] is False
    carried = line["bill_only_usage"]
    assert (carried["case_id"], carried["lot"], carried["serial"]) == (
        case,
        "LICD-04",
        "SN-ICD-04",
    )
    assert carried["usage_id"] == usage["usage_id"]
    requisition = await hospital.get(
        "procurement", "north", f"/v1/requisitions/{order['requisition_id']}"
    )
    assert (requisition["origin"], requisition["status"]) == ("bill_only", "approved")

    await north.known_po(po)
    await hospital.send(
        "supplier",
        "north",
        "ingress.invoice-x12.received.v1",
        x12_810(
            invoice(
                "north",
                "INV-04",
                po,
                invoice_line(
                    1,
                    q(1),
                    "18500.00",
                    supplier_part="MS-ICD-01",
                    lot="LICD-04",
                    serial="SN-ICD-04",
                ),
            )
        ),
    )
    approved = await north.invoice_reaches("INV-04", "approved")
    assert approved["match_type"] == "two_way" and approved["first_pass"] is True
    assert approved["approved_amount"] == "18500.00"
    # The usage stood in for the receipt: nothing was received at the dock for this PO.
    receipts = await hospital.get("receiving", "north", f"/v1/receipts?po_number={po}")
    assert receipts["total"] == 0
    (closed,) = await hospital.wait_events(
        "procurement.purchase-order.closed.v1", "north", po_number=po
    )
    assert closed.reason == "bill_only_invoiced"
    # Consigned stock was never the hospital's: the shelf count does not move.
    await hospital.quiet("north")
    assert await north.on_hand(scenario.ICD) == icd_on_shelf


async def test_scenario_08_unknown_item(hospital):
    north = Steps(hospital)
    case = "CASE-08"
    balloon_gtin = gtin14("0081234500010")
    udi = scenario.gs1_barcode(balloon_gtin, lot="LB-08")
    await hospital.send(
        "ehr",
        "north",
        "ingress.usage.recorded.v1",
        usage_json("north", "U-08", case, mrn="MRN-SYN-0801", udi=udi),
    )
    exceptions = await hospital.until(
        "an open exception for the case",
        lambda: hospital.get("usage", "north", f"/v1/exceptions?case_id={case}&status=open"),
        lambda found: found["total"] >= 1,
    )
    (held,) = exceptions["items"]
    assert (held["type"], held["held"]) == ("UNKNOWN_ITEM", True)
    (raised,) = await hospital.wait_events(
        "usage.exception.raised.v1", "north", exception_id=held["exception_id"]
    )
    assert (raised.type, raised.udi, raised.held) == ("UNKNOWN_ITEM", udi, True)
    assert await hospital.events("usage.procedure-usage.recorded.v1", "north", case_id=case) == []

    balloon = ItemUpserted(
        site="north",
        item_id="BALLOON-3x15",
        version=1,
        description="Coronary balloon catheter 3.0 x 15 mm",
        base_uom="EA",
        gtin=balloon_gtin,
        category="CATH-ACCESSORY",
        supplier_parts=(),
        source="mdm",
        upserted_at=scenario.UPSERTED_AT,
    )
    await hospital.send(
        "mdm", "north", "ingress.masterdata.upserted.v1", scenario.as_upsert(balloon)
    )
    (recorded,) = await hospital.wait_events(
        "usage.procedure-usage.recorded.v1", "north", case_id=case
    )
    assert (recorded.item_id, recorded.lot) == ("BALLOON-3x15", "LB-08")
    (cleared,) = await hospital.wait_events(
        "usage.exception.cleared.v1", "north", exception_id=held["exception_id"]
    )
    assert cleared.resolution == "item_master_updated"
    still_open = await hospital.get("usage", "north", f"/v1/exceptions?case_id={case}&status=open")
    assert still_open["total"] == 0
    (usage,) = await north.usages(case)
    assert usage["status"] == "recorded"


async def test_scenario_09_replenishment(hospital):
    north = Steps(hospital)
    stent = scenario.STENT

    async def signals(status: str = "") -> list[dict]:
        path = f"/v1/signals?location_id={scenario.CATH_LAB}&item_id={stent}&limit=500"
        if status:
            path += f"&status={status}"
        return (await hospital.get("replenishment", "north", path))["items"]

    # The storeroom counts the shelf: 3 stents of lot L09-A and nothing else.
    await hospital.send(
        "warehouse",
        "north",
        "ingress.inventory.counted.v1",
        stock_count(
            "north",
            "COUNT-09",
            scenario.CATH_LAB,
            counted(stent, q(3), "L09-A"),
            counted(stent, q(0)),
        ),
    )
    await hospital.until("3 on the shelf", lambda: north.on_hand(stent), lambda n: n == 3)
    await hospital.until("no open signal at 3", lambda: signals("open"), lambda found: not found)
    earlier = {s["signal_id"] for s in await signals()}

    # Two cases document their stents at the same moment.
    await asyncio.gather(
        *(
            hospital.send(
                "ehr",
                "north",
                "ingress.usage.recorded.v1",
                usage_json(
                    "north",
                    f"U-09-{n}",
                    f"CASE-09-{n}",
                    mrn=f"MRN-SYN-090{n}",
                    udi=stent_udi("L09-A", f"S09-{n}"),
                ),
            )
            for n in (1, 2)
        )
    )
    await hospital.until("1 on the shelf", lambda: north.on_hand(stent), lambda n: n == 1)
    await hospital.quiet("north")
    (signal,) = [s for s in await signals() if s["signal_id"] not in earlier]
    assert signal["status"] == "open" and signal["quantity"] == {"value": "3", "uom": "EA"}
    raised = await hospital.events(
        "replenishment.signal.raised.v1", "north", location_id=scenario.CATH_LAB, item_id=stent
    )
    assert [r.signal_id for r in raised if r.signal_id not in earlier] == [signal["signal_id"]]

    # Procurement ordered the shortfall; the goods arrive and the signal closes.
    requisitions = await hospital.get(
        "procurement", "north", "/v1/requisitions?origin=replenishment&limit=500"
    )
    (requisition,) = [
        r for r in requisitions["items"] if r["replenishment_signal_id"] == signal["signal_id"]
    ]
    (po,) = requisition["po_numbers"]
    await north.known_po(po)
    (line,) = (await north.purchase_order(po))["lines"]
    ordered = int(Decimal(line["quantity"]["value"]))
    receipt = await north.receive(
        po, *(stent_unit("L09-B", f"S09-R{n}") for n in range(ordered)), receipt_id="GR-09"
    )
    assert receipt["exceptions"] == []

    async def the_signal() -> dict:
        return await hospital.get("replenishment", "north", f"/v1/signals/{signal['signal_id']}")

    closed = await hospital.until("signal closed", the_signal, lambda s: s["status"] == "closed")
    assert closed["close_reason"] == "stock_received"
    (event,) = await hospital.wait_events(
        "replenishment.signal.closed.v1", "north", signal_id=signal["signal_id"]
    )
    assert (event.reason, event.receipt_id) == ("stock_received", "GR-09")


async def test_scenario_10_recall(hospital):
    north = Steps(hospital)
    recalled = "L10-RECALL"
    po = await north.order(scenario.STENT, each(5))
    await north.receive(po, *(stent_unit(recalled, f"S10-{n}") for n in (1, 2, 3)))
    await north.receive(po, stent_unit("L10-OTHER", "S10-9"))
    receipt = await hospital.post(
        "receiving",
        "north",
        "/v1/receipts",
        {"po_number": po, "location_id": "CATH-LAB-2", "lines": [stent_unit(recalled, "S10-4")]},
        role="receiving",
        expect=201,
    )
    assert receipt["exceptions"] == []

    await hospital.send(
        "ehr",
        "north",
        "ingress.usage-hl7.received.v1",
        hl7_dft(
            "MSG-10-A",
            "CASE-10-A",
            [Charge("TX-10-A", udi=stent_udi(recalled, "S10-1"))],
            mrn="MRN-SYN-1001",
        ),
    )
    await hospital.send(
        "ehr",
        "north",
        "ingress.usage-fhir.received.v1",
        fhir_procedure(
            "PROC-10-B",
            "CASE-10-B",
            [fhir_device("stent", udi=stent_udi(recalled, "S10-2"), lot=recalled, serial="S10-2")],
            mrn="MRN-SYN-1002",
        ),
    )
    await hospital.send(
        "ehr",
        "north",
        "ingress.usage.recorded.v1",
        usage_json(
            "north", "U-10-C", "CASE-10-C", mrn="MRN-SYN-1003", udi=stent_udi("L10-OTHER", "S10-9")
        ),
    )
    for case in ("CASE-10-A", "CASE-10-B", "CASE-10-C"):
        await north.usages_reach(case, 1)
    await hospital.until(
        "two of the lot used at CATH-LAB-1",
        lambda: north.on_hand(scenario.STENT, lot=recalled),
        lambda n: n == 1,
    )

    await hospital.until(
        "one of the lot at CATH-LAB-2",
        lambda: north.on_hand(scenario.STENT, "CATH-LAB-2", lot=recalled),
        lambda n: n == 1,
    )
    answer = await hospital.get("usage", "north", f"/v1/recall?lot={recalled}")
    assert sorted(answer["cases"]) == ["CASE-10-A", "CASE-10-B"]
    assert answer["sites"] == ["north"]
    tokens = answer["patient_tokens"]
    assert len(set(tokens)) == 2 and all(t.startswith("pt-") for t in tokens)
    assert "MRN-SYN" not in json.dumps(answer)
    on_hand = answer["on_hand"]
    assert on_hand["available"] is True
    shelves = {
        p["location_id"]: p["on_hand"]
        for p in on_hand["positions"]
        if p["lot"] == recalled and Decimal(p["on_hand"]["value"]) != 0
    }
    assert shelves == {
        scenario.CATH_LAB: {"value": "1", "uom": "EA"},
        "CATH-LAB-2": {"value": "1", "uom": "EA"},
    }

    # The same query over NATS, as the operator's `sinew recall` asks it.
    operator = await hospital.connect("operator")
    reply = await operator.request(
        "sinew.api.north.usage.recall", msgspec.json.encode({"lot": recalled}), timeout=5
    )
    over_nats = json.loads(reply.data)
    assert sorted(over_nats["cases"]) == ["CASE-10-A", "CASE-10-B"]
    assert sorted(over_nats["patient_tokens"]) == sorted(tokens)
