"""Scenario 12 for matching, and its replay: an invoice published twice under one id, its
duplicate and its payment, with the service SIGKILLed between its commit and its ack, come out
as one invoice, one approval and one payment; and the matching database rebuilt from stream
history into an empty one holds the same invoices, exceptions and explanations."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import msgspec
import nats
import pytest
import scenario_data as scenario
from helpers import ServiceProcess, eventually, query
from matching_world import (
    AP,
    SUPPLY_CHAIN,
    World,
    invoice_line,
    matching_settings,
    matching_world,
    q,
    stent_invoice_line,
    stent_order_line,
)

from sinew.common.actor import Wiring
from sinew.common.rebuild import rebuild
from sinew.contracts import CATALOGUE
from sinew.services.matching.service import DEFINITION

pytestmark = pytest.mark.asyncio

_encoder = msgspec.json.Encoder(decimal_format="string")


async def test_scenario_12_redelivery_and_a_kill_between_commit_and_ack_apply_once(
    nats_server, tmp_path, monkeypatch
):
    settings = matching_settings(nats_server, tmp_path)
    async with matching_world(nats_server, tmp_path, settings) as world:
        await world.order("PO-12", stent_order_line())
        await world.receive("PO-12", (1, scenario.STENT, q(2), q(2)))

    nc = await nats.connect(nats_server.url)
    world = World(settings, nc.jetstream())
    document = _encoder.encode(world.invoice_document("INV-12", "PO-12", stent_invoice_line()))
    # The AP system retries with the same event id; then sends the same invoice again as new.
    for _ in range(2):
        await world.emit("ingress.invoice.submitted.v1", document, event_id="ap-inv-12")
    await world.emit("ingress.invoice.submitted.v1", document)
    await world.pay("PAY-12", ("INV-12", "2400.00"), wait=False)

    monkeypatch.setenv("SINEW_HTTP_PORT", str(settings.http_port))
    monkeypatch.setenv("SINEW_TOKENS_FILE", str(settings.tokens_file))
    service = ServiceProcess("sinew.cli.main", settings, args=["run", "matching"])
    service.start(faults="after_commit:0")
    assert await asyncio.to_thread(service.wait_exit, 60) == -signal.SIGKILL, service.log()[-2000:]
    committed = query(settings.database_path, "SELECT count(*) FROM invoices")[0][0]
    assert committed == 1, "the kill should come after the invoice was committed"

    service.start(faults="")
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{settings.http_port}") as http:
            world.http = http

            async def paid() -> bool:
                try:
                    return (await world.invoice_state("INV-12"))["status"] == "paid"
                except (aiohttp.ClientError, AssertionError, ValueError):
                    return False

            await eventually(paid, timeout=60, what="INV-12 paid after the restart")
            (duplicate,) = await world.exceptions()
            assert duplicate["type"] == "DUPLICATE_INVOICE"
            shown = await world.get(f"/v1/invoices/{duplicate['duplicate_of_invoice_id']}", AP)
            assert [s["outcome"] for s in shown["submissions"]] == ["admitted", "duplicate"]
            assert len(shown["payments"]) == 1

        for channel in (
            "matching.invoice.submitted.v1",
            "matching.invoice.matched.v1",
            "matching.invoice.approved.v1",
            "matching.exception.raised.v1",
            "matching.payment.released.v1",
        ):
            events = await world.published(channel, 1)
            assert len(events) == 1, f"{channel} published {len(events)} times"
        handled = query(
            settings.database_path,
            "SELECT count(*) FROM sinew_inbox WHERE key LIKE '%ingress.invoice.submitted:%'",
        )
        assert handled == [(2,)]  # the retry under the same id was never a second event
    finally:
        service.stop()
        await nc.close()


STATE = [
    "SELECT invoice_id, invoice_number, status, first_pass, match_type, credit_amount, overrides,"
    " approved_amount, approval_basis, approved_by, approved_at, payment_id, paid_amount, paid_at,"
    " submitted_at, updated_at FROM invoices ORDER BY invoice_id",
    "SELECT exception_id, type, status, queue, invoice_id, duplicate_of_invoice_id, payment_id,"
    " amount_at_stake, explanation, checks, raised_at, sla_due_at, resolution, resolved_by,"
    " resolved_at, resolution_reason FROM match_exceptions ORDER BY exception_id",
    "SELECT exception_id, action, actor, reason, details, at FROM exception_actions ORDER BY seq",
    "SELECT invoice_id, run, trigger, outcome, match_type, problems, checks, evaluated_at"
    " FROM match_runs ORDER BY invoice_id, run",
    "SELECT * FROM invoice_allocations ORDER BY invoice_id, invoice_line_number",
    "SELECT * FROM invoice_submissions ORDER BY event_id",
    "SELECT * FROM payment_applications ORDER BY payment_id, position",
    "SELECT po_number, revision, status, body FROM purchase_orders ORDER BY po_number",
    "SELECT * FROM receipt_lines ORDER BY receipt_id, position",
    "SELECT kind, record_id, version FROM md_records ORDER BY kind, record_id",
    "SELECT key, outcome FROM sinew_inbox ORDER BY key",
    "SELECT event_id, subject, payload FROM sinew_outbox ORDER BY event_id",
]


async def test_rebuilding_from_stream_history_gives_the_same_invoices_and_exceptions(
    nats_server, tmp_path
):
    settings = matching_settings(nats_server, tmp_path / "live")
    async with matching_world(nats_server, tmp_path / "live", settings) as world:
        await world.order("PO-R1", stent_order_line())
        await world.receive("PO-R1", (1, scenario.STENT, q(2), q(2)))
        await world.invoice("INV-R1", "PO-R1", stent_invoice_line())
        await world.pay("PAY-R1", ("INV-R1", "2400.00"))
        await world.invoice_x12(world.invoice_document("INV R1", "PO-R1", stent_invoice_line()))

        await world.order("PO-R2", stent_order_line())
        await world.invoice("INV-R2", "PO-R2", stent_invoice_line())
        await world.receive("PO-R2", (1, scenario.STENT, q(1), q(1)))
        await world.receive("PO-R2", (1, scenario.STENT, q(1), q(1)))

        await world.order("PO-R3", stent_order_line(quantity=3))
        await world.receive("PO-R3", (1, scenario.STENT, q(2), q(2)))
        await world.invoice("INV-R3", "PO-R3", stent_invoice_line(quantity=3))
        await world.invoice("INV-R4", "PO-R3", stent_invoice_line(quantity=1, price="1300.00"))
        await world.invoice(
            "INV-R5", "PO-NONE", invoice_line(1, 1, "EA", "10.00", item_id="NOT-KNOWN")
        )
        await world.pay("PAY-R2", ("INV-R3", "3600.00"), ("INV-R1", "2400.00"))
        # Analysts at work over HTTP: their changes are in the stream too, as commands.
        (price,) = await world.exceptions(type="PRICE_VARIANCE")
        await world.post(
            f"/v1/exceptions/{price['exception_id']}/reassign",
            {"queue": "ap", "reason": "supplier disputes our PO"},
            SUPPLY_CHAIN,
        )
        (no_po,) = await world.exceptions(type="NO_PO")
        await world.post(
            f"/v1/exceptions/{no_po['exception_id']}/resolve",
            {"resolution": "rejected", "reason": "not our supplier"},
            AP,
        )
        live = [query(settings.database_path, sql) for sql in STATE]
        statuses = {row[1]: row[2] for row in live[0]}
        assert statuses == {
            "INV-R1": "paid",
            "INV-R2": "approved",
            "INV-R3": "exception",
            "INV-R4": "exception",
            "INV-R5": "rejected",
        }
        assert any(row[1] == "reassigned" for row in live[2]), "the reassignment is audited"

    target = tmp_path / "rebuilt" / "matching.sqlite"
    nc = await nats.connect(nats_server.url)
    try:
        wiring = Wiring(
            "matching", settings.site, CATALOGUE, DEFINITION.handlers, DEFINITION.parsers
        )
        report = await rebuild(nc.jetstream(), wiring, target, DEFINITION.migrations)
    finally:
        await nc.close()
    assert report.dead_letters == 0 and report.applied == report.messages
    rebuilt = [query(target, sql) for sql in STATE]
    for sql, before, after in zip(STATE, live, rebuilt, strict=True):
        assert after == before, sql
