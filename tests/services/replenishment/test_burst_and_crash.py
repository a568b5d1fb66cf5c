"""The quality bar: a thousand usages for one location at once, some sent twice, the service
killed in the middle and restarted. The stock ends exactly where the usages say, and the
warehouse and procurement hear of one signal: raised once, updated, never raised again."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import uuid
from collections import Counter
from decimal import Decimal

import pytest
from helpers import ServiceProcess, count, eventually, new_site, provisioned, query, settings_for
from replenishment_feed import connect, published, send, usage, void
from replenishment_feed import count as stock_count
from scenario_data import CATH_LAB, STENT, cath_lab, changed, publish_master_data, stent

from sinew.contracts import CATALOGUE
from sinew.contracts.envelope import MSG_ID
from sinew.contracts.items import ParLevel

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

USAGES = 1000
PAR = ParLevel(item_id=STENT, par_level=Decimal(1200), reorder_point=Decimal(500))
OPENING = {"L1": 600, "L2": 400}


def run_replenishment(settings, faults: str = "") -> ServiceProcess:
    return ServiceProcess("sinew.cli.main", settings, args=["run", "replenishment"], faults=faults)


async def test_a_burst_of_usages_through_a_crash_lands_exactly_once(nats_server, tmp_path):
    site = new_site()
    settings = settings_for("replenishment", site, nats_server, tmp_path)
    db = settings.database_path
    await provisioned(nats_server, CATALOGUE, site, ["replenishment"])
    nc, js = await connect(nats_server)

    # Opening stock: the location's master data, then a count of 1,000 stents in two lots.
    setup = run_replenishment(settings).start()
    location = changed(cath_lab(site), par_levels=(PAR,))
    await publish_master_data(js, site, [stent(site), location])
    lines = [(STENT, quantity, lot, "EA") for lot, quantity in OPENING.items()]
    await send(js, stock_count(site, "CC-OPENING", CATH_LAB, *lines))
    await eventually(lambda: count(db, "stock_positions") == 2, what="opening count applied")
    assert setup.stop() == 0

    # The burst: every usage, some sent again under the same event id (dropped by JetStream's
    # duplicate window, or after it, stored twice and dropped by the service), some republished
    # under a new event id; and voids of a few of them, racing their usages.
    rng = random.Random(4)
    usages = [
        usage(site, f"U-{n:04d}", CATH_LAB, STENT, lot="L1" if n % 2 else "L2")
        for n in range(USAGES)
    ]
    event_ids = {u.usage_id: str(uuid.uuid4()) for u in usages}
    voided = rng.sample(usages, 25)
    sends = [send(js, u, event_id=event_ids[u.usage_id]) for u in usages]
    for again in rng.sample(usages, 100):
        sends.append(send(js, again, event_id=event_ids[again.usage_id]))
    for again in rng.sample(usages, 50):
        sends.append(
            send(js, again, event_id=event_ids[again.usage_id], **{MSG_ID: str(uuid.uuid4())})
        )
    for again in rng.sample(usages, 50):
        sends.append(send(js, again))
    for cancelled in voided:
        sends.append(send(js, void(cancelled)))
        sends.append(send(js, void(cancelled)))
    rng.shuffle(sends)
    await asyncio.gather(*sends)

    # Killed right after its third commit, before acknowledging what it committed.
    crashed = run_replenishment(settings, faults="after_commit:2").start()
    assert await asyncio.to_thread(crashed.wait_exit, 60) == -signal.SIGKILL
    taken = count(db, "usages", "recorded_event_id IS NOT NULL")
    assert 0 < taken < USAGES, "the kill should come in the middle of the burst"

    restarted = run_replenishment(settings).start()
    try:
        await eventually(
            lambda: (
                count(db, "usages", "recorded_event_id IS NOT NULL") == USAGES
                and count(db, "usages", "voided_event_id IS NOT NULL") == len(voided)
                and count(db, "sinew_outbox", "published_at IS NULL") == 0
            ),
            timeout=90,
            interval=0.2,
            what="every usage and void applied and every event published",
        )
    finally:
        restarted.stop()

    # The model: each usage takes one from its lot once; each voided usage gives it back.
    expected = dict(OPENING)
    for taken_usage in usages:
        if taken_usage not in voided:
            expected[taken_usage.lot] -= 1
    on_hand = {
        lot: Decimal(value)
        for lot, value in query(
            db, "SELECT lot, on_hand FROM stock_positions WHERE item_id=?", (STENT,)
        )
    }
    assert on_hand == {lot: Decimal(v) for lot, v in expected.items()}
    total = sum(expected.values())
    assert total <= PAR.reorder_point
    # A void handled before its usage leaves that usage nothing to take: no movement either way.
    movements = Counter(kind for (kind,) in query(db, "SELECT kind FROM stock_movements"))
    assert movements["count"] == 2
    assert movements["usage"] - movements["usage_voided"] == USAGES - len(voided)

    (open_signal,) = query(
        db, "SELECT signal_id, quantity FROM replenishment_signals WHERE status='open'"
    )
    assert query(db, "SELECT count(*) FROM replenishment_signals") == [(1,)]
    assert Decimal(open_signal[1]) == PAR.par_level - total

    # What the warehouse and procurement heard.
    raised = await published(js, site, "replenishment.signal.raised.v1")
    updated = await published(js, site, "replenishment.signal.updated.v1")
    closed = await published(js, site, "replenishment.signal.closed.v1")
    assert len(raised) == 1, "a second signal was raised"
    assert closed == []
    assert {e["signal_id"] for e in raised + updated} == {open_signal[0]}
    quantities = [Decimal(e["quantity"]["value"]) for e in raised + updated]
    assert all(a != b for a, b in itertools.pairwise(quantities)), (
        "an update repeated the quantity it had: an event published twice"
    )
    assert quantities[-1] == PAR.par_level - total
    assert Decimal(updated[-1]["on_hand"]["value"]) == total
    await nc.close()
