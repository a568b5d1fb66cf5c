"""Crashes at the worst moments lose nothing and apply nothing twice."""

from __future__ import annotations

import asyncio
import signal

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
    subject_messages,
)

from sinew.common.testing import sample
from sinew.contracts.envelope import CE_ID

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

MODULE = "sinew.common.testing.sample"


def submitted(site: str, n: int) -> bytes:
    return msgspec.json.encode({"site": site, "sample_id": f"S{n}", "value": n, "amount": "10.00"})


async def publish_samples(js, site: str, count: int) -> None:
    subject = sample.SUBMITTED_V1.subject(site)
    for n in range(count):
        await publish(js, subject, submitted(site, n), site=site, event_id=f"{site}-{n}")


async def assert_each_applied_once(js, settings, expected: int) -> None:
    db = settings.database_path
    await eventually(
        lambda: count(db, "samples") == expected,
        timeout=60,
        what=f"{expected} samples applied",
    )
    assert query(db, "SELECT count(*) FROM samples WHERE applied != 1") == [(0,)]
    subject = sample.ACCEPTED.subject(settings.site)

    async def all_published() -> bool:
        return len(await subject_messages(js, "PASSTHROUGH", subject)) >= expected

    await eventually(all_published, timeout=60, what="every accepted event published")
    events = await subject_messages(js, "PASSTHROUGH", subject)
    ids = [m.headers[CE_ID] for m in events]
    assert len(ids) == expected, "an accepted event was published twice or lost"
    assert len(set(ids)) == expected


async def test_killed_between_commit_and_ack_applies_everything_once(nats_server, tmp_path):
    site = new_site()
    settings = settings_for("passthrough", site, nats_server, tmp_path)
    await provisioned(nats_server, sample.catalogue(), site, ["passthrough"])
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await publish_samples(js, site, 300)
    service = ServiceProcess(MODULE, settings, faults="after_commit:1").start()
    # The fault point kills the process right after its second batch commits, before any ack.
    assert await asyncio.to_thread(service.wait_exit, 60) == -signal.SIGKILL
    committed = query(settings.database_path, "SELECT count(*) FROM samples")[0][0]
    assert committed > 0, "the crash should come after a commit"
    service.start(faults="")
    try:
        await assert_each_applied_once(js, settings, 300)
        applied = query(
            settings.database_path, "SELECT count(*) FROM sinew_inbox WHERE outcome='applied'"
        )[0][0]
        assert applied == 300
    finally:
        service.stop()
        await nc.close()


async def test_killed_between_publish_and_outbox_mark_loses_and_doubles_nothing(
    nats_server, tmp_path
):
    site = new_site()
    settings = settings_for("passthrough", site, nats_server, tmp_path)
    await provisioned(nats_server, sample.catalogue(), site, ["passthrough"])
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await publish_samples(js, site, 200)
    # Dies after JetStream acknowledged the first relayed events, before the outbox marks them.
    service = ServiceProcess(MODULE, settings, faults="after_publish:0").start()
    assert await asyncio.to_thread(service.wait_exit, 60) == -signal.SIGKILL
    unpublished = query(
        settings.database_path, "SELECT count(*) FROM sinew_outbox WHERE published_at IS NULL"
    )[0][0]
    assert unpublished > 0
    service.start(faults="")
    try:
        await assert_each_applied_once(js, settings, 200)
    finally:
        service.stop()
        await nc.close()


async def test_nats_server_restarted_mid_stream_loses_nothing(fresh_nats_server, tmp_path):
    server = fresh_nats_server
    site = new_site()
    settings = settings_for("passthrough", site, server, tmp_path)
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    async with running(sample.definition(), settings, sample.catalogue()):
        subject = sample.SUBMITTED_V1.subject(site)

        async def publish_with_retry(n: int) -> None:
            # An outside system retries with the same event id until JetStream acknowledges.
            while True:
                try:
                    await publish(
                        js, subject, submitted(site, n), site=site, event_id=f"{site}-{n}"
                    )
                    return
                except Exception:
                    await asyncio.sleep(0.2)

        for n in range(150):
            await publish_with_retry(n)
            if n == 75:
                await asyncio.to_thread(server.restart)
        await assert_each_applied_once(js, settings, 150)
    await nc.close()


async def test_a_message_that_kills_the_service_every_time_becomes_a_dead_letter(
    nats_server, tmp_path
):
    """Redelivered messages are tried one by one with each attempt noted first, so the message
    that keeps killing the process is caught on its own, and its batch mates still go through."""
    site = new_site()
    settings = settings_for("passthrough", site, nats_server, tmp_path)
    await provisioned(nats_server, sample.catalogue(), site, ["passthrough"])
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    subject = sample.SUBMITTED_V1.subject(site)
    poison = msgspec.json.encode(
        {"site": site, "sample_id": "P", "value": 1, "amount": "1", "note": "crash"}
    )
    await publish(js, subject, poison, site=site, event_id=f"{site}-poison")
    await publish_samples(js, site, 20)
    service = ServiceProcess(MODULE, settings)
    db = settings.database_path

    def dead_lettered() -> bool:
        if not service.alive:
            service.start()  # a supervisor restarts it, as `sinew up` and compose do
        return count(db, "sinew_dead_letters") == 1

    try:
        await eventually(dead_lettered, timeout=60, interval=0.2, what="poison dead-lettered")
        cause, reason, deliveries, payload = query(
            db, "SELECT cause, reason, deliveries, payload FROM sinew_dead_letters"
        )[0]
        assert cause == "exhausted"
        assert reason == "the service process died in 2 attempts at this message alone"
        assert deliveries == 4
        assert payload == poison
        await assert_each_applied_once(js, settings, 20)
    finally:
        service.stop()
        await nc.close()


async def test_a_message_jetstream_gave_up_on_is_dead_lettered_from_the_advisory(
    nats_server, tmp_path
):
    """The backstop: a message fetched and never acknowledged max_deliver times (a service that
    hung or died each time) is announced by an advisory kept in a stream; the service
    dead-letters it when it next runs, even though it was down when JetStream gave up."""
    site = new_site()
    settings = settings_for("passthrough", site, nats_server, tmp_path)
    await provisioned(nats_server, sample.catalogue(), site, ["passthrough"])
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await publish_samples(js, site, 1)
    mailbox = await js.pull_subscribe_bind(durable=f"passthrough-{site}", stream="INGRESS")
    for _ in range(4):  # FAST policy: max_deliver 4, one-second back-off
        (message,) = await mailbox.fetch(1, timeout=10)  # taken, never acknowledged
    # The server announces it gives up when it would have delivered a fifth time.
    with pytest.raises(TimeoutError):
        await mailbox.fetch(1, timeout=3)
    await mailbox.unsubscribe()

    async def advisory_kept() -> bool:
        info = await js.consumer_info("ADVISORIES", f"passthrough-{site}")
        return info.num_pending == 1

    await eventually(advisory_kept, what="max-deliveries advisory in the ADVISORIES stream")
    async with running(sample.definition(), settings, sample.catalogue(), provisioned=False):
        db = settings.database_path
        await eventually(
            lambda: query(db, "SELECT count(*) FROM sinew_dead_letters")[0][0] == 1,
            what="dead letter from the advisory",
        )
        cause, reason, payload = query(db, "SELECT cause, reason, payload FROM sinew_dead_letters")[
            0
        ]
        assert cause == "exhausted"
        assert "JetStream stopped redelivering after 4 deliveries" in reason
        assert payload == message.data
        assert query(db, "SELECT count(*) FROM samples") == [(0,)]
    await nc.close()
