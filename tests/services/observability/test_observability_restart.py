"""Observability killed mid-flow and restarted records every event exactly once, so its figures
after a crash are the figures it would have had without one."""

from __future__ import annotations

import asyncio
import signal

import nats
import obs_feed as f
from helpers import ServiceProcess, count, eventually, new_site, provisioned, query, settings_for

from sinew.contracts import CATALOGUE

INVOICES = 60


async def test_killed_after_a_commit_it_loses_and_doubles_nothing(nats_server, tmp_path):
    site = new_site()
    settings = settings_for("observability", site, nats_server, tmp_path)
    await provisioned(nats_server, CATALOGUE, site, ["observability"])
    nc = await nats.connect(nats_server.url)
    feed = f.Feed(nc.jetstream(), site)

    async def publish_invoices(numbers: range) -> None:
        for n in numbers:
            number = f"INV-{n}"
            await feed.emit(
                "matching.invoice.submitted.v1",
                f.invoice_submitted(site, number, f"PO-{n}", "100.00"),
                correlation=number,
            )
            await feed.emit(
                "matching.invoice.matched.v1",
                f.invoice_matched(site, number, f"PO-{n}", "100.00", n % 3 != 0),
                correlation=number,
            )

    db = settings.database_path

    def recorded() -> int:
        return count(db, "obs_events")

    # The second batch's transaction commits, then the process dies before acknowledging it.
    await publish_invoices(range(INVOICES // 2))
    service = ServiceProcess(
        "sinew.cli.main", settings, args=["run", "observability"], faults="after_commit:1"
    ).start()
    await eventually(lambda: recorded() == INVOICES, timeout=30, what="the first batch")
    await publish_invoices(range(INVOICES // 2, INVOICES))
    assert await asyncio.to_thread(service.wait_exit, 60) == -signal.SIGKILL
    assert recorded() > INVOICES, "the second batch was committed, never acknowledged"
    await nc.close()
    service.start(faults="")
    try:

        def redelivered_batch_absorbed() -> bool:
            return count(db, "sinew_inbox") == 2 * INVOICES and recorded() == 2 * INVOICES

        await eventually(redelivered_batch_absorbed, timeout=30, what="the redelivered batch")
        await asyncio.sleep(0.5)  # a further redelivery that would double something has its chance
        assert recorded() == 2 * INVOICES
        assert query(db, "SELECT count(*), sum(first_pass) FROM obs_invoices") == [(60, 40)]
    finally:
        service.stop()
