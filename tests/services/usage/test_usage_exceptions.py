"""Every usage yields an inventory effect or an explicit exception: unknown items held until the
item master catches up (scenario 8), consigned implants billed after the fact (scenario 4),
serials used twice held, voids reversing exactly once, documentation problems raised."""

from __future__ import annotations

import json
from datetime import date

import pytest
import scenario_data as scenario
from helpers import count, eventually, query
from usage_documents import FUTURE, MRN, USED_AT, json_usage, json_void
from usage_world import BILL_ONLY, CLEARED, RAISED, RECORDED, VOIDED

pytestmark = pytest.mark.asyncio


def without(records, *item_ids):
    return [r for r in records if getattr(r, "item_id", None) not in item_ids]


async def test_unknown_item_is_held_and_applied_when_the_item_master_catches_up(usage):
    site = usage.site
    await usage.master_data(without(scenario.master_data(site), scenario.STENT))
    await usage.send_json(
        json_usage(
            site,
            "U-1",
            udi=scenario.gs1_barcode(scenario.STENT_GTIN, lot="L1", serial="S1", expiry=FUTURE),
        )
    )
    (raised,) = await usage.wait_events(RAISED, 1)
    assert (raised.type, raised.held, raised.usage_id) == ("UNKNOWN_ITEM", True, None)
    assert raised.source_usage_id == "U-1" and raised.lot == "L1" and raised.serial == "S1"
    status, queue = await usage.get("/v1/exceptions", type="UNKNOWN_ITEM")
    assert status == 200 and [e["exception_id"] for e in queue["items"]] == [raised.exception_id]
    await usage.quiet()
    assert await usage.events(RECORDED) == []

    await usage.master_data([scenario.stent(site)])
    (recorded,) = await usage.wait_events(RECORDED, 1)
    (cleared,) = await usage.wait_events(CLEARED, 1)
    assert recorded.item_id == scenario.STENT and recorded.lot == "L1"
    assert cleared.exception_id == raised.exception_id
    assert (cleared.resolution, cleared.usage_id) == ("item_master_updated", recorded.usage_id)
    _, queue = await usage.get("/v1/exceptions")
    assert queue["total"] == 0


async def test_consigned_implant_raises_a_bill_only_request_with_case_lot_and_serial(usage):
    site = usage.site
    await usage.master_data()
    icd_udi = scenario.hibc_barcode(scenario.ICD_HIBC_DI, serial="ICD-SER-1", expiry=FUTURE)
    await usage.send_json(
        json_usage(
            site, "U-ICD", case_id="CASE-ICD", udi=icd_udi, lot="ICD-LOT-4", physician_id="DR-9"
        )
    )
    (request,) = await usage.wait_events(BILL_ONLY, 1)
    (recorded,) = await usage.wait_events(RECORDED, 1)
    assert (request.case_id, request.lot, request.serial) == ("CASE-ICD", "ICD-LOT-4", "ICD-SER-1")
    assert (request.physician_id, request.item_id) == ("DR-9", scenario.ICD)
    assert (request.supplier_id, request.contract_number) == (scenario.MEDSUP, scenario.CONTRACT)
    assert request.usage_id == recorded.usage_id and request.expiry == FUTURE
    assert recorded.bill_only and recorded.consignment
    assert recorded.contract_number == scenario.CONTRACT
    await usage.quiet()
    assert await usage.events(RAISED) == []


async def test_bill_only_contract_is_the_one_in_force_on_the_day_of_use(usage):
    site = usage.site
    expired = scenario.changed(
        scenario.medsup_contract(site),
        contract_number="MEDSUP-2023",
        effective_from=date(2023, 1, 1),
        effective_to=date(2023, 12, 31),
    )
    await usage.master_data([*scenario.master_data(site), expired])
    await usage.send_json(
        json_usage(site, "U-ICD2", item_id=scenario.ICD, lot="L", serial="ICD-SER-2")
    )
    (request,) = await usage.wait_events(BILL_ONLY, 1)
    assert USED_AT.year == 2024 and request.contract_number == scenario.CONTRACT


async def test_a_serial_already_used_in_another_case_is_held_until_that_use_is_voided(usage):
    site = usage.site
    await usage.master_data()
    stent = dict(gtin=scenario.STENT_GTIN, lot="L1", serial="S1", expiry=FUTURE)
    await usage.send_json(json_usage(site, "U-A", case_id="CASE-A", **stent))
    await usage.wait_events(RECORDED, 1)
    await usage.send_json(json_usage(site, "U-B", case_id="CASE-B", mrn="MRN-SYNTH-0002", **stent))
    (raised,) = await usage.wait_events(RAISED, 1)
    assert (raised.type, raised.held, raised.case_id) == ("SERIAL_ALREADY_USED", True, "CASE-B")
    assert "case CASE-A" in raised.explanation
    await usage.quiet()
    assert len(await usage.events(RECORDED)) == 1

    # CASE-A's documentation was wrong: once it is voided, CASE-B's use goes through.
    await usage.send_void(json_void(site, "U-A", case_id="CASE-A"))
    recorded = await usage.wait_events(RECORDED, 2)
    (cleared,) = await usage.wait_events(CLEARED, 1)
    assert recorded[1].case_id == "CASE-B" and cleared.exception_id == raised.exception_id
    assert cleared.usage_id == recorded[1].usage_id


