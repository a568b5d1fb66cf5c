"""Scenario 10: lot L1 is recalled; one query answers every case, site, location, time and patient
token that received it, with the units of L1 still on shelves from replenishment, over HTTP,
NATS and the CLI."""

from __future__ import annotations

import asyncio
import json
import sys

import msgspec
import pytest
import scenario_data as scenario
from helpers import eventually, new_site, publish, running, settings_for
from usage_documents import FUTURE, USED_AT, Dft, Ft1, json_usage, json_void
from usage_world import RAISED, RECORDED, VOIDED, usage_world

from sinew.contracts import CATALOGUE
from sinew.contracts.common import Quantity
from sinew.contracts.replenishment import CountedLine, StockCount
from sinew.services.replenishment.service import DEFINITION as REPLENISHMENT

pytestmark = pytest.mark.asyncio
encode = msgspec.json.Encoder(decimal_format="string").encode

# A position as replenishment's positions endpoint answers it.
SHELF = {
    "location_id": "CATH-LAB-1",
    "item_id": scenario.STENT,
    "lot": "L1",
    "on_hand": {"value": "2", "uom": "EA"},
    "discrepancy": False,
}


async def used_lot_l1(usage) -> None:
    site = usage.site
    await usage.master_data()
    stent = dict(gtin=scenario.STENT_GTIN, expiry=FUTURE)
    await usage.send_json(json_usage(site, "U-A", case_id="CASE-A", lot="L1", serial="S1", **stent))
    udi = scenario.gs1_barcode(scenario.STENT_GTIN, lot="L1", serial="S2", expiry=FUTURE)
    await usage.send_hl7(Dft("C-B", [Ft1("U-B", udi=udi)], case_id="CASE-B", mrn="MRN-SYNTH-0002"))
    await usage.send_json(
        json_usage(
            site, "U-C", case_id="CASE-C", mrn="MRN-SYNTH-0003", lot="L1", serial="S3", **stent
        )
    )
    await usage.send_json(
        json_usage(
            site, "U-D", case_id="CASE-D", mrn="MRN-SYNTH-0004", lot="L2", serial="S4", **stent
        )
    )
    await usage.wait_events(RECORDED, 4)
    await usage.send_void(json_void(site, "U-C", case_id="CASE-C"))
    await usage.wait_events(VOIDED, 1)
    # Serial S1 documented again in another case: held, but that patient may have it too.
    await usage.send_json(
        json_usage(
            site, "U-E", case_id="CASE-E", mrn="MRN-SYNTH-0005", lot="L1", serial="S1", **stent
        )
    )
    await usage.wait_events(RAISED, 1)


async def replenishment_answering(usage, positions: list[dict], asked: list[dict]):
    """Stands in for the replenishment service's positions endpoint."""

    async def answer(message) -> None:
        asked.append(json.loads(message.data))
        await message.respond(json.dumps({"items": positions}).encode())

    return await usage.nc.subscribe(f"sinew.api.{usage.site}.replenishment.positions", cb=answer)


async def test_recall_of_a_lot_names_every_case_patient_and_shelf(usage):
    await used_lot_l1(usage)
    asked: list[dict] = []
    await replenishment_answering(usage, [SHELF], asked)

    status, answer = await usage.get("/v1/recall", lot="L1")
    assert status == 200
    assert answer["cases"] == ["CASE-A", "CASE-B", "CASE-E"]
    assert answer["sites"] == [usage.site] and answer["locations"] == ["CATH-LAB-1"]
    assert len(answer["patient_tokens"]) == 3
    statuses = {u["case_id"]: u["status"] for u in answer["uses"]}
    assert statuses == {
        "CASE-A": "recorded",
        "CASE-B": "recorded",
        "CASE-C": "voided",
        "CASE-E": "held",
    }
    assert all(u["used_at"] and u["patient_token"].startswith("pt-") for u in answer["uses"])
    assert answer["on_hand"]["available"] and answer["on_hand"]["positions"] == [SHELF]
    assert asked == [{"item_id": scenario.STENT, "lot": "L1"}]

    over_nats = await usage.nc.request(
        f"sinew.api.{usage.site}.usage.recall", json.dumps({"lot": "L1"}).encode(), timeout=10
    )
    assert json.loads(over_nats.data)["cases"] == answer["cases"]

    _, by_serial = await usage.get("/v1/recall", serial="S2")
    assert by_serial["cases"] == ["CASE-B"]
    _, by_gtin = await usage.get("/v1/recall", gtin=scenario.STENT_GTIN)
    assert by_gtin["cases"] == ["CASE-A", "CASE-B", "CASE-D", "CASE-E"]
    status, bad = await usage.get("/v1/recall", gtin="12")
    assert status == 400 and bad["error"]["code"] == "bad_gtin"


