"""What an operator sees of a running service: health, readiness, metrics, its HTTP API's
errors and tokens, a clean SIGTERM, and the refusal to run on a server that does not fsync."""

from __future__ import annotations

import asyncio
import json
import signal

import aiohttp
import msgspec
import nats
import pytest
from helpers import (
    ServiceProcess,
    count,
    eventually,
    new_site,
    provisioned,
    publish,
    query,
    running,
    settings_for,
)

from sinew.common.http import hash_token
from sinew.common.service import check_sync_always
from sinew.common.testing import sample
from sinew.common.testing.nats_server import NatsServer, free_port

pytestmark = pytest.mark.asyncio


async def test_health_readiness_metrics_and_token_roles(nats_server, tmp_path):
    site = new_site()
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                hash_token("sre-token"): {"name": "sre", "roles": ["operator"]},
                hash_token("clerk-token"): {"name": "clerk", "roles": ["receiving"]},
            }
        )
    )
    port = free_port()
    settings = settings_for(
        "passthrough", site, nats_server, tmp_path, http_port=port, tokens_file=tokens
    )
    nc = await nats.connect(nats_server.url)
    async with (
        running(sample.definition(), settings, sample.catalogue()),
        aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http,
    ):
        await publish(nc.jetstream(), sample.SUBMITTED_V1.subject(site), b"{", site=site)
        assert (await http.get("/healthz")).status == 200
        ready = await http.get("/readyz")
        assert ready.status == 200
        assert (await ready.json())["mailboxes"] == ["INGRESS", "ADVISORIES"]

        async def dead_letter_listed() -> bool:
            return (await (await http.get("/v1/dead-letters")).json())["total"] == 1

        await eventually(dead_letter_listed, what="dead letter over HTTP")
        listing = await (await http.get("/v1/dead-letters?limit=1")).json()
        assert listing["items"][0]["cause"] == "malformed"
        assert listing["next_offset"] is None
        bad_page = await http.get("/v1/dead-letters?limit=0")
        assert bad_page.status == 400
        assert (await bad_page.json())["error"]["code"] == "bad_paging"
        metrics = await (await http.get("/metrics")).text()
        assert 'sinew_dead_letters_total{cause="malformed"' in metrics
        assert "sinew_outbox_backlog" in metrics

        dead_id = listing["items"][0]["id"]
        replay = f"/v1/dead-letters/{dead_id}/replay"
        anonymous = await http.post(replay)
        assert anonymous.status == 401
        assert (await anonymous.json())["error"]["code"] == "unauthenticated"
        clerk = await http.post(replay, headers={"Authorization": "Bearer clerk-token"})
        assert clerk.status == 403
        fixed = msgspec.json.encode({"site": site, "sample_id": "H", "value": 3, "amount": "1"})
        sre = await http.post(replay, data=fixed, headers={"Authorization": "Bearer sre-token"})
        assert sre.status == 200
        assert (await sre.json())["results"][0]["outcome"] == "applied"
        shown = await (await http.get(f"/v1/dead-letters/{dead_id}")).json()
        assert shown["status"] == "replayed" and shown["replayed_by"] == "sre"
        huge = await http.post(
            replay, data=b"x" * (2 * 1024 * 1024), headers={"Authorization": "Bearer sre-token"}
        )
        assert huge.status == 413 and (await huge.json())["error"]["code"] == "too_large"
        missing = await http.get("/v1/dead-letters/nope")
        assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    await nc.close()


async def test_sigterm_drains_and_flushes_the_outbox(nats_server, tmp_path):
    site = new_site()
    settings = settings_for("passthrough", site, nats_server, tmp_path)
    await provisioned(nats_server, sample.catalogue(), site, ["passthrough"])
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    for n in range(500):
        body = msgspec.json.encode({"site": site, "sample_id": f"G{n}", "value": n, "amount": "1"})
        await publish(js, sample.SUBMITTED_V1.subject(site), body, site=site)
    service = ServiceProcess("sinew.common.testing.sample", settings).start()
    db = settings.database_path
    await eventually(
        lambda: count(db, "samples") > 0,
        what="work started",
    )
    exit_code = await asyncio.to_thread(service.stop, signal.SIGTERM)
    assert exit_code == 0, service.log()[-3000:]
    applied = query(db, "SELECT count(*) FROM samples")[0][0]
    assert query(db, "SELECT count(*) FROM sinew_outbox WHERE published_at IS NULL") == [(0,)]
    assert query(db, "SELECT count(*) FROM sinew_outbox") == [(applied,)]
    assert '"message": "passthrough at ' in service.log()
    await nc.close()


async def test_refuses_a_server_that_acknowledges_before_fsync(tmp_path):
    server = NatsServer(tmp_path, sync_always=False).start()
    try:
        with pytest.raises(SystemExit, match="sync_interval: always"):
            await asyncio.to_thread(check_sync_always, server.monitor_url)
    finally:
        server.stop()
