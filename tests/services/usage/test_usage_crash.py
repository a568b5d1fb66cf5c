"""Scenario 12 for usage: the service is SIGKILLed between committing a batch and acking it, the
EHR resends lines (same message, and same line in a new message), and after a restart every
line is recorded exactly once."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

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
from usage_documents import MRN, PATIENT_FAMILY, Dft, Ft1, json_usage

from sinew.contracts import CATALOGUE
from sinew.contracts.envelope import CE_ID

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

JSON_USAGE = CATALOGUE.channel("ingress.usage.recorded.v1")
HL7 = CATALOGUE.channel("ingress.usage-hl7.received.v1")
RECORDED = CATALOGUE.channel("usage.procedure-usage.recorded.v1")
LINES, DOCUMENTS = 250, 20  # JSON lines, and HL7 documents of two FT1 lines each


def mrn(n: int) -> str:
    return MRN if n % 10 == 0 else f"MRN-SYNTH-{n % 10:04d}"


async def send_lines(js, site: str, numbers: range, event_prefix: str) -> None:
    for n in numbers:
        payload = json_usage(site, f"J-{n}", item_id=scenario.GUIDEWIRE, lot="G1", mrn=mrn(n))
        await publish(
            js, JSON_USAGE.subject(site), payload, site=site, event_id=f"{event_prefix}-{n}"
        )


async def test_killed_between_commit_and_ack_records_every_line_once(nats_server, tmp_path):
    site = new_site()
    settings = settings_for("usage", site, nats_server, tmp_path)
    await provisioned(nats_server, CATALOGUE, site, ["usage"])
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    service = ServiceProcess("sinew.cli.main", settings, args=["run", "usage"])
    try:
        # The item master first, so the crash lands in the middle of usage batches.
        service.start()
        await scenario.publish_master_data(js, site)
        await eventually(lambda: count(settings.database_path, "md_records") >= 7, timeout=60)
        assert service.stop(signal.SIGTERM) == 0

        await send_lines(js, site, range(LINES), "line")
        for d in range(DOCUMENTS):
            lines = [Ft1(f"H-{d}-{k}", item_id=scenario.GUIDEWIRE, lot="G2") for k in (1, 2)]
            await publish(
                js, HL7.subject(site), Dft(f"C-{d}", lines, mrn=mrn(d)).encode(), site=site
            )
        # Killed right after its first batch commits (200 lines), before that batch is acked.
        service.start(faults="after_commit:0")
        assert await asyncio.to_thread(service.wait_exit, 60) == -signal.SIGKILL
        committed = count(settings.database_path, "usages")
        assert 0 < committed < LINES + 2 * DOCUMENTS

        # The same messages again (JetStream drops them), and the same lines as new messages.
        await send_lines(js, site, range(0, 40), "line")
        await send_lines(js, site, range(0, 40), "resent")
        service.start(faults="")
        expected = LINES + 2 * DOCUMENTS
        await eventually(
            lambda: count(settings.database_path, "usages", "status='recorded'") == expected,
            timeout=60,
            what="every line recorded",
        )

        async def all_published() -> bool:
            return len(await subject_messages(js, "USAGE", RECORDED.subject(site))) >= expected

        await eventually(all_published, timeout=60, what="every recorded event published")
        await asyncio.sleep(0.5)  # anything doubled would land now
        events = await subject_messages(js, "USAGE", RECORDED.subject(site))
        usage_ids = Counter(
            msgspec.json.decode(m.data, type=RECORDED.message).usage_id for m in events
        )
        assert len(events) == expected and set(usage_ids.values()) == {1}
        assert len({m.headers[CE_ID] for m in events}) == expected
        assert query(settings.database_path, "SELECT count(*) FROM patients") == [(10,)]
        assert count(settings.database_path, "sinew_dead_letters") == 0
        log = service.log()
        assert "ready" in log and MRN not in log and PATIENT_FAMILY not in log
    finally:
        service.stop()
        await nc.close()
