"""Stock and replenishment signals through the public interfaces: events on the subjects the
real senders publish to, the HTTP API a materials manager reads, the events the warehouse and
procurement receive. Against a real nats-server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal

import aiohttp
import msgspec
import pytest
from helpers import eventually, new_site, query, running
from replenishment_feed import (
    Clerk,
    adjustment,
    connect,
    count,
    http_settings,
    published,
    published_at_least,
    receipt,
    send,
    usage,
    void,
)
from scenario_data import (
    CATH_LAB,
    GUIDEWIRE,
    ICD,
    STENT,
    cath_lab,
    changed,
    consigned_icd,
    guidewire,
    publish_master_data,
    stent,
)

from sinew.common.actor import Wiring
from sinew.common.rebuild import rebuild
from sinew.contracts import CATALOGUE
from sinew.contracts.items import ParLevel
from sinew.services.replenishment.service import DEFINITION

pytestmark = pytest.mark.asyncio

RAISED = "replenishment.signal.raised.v1"
UPDATED = "replenishment.signal.updated.v1"
CLOSED = "replenishment.signal.closed.v1"
ADJUSTED = "replenishment.inventory.adjusted.v1"


@dataclass
class Site:
    code: str
    js: object
    clerk: Clerk
    nc: object
    settings: object


@pytest.fixture
async def north(nats_server, tmp_path):
    """A site whose item master holds the scenarios' stent, guidewire and consigned ICD, and
    CATH-LAB-1 with par 4 / reorder point 2 for the stent."""
    code = new_site()
    settings, base = http_settings(code, nats_server, tmp_path)
    nc, js = await connect(nats_server)
    async with (
        running(DEFINITION, settings, CATALOGUE),
        aiohttp.ClientSession(base) as http,
    ):
        await publish_master_data(
            js, code, [stent(code), guidewire(code), consigned_icd(code), cath_lab(code)]
        )

        async def par_level_known() -> bool:
            response = await http.get(f"/v1/locations/{CATH_LAB}/positions")
            if response.status != 200:
                return False
            rows = (await response.json())["items"]
            return any(r["item_id"] == STENT and r["par_level"] for r in rows)

        await eventually(par_level_known, what="CATH-LAB-1's par level from the item master")
        yield Site(code, js, Clerk(http), nc, settings)
    await nc.close()


async def open_signals(clerk: Clerk) -> list[dict]:
    return await clerk.items("/v1/signals?status=open")


async def test_scenario_9_usages_arriving_together_raise_one_signal_up_to_par(north):
    site, js, clerk = north.code, north.js, north.clerk
    await send(js, receipt(site, "R-OPENING", CATH_LAB, STENT, 3))
    await clerk.wait_on_hand(CATH_LAB, STENT, 3)
    assert await open_signals(clerk) == []

    # Two usages arrive together; the EHR feed redelivers one under its own event id and the
    # usage service republishes the other under a new one.
    first, second = usage(site, "U-1", CATH_LAB, STENT), usage(site, "U-2", CATH_LAB, STENT)
    first_event = await send(js, first)
    await asyncio.gather(send(js, second), send(js, first, event_id=first_event), send(js, second))
    await clerk.wait_on_hand(CATH_LAB, STENT, 1)

    (signal,) = await open_signals(clerk)
    assert signal["location_id"] == CATH_LAB and signal["item_id"] == STENT
    assert signal["quantity"] == {"value": "3", "uom": "EA"}
    assert signal["on_hand"]["value"] == "1"
    below = await clerk.items("/v1/below-par")
    assert [(b["item_id"], b["shortfall"]["value"], b["signal_id"]) for b in below] == [
        (STENT, "3", signal["signal_id"])
    ]

    async def last_word_is_three() -> bool:
        raised, updated = await published(js, site, RAISED), await published(js, site, UPDATED)
        latest = updated[-1] if updated else raised[-1] if raised else None
        return latest is not None and latest["quantity"]["value"] == "3"

    await eventually(last_word_is_three, what="the warehouse told to bring 3")
    raised = await published(js, site, RAISED)
    assert len(raised) == 1, "one signal however many usages arrived"
    assert raised[0]["signal_id"] == signal["signal_id"]
    assert raised[0]["par_level"]["value"] == "4" and raised[0]["reorder_point"]["value"] == "2"
    for update in await published(js, site, UPDATED):
        assert update["signal_id"] == signal["signal_id"]

    # Stock arrives: back above the reorder point, the signal closes.
    await send(js, receipt(site, "R-REFILL", CATH_LAB, STENT, 3, lot="L2"))
    await clerk.wait_on_hand(CATH_LAB, STENT, 4)
    assert await open_signals(clerk) == []
    assert await clerk.items("/v1/below-par") == []

    (closing,) = await published_at_least(js, site, CLOSED, 1)
    assert closing["signal_id"] == signal["signal_id"]
    assert closing["reason"] == "stock_received"
    assert closing["receipt_id"] == "R-REFILL"
    assert closing["on_hand"]["value"] == "4"
    shown = await clerk.get(f"/v1/signals/{signal['signal_id']}")
    assert shown["status"] == "closed" and shown["close_reason"] == "stock_received"


async def test_a_void_gives_back_what_its_usage_took_exactly_once(north):
    site, js, clerk = north.code, north.js, north.clerk
    receipt_event = await send(js, receipt(site, "R-1", CATH_LAB, STENT, 3))
    used = usage(site, "U-9", CATH_LAB, STENT)
    usage_event = await send(js, used)
    await clerk.wait_on_hand(CATH_LAB, STENT, 2)
    assert len(await open_signals(clerk)) == 1

    voided = void(used)
    void_event = await send(js, voided)
    await send(js, voided, event_id=void_event)  # the same event again
    await send(js, voided)  # the same void under another event id
    await clerk.wait_on_hand(CATH_LAB, STENT, 3)
    # A later usage elsewhere on the same stream: once it shows, both voids were handled.
    await send(js, usage(site, "U-MARK", "STOREROOM-2", STENT))
    await clerk.wait_on_hand("STOREROOM-2", STENT, -1)
    assert await clerk.on_hand(CATH_LAB, STENT) == 3

    history = await clerk.items(f"/v1/locations/{CATH_LAB}/history")
    assert [
        (h["kind"], h["reference"], h["change"]["value"], h["after"]["value"]) for h in history
    ] == [
        ("receipt", "R-1", "3", "3"),
        ("usage", "U-9", "-1", "2"),
        ("usage_voided", "U-9", "1", "3"),
    ]
    assert [h["source_event_id"] for h in history] == [receipt_event, usage_event, void_event]
    assert history[2]["reason"] == "charted in error"
    assert await open_signals(clerk) == []
    (closing,) = await published_at_least(js, site, CLOSED, 1)
    assert closing["reason"] == "stock_adjusted"


async def test_a_count_sets_on_hand_and_an_adjustment_moves_it_once(north):
    site, js, clerk = north.code, north.js, north.clerk
    await send(js, receipt(site, "R-1", CATH_LAB, STENT, 3))
    await clerk.wait_on_hand(CATH_LAB, STENT, 3)

    cycle_count = count(site, "CC-1", CATH_LAB, (STENT, 1, "L1", "EA"))
    await send(js, cycle_count)
    await send(js, cycle_count)  # resent by the warehouse under a new event id
    await clerk.wait_on_hand(CATH_LAB, STENT, 1)
    (signal,) = await open_signals(clerk)
    assert signal["quantity"]["value"] == "3"

    found = adjustment(site, "ADJ-1", CATH_LAB, STENT, 5, "found")
    await send(js, found)
    await send(js, found)  # the same adjustment twice moves stock once
    await clerk.wait_on_hand(CATH_LAB, STENT, 6)
    # A later count elsewhere on the same stream: once it shows, both adjustments were handled.
    await send(js, count(site, "CC-MARK", "STOREROOM-2", (STENT, 1, "L1", "EA")))
    await clerk.wait_on_hand("STOREROOM-2", STENT, 1)
    assert await clerk.on_hand(CATH_LAB, STENT) == 6
    assert await open_signals(clerk) == []

    counted, adjusted = await published_at_least(js, site, ADJUSTED, 2, CATH_LAB)
    assert counted["source"] == "count" and counted["reference"] == "CC-1"
    assert counted["lines"] == [
        {
            "item_id": STENT,
            "before": {"value": "3", "uom": "EA"},
            "change": {"value": "-2", "uom": "EA"},
            "after": {"value": "1", "uom": "EA"},
            "reason": "cycle_count",
            "lot": "L1",
        }
    ]
    assert adjusted["source"] == "adjustment" and adjusted["reference"] == "ADJ-1"
    assert adjusted["lines"][0]["reason"] == "found"
    assert adjusted["lines"][0]["after"]["value"] == "6"
    (closing,) = await published_at_least(js, site, CLOSED, 1)
    assert closing["reason"] == "stock_adjusted"


async def test_a_count_line_without_lot_is_everything_of_the_item_on_the_shelf(north):
    site, js, clerk = north.code, north.js, north.clerk
    await send(js, receipt(site, "R-1", CATH_LAB, STENT, 2, lot="L1"))
    await send(js, receipt(site, "R-2", CATH_LAB, STENT, 2, lot="L2"))
    await clerk.wait_on_hand(CATH_LAB, STENT, 4)
    await send(js, count(site, "CC-2", CATH_LAB, (STENT, 3, None, "EA")))
    await clerk.wait_on_hand(CATH_LAB, STENT, 3)
    lots = await clerk.items(f"/v1/positions?location_id={CATH_LAB}&item_id={STENT}")
    assert [(p["lot"], p["on_hand"]["value"]) for p in lots] == [
        (None, "3"),
        ("L1", "0"),
        ("L2", "0"),
    ]


async def test_usage_before_its_receipt_shows_as_a_discrepancy_not_hidden(north):
    site, js, clerk = north.code, north.js, north.clerk
    await send(js, receipt(site, "R-1", CATH_LAB, STENT, 3, lot="L1"))
    await clerk.wait_on_hand(CATH_LAB, STENT, 3)
    early = await send(js, usage(site, "U-EARLY", CATH_LAB, STENT, 2, lot="L9"))
    await clerk.wait_on_hand(CATH_LAB, STENT, 1)

    (discrepancy,) = await clerk.items("/v1/discrepancies")
    assert (discrepancy["location_id"], discrepancy["item_id"], discrepancy["lot"]) == (
        CATH_LAB,
        STENT,
        "L9",
    )
    assert discrepancy["on_hand"] == {"value": "-2", "uom": "EA"}
    assert discrepancy["discrepancy"] is True
    assert discrepancy["since"]["kind"] == "usage"
    assert discrepancy["since"]["reference"] == "U-EARLY"
    assert discrepancy["since"]["source_event_id"] == early
    (row,) = [
        r for r in await clerk.items(f"/v1/locations/{CATH_LAB}/positions") if r["item_id"] == STENT
    ]
    assert row["discrepancy"] is True
    assert {lot["lot"]: lot["on_hand"]["value"] for lot in row["lots"]} == {"L1": "3", "L9": "-2"}

    await send(js, receipt(site, "R-LATE", CATH_LAB, STENT, 2, lot="L9"))
    await clerk.wait_on_hand(CATH_LAB, STENT, 3)
    assert await clerk.items("/v1/discrepancies") == []


async def test_stock_is_held_in_the_base_unit_whatever_unit_it_arrives_in(north):
    site, js, clerk = north.code, north.js, north.clerk
    # Guidewires come in boxes of 10; the warehouse counts boxes, receiving books a box.
    await send(js, count(site, "CC-GW", CATH_LAB, (GUIDEWIRE, 2, "GW-1", "BX")))
    await clerk.wait_on_hand(CATH_LAB, GUIDEWIRE, 20)
    await send(js, receipt(site, "R-GW", CATH_LAB, GUIDEWIRE, 1, lot="GW-1", uom="BX"))
    await clerk.wait_on_hand(CATH_LAB, GUIDEWIRE, 30)
    (position,) = await clerk.items(f"/v1/positions?item_id={GUIDEWIRE}")
    assert position["on_hand"] == {"value": "30", "uom": "EA"}


async def test_a_par_level_change_raises_then_a_par_taken_away_closes(north):
    site, js, clerk = north.code, north.js, north.clerk
    await send(js, receipt(site, "R-1", CATH_LAB, STENT, 3))
    await clerk.wait_on_hand(CATH_LAB, STENT, 3)
    assert await open_signals(clerk) == []

    bigger = ParLevel(item_id=STENT, par_level=Decimal(10), reorder_point=Decimal(5))
    await publish_master_data(js, site, [changed(cath_lab(site), version=2, par_levels=(bigger,))])
    await eventually(lambda: open_signals(clerk), what="signal raised by the new par level")
    (signal,) = await open_signals(clerk)
    assert signal["quantity"]["value"] == "7"
    assert signal["par_level"]["value"] == "10"

    await publish_master_data(js, site, [changed(cath_lab(site), version=3, par_levels=())])

    async def none_open() -> bool:
        return await open_signals(clerk) == []

    await eventually(none_open, what="signal closed when the par level went")
    (closing,) = await published_at_least(js, site, CLOSED, 1)
    assert closing["reason"] == "par_changed"


async def test_a_bill_only_usage_leaves_stock_alone(north):
    site, js, clerk = north.code, north.js, north.clerk
    await send(js, receipt(site, "R-1", CATH_LAB, STENT, 3))
    await send(js, usage(site, "U-ICD", CATH_LAB, ICD, lot="ICD-L1", bill_only=True))
    await send(js, usage(site, "U-STENT", CATH_LAB, STENT))
    await clerk.wait_on_hand(CATH_LAB, STENT, 2)
    positions = await clerk.items(f"/v1/positions?location_id={CATH_LAB}")
    assert [p["item_id"] for p in positions] == [STENT]
    kinds = [h["reference"] for h in await clerk.items(f"/v1/locations/{CATH_LAB}/history")]
    assert kinds == ["R-1", "U-STENT"]


async def test_the_read_api_pages_filters_and_refuses_nonsense(north):
    site, js, clerk = north.code, north.js, north.clerk
    for n in range(3):
        await send(js, receipt(site, f"R-{n}", CATH_LAB, STENT, 2, lot=f"L{n}"))
    await send(js, receipt(site, "R-S2", "STOREROOM-2", STENT, 5, lot="L0"))
    await clerk.wait_on_hand(CATH_LAB, STENT, 6)
    await clerk.wait_on_hand("STOREROOM-2", STENT, 5)

    first = await clerk.get("/v1/positions?limit=2")
    assert first["total"] == 4 and len(first["items"]) == 2 and first["next_offset"] == 2
    rest = await clerk.get("/v1/positions?limit=2&offset=2")
    assert len(rest["items"]) == 2
    by_lot = await clerk.items("/v1/positions?lot=L0")
    assert sorted(p["location_id"] for p in by_lot) == [CATH_LAB, "STOREROOM-2"]
    assert await clerk.items(f"/v1/positions?location_id=STOREROOM-2&item_id={GUIDEWIRE}") == []

    (row,) = await clerk.items(f"/v1/locations/{CATH_LAB}/positions")
    assert row["on_hand"] == {"value": "6", "uom": "EA"}
    assert row["par_level"] == {"value": "4", "uom": "EA"}
    assert row["needs_replenishment"] is False and row["open_signal"] is None
    assert len(row["lots"]) == 3

    history = await clerk.get(f"/v1/locations/{CATH_LAB}/history?limit=1&offset=1")
    assert history["total"] == 3 and history["items"][0]["reference"] == "R-1"

    missing = await clerk.get("/v1/locations/NOWHERE/positions", status=404)
    assert missing["error"]["code"] == "unknown_location"
    await clerk.get("/v1/locations/NOWHERE/history", status=404)
    bad = await clerk.get("/v1/signals?status=maybe", status=400)
    assert bad["error"]["code"] == "bad_query"
    await clerk.get("/v1/signals/RS-NONE", status=404)
    await clerk.get("/v1/positions?limit=0", status=400)

    # A recall asks over NATS where lot L0 still sits.
    reply = await north.nc.request(
        f"sinew.api.{site}.replenishment.positions", b'{"lot": "L0"}', timeout=5
    )
    found = msgspec.json.decode(reply.data)["items"]
    assert {(p["location_id"], p["on_hand"]["value"]) for p in found} == {
        (CATH_LAB, "2"),
        ("STOREROOM-2", "5"),
    }


REPLENISHMENT_STATE = [
    "SELECT * FROM stock_positions ORDER BY location_id, item_id, lot",
    "SELECT * FROM stock_levels ORDER BY location_id, item_id",
    "SELECT * FROM stock_movements ORDER BY seq",
    "SELECT * FROM usages ORDER BY usage_id",
    "SELECT * FROM replenishment_signals ORDER BY signal_id",
    "SELECT event_id, subject, payload FROM sinew_outbox ORDER BY event_id",
]


async def test_rebuilt_from_history_the_stock_and_signals_are_the_same(north, tmp_path):
    site, js, clerk = north.code, north.js, north.clerk
    used = usage(site, "U-1", CATH_LAB, STENT, 2)
    steps = [
        (receipt(site, "R-1", CATH_LAB, STENT, 3), 3),
        (used, 1),
        (usage(site, "U-2", CATH_LAB, STENT, lot="L7"), 0),
        (void(used), 2),
        (count(site, "CC-1", CATH_LAB, (STENT, 1, "L1", "EA")), 0),
        (adjustment(site, "ADJ-1", CATH_LAB, STENT, -1, "damaged"), -1),
        (receipt(site, "R-2", CATH_LAB, STENT, 4, lot="L7"), 3),
    ]
    for message, on_hand in steps:
        await send(js, message)
        await clerk.wait_on_hand(CATH_LAB, STENT, on_hand)
    await published_at_least(js, site, CLOSED, 1)
    live_db = north.settings.database_path
    live = [query(live_db, sql) for sql in REPLENISHMENT_STATE]

    target = tmp_path / "rebuilt" / "replenishment.sqlite"
    wiring = Wiring("replenishment", site, CATALOGUE, DEFINITION.handlers)
    await rebuild(js, wiring, target, DEFINITION.migrations)
    assert [query(target, sql) for sql in REPLENISHMENT_STATE] == live


async def test_a_unit_the_item_does_not_have_is_a_dead_letter_not_a_guess(north):
    site, js, clerk = north.code, north.js, north.clerk
    await send(js, count(site, "CC-PK", CATH_LAB, (STENT, 2, "L1", "PK")))

    async def dead_letters() -> list[dict]:
        return await clerk.items("/v1/dead-letters")

    await eventually(dead_letters, what="the count dead-lettered")
    (dead,) = await dead_letters()
    assert dead["cause"] == "invalid"
    assert "has no unit of measure PK" in dead["reason"]
    assert await clerk.on_hand(CATH_LAB, STENT) is None
