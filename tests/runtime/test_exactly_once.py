"""Every effect exactly once: duplicates, redeliveries and republished events."""

from __future__ import annotations

import msgspec
import nats
import pytest
from helpers import eventually, new_site, publish, query, running, settings_for, subject_messages

from sinew.common.testing import sample
from sinew.contracts.envelope import MSG_ID

pytestmark = pytest.mark.asyncio


def submitted(site: str, sample_id: str, value: int = 1, **fields) -> bytes:
    return msgspec.json.encode(
        {"site": site, "sample_id": sample_id, "value": value, "amount": "1200.00", **fields}
    )


async def stream_count(js, stream: str, subject: str) -> int:
    info = await js.stream_info(stream, subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


async def test_the_same_event_published_twice_is_applied_once(nats_server, tmp_path):
    site = new_site()
    settings = settings_for("passthrough", site, nats_server, tmp_path)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    async with running(sample.definition(), settings, sample.catalogue()) as runtime:
        subject = sample.SUBMITTED_V1.subject(site)
        for n in range(40):
            event_id = f"{site}-evt-{n}"
            await publish(js, subject, submitted(site, f"S{n}", n), site=site, event_id=event_id)
            if n % 4 == 0:
                # Same event id within the window: JetStream itself drops it.
                ack = await publish(
                    js, subject, submitted(site, f"S{n}", n), site=site, event_id=event_id
                )
                assert ack.duplicate
            if n % 5 == 0:
                # Same event id resent after the window (a new Nats-Msg-Id): the inbox drops it.
                await publish(
                    js,
                    subject,
                    submitted(site, f"S{n}", n),
                    site=site,
                    event_id=event_id,
                    **{MSG_ID: f"{event_id}-resent"},
                )
        db = settings.database_path
        await eventually(
            lambda: query(db, "SELECT count(*) FROM samples")[0][0] == 40, what="40 samples applied"
        )
        accepted = sample.ACCEPTED.subject(site)
        await eventually(lambda: stream_count(js, "PASSTHROUGH", accepted), what="relay")
        await eventually(lambda: runtime.relay.backlog == 0, what="outbox drained")
        assert query(db, "SELECT max(applied) FROM samples")[0][0] == 1
        assert await stream_count(js, "PASSTHROUGH", accepted) == 40
        exposition = runtime.metrics.exposition().decode()
        assert (
            'sinew_duplicates_suppressed_total{contract="ingress.sample.submitted.v1"' in exposition
        )
        assert (await runtime.status())["duplicates_suppressed"] == 8
    # The operator's figure outlives the process (the Prometheus counter starts again at 0).
    async with running(sample.definition(), settings, sample.catalogue()) as restarted:
        assert (await restarted.status())["duplicates_suppressed"] == 8
    await nc.close()


async def test_events_carry_the_envelope_correlation_causation_and_trace(nats_server, tmp_path):
    site = new_site()
    settings = settings_for("passthrough", site, nats_server, tmp_path)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    incoming_id = f"{site}-traced"
    async with running(sample.definition(), settings, sample.catalogue()) as runtime:
        await publish(
            js,
            sample.SUBMITTED_V1.subject(site),
            submitted(site, "T1"),
            site=site,
            event_id=incoming_id,
            correlation_id="case-4711",
            traceparent=f"00-{trace_id}-00f067aa0ba902b7-01",
        )
        subject = sample.ACCEPTED.subject(site)
        await eventually(lambda: stream_count(js, "PASSTHROUGH", subject), what="event out")
        await eventually(lambda: runtime.relay.backlog == 0, what="outbox drained")
    (event,) = await subject_messages(js, "PASSTHROUGH", subject)
    headers = event.headers
    assert headers["ce-type"] == "org.sinew.passthrough.sample.accepted.v1"
    assert headers["ce-source"] == f"/sinew/{site}/passthrough"
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-subject"] == "T1"
    assert headers["sinew-site"] == site
    assert headers["sinew-correlation-id"] == "case-4711"
    assert headers["sinew-causation-id"] == incoming_id
    assert headers["Nats-Msg-Id"] == headers["ce-id"] != incoming_id
    version, trace, span, flags = headers["traceparent"].split("-")
    assert (version, trace, flags) == ("00", trace_id, "01")
    assert span != "00f067aa0ba902b7", "each hop has a span of its own"
    await nc.close()
