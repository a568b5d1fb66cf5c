"""The item master's system API: upserts and reads over HTTP, and the same lookups and contract
price over NATS request/reply (sinew.api.<site>.items.lookup.item | lookup.udi | price)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
from aiohttp import web
from nats.micro.request import Request

from sinew.common.http import PRINCIPAL, ApiError, json_response, page, paged, requires
from sinew.contracts.common import Quantity
from sinew.masterdata.barcodes import BarcodeError, ScannedUdi, parse_udi
from sinew.masterdata.replica import MasterData
from sinew.masterdata.rules import UnknownUnit

from . import store
from .domain import KINDS, Kind, Rejected, VersionConflict
from .handlers import count_stale_versions

_encoder = msgspec.json.Encoder(decimal_format="string")
GTIN = re.compile(r"^(\d{8}|\d{12,14})$")


class Answer(Exception):
    """A lookup that cannot answer as asked: an HTTP status and the same code over NATS."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# -- lookups shared by HTTP and NATS (run on the database thread) -------------------------------


def _found(item, uom: str | None) -> dict:
    return {"item": item, "uom": uom or item.base_uom}


def find_item(conn: sqlite3.Connection, query: Mapping[str, Any]) -> dict:
    md = MasterData(conn)
    if query.get("item_id"):
        item = md.item(str(query["item_id"]))
        if item is None:
            raise Answer(404, "unknown_item", f"no item {query['item_id']}")
        return _found(item, None)
    if query.get("gtin"):
        gtin = str(query["gtin"])
        if not GTIN.match(gtin):
            raise Answer(400, "bad_gtin", f"{gtin!r} is not a GTIN-8, -12, -13 or -14")
        found = md.item_by_code(gtin=gtin)
        if found is None:
            raise Answer(404, "unknown_item", f"no item has GTIN {gtin}")
        return _found(*found)
    if query.get("udi_di"):
        found = md.item_by_code(udi_di=str(query["udi_di"]))
        if found is None:
            raise Answer(404, "unknown_item", f"no item has UDI-DI {query['udi_di']}")
        return _found(*found)
    raise Answer(400, "bad_query", "give item_id, gtin or udi_di")


def scan(barcode: str | None) -> ScannedUdi:
    if not barcode:
        raise Answer(400, "bad_query", "give the barcode as scanned")
    try:
        return parse_udi(barcode)
    except BarcodeError as error:
        raise Answer(400, "bad_barcode", str(error)) from None


def find_device(conn: sqlite3.Connection, scanned: ScannedUdi) -> dict:
    """The item a scanned UDI names, the unit its packaging level holds, and what it carried."""
    md = MasterData(conn)
    found = md.item_by_code(udi_di=scanned.device_identifier)
    if scanned.gtin:
        found = md.item_by_code(gtin=scanned.gtin) or found
    if found is None:
        raise Answer(
            404,
            "unknown_device",
            f"no item has {scanned.issuer} device identifier {scanned.device_identifier}",
        )
    return {**_found(*found), "udi": scanned}


def _quantity(value: Any) -> Decimal:
    try:
        quantity = Decimal(str(value))
    except InvalidOperation:
        raise Answer(400, "bad_query", f"quantity {value!r} is not a number") from None
    if not quantity.is_finite() or quantity <= 0:
        raise Answer(400, "bad_query", "quantity must be greater than 0")
    return quantity


def price_in_force(conn: sqlite3.Connection, query: Mapping[str, Any]) -> Any:
    """sinew.masterdata.rules.contract_price over what the item master holds: the very function
    every other service calls on its own replica."""
    missing = [name for name in ("item_id", "supplier_id") if not query.get(name)]
    if missing:
        raise Answer(400, "bad_query", f"give {' and '.join(missing)}")
    try:
        on = date.fromisoformat(str(query["on"])) if query.get("on") else date.today()
    except ValueError:
        raise Answer(400, "bad_query", f"on={query['on']!r} is not a date (YYYY-MM-DD)") from None
    md = MasterData(conn)
    item = md.item(str(query["item_id"]))
    if item is None:
        raise Answer(404, "unknown_item", f"no item {query['item_id']}")
    quantity = Quantity(_quantity(query.get("quantity", 1)), str(query.get("uom") or item.base_uom))
    try:
        quote = md.price(item.item_id, str(query["supplier_id"]), on, quantity)
    except UnknownUnit as error:
        raise Answer(422, "unknown_unit", str(error)) from None
    if quote is None:
        raise Answer(
            404,
            "no_contract_price",
            f"no contract of {query['supplier_id']} prices {item.item_id} on {on}",
        )
    return quote


# -- HTTP ---------------------------------------------------------------------------------------


def decode_upsert(body: bytes, kind: Kind, identity: str, site: str) -> tuple[Any, int | None]:
    """The record a PUT carries. Its id and site come from the URL and the service when left
    out, and its version is optional: the service gives the next one."""
    fields = msgspec.json.decode(body)
    if not isinstance(fields, dict):
        raise ApiError(422, "invalid", f"the body must be a JSON object: a {kind.name} record")
    if fields.pop("kind", kind.name) != kind.name:
        raise ApiError(422, "invalid", f"this is the {kind.name} resource")
    for name, expected in ((kind.identity, identity), ("site", site)):
        if fields.setdefault(name, expected) != expected:
            raise ApiError(422, "invalid", f"{name} {fields[name]!r} does not match {expected!r}")
    requested = fields.pop("version", None)
    if requested is not None and (type(requested) is not int or requested < 1):
        raise ApiError(422, "invalid", "version must be a whole number of at least 1")
    return msgspec.convert({**fields, "version": requested or 1}, kind.upsert), requested


