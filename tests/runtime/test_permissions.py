"""The generated NATS permissions: outside systems write only their own site's ingress; a
service runs its whole loop (fetch, ack, publish, $SRV) with nothing more than it is given."""

from __future__ import annotations

import asyncio

import msgspec
import nats
import pytest
from helpers import FAST, envelope_headers, eventually, query

from sinew.common.config import Settings
from sinew.common.natsconfig import PROVISIONER, inbox_prefix, site_users
from sinew.common.provision import provision
from sinew.common.service import serve
from sinew.common.testing import sample
from sinew.common.testing.nats_server import NatsServer

pytestmark = pytest.mark.asyncio
SITES = ["north", "south"]
PASSWORD = "test-only-password"


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory):
    users = site_users(sample.catalogue(), SITES)
    server = NatsServer(
        tmp_path_factory.mktemp("secured"), users=users, passwords={u: PASSWORD for u in users}
    ).start()
    yield server
    server.stop()


async def connect_as(server, user: str):
    errors: list[Exception] = []

    async def error_cb(error: Exception) -> None:
        errors.append(error)

    nc = await nats.connect(
        server.url, user=user, password=PASSWORD, inbox_prefix=inbox_prefix(user), error_cb=error_cb
    )
    return nc, errors


async def stored(server, subject: str) -> int:
    nc, _ = await connect_as(server, PROVISIONER)
    try:
        js = nc.jetstream()
        stream = await js.find_stream_name_by_subject(subject)
        info = await js.stream_info(stream, subjects_filter=subject)
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def test_an_outside_system_writes_only_its_own_sites_ingress(secured_server):
    nc, _ = await connect_as(secured_server, PROVISIONER)
    await provision(nc.jetstream(), sample.catalogue(), SITES, [])
    await nc.close()
    nc, errors = await connect_as(secured_server, "ehr-north")
    js = nc.jetstream()
    payload = b'{"any": "thing"}'
    ack = await js.publish(
        "sinew.ingress.north.usage.recorded.v1", payload, headers=envelope_headers("north", "t")
    )
    assert ack.stream == "CLINICAL_INGRESS"
    refused = [
        "sinew.usage.north.procedure-usage.recorded.v1",  # canonical: only the usage service
        "sinew.ingress.south.usage.recorded.v1",  # another site's ingress
        "sinew.ingress.north.invoice.submitted.v1",  # another system's ingress (AP)
    ]
    for subject in refused:
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await js.publish(subject, payload, headers=envelope_headers("north", "t"), timeout=1)
        assert await stored(secured_server, subject) == 0
    await eventually(lambda: len(errors) >= len(refused), what="permission errors reported")
    assert all("permissions violation" in str(e).lower() for e in errors), errors
    await nc.close()


async def test_a_service_runs_with_only_its_generated_permissions(secured_server, tmp_path):
    site = "north"
    nc, _ = await connect_as(secured_server, PROVISIONER)
    await provision(nc.jetstream(), sample.catalogue(), SITES, ["passthrough"], FAST)
    await nc.close()
    settings = Settings(
        service="passthrough",
        site=site,
        nats_url=secured_server.url,
        nats_user=f"passthrough-{site}",
        nats_password=PASSWORD,
        data_dir=tmp_path,
        nats_monitor_url=secured_server.monitor_url,
    )
    started = asyncio.Event()
    holder = []
    task = asyncio.create_task(
        serve(
            sample.definition(),
            settings,
            catalogue=sample.catalogue(),
            policy=FAST,
            started=started,
            runtime_ready=holder.append,
            install_signal_handlers=False,
        )
    )
    await asyncio.wait_for(started.wait(), 30)
    sampler, _ = await connect_as(secured_server, f"sampler-{site}")
    body = msgspec.json.encode({"site": site, "sample_id": "P1", "value": 1, "amount": "1.00"})
    await sampler.jetstream().publish(
        sample.SUBMITTED_V1.subject(site), body, headers=envelope_headers(site, "t")
    )
    await eventually(
        lambda: query(settings.database_path, "SELECT count(*) FROM samples")[0][0] == 1,
        what="sample applied under real permissions",
    )
    await eventually(
        lambda: stored(secured_server, sample.ACCEPTED.subject(site)),
        what="accepted event published under real permissions",
    )
    operator, _ = await connect_as(secured_server, "operator")
    pong = await operator.request("$SRV.PING.passthrough", b"", timeout=5)
    assert b"passthrough" in pong.data
    await operator.close()
    await sampler.close()
    holder[0].stopped.set()
    await asyncio.wait_for(task, 30)


