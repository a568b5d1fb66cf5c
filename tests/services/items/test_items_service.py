"""The items service through its public interfaces: the MDM ingress subject, the HTTP API, NATS
request/reply, the canonical events on the ITEMS stream and the KV bucket other systems read."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

import msgspec
import pytest
import scenario_data as s
from helpers import eventually, subject_messages
from items_support import CLERK
from nats.js.errors import KeyNotFoundError

from sinew.contracts import CATALOGUE
from sinew.contracts.common import Quantity
from sinew.contracts.envelope import CE_SUBJECT
from sinew.contracts.items import ItemUpserted
from sinew.masterdata.rules import contract_price

pytestmark = pytest.mark.asyncio

encode = msgspec.json.Encoder(decimal_format="string").encode


async def applied(items, n: int, outcome: str = "applied") -> None:
    async def seen() -> bool:
        _, body = await items.get("/v1/changes", outcome=outcome)
        return body["total"] >= n

    await eventually(seen, what=f"{n} changes {outcome}")


async def load_scenario(items) -> None:
    await items.send(*[s.as_upsert(r) for r in s.master_data(items.site)])
    await applied(items, len(s.master_data()))


def api_body(record) -> dict:
    body = msgspec.to_builtins(record)
    for name in ("version", "source", "upserted_at", "site"):
        body.pop(name)
    return body


async def test_an_mdm_upsert_becomes_the_canonical_event_at_its_version(items):
    await items.send(s.as_upsert(s.stent(items.site), version=4))
    subject = CATALOGUE.channel("items.item.upserted.v1").subject(items.site)

    async def published() -> bool:
        return len(await subject_messages(items.js, "ITEMS", subject)) == 1

    await eventually(published, what="the item's canonical event")
    (message,) = await subject_messages(items.js, "ITEMS", subject)
    event = msgspec.json.decode(message.data, type=ItemUpserted)
    assert event == msgspec.structs.replace(
        s.stent(items.site), version=4, upserted_at=event.upserted_at
    )
    assert event.source == "mdm"
    assert message.headers[CE_SUBJECT] == s.STENT
    status, body = await items.get(f"/v1/items/{s.STENT}")
    assert status == 200 and body["version"] == 4


async def test_a_late_older_version_never_overwrites_a_newer_one(items):
    stent = s.stent(items.site)
    await items.send(s.as_upsert(stent, version=3, description="Stent, version 3"))
    await applied(items, 1)
    await items.send(
        s.as_upsert(stent, version=2, description="Stent, version 2 arriving late"),
        s.as_upsert(stent, version=3, description="Stent, version 3 sent again, changed"),
    )
    await applied(items, 2, outcome="stale")
    _, body = await items.get(f"/v1/items/{s.STENT}")
    assert (body["version"], body["description"]) == (3, "Stent, version 3")
    assert [(e.version, e.description) for e in await items.events()] == [(3, "Stent, version 3")]
    _, changes = await items.get("/v1/changes", record_id=s.STENT, outcome="stale")
    assert [(c["version"], c["notes"]) for c in changes["items"]] == [
        (3, ["version 3 is held"]),
        (2, ["version 3 is held"]),
    ]
    _, dead = await items.get("/v1/dead-letters")
    assert dead["total"] == 0, "a late version is not an error"
    async with items.http.get("/metrics") as response:
        metrics = await response.text()
    assert (
        f'sinew_items_stale_versions_ignored_total{{kind="item",service="items",site="{items.site}"}} 2.0'
        in metrics
    )


async def test_an_http_upsert_gets_the_next_version_and_answers_401_403_409_422(items):
    path = f"/v1/items/{s.STENT}"
    body = api_body(s.stent(items.site))
    assert (await items.put(path, body, headers={}))[1]["error"]["code"] == "unauthenticated"
    status, refused = await items.put(path, body, headers=CLERK)
    assert status == 403 and refused["error"]["code"] == "forbidden"

    status, created = await items.put(path, body)
    assert status == 201, created
    assert (created["record"]["version"], created["record"]["source"]) == (1, "api")
    assert created["notes"] == ["supplier MEDSUP is not known yet"]
    status, updated = await items.put(path, {**body, "description": "Renamed"})
    assert status == 200 and updated["record"]["version"] == 2

    status, conflict = await items.put(path, {**body, "version": 2})
    assert status == 409
    assert conflict["error"] == {
        "code": "version_conflict",
        "message": f"item {s.STENT} is at version 2; version 2 is not newer",
        "details": {"current_version": 2},
    }
    status, jumped = await items.put(path, {**body, "version": 5})
    assert status == 200 and jumped["record"]["version"] == 5

    status, invalid = await items.put(path, {**body, "description": 5})
    assert status == 422
    assert invalid["error"]["code"] == "invalid"
    assert invalid["error"]["message"] == "Expected `str`, got `int` - at `$.description`"
    status, malformed = await items.put(path, b'{"description": ')
    assert status == 400 and malformed["error"]["code"] == "malformed"
    status, mismatch = await items.put(path, {**body, "item_id": "OTHER"})
    assert status == 422 and "item_id 'OTHER' does not match" in mismatch["error"]["message"]

    guidewire = s.guidewire(items.site)
    assert (await items.put(f"/v1/items/{s.GUIDEWIRE}", api_body(guidewire)))[0] == 201
    thief = {**body, "packs": [{"uom": "BX", "base_units": "1", "gtin": s.GUIDEWIRE_BOX_GTIN}]}
    status, rejected = await items.put(path, thief)
    assert status == 422
    assert rejected["error"] == {
        "code": "rejected",
        "message": f"item {s.STENT}: GTIN {s.GUIDEWIRE_BOX_GTIN} already belongs to item "
        f"{s.GUIDEWIRE}",
    }

    async def three_events() -> bool:
        return len([e for e in await items.events() if e.item_id == s.STENT]) == 3

    await eventually(three_events, what="one event per accepted change")
    events = [e for e in await items.events() if e.item_id == s.STENT]
    assert [(e.version, e.source) for e in events] == [(1, "api"), (2, "api"), (5, "api")]
    _, changes = await items.get("/v1/changes", record_id=s.STENT)
    assert {c["changed_by"] for c in changes["items"]} == {"ana"}


async def test_every_kind_of_record_is_upserted_over_http_with_its_own_rules(items):
    status, contract = await items.put(
        f"/v1/contracts/{s.CONTRACT}", api_body(s.medsup_contract(items.site))
    )
    assert status == 201
    assert f"item {s.STENT} is not known yet; its unit EA is unchecked" in contract["notes"]
    substitution = {**api_body(s.stent_substitution(items.site)), "substitute_item_id": s.STENT}
    status, rejected = await items.put(f"/v1/substitutions/{s.SUBSTITUTION}", substitution)
    assert status == 422
    assert rejected["error"]["message"] == (
        f"substitution {s.SUBSTITUTION}: item {s.STENT} cannot substitute for itself"
    )
    for collection, identity, record in [
        ("suppliers", s.MEDSUP, s.medsup(items.site)),
        ("cost-centres", s.CARDIOLOGY, s.cardiology(items.site)),
        ("locations", s.CATH_LAB, s.cath_lab(items.site)),
        ("substitutions", s.SUBSTITUTION, s.stent_substitution(items.site)),
    ]:
        status, body = await items.put(f"/v1/{collection}/{identity}", api_body(record))
        assert status == 201, body
        status, shown = await items.get(f"/v1/{collection}/{identity}")
        assert status == 200 and shown["version"] == 1
    _, listed = await items.get("/v1/contracts", item_id=s.GUIDEWIRE)
    assert [c["contract_number"] for c in listed["items"]] == [s.CONTRACT]
    status, missing = await items.get("/v1/locations/NOWHERE")
    assert status == 404 and missing["error"]["code"] == "not_found"
    events = await items.events("items.location.upserted.v1")
    assert [(e.location_id, e.par_levels[0].par_level) for e in events] == [
        (s.CATH_LAB, Decimal(4))
    ]


async def test_items_are_found_by_id_gtin_and_gs1_or_hibc_udi_over_http(items):
    await load_scenario(items)
    expiry = date.today() + timedelta(days=400)
    status, stent = await items.get(f"/v1/items/{s.STENT}")
    assert status == 200 and stent["gtin"] == s.STENT_GTIN
    _, by_gtin12 = await items.get("/v1/items", gtin=s.GUIDEWIRE_GTIN[2:])
    assert [i["item_id"] for i in by_gtin12["items"]] == [s.GUIDEWIRE]
    _, by_box = await items.get("/v1/items", gtin=s.GUIDEWIRE_BOX_GTIN)
    assert [i["item_id"] for i in by_box["items"]] == [s.GUIDEWIRE]
    barcode = s.gs1_barcode(s.STENT_GTIN, lot="L1", serial="S1", expiry=expiry)
    _, by_udi = await items.get("/v1/items", udi=barcode)
    assert [i["item_id"] for i in by_udi["items"]] == [s.STENT]
    _, none = await items.get("/v1/items", gtin="00000000000000")
    assert none["total"] == 0

    status, scanned = await items.get("/v1/lookup/udi", barcode=barcode)
    assert status == 200
    assert (scanned["item"]["item_id"], scanned["uom"]) == (s.STENT, "EA")
    assert scanned["udi"] == {
        "issuer": "GS1",
        "device_identifier": s.STENT_GTIN,
        "lot": "L1",
        "serial": "S1",
        "expiry": expiry.isoformat(),
    }
    # A box of 10 scanned as the raw element string (FNC1 as GS) is the box unit.
    raw = f"01{s.GUIDEWIRE_BOX_GTIN}17{expiry:%y%m%d}10LOT5\x1d"
    _, box = await items.get("/v1/lookup/udi", barcode=raw)
    assert (box["item"]["item_id"], box["uom"], box["udi"]["lot"]) == (s.GUIDEWIRE, "BX", "LOT5")
    hibc = s.hibc_barcode(s.ICD_HIBC_DI, serial="ICD-SN-9", expiry=expiry)
    _, icd = await items.get("/v1/lookup/udi", barcode=hibc)
    assert (icd["item"]["item_id"], icd["item"]["consignment"], icd["uom"]) == (s.ICD, True, "EA")
    assert (icd["udi"]["issuer"], icd["udi"]["serial"]) == ("HIBCC", "ICD-SN-9")
    assert icd["udi"]["expiry"] == expiry.isoformat()

    status, unknown = await items.get("/v1/lookup/udi", barcode=s.gs1_barcode("00812345000047"))
    assert status == 404 and unknown["error"]["code"] == "unknown_device"
    status, garbage = await items.get("/v1/lookup/udi", barcode="+H123ICD0110X")
    assert status == 400 and garbage["error"]["code"] == "bad_barcode"
    assert "HIBC: check character" in garbage["error"]["message"]

    _, page1 = await items.get("/v1/items", q="coronary", category="CARDIAC-STENT", limit=2)
    assert page1["total"] == 3 and page1["next_offset"] == 2
    assert [i["item_id"] for i in page1["items"]] == [s.BARE_METAL_STENT, s.STENT]
    _, page2 = await items.get("/v1/items", q="coronary", limit=2, offset=2)
    assert [i["item_id"] for i in page2["items"]] == [s.STENT_V2]


async def request(items, endpoint: str, body: dict):
    return await items.nc.request(
        f"sinew.api.{items.site}.items.{endpoint}", json.dumps(body).encode(), timeout=5
    )


async def test_lookups_and_the_price_answer_over_nats_request_reply(items):
    await load_scenario(items)
    reply = await request(items, "lookup.item", {"gtin": s.STENT_BOX_GTIN})
    found = json.loads(reply.data)
    assert (found["item"]["item_id"], found["uom"]) == (s.STENT, "BX")
    reply = await request(items, "lookup.item", {"item_id": s.ICD})
    assert json.loads(reply.data)["item"]["udi_di"] == s.ICD_HIBC_DI
    reply = await request(items, "lookup.udi", {"barcode": s.hibc_barcode(s.ICD_HIBC_DI, lot="L7")})
    assert json.loads(reply.data)["udi"]["lot"] == "L7"
    reply = await request(
        items,
        "price",
        {
            "item_id": s.GUIDEWIRE,
            "supplier_id": s.MEDSUP,
            "on": "2025-03-01",
            "quantity": 5,
            "uom": "BX",
        },
    )
    assert json.loads(reply.data)["unit_price"] == "430.0000"

    reply = await request(items, "lookup.item", {"item_id": "NOPE"})
    assert reply.headers["Nats-Service-Error-Code"] == "404"
    assert json.loads(reply.data)["error"]["code"] == "unknown_item"
    reply = await request(items, "lookup.udi", {"barcode": "not a barcode"})
    assert reply.headers["Nats-Service-Error-Code"] == "400"
    reply = await items.nc.request(f"sinew.api.{items.site}.items.price", b"{", timeout=5)
    assert json.loads(reply.data)["error"]["code"] == "malformed"


PRICES = [  # item, quantity, unit, unit price in that unit, tier that applied
    (s.STENT, "2", "EA", "1200.0000", None),
    (s.STENT, "1", "BX", "1200.0000", None),  # a box of 1 costs what one each costs
    (s.GUIDEWIRE, "2", "BX", "450.0000", None),
    (s.GUIDEWIRE, "5", "BX", "430.0000", "5"),  # from 5 boxes the tier applies
    (s.GUIDEWIRE, "20", "EA", "45.0000", None),  # 20 each is 2 boxes: 450 / 10
    (s.GUIDEWIRE, "50", "EA", "43.0000", "5"),  # 50 each is 5 boxes: the tier, per each
    (s.GUIDEWIRE, "1", "CA", "4300.0000", "5"),  # a case of 100 is 10 boxes
]


async def test_the_contract_price_in_force_is_the_shared_rule_over_http_and_nats(items):
    await load_scenario(items)
    catalogue = {r.item_id: r for r in s.master_data(items.site) if isinstance(r, ItemUpserted)}
    for item, quantity, uom, unit_price, tier in PRICES:
        query = {
            "item_id": item,
            "supplier_id": s.MEDSUP,
            "on": "2025-06-30",
            "quantity": quantity,
            "uom": uom,
        }
        status, quote = await items.get("/v1/prices", **query)
        assert status == 200, quote
        assert (quote["unit_price"], quote["tier_min_quantity"]) == (unit_price, tier), query
        expected = contract_price(
            catalogue[item],
            [s.medsup_contract(items.site)],
            s.MEDSUP,
            date(2025, 6, 30),
            Quantity(Decimal(quantity), uom),
        )
        assert quote == json.loads(encode(expected))
        assert json.loads((await request(items, "price", query)).data) == quote


async def test_a_price_nobody_agreed_or_in_an_unknown_unit_is_answered_as_such(items):
    await load_scenario(items)
    base = {"item_id": s.STENT, "supplier_id": s.MEDSUP}
    status, before = await items.get("/v1/prices", **base, on="2023-12-31")
    assert status == 404 and before["error"]["code"] == "no_contract_price"
    status, other = await items.get("/v1/prices", **{**base, "supplier_id": "OTHER"})
    assert status == 404 and other["error"]["message"].startswith("no contract of OTHER")
    status, unit = await items.get("/v1/prices", **base, uom="CA")
    assert status == 422 and unit["error"]["code"] == "unknown_unit"
    status, bad = await items.get("/v1/prices", **base, on="yesterday")
    assert status == 400 and bad["error"]["code"] == "bad_query"
    status, today = await items.get("/v1/prices", **base)
    assert status == 200 and today["unit_price"] == "1200.0000"


async def kv_value(kv, key: str) -> dict | None:
    try:
        return json.loads((await kv.get(key)).value)
    except KeyNotFoundError:
        return None


async def test_the_kv_bucket_holds_the_latest_version_by_record_and_code(items):
    guidewire = s.guidewire(items.site)
    await items.send(s.as_upsert(guidewire), s.as_upsert(s.stent(items.site)))
    await applied(items, 2)

    async def bucket():
        try:
            return await items.js.key_value(f"items_{items.site}")
        except Exception:
            return None

    await eventually(bucket, what="the bucket created")
    kv = await bucket()
    # Other systems may find a version written in the bucket that this service has not seen
    # yet (a restore, a second writer): the service never writes an older one over it.
    await kv.put(f"item.{s.STENT}", encode(msgspec.structs.replace(s.stent(items.site), version=9)))
    await items.send(
        s.as_upsert(guidewire, version=2, packs=guidewire.packs[:1]),
        s.as_upsert(s.stent(items.site), version=3),
    )
    await applied(items, 4)

    async def settled() -> bool:
        pending = await items.runtime.store.fetch_one("SELECT count(*) FROM kv_pending")
        return pending[0] == 0

    await eventually(settled, what="every change put in the bucket")
    assert (await kv_value(kv, f"item.{s.GUIDEWIRE}"))["version"] == 2
    assert (await kv_value(kv, f"gtin.{s.GUIDEWIRE_BOX_GTIN}"))["version"] == 2
    assert (await kv_value(kv, f"gtin.{s.GUIDEWIRE_GTIN}"))["item_id"] == s.GUIDEWIRE
    assert await kv_value(kv, f"gtin.{s.GUIDEWIRE_CASE_GTIN}") is None, "a code given up"
    assert (await kv_value(kv, f"item.{s.STENT}"))["version"] == 9
    assert (await kv_value(kv, f"gtin.{s.STENT_GTIN}"))["version"] == 3


async def test_a_malformed_masterdata_document_is_a_dead_letter_with_a_precise_reason(items):
    stent = msgspec.to_builtins(s.as_upsert(s.stent(items.site)))
    del stent["description"]
    await items.send_raw(b'{"kind": "item", "site": ')
    await items.send_raw(msgspec.json.encode(stent))
    await items.send_raw(msgspec.json.encode({**stent, "kind": "widget", "description": "x"}))
    await items.send(s.as_upsert(s.stent(items.site), gtin="00812345000017"))
    await items.send(s.as_upsert(s.stent_substitution(items.site), substitute_item_id=s.STENT))

    async def five() -> bool:
        return (await items.get("/v1/dead-letters"))[1]["total"] == 5

    await eventually(five, what="five dead letters")
    _, dead = await items.get("/v1/dead-letters", limit=10)
    reasons = sorted((d["cause"], d["reason"]) for d in dead["items"])
    contract = "ingress.masterdata.upserted.v1"
    assert reasons == sorted(
        [
            ("malformed", "malformed JSON: Input data was truncated"),
            ("invalid", f"{contract}: Object missing required field `description`"),
            ("invalid", f"{contract}: Invalid value 'widget' - at `$.kind`"),
            (
                "invalid",
                f"item {s.STENT}: gtin 00812345000017: Invalid GTIN check digit for "
                "'00812345000017': Expected 6, got 7.",
            ),
            (
                "invalid",
                f"substitution {s.SUBSTITUTION}: item {s.STENT} cannot substitute for itself",
            ),
        ]
    )
    assert await items.events() == []
