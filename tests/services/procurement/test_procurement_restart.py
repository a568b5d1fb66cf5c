"""Procurement killed mid-flow (SIGKILL after a commit, before its acks and before its outbox
went out) and started again: every signal and bill-only request still makes exactly one
requisition and one purchase order, and every event is published exactly once."""

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
from procurement_world import NURSE, procurement_world, qty

from sinew.common.actor import Wiring
from sinew.common.rebuild import rebuild
from sinew.contracts import CATALOGUE
from sinew.contracts.envelope import CE_ID
from sinew.contracts.procurement import PurchaseOrderApproved
from sinew.contracts.replenishment import ReplenishmentSignalRaised
from sinew.contracts.usage import BillOnlyRequested
from sinew.services.procurement.service import DEFINITION as PROCUREMENT

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

SIGNALS = 30
BILL_ONLY = 5
_encoder = msgspec.json.Encoder(decimal_format="string")


async def send(js, site: str, channel: str, message, event_id: str) -> None:
    target = CATALOGUE.channel(channel)
    await publish(
        js, target.subject(site), _encoder.encode(message), site=site, event_id=event_id,
        type_=target.ce_type,
    )  # fmt: skip


async def test_killed_mid_flow_loses_and_doubles_nothing(nats_server, tmp_path):
    site = new_site()
    settings = settings_for("procurement", site, nats_server, tmp_path)
    db = settings.database_path
    await provisioned(nats_server, CATALOGUE, site, ["procurement"])
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    service = ServiceProcess("sinew.cli.main", settings, args=["run", "procurement"])
    try:
        records = scenario.master_data(site)
        await scenario.publish_master_data(js, site, records)
        service.start()
        await eventually(lambda: count(db, "md_records") == len(records), timeout=30)
        assert await asyncio.to_thread(service.stop, signal.SIGTERM) == 0, service.log()[-2000:]

        now = datetime.now(UTC)
        for n in range(SIGNALS):
            signal_raised = ReplenishmentSignalRaised(
                site=site,
                signal_id=f"SIG-{n}",
                location_id=scenario.CATH_LAB,
                item_id=scenario.STENT,
                quantity=qty(1),
                on_hand=qty(1),
                par_level=qty(4),
                reorder_point=qty(2),
                raised_at=now,
            )
            await send(js, site, "replenishment.signal.raised.v1", signal_raised, f"{site}-sig-{n}")
        for n in range(BILL_ONLY):
            request = BillOnlyRequested(
                site=site,
                request_id=f"BOR-{n}",
                usage_id=f"USE-{n}",
                case_id=f"CASE-{n}",
                procedure_code="33249",
                physician_id="DR-7",
                location_id=scenario.CATH_LAB,
                item_id=scenario.ICD,
                quantity=qty(1),
                used_at=now,
                serial=f"SN-{n}",
                lot="L-1",
                requested_at=now,
            )
            await send(js, site, "usage.bill-only.requested.v1", request, f"{site}-bor-{n}")

        # Dies right after its first commit: effects in the database, no ack, outbox unsent.
        service.start(faults="after_commit:0")
        assert await asyncio.to_thread(service.wait_exit, 60) == -signal.SIGKILL
        committed = count(db, "purchase_orders")
        assert committed > 0, "the kill should come after a commit"
        assert count(db, "sinew_outbox", "published_at IS NULL") > 0

        service.start(faults="")
        expected = SIGNALS + BILL_ONLY
        await eventually(
            lambda: count(db, "purchase_orders") >= expected, timeout=60, what="every PO"
        )
        subject = CATALOGUE.channel("procurement.purchase-order.approved.v1").subject(site)

        async def all_published() -> bool:
            return len(await subject_messages(js, "PROCUREMENT", subject)) >= expected

        await eventually(all_published, timeout=60, what="every PO approved event")
        await asyncio.sleep(1.5)  # a redelivery still in flight would show up now
        assert count(db, "purchase_orders") == expected
        assert count(db, "requisitions") == expected
        assert query(db, "SELECT count(DISTINCT replenishment_signal_id) FROM requisitions") == [
            (SIGNALS,)
        ]
        assert query(db, "SELECT count(DISTINCT bill_only_request_id) FROM requisitions") == [
            (BILL_ONLY,)
        ]
        events = await subject_messages(js, "PROCUREMENT", subject)
        assert len(events) == expected, "a PO approval was published twice or lost"
        assert len({m.headers[CE_ID] for m in events}) == expected
        po_numbers = {
            msgspec.json.decode(m.data, type=PurchaseOrderApproved).po_number for m in events
        }
        assert len(po_numbers) == expected
        assert query(db, "SELECT count(*) FROM sinew_dead_letters") == [(0,)]
    finally:
        service.stop()
        await nc.close()