async def test_recall_answers_without_replenishment_and_says_on_hand_is_unavailable(usage):
    await used_lot_l1(usage)
    status, answer = await usage.get("/v1/recall", lot="L1")
    assert status == 200 and answer["cases"] == ["CASE-A", "CASE-B", "CASE-E"]
    assert answer["on_hand"] == {
        "available": False,
        "reason": "on-hand unavailable: replenishment is not running at this site",
    }


async def test_sinew_recall_on_the_command_line(usage, tmp_path):
    await used_lot_l1(usage)
    await replenishment_answering(usage, [SHELF], [])
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sinew.cli.main",
        "recall",
        "L1",
        "--site",
        usage.site,
        "--nats-url",
        usage.settings.nats_url,
        "--data",
        str(tmp_path / "cli"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert "3 case(s), 3 patient(s), locations: CATH-LAB-1" in text
    assert "CASE-A" in text and "CASE-E" in text
    assert "CATH-LAB-1" in text and "lot L1" in text and "2 EA" in text


async def test_recall_reports_what_the_replenishment_service_still_has_on_shelves(
    nats_server, tmp_path
):
    """Scenario 10 across both services: the warehouse counted lot L1, two of its units were
    used; the recall names both cases and the one unit of L1 left in CATH-LAB-1."""
    site = new_site()
    stock = settings_for("replenishment", site, nats_server, tmp_path)
    async with (
        usage_world(nats_server, tmp_path, site) as usage,
        running(REPLENISHMENT, stock, CATALOGUE),
    ):
        await usage.master_data()
        count_ = StockCount(
            site=site,
            count_id="COUNT-1",
            location_id=scenario.CATH_LAB,
            lines=(
                CountedLine(item_id=scenario.STENT, lot="L1", quantity=Quantity(value=3, uom="EA")),
                CountedLine(item_id=scenario.STENT, lot="L2", quantity=Quantity(value=1, uom="EA")),
            ),
            counted_at=USED_AT,
        )
        counted = CATALOGUE.channel("ingress.inventory.counted.v1")
        await publish(usage.js, counted.subject(site), encode(count_), site=site)
        stent = dict(gtin=scenario.STENT_GTIN, lot="L1", expiry=FUTURE)
        await usage.send_json(json_usage(site, "U-1", case_id="CASE-1", serial="S1", **stent))
        await usage.send_json(
            json_usage(site, "U-2", case_id="CASE-2", mrn="MRN-SYNTH-0002", serial="S2", **stent)
        )
        await usage.wait_events(RECORDED, 2)
        answer: dict = {}

        async def one_left() -> bool:
            answer.update((await usage.get("/v1/recall", lot="L1"))[1])
            positions = answer["on_hand"].get("positions") or [{}]
            return positions[0].get("on_hand", {}).get("value") == "1"

        await eventually(one_left, what="replenishment to count L1 down to 1")
    assert answer["cases"] == ["CASE-1", "CASE-2"] and len(answer["patient_tokens"]) == 2
    (position,) = answer["on_hand"]["positions"]
    assert (position["location_id"], position["item_id"], position["lot"]) == (
        scenario.CATH_LAB,
        scenario.STENT,
        "L1",
    )
