"""The runtime's own tables do not grow for ever: published outbox rows go after a week, inbox
keys once their streams could no longer redeliver them; nothing unpublished is ever removed."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import msgspec
import nats
import pytest
from helpers import count, eventually, new_site, publish, query, running, settings_for

from sinew.common.retention import Retention
from sinew.common.testing import sample
from sinew.contracts.envelope import utc_now

pytestmark = pytest.mark.asyncio


def age(db, sql: str, days: float) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql, ((utc_now() - timedelta(days=days)).isoformat(),))


async def test_old_rows_are_pruned_and_the_service_still_knows_what_it_handled(
    nats_server, tmp_path
):
    site = new_site()
    settings = settings_for("passthrough", site, nats_server, tmp_path)
    db = settings.database_path
    subject = sample.SUBMITTED_V1.subject(site)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    body = {"site": site, "value": 1, "amount": "1.00"}
    async with running(sample.definition(), settings, sample.catalogue()) as runtime:
        for n in range(30):
            payload = msgspec.json.encode({**body, "sample_id": f"S{n}"})
            await publish(js, subject, payload, site=site, event_id=f"{site}-{n}")
        await eventually(lambda: count(db, "sinew_outbox", "published_at IS NOT NULL") == 30)
        assert (await runtime.status())["messages_handled"] == 30

    # A month has passed for the first 20 events, more than a year for the first 10 messages.
    age(db, "UPDATE sinew_outbox SET created_at=? WHERE seq <= 20", days=30)
    age(db, "UPDATE sinew_inbox SET handled_at=? WHERE key IN (SELECT key FROM sinew_inbox"
            " ORDER BY stream_seq LIMIT 10)", days=500)  # fmt: skip
    # An event committed long ago that JetStream never acknowledged is kept until it is sent.
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO sinew_outbox (event_id, subject, headers, payload, created_at)"
            " VALUES ('never-sent', 'nowhere', '{}', x'', ?)",
            ((utc_now() - timedelta(days=30)).isoformat(),),
        )
        conn.execute("UPDATE sinew_outbox SET published_at=NULL WHERE event_id='never-sent'")

    settings = settings_for(
        "passthrough", site, nats_server, tmp_path, retention=Retention(outbox_days=7)
    )
    async with running(sample.definition(), settings, sample.catalogue()) as runtime:
        await eventually(lambda: count(db, "sinew_inbox") == 20, what="old inbox keys pruned")
        await eventually(
            lambda: count(db, "sinew_outbox", "published_at IS NOT NULL") == 10,
            what="old published outbox rows pruned",
        )
        assert query(db, "SELECT event_id FROM sinew_outbox WHERE published_at IS NULL") == [
            ("never-sent",)
        ]
        status = await runtime.status()
        assert status["messages_handled"] == 30
        exposition = runtime.metrics.exposition().decode()
        pruned = f'sinew_rows_pruned_total{{service="passthrough",site="{site}",table="inbox"}}'
        assert f"{pruned} 10.0" in exposition
    await nc.close()