async def test_patient_data_in_raw_ehr_documents_is_readable_by_the_usage_service_only(
    secured_server,
):
    nc, _ = await connect_as(secured_server, PROVISIONER)
    await provision(nc.jetstream(), sample.catalogue(), SITES, [])
    await nc.close()
    ehr, _ = await connect_as(secured_server, "ehr-north")
    ack = await ehr.jetstream().publish(
        "sinew.ingress.north.usage.recorded.v1",
        b'{"mrn": "MRN-SYNTHETIC-0001"}',
        headers=envelope_headers("north", "t"),
    )
    await ehr.close()
    for user in ("operator", "matching-north", "replenishment-north"):
        nc, _ = await connect_as(secured_server, user)
        js = nc.jetstream(timeout=1)  # a denied request shows only as a timeout
        with pytest.raises(Exception):  # noqa: B017 (a timeout or an API error, by client path)
            await js.get_msg("CLINICAL_INGRESS", ack.seq)
        with pytest.raises(Exception):  # noqa: B017
            await js.subscribe("sinew.ingress.north.usage.recorded.v1", ordered_consumer=True)
        await nc.close()
    usage, _ = await connect_as(secured_server, "usage-north")
    message = await usage.jetstream().get_msg("CLINICAL_INGRESS", ack.seq)
    assert b"MRN-SYNTHETIC-0001" in message.data
    await usage.close()


async def test_the_items_service_runs_and_fills_its_kv_replica_under_its_permissions(
    secured_server, tmp_path
):
    from scenario_data import as_upsert, stent

    from sinew.contracts import CATALOGUE
    from sinew.services.items.service import DEFINITION

    site = "south"
    nc, _ = await connect_as(secured_server, PROVISIONER)
    await provision(nc.jetstream(), CATALOGUE, [site], ["items"], FAST)
    await nc.close()
    settings = Settings(
        service="items",
        site=site,
        nats_url=secured_server.url,
        nats_user=f"items-{site}",
        nats_password=PASSWORD,
        data_dir=tmp_path,
        nats_monitor_url=secured_server.monitor_url,
    )
    started, holder = asyncio.Event(), []
    task = asyncio.create_task(
        serve(
            DEFINITION,
            settings,
            catalogue=CATALOGUE,
            policy=FAST,
            started=started,
            runtime_ready=holder.append,
            install_signal_handlers=False,
        )
    )
    await asyncio.wait_for(started.wait(), 30)
    mdm, _ = await connect_as(secured_server, f"mdm-{site}")
    item = stent(site)
    await mdm.jetstream().publish(
        CATALOGUE.channel("ingress.masterdata.upserted.v1").subject(site),
        msgspec.json.encode(as_upsert(item)),
        headers=envelope_headers(site, "t"),
    )
    await mdm.close()
    reader, _ = await connect_as(secured_server, f"matching-{site}")

    async def in_kv() -> bool:
        try:
            kv = await reader.jetstream().key_value(f"items_{site}")
            return (await kv.get(f"item.{item.item_id}")).value is not None
        except Exception:
            return False

    await eventually(in_kv, what="item in the KV replica, read by another service")
    await reader.close()
    holder[0].stopped.set()
    await asyncio.wait_for(task, 30)