async def test_rebuilt_from_history_the_people_s_changes_over_http_are_there(nats_server, tmp_path):
    (tmp_path / "live").mkdir()
    async with procurement_world(nats_server, tmp_path / "live") as world:
        approved = await world.requisition((scenario.STENT, 10, "EA"), urgent=True)
        status, _ = await world.post(
            f"/v1/requisitions/{approved['requisition_id']}/approve", {"reason": "cases Monday"}
        )
        assert status == 200
        po = await world.wait_for_po(requisition_id=approved["requisition_id"])
        status, _ = await world.post(
            f"/v1/purchase-orders/{po['po_number']}/cancel", {"reason": "cases moved"}
        )
        assert status == 200
        rejected = await world.requisition((scenario.STENT, 10, "EA"))
        # Refused (a nurse may not approve 12,000.00): nothing changed, nothing recorded.
        status, _ = await world.post(
            f"/v1/requisitions/{rejected['requisition_id']}/approve", {"reason": "ok"}, token=NURSE
        )
        assert status == 403
        status, _ = await world.post(
            f"/v1/requisitions/{rejected['requisition_id']}/reject", {"reason": "not budgeted"}
        )
        assert status == 200
        automatic = await world.requisition((scenario.STENT, 2, "EA"))  # within policy
        await world.wait_for_po(requisition_id=automatic["requisition_id"])
        # Each command's record comes back through the mailbox once, seen, not a duplicate.
        recorded = 'outcome="recorded"'

        async def all_six_back() -> bool:
            exposition = world.runtime.metrics.exposition().decode()
            return any(
                recorded in line and line.endswith(" 6.0") for line in exposition.splitlines()
            )

        await eventually(all_six_back, what="six command records back")
        assert (await world.runtime.status())["duplicates_suppressed"] == 0
        records = CATALOGUE.channel("procurement.command.recorded.v1").subject(world.site)
        assert len(await subject_messages(world.js, "PROCUREMENT", records)) == 6
        live = [query(world.db, sql) for sql in PROCUREMENT_STATE]
        assert [row[1] for row in live[0]] == ["approved", "rejected", "approved"]
        site = world.site

    target = tmp_path / "rebuilt" / "procurement.sqlite"
    nc = await nats.connect(nats_server.url)
    try:
        wiring = Wiring("procurement", site, CATALOGUE, PROCUREMENT.handlers, PROCUREMENT.parsers)
        report = await rebuild(nc.jetstream(), wiring, target, PROCUREMENT.migrations)
    finally:
        await nc.close()
    assert report.dead_letters == 0 and report.applied == report.messages
    for sql, before in zip(PROCUREMENT_STATE, live, strict=True):
        assert query(target, sql) == before, sql


PROCUREMENT_STATE = [
    "SELECT requisition_id, status FROM requisitions ORDER BY requisition_id",
    "SELECT * FROM requisitions ORDER BY requisition_id",
    "SELECT * FROM purchase_orders ORDER BY po_number",
    "SELECT * FROM po_lines ORDER BY po_number, line_number",
    "SELECT * FROM po_history ORDER BY id",
    "SELECT * FROM audit ORDER BY id",
    "SELECT key, outcome FROM sinew_inbox ORDER BY key",
    "SELECT event_id, subject, payload FROM sinew_outbox ORDER BY event_id",
]