def _bool(value: str | None, name: str) -> bool | None:
    if value in (None, ""):
        return None
    if value.lower() not in ("true", "false"):
        raise ApiError(400, "bad_query", f"{name} must be true or false")
    return value.lower() == "true"


def routes(runtime) -> list[web.RouteDef]:
    count_stale_versions(runtime)

    async def read(fn, *args):
        try:
            return await runtime.store.run(fn, *args)
        except Answer as answer:
            raise ApiError(answer.status, answer.code, answer.message) from None

    def upsert(kind: Kind):
        @requires("supply-chain")
        async def put(request: web.Request) -> web.Response:
            identity = request.match_info["id"]
            record, requested = decode_upsert(await request.read(), kind, identity, runtime.site)
            try:
                accepted = await runtime.command(
                    "upsert", record, requested, request[PRINCIPAL].name, about=identity
                )
            except VersionConflict as conflict:
                raise ApiError(
                    409, "version_conflict", str(conflict), current_version=conflict.held
                ) from None
            except Rejected as rejected:
                raise ApiError(422, "rejected", rejected.reason) from None
            return json_response(
                {"record": accepted.event, "notes": accepted.notes},
                201 if accepted.created else 200,
            )

        return put

    def show(kind: Kind):
        async def get(request: web.Request) -> web.Response:
            identity = request.match_info["id"]
            record = await runtime.store.run(
                lambda conn: store.HeldMasterData(conn).record(kind.name, identity)
            )
            if record is None:
                raise ApiError(404, "not_found", f"no {kind.name} {identity}")
            return json_response(record)

        return get

    def listing(kind: Kind):
        async def get(request: web.Request) -> web.Response:
            limit, offset = page(request)
            records, total = await runtime.store.run(
                lambda conn: store.list_records(
                    conn,
                    kind.name,
                    item_id=request.query.get("item_id"),
                    limit=limit,
                    offset=offset,
                )
            )
            return paged(records, total, limit, offset)

        return get

    async def list_items(request: web.Request) -> web.Response:
        limit, offset = page(request)
        q = request.query
        if q.get("gtin") or q.get("udi"):

            def by_code(conn: sqlite3.Connection) -> list:
                try:
                    if q.get("udi"):
                        return [find_device(conn, scan(q["udi"]))["item"]]
                    return [find_item(conn, {"gtin": q["gtin"]})["item"]]
                except Answer as answer:
                    if answer.status == 404:
                        return []
                    raise

            found = await read(by_code)
            return paged(found[offset : offset + limit], len(found), limit, offset)
        active = _bool(q.get("active"), "active")
        items, total = await runtime.store.run(
            lambda conn: store.search_items(
                conn,
                text=q.get("q"),
                category=q.get("category"),
                active=active,
                limit=limit,
                offset=offset,
            )
        )
        return paged(items, total, limit, offset)

    async def lookup_udi(request: web.Request) -> web.Response:
        barcode = request.query.get("barcode")
        return json_response(await read(lambda conn: find_device(conn, scan(barcode))))

    async def prices(request: web.Request) -> web.Response:
        return json_response(await read(price_in_force, dict(request.query)))

    async def changes(request: web.Request) -> web.Response:
        limit, offset = page(request)
        q = request.query
        found, total = await runtime.store.run(
            lambda conn: store.list_changes(
                conn,
                kind=q.get("kind"),
                record_id=q.get("record_id"),
                outcome=q.get("outcome"),
                limit=limit,
                offset=offset,
            )
        )
        return paged(found, total, limit, offset)

    table = [
        web.get("/v1/items", list_items),
        web.get("/v1/lookup/udi", lookup_udi),
        web.get("/v1/prices", prices),
        web.get("/v1/changes", changes),
    ]
    for kind in KINDS.values():
        if kind.name != "item":
            table.append(web.get(f"/v1/{kind.collection}", listing(kind)))
        table += [
            web.get(f"/v1/{kind.collection}/{{id}}", show(kind)),
            web.put(f"/v1/{kind.collection}/{{id}}", upsert(kind)),
        ]
    return table


# -- NATS request/reply -------------------------------------------------------------------------


async def _answer(request: Request, runtime, fn) -> None:
    try:
        query = msgspec.json.decode(request.data or b"{}")
        if not isinstance(query, dict):
            raise Answer(400, "bad_query", "the request must be a JSON object")
        body = await runtime.store.run(fn, query)
    except msgspec.DecodeError as error:
        await _error(request, Answer(400, "malformed", f"malformed JSON: {error}"))
        return
    except Answer as answer:
        await _error(request, answer)
        return
    await request.respond(_encoder.encode(body))


async def _error(request: Request, answer: Answer) -> None:
    body = {"error": {"code": answer.code, "message": answer.message}}
    await request.respond_error(str(answer.status), answer.message, data=_encoder.encode(body))


async def lookup_item_endpoint(runtime, request: Request) -> None:
    await _answer(request, runtime, find_item)


async def lookup_udi_endpoint(runtime, request: Request) -> None:
    await _answer(request, runtime, lambda conn, q: find_device(conn, scan(q.get("barcode"))))


async def price_endpoint(runtime, request: Request) -> None:
    await _answer(request, runtime, price_in_force)


ENDPOINTS = {
    "lookup.item": lookup_item_endpoint,
    "lookup.udi": lookup_udi_endpoint,
    "price": price_endpoint,
}
