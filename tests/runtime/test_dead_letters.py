"""Bad input never crashes a service and never vanishes (SCENARIOS #11, at the runtime layer)."""

from __future__ import annotations

import base64
import json

import msgspec
import nats
from helpers import eventually, new_site, publish, query, running, settings_for, subject_messages

from sinew.common.natsconfig import admin_subject
from sinew.common.testing import sample
from sinew.contracts.ops import DeadLetterRecorded


def good(site: str, sample_id: str, **fields) -> dict:
    return {"site": site, "sample_id": sample_id, "value": 7, "amount": "12.50", **fields}


async def admin(nc, site: str, verb: str, **body) -> dict:
    reply = await nc.request(
        f"{admin_subject(site, 'passthrough')}.{verb}", json.dumps(body).encode(), timeout=10
    )
    return json.loads(reply.data)


async def dead_letters(nc, site: str, **filters) -> list[dict]:
    return (await admin(nc, site, "dlq.list", **filters))["items"]


async def test_each_kind_of_bad_input_becomes_a_precise_dead_letter(nats_server, tmp_path):
    site = new_site()
    settings = settings_for("passthrough", site, nats_server, tmp_path)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    v1 = sample.SUBMITTED_V1.subject(site)
    bad = {
        "malformed": (v1, b'{"site": "' + site.encode() + b'", "sample_id": '),
        "missing": (v1, msgspec.json.encode({"site": site, "value": 1, "amount": "1"})),
        "wrong-type": (v1, msgspec.json.encode(good(site, "W", value="seven"))),
        "not-a-number": (v1, msgspec.json.encode(good(site, "N", amount="NaN"))),
        "unknown-version": (
            sample.SUBMITTED_V2.subject(site),
            msgspec.json.encode(good(site, "V")),
        ),
        "oversized": (v1, msgspec.json.encode(good(site, "O", note="x" * 300_000))),
        "other-site": (v1, msgspec.json.encode(good("elsewhere", "X"))),
        "handler-rejects": (v1, msgspec.json.encode(good(site, "R", note="reject"))),
        "exhausted": (v1, msgspec.json.encode(good(site, "T", note="transient"))),
    }
    async with running(sample.definition(), settings, sample.catalogue()) as runtime:
        for name, (subject, payload) in bad.items():
            await publish(js, subject, payload, site=site, event_id=f"{site}-{name}")
        await publish(js, v1, msgspec.json.encode(good(site, "fine")), site=site)

        async def all_recorded() -> bool:
            return len(await dead_letters(nc, site)) == len(bad)

        await eventually(all_recorded, what="every bad message dead-lettered")
        assert runtime.ready, "the service is still up"
        assert query(settings.database_path, "SELECT sample_id FROM samples") == [("fine",)]
        reasons = {}
        for dead in await dead_letters(nc, site):
            shown = await admin(nc, site, "dlq.show", id=dead["id"])
            reasons[shown["headers"]["ce-id"].removeprefix(f"{site}-")] = shown
        assert set(reasons) == set(bad)
        assert reasons["malformed"]["cause"] == "malformed"
        assert "malformed JSON" in reasons["malformed"]["reason"]
        assert reasons["missing"]["cause"] == "invalid"
        assert "missing required field `sample_id`" in reasons["missing"]["reason"]
        assert "Expected `int`, got `str` - at `$.value`" in reasons["wrong-type"]["reason"]
        assert reasons["not-a-number"]["cause"] == "invalid"
        assert (
            "Expected a finite decimal, got `NaN` - at `$.amount`"
            in reasons["not-a-number"]["reason"]
        )
        assert reasons["unknown-version"]["cause"] == "unknown_contract"
        assert (
            "v2 is not a contract version this service knows (it knows v1)"
            in (reasons["unknown-version"]["reason"])
        )
        assert reasons["oversized"]["cause"] == "oversized"
        assert "exceeds the 262144-byte limit" in reasons["oversized"]["reason"]
        assert "payload site 'elsewhere'" in reasons["other-site"]["reason"]
        assert reasons["handler-rejects"]["reason"] == "the sample's note asks to be rejected"
        assert reasons["exhausted"]["cause"] == "exhausted"
        assert "failed 4 deliveries" in reasons["exhausted"]["reason"]
        assert reasons["exhausted"]["deliveries"] == 4

        # The original bytes and headers are kept, byte for byte.
        shown = await admin(nc, site, "dlq.show", id=reasons["malformed"]["id"])
        assert shown["payload"].encode() == bad["malformed"][1]
        assert shown["headers"]["sinew-site"] == site

        # Each dead letter is announced on the service's stream, without the original bytes.
        events = await subject_messages(
            js, "PASSTHROUGH", f"sinew.passthrough.{site}.dead-letter.recorded.v1"
        )
        assert len(events) == len(bad)
        announced = [msgspec.json.decode(m.data, type=DeadLetterRecorded) for m in events]
        assert {a.dead_letter_id for a in announced} == {d["id"] for d in reasons.values()}
        assert all(len(m.data) < 2000 for m in events)
    await nc.close()


