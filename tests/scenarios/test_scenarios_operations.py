"""SCENARIOS.md 11, 12 and 14: what operations rely on. Bad input becomes a dead letter that
says why and can be replayed once fixed; a redelivered event or a crash between commit and ack
applies nothing twice; two sites side by side never touch each other's state."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
from decimal import Decimal

import msgspec
import pytest
import scenario_data as scenario
from helpers import eventually
from hospital import Hospital, Refused, Steps
from outside_systems import (
    STENT_PART,
    Charge,
    adjustment,
    asn,
    counted,
    each,
    hl7_dft,
    lot,
    payment,
    q,
    shipped,
    stent_invoice,
    stent_udi,
    stent_unit,
    stock_count,
    usage_json,
    x12_810,
)

from sinew.contracts.envelope import CE_ID
from sinew.contracts.items import PackSize
from sinew.contracts.replenishment import AdjustedLine


async def dead_letter_of(hospital: Hospital, service: str, event_id: str) -> dict:
    """The dead letter a service recorded for the message with this event id, as an operator
    sees it: cause, reason, the original headers and bytes."""
    found: list[dict] = []

    async def recorded() -> bool:
        listed = await hospital.get(service, "north", "/v1/dead-letters?status=&limit=500")
        for item in reversed(listed["items"]):
            shown = await hospital.get(service, "north", f"/v1/dead-letters/{item['id']}")
            if shown["headers"].get(CE_ID) == event_id:
                found.append(shown)
                return True
        return False

    await eventually(recorded, timeout=30, what=f"{service} dead-letters {event_id}")
    return found[-1]


def original_bytes(dead_letter: dict) -> bytes:
    if "payload_base64" in dead_letter:
        return base64.b64decode(dead_letter["payload_base64"])
    return dead_letter["payload"].encode()


def wrong_segment_count(document: bytes) -> bytes:
    """The 810 with SE01 one more than the segments it closes."""
    return re.sub(
        rb"^SE\*(\d+)\*",
        lambda m: b"SE*%d*" % (int(m.group(1)) + 1),
        document,
        count=1,
        flags=re.MULTILINE,
    )


async def replay(hospital: Hospital, service: str, dead_letter_id: str, corrected=None) -> dict:
    (result,) = (
        await hospital.call(
            "POST",
            service,
            "north",
            f"/v1/dead-letters/{dead_letter_id}/replay",
            role="operator",
            data=corrected,
        )
    )["results"]
    return result


async def test_scenario_11_bad_input(hospital):
    north = Steps(hospital)
    po = await north.order(scenario.STENT, each(1))
    await north.receive(po, stent_unit("L11", "S11-1"))
    dead_letters_before = {
        service: (await hospital.get(service, "north", "/v1/dead-letters"))["total"]
        for service in ("matching", "receiving", "usage", "replenishment")
    }

    valid_asn = msgspec.to_builtins(
        asn(
            "north", "ASN-11", po, shipped(1, q(1), [lot("L11", "S11-1")], supplier_part=STENT_PART)
        )
    )
    count = msgspec.to_builtins(
        stock_count("north", "COUNT-11", scenario.CATH_LAB, counted(scenario.GUIDEWIRE, q(10)))
    )
    oversized = msgspec.to_builtins(stent_invoice("north", "INV-11-BIG", po))
    x12_invoice = x12_810(stent_invoice("north", "INV-11-X12", po))
    hl7_case = "CASE-11"
    good_hl7 = hl7_dft(
        "MSG-11", hl7_case, [Charge("TX-11", udi=stent_udi("L11", "S11-1"))], mrn="MRN-SYN-1101"
    )
    bad_input = {
        # kind: (sender, channel, bytes, the service that reads it, subject when not the channel's)
        "malformed_json": (
            "ap",
            "ingress.invoice.submitted.v1",
            b'{"site": "north", "invoice_number": "INV-11-A", "lines": [',
            "matching",
            None,
        ),
        "missing_field": (
            "supplier",
            "ingress.asn.submitted.v1",
            json.dumps({k: v for k, v in valid_asn.items() if k != "asn_number"}).encode(),
            "receiving",
            None,
        ),
        "wrong_type": (
            "warehouse",
            "ingress.inventory.counted.v1",
            json.dumps({**count, "location_id": 7}).encode(),
            "replenishment",
            None,
        ),
        "unknown_version": (
            "erp",
            "ingress.payment.released.v1",
            msgspec.json.encode(payment("north", "PAY-11", ("INV-11-A", "1200.00"))),
            "matching",
            "sinew.ingress.north.payment.released.v2",
        ),
        "oversized": (
            "ap",
            "ingress.invoice.submitted.v1",
            json.dumps({**oversized, "note": "x" * 300_000}).encode(),
            "matching",
            None,
        ),
        "hl7_invalid": (
            "ehr",
            "ingress.usage-hl7.received.v1",
            hl7_dft(
                "MSG-11",
                hl7_case,
                [Charge("TX-11", udi=stent_udi("L11", "S11-1"))],
                mrn="MRN-SYN-1101",
                with_evn=False,
            ),
            "usage",
            None,
        ),
        "x12_segment_count": (
            "supplier",
            "ingress.invoice-x12.received.v1",
            wrong_segment_count(x12_invoice),
            "matching",
            None,
        ),
    }
    dead = {}
    for kind, (sender, channel, data, service, subject) in bad_input.items():
        sent = await hospital.send(sender, "north", channel, data, subject=subject)
        dead[kind] = await dead_letter_of(hospital, service, sent.event_id)
        assert original_bytes(dead[kind]) == data, f"{kind}: the original bytes are kept"

    expected = {
        "malformed_json": ("malformed", "malformed JSON"),
        "missing_field": ("invalid", "Object missing required field `asn_number`"),
        "wrong_type": ("invalid", "Expected `str`, got `int` - at `$.location_id`"),
        "unknown_version": ("unknown_contract", "payment.released v2 is not a contract version"),
        "oversized": ("oversized", "262144"),
        "hl7_invalid": ("invalid", "DFT_P03.EVN"),
        "x12_segment_count": ("malformed", "SE01 says"),
    }
    for kind, (cause, says) in expected.items():
        assert dead[kind]["cause"] == cause, (kind, dead[kind]["cause"], dead[kind]["reason"])
        assert says in dead[kind]["reason"], (kind, dead[kind]["reason"])
    assert "MRN-SYN-1101" not in dead["hl7_invalid"]["reason"]

    # No service fell over: every one is ready and still taking messages.
    assert set((await hospital.alive("north")).values()) == {200}
    for service, before in dead_letters_before.items():
        kinds = [k for k, v in bad_input.items() if v[3] == service]
        now = (await hospital.get(service, "north", "/v1/dead-letters"))["total"]
        assert now == before + len(kinds), service

    # The senders fix their documents; operators replay them, each applied once however often.
    corrected_asn = json.dumps(valid_asn).encode()
    assert (await replay(hospital, "receiving", dead["missing_field"]["id"], corrected_asn))[
        "outcome"
    ] == "applied"
    shown = await hospital.get("receiving", "north", "/v1/asns/ASN-11")
    assert shown["orders"][0]["po_number"] == po

    outcome = await replay(hospital, "matching", dead["x12_segment_count"]["id"], x12_invoice)
    assert outcome["outcome"] == "applied"
    again = await replay(hospital, "matching", dead["x12_segment_count"]["id"], x12_invoice)
    assert again["outcome"] == "already_applied"
    approved = await north.invoice_reaches("INV-11-X12", "approved")
    assert [s["source_format"] for s in approved["submissions"]] == ["x12"]

    # The HL7 one over the NATS admin endpoint, as `sinew dlq replay` does.
    operator = await hospital.connect("operator")
    request = {
        "ids": [dead["hl7_invalid"]["id"]],
        "payload_base64": base64.b64encode(good_hl7).decode(),
        "by": "olga.sre",
    }
    for outcome in ("applied", "already_applied"):
        reply = await operator.request(
            "sinew.admin.north.usage.dlq.replay", json.dumps(request).encode(), timeout=5
        )
        assert json.loads(reply.data)["results"][0]["outcome"] == outcome
    (usage,) = await north.usages_reach(hl7_case, 1)
    assert usage["serial"] == "S11-1"

    # A cause fixed in master data rather than in the message: the warehouse counts guidewires
    # in packs of 5 the item master does not know yet. Replayed as stored once it does.
    sent = await hospital.send(
        "warehouse",
        "north",
        "ingress.inventory.counted.v1",
        adjustment(
            "north",
            "ADJ-11",
            scenario.CATH_LAB,
            AdjustedLine(item_id=scenario.GUIDEWIRE, change=q(2, "PK"), reason="found", lot="GW11"),
        ),
    )
    unit = await dead_letter_of(hospital, "replenishment", sent.event_id)
    assert unit["cause"] == "invalid" and "PK" in unit["reason"], unit["reason"]
    guidewire = scenario.guidewire("north")
    fixed = msgspec.structs.replace(
        guidewire, version=2, packs=(*guidewire.packs, PackSize(uom="PK", base_units=Decimal(5)))
    )
    await hospital.send("mdm", "north", "ingress.masterdata.upserted.v1", scenario.as_upsert(fixed))
    await hospital.wait_events(
        "items.item.upserted.v1", "north", item_id=scenario.GUIDEWIRE, version=2
    )
    await hospital.caught_up_with_items("north")
    assert (await replay(hospital, "replenishment", unit["id"]))["outcome"] == "applied"
    assert (await replay(hospital, "replenishment", unit["id"]))["outcome"] == "already_applied"
    assert await north.on_hand(scenario.GUIDEWIRE, lot="GW11") == 10
    assert set((await hospital.alive("north")).values()) == {200}


async def test_scenario_12_redelivery_and_crash(hospital):
    north = Steps(hospital)
    po = await north.order(scenario.STENT, each(1))
    await north.receive(po, stent_unit("L12", "S12-1"))

    # The AP system sends one invoice three times under one event id: twice at once (JetStream
    # drops the copy) and once after the duplicate window (a new stream message).
    document = stent_invoice("north", "INV-12", po)
    first = await hospital.send("ap", "north", "ingress.invoice.submitted.v1", document)
    copy = await hospital.send(
        "ap", "north", "ingress.invoice.submitted.v1", document, event_id=first.event_id
    )
    assert copy.duplicate and copy.seq == first.seq
    late = await hospital.send(
        "ap",
        "north",
        "ingress.invoice.submitted.v1",
        document,
        event_id=first.event_id,
        msg_id=f"{first.event_id}-resent",
    )
    assert not late.duplicate and late.seq > first.seq
    await north.invoice_reaches("INV-12", "approved")
    await hospital.quiet("north")
    assert len((await north.invoice("INV-12"))["submissions"]) == 1
    assert await north.match_exceptions(type="DUPLICATE_INVOICE", po=po) == []
    for channel in ("matching.invoice.submitted.v1", "matching.invoice.approved.v1"):
        assert len(await hospital.events(channel, "north", invoice_number="INV-12")) == 1

    # The usage service dies right after committing a usage, before acknowledging it.
    start = await north.on_hand(scenario.STENT)
    await hospital.stop_service("usage", "north")
    case = "CASE-12"
    used = usage_json("north", "U-12", case, mrn="MRN-SYN-1201", udi=stent_udi("L12", "S12-1"))
    sent = await hospital.send("ehr", "north", "ingress.usage.recorded.v1", used)
    await hospital.send(
        "ehr",
        "north",
        "ingress.usage.recorded.v1",
        used,
        event_id=sent.event_id,
        msg_id=f"{sent.event_id}-resent",
    )
    crashing = hospital.crashable("usage", "north", faults="after_commit:0").start()
    exit_status = await asyncio.to_thread(crashing.wait_exit, 60)
    assert exit_status == -signal.SIGKILL, crashing.log()[-3000:]
    await hospital.start_service("usage", "north")

    await north.usages_reach(case, 1)
    await hospital.until(
        "the stent taken off the shelf",
        lambda: north.on_hand(scenario.STENT),
        lambda on_hand: on_hand == start - 1,
    )
    await hospital.quiet("north")
    assert len(await north.usages(case)) == 1
    (recorded,) = await hospital.events("usage.procedure-usage.recorded.v1", "north", case_id=case)
    assert await north.on_hand(scenario.STENT) == start - 1
    history = await hospital.get(
        "replenishment",
        "north",
        f"/v1/locations/{scenario.CATH_LAB}/history?item_id={scenario.STENT}&limit=500",
    )
    usage_moves = [
        m
        for m in history["items"]
        if m["kind"] == "usage" and m["reference"] in (recorded.usage_id, recorded.source_usage_id)
    ]
    assert len(usage_moves) == 1, history["items"]
    # The restarted service applied nothing: the usage was committed before the kill, and both
    # stream copies came back to be absorbed by the inbox.
    metrics = await hospital.text("usage", "north", "/metrics")
    handled = dict(
        re.findall(
            r'sinew_messages_handled_total\{contract="ingress.usage.recorded.v1",'
            r'outcome="(\w+)",service="usage",site="north"\} (\S+)',
            metrics,
        )
    )
    assert handled == {"duplicate": "2.0"}, handled


def without_clock(answer):
    """An answer without what depends on the time of asking (an exception's age, "as of")."""
    if isinstance(answer, dict):
        return {k: without_clock(v) for k, v in answer.items() if k not in ("as_of", "age_hours")}
    if isinstance(answer, list):
        return [without_clock(v) for v in answer]
    return answer


async def site_state(hospital: Hospital, site: str) -> dict:
    """Everything a site's people can see, read through every service's API."""
    reads = {
        "items": ["/v1/items?limit=500", "/v1/changes?limit=500"],
        "procurement": ["/v1/requisitions?limit=500", "/v1/purchase-orders?limit=500"],
        "receiving": ["/v1/receipts?limit=500", "/v1/asns?limit=500", "/v1/exceptions?limit=500"],
        "usage": ["/v1/usages?limit=500", "/v1/exceptions?status=all&limit=500"],
        "matching": [
            "/v1/invoices?limit=500",
            "/v1/exceptions?status=all&limit=500",
            "/v1/liabilities",
        ],
        "replenishment": ["/v1/positions?limit=500", "/v1/signals?limit=500"],
    }
    state = {}
    for service, paths in reads.items():
        for path in [*paths, "/v1/dead-letters?status=&limit=500"]:
            answer = await hospital.get(service, site, path, role="admin")
            state[f"{service} {path}"] = without_clock(answer)
    return state


async def purchase_to_pay(hospital: Hospital, site: str) -> None:
    """One site's day with the same business keys as the other's: a PO, the same lot and
    serial received and used in a case, the same invoice number paid, a stock count."""
    steps = Steps(hospital, site)
    po = await steps.order(scenario.STENT, each(1))
    await steps.receive(po, stent_unit("L14", "S14-1"))
    await hospital.send(
        "ehr",
        site,
        "ingress.usage.recorded.v1",
        usage_json(site, "U-14", "CASE-14", mrn="MRN-SYN-1401", udi=stent_udi("L14", "S14-1")),
    )
    await hospital.send(
        "ap", site, "ingress.invoice.submitted.v1", stent_invoice(site, "INV-14", po)
    )
    await hospital.send(
        "erp", site, "ingress.payment.released.v1", payment(site, "PAY-14", ("INV-14", "1200.00"))
    )
    await hospital.send(
        "warehouse",
        site,
        "ingress.inventory.counted.v1",
        stock_count(site, "COUNT-14", scenario.CATH_LAB, counted(scenario.GUIDEWIRE, q(30))),
    )
    paid = await steps.invoice_reaches("INV-14", "paid")
    assert paid["first_pass"] is True  # not a duplicate of the other site's INV-14
    await steps.usages_reach("CASE-14", 1)
    await hospital.until(
        f"30 guidewires counted at {site}",
        lambda: steps.on_hand(scenario.GUIDEWIRE),
        lambda on_hand: on_hand == 30,
    )
    await hospital.quiet(site)


async def test_scenario_14_multi_site_isolation(hospital):
    sites = ("north", "south")
    await hospital.quiet("north")
    await hospital.quiet("south")
    for site, other in (sites, tuple(reversed(sites))):
        before = await site_state(hospital, other)
        await purchase_to_pay(hospital, site)
        await hospital.quiet(other)
        assert await site_state(hospital, other) == before, f"{site}'s day changed {other}"

    # A site's systems cannot write the other site's ingress, and its services cannot write the
    # other site's events: the server refuses, nothing is stored.
    for site, other in (sites, tuple(reversed(sites))):
        for system, channel in (
            ("ehr", "ingress.usage.recorded.v1"),
            ("ap", "ingress.invoice.submitted.v1"),
            ("supplier", "ingress.invoice-x12.received.v1"),
        ):
            subject = f"sinew.ingress.{other}.{channel.split('.', 1)[1]}"
            stored = await hospital.stored(subject)
            with pytest.raises(Refused):
                await hospital.send(
                    system, site, channel, f'{{"site": "{other}"}}'.encode(), subject=subject
                )
            assert await hospital.stored(subject) == stored, subject
            errors = hospital.permission_errors[f"{system}-{site}"]
            assert any("permissions violation" in str(e).lower() for e in errors), errors
        service = await hospital.connect(f"usage-{site}")
        subject = f"sinew.usage.{other}.procedure-usage.recorded.v1"
        stored = await hospital.stored(subject)
        with pytest.raises(Exception):  # noqa: B017 (a timeout or no responders, by client path)
            await service.jetstream().publish(subject, b"{}", timeout=1)
        assert await hospital.stored(subject) == stored
