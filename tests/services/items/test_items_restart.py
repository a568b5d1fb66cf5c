"""The items service killed at its worst moments: between committing a change and putting it in
the KV bucket, and between the put and forgetting it. It ends with the bucket at the latest
versions, every accepted change published once, and nothing applied twice."""

from __future__ import annotations

import asyncio
import json
import signal

import msgspec
import nats
import pytest
import scenario_data as s
from helpers import (
    ServiceProcess,
    eventually,
    new_site,
    provisioned,
    publish,
    query,
    settings_for,
    subject_messages,
)

from sinew.contracts import CATALOGUE
from sinew.contracts.envelope import CE_ID

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

INGRESS = CATALOGUE.channel("ingress.masterdata.upserted.v1")
ITEM_EVENTS = CATALOGUE.channel("items.item.upserted.v1")
encode = msgspec.json.Encoder(decimal_format="string").encode


def pending(db) -> int:
    return query(db, "SELECT count(*) FROM kv_pending")[0][0]


async def test_killed_between_commit_and_kv_put_ends_with_the_latest_versions_once(
    nats_server, tmp_path
):
    site = new_site()
    settings = settings_for("items", site, nats_server, tmp_path)
    db = settings.database_path
    await provisioned(nats_server, CATALOGUE, site, ["items"])
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    products = [s.stent(site), s.stent_v2(site), s.guidewire(site)]
    for version in (1, 2, 3):
        for product in products:
            record = s.as_upsert(product, version=version, description=f"v{version}")
            await publish(js, INGRESS.subject(site), encode(record), site=site)
    late = s.as_upsert(s.stent(site), version=2, description="late")
    await publish(js, INGRESS.subject(site), encode(late), site=site)

    service = ServiceProcess("sinew.cli.main", settings, args=["run", "items"])
    # Dies right after its first batch commits: before the acks, the relay and the KV put.
    service.start(faults="after_commit:0")
    assert await asyncio.to_thread(service.wait_exit, 60) == -signal.SIGKILL, service.log()[-2000:]
    assert pending(db) > 0, "the crash should come after a commit"
    # Dies again once the bucket has taken the writes, before they are forgotten.
    service.start(faults="after_kv_put:0")
    assert await asyncio.to_thread(service.wait_exit, 60) == -signal.SIGKILL, service.log()[-2000:]
    assert pending(db) > 0
    kv = await js.key_value(f"items_{site}")
    assert (await kv.status()).values > 0, "the bucket took writes before the second crash"
    service.start(faults="")
    try:
        await eventually(
            lambda: (
                pending(db) == 0
                and query(db, "SELECT count(*) FROM sinew_outbox WHERE published_at IS NULL")
                == [(0,)]
                and query(db, "SELECT count(*) FROM sinew_inbox") == [(10,)]
            ),
            timeout=60,
            what="every change applied, published and put",
        )
        for product in products:
            held = json.loads((await kv.get(f"item.{product.item_id}")).value)
            assert (held["version"], held["description"]) == (3, "v3")
            by_gtin = json.loads((await kv.get(f"gtin.{product.gtin}")).value)
            assert by_gtin["version"] == 3

        events = await subject_messages(js, "ITEMS", ITEM_EVENTS.subject(site))
        ids = [m.headers[CE_ID] for m in events]
        assert len(ids) == len(set(ids)) == 9, "an event was lost or published twice"
        published = sorted(
            (e["item_id"], e["version"]) for e in (json.loads(m.data) for m in events)
        )
        assert published == sorted((p.item_id, v) for p in products for v in (1, 2, 3))
        assert query(db, "SELECT count(*) FROM masterdata_changes WHERE outcome='stale'") == [(1,)]
    finally:
        service.stop()
        await nc.close()