async def test_a_dead_letter_replayed_after_the_fix_is_applied_once(nats_server, tmp_path):
    """v2 arrives before the service knows it; the service is upgraded; the replay applies it."""
    site = new_site()
    settings = settings_for("passthrough", site, nats_server, tmp_path)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    async with running(sample.definition(1), settings, sample.catalogue(1)):
        for n in range(3):
            await publish(
                js,
                sample.SUBMITTED_V2.subject(site),
                msgspec.json.encode(good(site, f"V{n}", priority=1)),
                site=site,
            )

        async def three() -> bool:
            return len(await dead_letters(nc, site, cause="unknown_contract")) == 3

        await eventually(three, what="three v2 dead letters")
        first = (await dead_letters(nc, site))[0]["id"]
        result = await admin(nc, site, "dlq.replay", ids=[first], by="sre")
        assert result["results"][0]["outcome"] == "failed_again"

    async with running(sample.definition(2), settings, sample.catalogue(2)):
        result = await admin(nc, site, "dlq.replay", ids=[first], by="sre")
        assert result["results"] == [{"id": first, "outcome": "applied", "reason": None}]
        again = await admin(nc, site, "dlq.replay", ids=[first], by="sre")
        assert again["results"][0]["outcome"] == "already_applied"
        bulk = await admin(nc, site, "dlq.replay", cause="unknown_contract", by="sre")
        assert [r["outcome"] for r in bulk["results"]] == ["applied", "applied"]
        rows = query(settings.database_path, "SELECT sample_id, applied FROM samples ORDER BY 1")
        assert rows == [("V0", 1), ("V1", 1), ("V2", 1)]
        assert await dead_letters(nc, site) == []
        replayed = await dead_letters(nc, site, status="replayed")
        assert {d["replayed_by"] for d in replayed} == {"sre"}
    await nc.close()


async def test_a_dead_letter_replayed_with_corrected_bytes(nats_server, tmp_path):
    site = new_site()
    settings = settings_for("passthrough", site, nats_server, tmp_path)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    async with running(sample.definition(), settings, sample.catalogue()):
        await publish(
            js,
            sample.SUBMITTED_V1.subject(site),
            msgspec.json.encode(good(site, "C", value="12")),
            site=site,
        )

        async def one() -> bool:
            return len(await dead_letters(nc, site)) == 1

        await eventually(one, what="dead letter")
        dead = (await dead_letters(nc, site))[0]
        fixed = msgspec.json.encode(good(site, "C", value=12))
        result = await admin(
            nc,
            site,
            "dlq.replay",
            ids=[dead["id"]],
            by="ap-integration",
            payload_base64=base64.b64encode(fixed).decode(),
        )
        assert result["results"][0]["outcome"] == "applied"
        assert query(settings.database_path, "SELECT sample_id, value, applied FROM samples") == [
            ("C", 12, 1)
        ]
    await nc.close()


async def test_a_sender_resending_a_dead_lettered_event_id_gets_it_applied(nats_server, tmp_path):
    """The inbox must not swallow a corrected resend just because the first try was rejected."""
    site = new_site()
    settings = settings_for("passthrough", site, nats_server, tmp_path)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    subject = sample.SUBMITTED_V1.subject(site)
    async with running(sample.definition(), settings, sample.catalogue()):
        await publish(js, subject, b"{not json", site=site, event_id=f"{site}-evt-1")
        await eventually(
            lambda: (
                query(settings.database_path, "SELECT count(*) FROM sinew_dead_letters")[0][0] == 1
            )
        )
        await publish(
            js,
            subject,
            msgspec.json.encode(good(site, "A")),
            site=site,
            event_id=f"{site}-evt-1",
            **{"Nats-Msg-Id": f"{site}-evt-1-corrected"},
        )
        await eventually(
            lambda: query(settings.database_path, "SELECT count(*) FROM samples")[0][0] == 1
        )
        assert query(settings.database_path, "SELECT status FROM sinew_dead_letters") == [
            ("superseded",)
        ]
    await nc.close()


def test_headers_from_a_clinical_stream_leave_the_service_only_as_pseudonyms():
    """An EHR may put an MRN or encounter number in its own header values; derived events and
    dead-letter announcements carry stable pseudonyms instead."""
    from sinew.common.actor import Wiring
    from sinew.contracts.catalogue import INGRESS, Stream

    clinical = sample.CATALOGUE_V1.extended(
        [Stream("SAMPLE_CLINICAL", INGRESS, "test", publishers=("sampler",), phi=True)], []
    )
    wiring = Wiring("passthrough", "north", clinical, sample.definition().handlers)
    headers = {
        "ce-id": "MRN-4711-visit-1",
        "ce-subject": "MRN-4711",
        "sinew-correlation-id": "ENC-MRN-4711",
    }
    body = msgspec.json.encode({"site": "north", "sample_id": "A", "value": 1, "amount": "1"})
    delivery = wiring.decode(
        sample.SUBMITTED_V1.subject("north"),
        body,
        headers,
        stream="SAMPLE_CLINICAL",
        stream_seq=1,
        deliveries=1,
    )
    again = wiring.decode(
        sample.SUBMITTED_V1.subject("north"),
        body,
        headers,
        stream="SAMPLE_CLINICAL",
        stream_seq=2,
        deliveries=1,
    )
    envelope = delivery.envelope
    assert "MRN" not in f"{envelope.id}{envelope.correlation_id}{envelope.subject}"
    assert envelope.subject is None
    assert (envelope.id, envelope.correlation_id) == (
        again.envelope.id,
        again.envelope.correlation_id,
    )
    assert delivery.inbox_key == again.inbox_key, "a resend is still recognised"
