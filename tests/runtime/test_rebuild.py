"""A service rebuilt from stream history into an empty database reaches the same state."""

from __future__ import annotations

import msgspec
import nats
import pytest
from helpers import eventually, new_site, publish, query, running, settings_for

from sinew.common.actor import Wiring
from sinew.common.rebuild import rebuild
from sinew.common.testing import sample

pytestmark = pytest.mark.asyncio

STATE = [
    "SELECT sample_id, value, applied FROM samples ORDER BY sample_id",
    "SELECT key, outcome FROM sinew_inbox ORDER BY key",
    "SELECT subject, cause, reason FROM sinew_dead_letters ORDER BY stream_seq",
    "SELECT event_id, subject FROM sinew_outbox ORDER BY event_id",
]


async def test_rebuild_from_history_gives_the_same_state(nats_server, tmp_path):
    site = new_site()
    settings = settings_for("passthrough", site, nats_server, tmp_path / "live")
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    subject = sample.SUBMITTED_V1.subject(site)
    async with running(sample.definition(), settings, sample.catalogue()):
        for n in range(700):
            body = {"site": site, "sample_id": f"R{n % 600}", "value": n, "amount": "2.00"}
            await publish(js, subject, msgspec.json.encode(body), site=site)
        await publish(js, subject, b"not json", site=site)
        await publish(js, subject, msgspec.json.encode({"site": site}), site=site)
        db = settings.database_path
        await eventually(
            lambda: query(db, "SELECT count(*) FROM sinew_inbox")[0][0] == 702,
            what="everything handled",
        )
    live = [query(db, sql) for sql in STATE]

    target = tmp_path / "rebuilt" / "passthrough.sqlite"
    wiring = Wiring("passthrough", site, sample.catalogue(), sample.definition().handlers)
    seen = []
    report = await rebuild(
        js,
        wiring,
        target,
        sample.MIGRATIONS,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert (report.messages, report.applied, report.dead_letters) == (702, 700, 2)
    assert seen[-1] == (702, 702)
    rebuilt = [query(target, sql) for sql in STATE]
    assert rebuilt == live
    assert query(target, "SELECT count(*) FROM sinew_outbox WHERE published_at != 'rebuild'") == [
        (0,)
    ]
    with pytest.raises(FileExistsError):
        await rebuild(js, wiring, target, sample.MIGRATIONS)
    consumers = [c.name for c in await js.consumers_info("INGRESS")]
    assert not [c for c in consumers if c.startswith("rebuild-")]
    await nc.close()
