"""Receiving killed mid-flow, right after committing a batch of dock scans and before
acknowledging them, loses nothing and receives nothing twice; and its state can be rebuilt from
stream history."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime

import msgspec
import nats
import pytest
import scenario_data as scenario
from helpers import (
    ServiceProcess,
    count,
    eventually,
    new_site,
    provisioned,
    publish,
    query,
    settings_for,
    subject_messages,
)
from receiving_world import FUTURE, PAST, purchase_order

from sinew.common.actor import Wiring
from sinew.common.rebuild import rebuild
from sinew.contracts import CATALOGUE
from sinew.contracts.envelope import CE_ID
from sinew.contracts.receiving import DockScan, GoodsReceived
from sinew.services.receiving.service import DEFINITION

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
_encoder = msgspec.json.Encoder(decimal_format="string")
SCANS = CATALOGUE.channel("ingress.dock-scan.scanned.v1")
GOODS_RECEIVED = CATALOGUE.channel("receiving.goods.received.v1")
RAISED = CATALOGUE.channel("receiving.exception.raised.v1")
STATE = [
    "SELECT * FROM purchase_orders ORDER BY po_number",
    "SELECT * FROM receipts ORDER BY receipt_id",
    "SELECT * FROM receipt_lines ORDER BY receipt_id, ordinal",
    "SELECT * FROM receipt_exceptions ORDER BY exception_id",
    "SELECT event_id, subject, payload FROM sinew_outbox ORDER BY event_id",
]


async def scan_stents(js, site: str, po: str, serials: range, expiry=FUTURE) -> None:
    for n in serials:
        barcode = scenario.gs1_barcode(scenario.STENT_GTIN, lot="LK", serial=f"K{n}", expiry=expiry)
        scan = DockScan(
            site=site,
            scan_id=f"SCAN-{n}",
            barcode=barcode,
            location_id=scenario.CATH_LAB,
            scanned_at=datetime.now(UTC),
            po_number=po,
        )
        await publish(js, SCANS.subject(site), _encoder.encode(scan), site=site)


async def test_killed_between_commit_and_ack_receives_every_scan_once(nats_server, tmp_path):
    site = new_site()
    settings = settings_for("receiving", site, nats_server, tmp_path)
    db = settings.database_path
    await provisioned(nats_server, CATALOGUE, site, ["receiving"])
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    service = ServiceProcess("sinew.cli.main", settings, args=["run", "receiving"])
    try:
        await scenario.publish_master_data(js, site)
        po = purchase_order(site, "PO-K", (scenario.STENT, 60, "EA"))
        channel = CATALOGUE.channel("procurement.purchase-order.approved.v1")
        await publish(js, channel.subject(site), _encoder.encode(po), site=site)
        service.start()
        await eventually(
            lambda: count(db, "purchase_orders") == 1 and count(db, "md_records") >= 8,
            timeout=30,
            what="master data and the PO taken in",
        )
        assert await asyncio.to_thread(service.stop) == 0

        await scan_stents(js, site, "PO-K", range(30))
        await scan_stents(js, site, "PO-K", range(100, 103), expiry=PAST)
        # Dies right after it commits the first batch of scans, before acknowledging any.
        service.start(faults="after_commit:0")
        assert await asyncio.to_thread(service.wait_exit, 60) == -signal.SIGKILL
        assert count(db, "receipts") > 0, "the crash should come after a commit"
        await scan_stents(js, site, "PO-K", range(30, 60))
        service.start(faults="")

        await eventually(
            lambda: count(db, "receipts") == 60 and count(db, "receipt_exceptions") == 3,
            timeout=60,
            what="every scan handled",
        )
        assert query(db, "SELECT count(DISTINCT serial) FROM receipt_lines") == [(60,)]
        assert query(db, "SELECT DISTINCT type FROM receipt_exceptions") == [("EXPIRED_LOT",)]
        assert query(
            db, "SELECT count(*) FROM sinew_inbox WHERE subject=?", (SCANS.subject(site),)
        ) == [(63,)]
        assert "Traceback" not in service.log()

        async def published(channel, n):
            messages = await subject_messages(js, "RECEIVING", channel.subject(site))
            return messages if len(messages) >= n else None

        await eventually(lambda: published(GOODS_RECEIVED, 60), what="60 goods received")
        receipts = await published(GOODS_RECEIVED, 60)
        assert len(receipts) == 60, "a goods received event was published twice"
        assert len({m.headers[CE_ID] for m in receipts}) == 60
        decoded = [msgspec.json.decode(m.data, type=GoodsReceived) for m in receipts]
        assert len({r.receipt_id for r in decoded}) == 60
        assert sum(r.lines[0].base_quantity.value for r in decoded) == 60
        assert len(await published(RAISED, 3)) == 3

        # Stream history alone gives the same receiving state, event for event.
        assert await asyncio.to_thread(service.stop) == 0
        target = tmp_path / "rebuilt" / "receiving.sqlite"
        wiring = Wiring("receiving", site, CATALOGUE, DEFINITION.handlers, DEFINITION.parsers)
        await rebuild(js, wiring, target, DEFINITION.migrations)
        for sql in STATE:
            assert query(target, sql) == query(db, sql), sql
    finally:
        service.stop()
        await nc.close()
