"""One canonical usage from each of the EHR's three formats, an HL7 ACK where asked for, and
invalid HL7 and FHIR documents as dead letters with the validator's reason."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
import scenario_data as scenario
from helpers import eventually
from hl7apy.parser import parse_message
from usage_documents import (
    FUTURE,
    Dft,
    Ft1,
    fhir_device,
    fhir_procedure,
    fhir_supply_delivery,
    json_usage,
)
from usage_world import HL7, RAISED, RECORDED

from sinew.contracts.common import Quantity

pytestmark = pytest.mark.asyncio


async def test_json_hl7_and_fhir_usages_become_the_same_canonical_event(usage):
    await usage.master_data()
    site = usage.site
    stent_udi = scenario.gs1_barcode(scenario.STENT_GTIN, lot="L2", serial="S2", expiry=FUTURE)
    async with usage.ehr_inbox() as (reply_to, acks):
        await usage.send_json(
            json_usage(
                site, "JSON-1", gtin=scenario.STENT_GTIN, lot="L1", serial="S1", expiry=FUTURE
            )
        )
        await usage.send_hl7(
            Dft("CTRL-0001", [Ft1("HL7-1", udi=stent_udi)], application_ack="AL"), reply_to
        )
        await usage.send_fhir(
            fhir_procedure(
                "PROC-9",
                [
                    fhir_device(
                        "d1",
                        udi=scenario.gs1_barcode(scenario.STENT_GTIN, lot="L3", serial="S3"),
                        expiry="2031-01-31",
                    )
                ],
            )
        )
        await usage.send_fhir(
            fhir_supply_delivery(
                "SD-1",
                fhir_device("w", gtin=scenario.GUIDEWIRE_BOX_GTIN, lot="G7"),
                quantity=2,
                unit="BX",
            )
        )
        recorded = {e.source_usage_id: e for e in await usage.wait_events(RECORDED, 4)}
        await eventually(lambda: len(acks) == 1, what="the HL7 ACK")

    assert set(recorded) == {"JSON-1", "HL7-1", "PROC-9/1", "SD-1"}
    assert {e.source_format for e in recorded.values()} == {"json", "hl7v2", "fhir"}
    for source_id, lot, serial in [
        ("JSON-1", "L1", "S1"),
        ("HL7-1", "L2", "S2"),
        ("PROC-9/1", "L3", "S3"),
    ]:
        event = recorded[source_id]
        assert (event.item_id, event.lot, event.serial) == (scenario.STENT, lot, serial)
        assert (event.case_id, event.location_id, event.physician_id) == (
            "CASE-1",
            "CATH-LAB-1",
            "DR-7",
        )
        assert event.implant and not event.bill_only
        assert event.base_quantity.value == 1 and event.base_quantity.uom == "EA"
    assert recorded["HL7-1"].udi == stent_udi and recorded["HL7-1"].expiry == FUTURE
    # Two boxes of ten guidewires, named by the box's GTIN, in the item's base unit.
    wire = recorded["SD-1"]
    assert wire.item_id == scenario.GUIDEWIRE and wire.quantity == Quantity(value=2, uom="BX")
    assert wire.base_quantity.value == Decimal(20) and wire.base_quantity.uom == "EA"
    # One patient, one token, whatever format named them.
    tokens = {e.patient_token for e in recorded.values()}
    assert len(tokens) == 1 and re.fullmatch(r"pt-[0-9a-f]{32}", tokens.pop())
    assert await usage.events(RAISED) == []

    ack = parse_message(acks[0].decode())
    assert ack.msa.msa_1.value == "AA"
    assert ack.msa.msa_2.value == "CTRL-0001"


async def test_invalid_hl7_is_a_dead_letter_with_hl7apys_reason_and_an_ae_ack(usage):
    await usage.master_data()
    async with usage.ehr_inbox() as (reply_to, acks):
        no_evn = Dft("CTRL-0002", [Ft1("HL7-2", item_id=scenario.GUIDEWIRE)], with_evn=False)
        await usage.send_hl7(no_evn, reply_to)
        await usage.send_hl7(b"this is not HL7 at all", reply_to)

        async def two_dead_letters() -> bool:
            return (await usage.get("/v1/dead-letters"))[1]["total"] == 2

        await eventually(two_dead_letters, what="two dead letters")
        await eventually(lambda: len(acks) == 2, what="an ACK for each")
    _, listing = await usage.get("/v1/dead-letters")
    reasons = {d["cause"]: d["reason"] for d in listing["items"]}
    assert reasons["invalid"] == "HL7 2.8.2 validation failed: Missing required child DFT_P03.EVN"
    assert "unreadable" in reasons["malformed"]
    assert all(d["contract"] == HL7.name for d in listing["items"])

    answers = {parse_message(a.decode()).msa.msa_1.value: a.decode() for a in acks}
    assert set(answers) == {"AE", "AR"}
    assert parse_message(answers["AE"]).msa.msa_2.value == "CTRL-0002"
    (err,) = [s for s in answers["AE"].split("\r") if s.startswith("ERR|")]
    assert err.endswith("|HL7 2.8.2 validation failed: Missing required child DFT_P03.EVN")
    assert await usage.events(RECORDED) == []


async def test_hl7_ack_only_when_the_sender_asks_for_it(usage):
    await usage.master_data()
    async with usage.ehr_inbox() as (reply_to, acks):
        # NE: never; ER: errors only (this one succeeds); no reply subject: nowhere to answer.
        await usage.send_hl7(
            Dft("C-NE", [Ft1("A1", item_id=scenario.GUIDEWIRE, lot="G1")], application_ack="NE"),
            reply_to,
        )
        await usage.send_hl7(
            Dft("C-ER", [Ft1("A2", item_id=scenario.GUIDEWIRE, lot="G1")], application_ack="ER"),
            reply_to,
        )
        await usage.send_hl7(Dft("C-NONE", [Ft1("A3", item_id=scenario.GUIDEWIRE, lot="G1")]))
        # A reply subject outside the EHR's own inbox is never answered.
        await usage.send_hl7(
            Dft("C-ELSE", [Ft1("A4", item_id=scenario.GUIDEWIRE, lot="G1")]),
            f"sinew.usage.{usage.site}.procedure-usage.recorded.v1",
        )
        await usage.send_hl7(
            Dft("C-AL", [Ft1("A5", item_id=scenario.GUIDEWIRE, lot="G1")], accept_ack="AL"),
            reply_to,
        )
        await usage.wait_events(RECORDED, 5)
        await eventually(lambda: len(acks) == 1, what="the one ACK asked for")
        await usage.quiet()
    assert parse_message(acks[0].decode()).msa.msa_2.value == "C-AL"
    assert len(await usage.events(RECORDED)) == 5, "a reply-to header must not become an event"


async def test_hl7_credit_voids_the_charge_it_names(usage):
    await usage.master_data()
    await usage.send_hl7(
        Dft("C-1", [Ft1("TX-9", item_id=scenario.GUIDEWIRE, lot="G1", quantity="3")])
    )
    await usage.wait_events(RECORDED, 1)
    await usage.send_hl7(
        Dft("C-2", [Ft1("TX-9", transaction_type="CD", item_id=scenario.GUIDEWIRE)])
    )
    (voided,) = await usage.wait_events("usage.procedure-usage.voided.v1", 1)
    assert voided.source_usage_id == "TX-9" and voided.base_quantity.value == 3


async def test_invalid_fhir_and_unreadable_udis_are_dead_letters_with_the_reason(usage):
    await usage.send_fhir(b'{"resourceType": "Procedure", "status": 7, "subject": {}}')
    await usage.send_fhir(b'{"resourceType": "Observation"}')
    await usage.send_json(json_usage(usage.site, "U-BAD", udi="+A99"))

    async def three() -> bool:
        return (await usage.get("/v1/dead-letters"))[1]["total"] == 3

    await eventually(three, what="three dead letters")
    _, listing = await usage.get("/v1/dead-letters")
    reasons = sorted(d["reason"] for d in listing["items"])
    assert reasons[0].startswith("FHIR R4B Procedure: status: Input should be a valid string")
    assert "resourceType 'Observation' is not a usage" in reasons[1]
    assert reasons[2].startswith("line U-BAD: UDI unreadable: HIBC")