async def test_a_void_reverses_a_usage_exactly_once(usage):
    site = usage.site
    await usage.master_data()
    await usage.send_json(json_usage(site, "U-1", item_id=scenario.GUIDEWIRE, lot="G1"))
    (recorded,) = await usage.wait_events(RECORDED, 1)
    for n in range(3):  # the EHR resends the void, each time as a new message
        await usage.send_void(json_void(site, "U-1"), event_id=f"void-{site}-{n}")
    (voided,) = await usage.wait_events(VOIDED, 1)
    await eventually(lambda: count(usage.db, "sinew_inbox", "subject LIKE '%usage.voided%'") == 3)
    await usage.quiet()
    assert len(await usage.events(VOIDED)) == 1
    assert (voided.usage_id, voided.base_quantity) == (recorded.usage_id, recorded.base_quantity)
    assert voided.reason == "documented on the wrong case"


async def test_a_void_before_its_usage_is_held_and_the_usage_never_applies(usage):
    site = usage.site
    await usage.master_data()
    await usage.send_void(json_void(site, "U-LATE"))
    (raised,) = await usage.wait_events(RAISED, 1)
    assert (raised.type, raised.held) == ("VOID_OF_UNKNOWN_USAGE", True)
    await usage.send_json(json_usage(site, "U-LATE", item_id=scenario.GUIDEWIRE, lot="G1"))
    (cleared,) = await usage.wait_events(CLEARED, 1)
    assert (cleared.exception_id, cleared.resolution) == (raised.exception_id, "voided")
    await usage.quiet()
    assert await usage.events(RECORDED) == [] and await usage.events(VOIDED) == []


async def test_missing_lot_and_serial_and_expired_lots_are_exceptions_not_silence(usage):
    site = usage.site
    await usage.master_data()
    await usage.send_json(json_usage(site, "U-NOSERIAL", gtin=scenario.STENT_GTIN, lot="L1"))
    await usage.send_json(
        json_usage(
            site, "U-OLD", gtin=scenario.STENT_GTIN, lot="L0", serial="S0", expiry=date(2024, 4, 30)
        )
    )
    await usage.send_json(json_usage(site, "U-NOLOT", item_id=scenario.GUIDEWIRE))
    recorded = await usage.wait_events(RECORDED, 3)
    raised = await usage.wait_events(RAISED, 3)
    by_line = {e.source_usage_id: e for e in raised}
    assert {k: e.type for k, e in by_line.items()} == {
        "U-NOSERIAL": "SERIAL_REQUIRED",
        "U-OLD": "EXPIRED_LOT",
        "U-NOLOT": "LOT_REQUIRED",
    }
    # The units left the shelf all the same: each usage is recorded and its exception says so.
    usage_ids = {e.source_usage_id: e.usage_id for e in recorded}
    assert all(not e.held and e.usage_id == usage_ids[k] for k, e in by_line.items())
    assert "expired on 2024-04-30" in by_line["U-OLD"].explanation


async def test_unknown_location_is_held_until_the_location_arrives(usage):
    site = usage.site
    await usage.master_data(
        [r for r in scenario.master_data(site) if not hasattr(r, "location_type")]
    )
    await usage.send_json(json_usage(site, "U-1", item_id=scenario.GUIDEWIRE, lot="G1"))
    (raised,) = await usage.wait_events(RAISED, 1)
    assert raised.type == "UNKNOWN_LOCATION"
    await usage.master_data([scenario.cath_lab(site)])
    await usage.wait_events(RECORDED, 1)
    (cleared,) = await usage.wait_events(CLEARED, 1)
    assert cleared.resolution == "location_added"


async def test_a_supply_chain_analyst_dismisses_a_held_usage(usage):
    site = usage.site
    await usage.master_data()
    await usage.send_json(json_usage(site, "U-X", item_id="NOT-IN-ITEM-MASTER"))
    (raised,) = await usage.wait_events(RAISED, 1)
    path = f"/v1/exceptions/{raised.exception_id}/dismiss"
    status, _ = await usage.post(path, {"reason": "test charge"}, headers={})
    assert status == 401
    status, _ = await usage.post(path, {})
    assert status == 422
    # An MRN typed into the reason would leave the service in the cleared event: refused,
    # without echoing it.
    status, refused = await usage.post(path, {"reason": f"wrong patient ({MRN}), re-entered"})
    assert status == 422 and refused["error"]["code"] == "patient_identifier"
    assert MRN not in json.dumps(refused)
    status, body = await usage.post(path, {"reason": "entered in error at the bedside"})
    assert status == 200 and body["changed"]
    (cleared,) = await usage.wait_events(CLEARED, 1)
    assert (cleared.resolution, cleared.cleared_by) == ("dismissed", "ana")
    assert query(usage.db, "SELECT status FROM usages WHERE source_usage_id='U-X'") == [
        ("dismissed",)
    ]
