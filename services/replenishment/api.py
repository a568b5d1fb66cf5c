"""Stock positions, items that need replenishing, signals, discrepancies and a location's history
over HTTP (all reads: the stock moves only through events), and on-hand per lot over NATS
request/reply for recalls (sinew.api.<site>.replenishment.positions)."""

from __future__ import annotations

import sqlite3

import msgspec
from aiohttp import web
from nats.micro.request import Request

from sinew.common.http import ApiError, json_response, page, paged
from sinew.masterdata.replica import MasterData

from . import store

_encoder = msgspec.json.Encoder(decimal_format="string")
SIGNAL_STATUSES = ("open", "closed")


def routes(runtime) -> list[web.RouteDef]:
    async def positions(request: web.Request) -> web.Response:
        limit, offset = page(request)
        q = request.query
        found, total = await runtime.store.run(
            lambda conn: store.list_positions(
                conn,
                location_id=q.get("location_id") or None,
                item_id=q.get("item_id") or None,
                lot=q.get("lot") or None,
                limit=limit,
                offset=offset,
            )
        )
        return paged(found, total, limit, offset)

    async def known_location(location_id: str) -> None:
        if not await runtime.store.run(store.location_known, location_id):
            raise ApiError(404, "unknown_location", f"no location {location_id} and no stock there")

    async def location_positions(request: web.Request) -> web.Response:
        limit, offset = page(request)
        location_id = request.match_info["id"]
        await known_location(location_id)

        def read(conn: sqlite3.Connection) -> list[dict]:
            md = MasterData(conn)
            location = md.location(location_id)
            par_levels = list(location.par_levels) if location and location.active else []

            def uom_of(item_id: str) -> str | None:
                item = md.item(item_id)
                return item.base_uom if item else None

            return store.location_positions(conn, location_id, par_levels, uom_of)

        found = await runtime.store.run(read)
        return paged(found[offset : offset + limit], len(found), limit, offset)

    async def below_par(request: web.Request) -> web.Response:
        limit, offset = page(request)
        location_id = request.query.get("location_id") or None
        found, total = await runtime.store.run(
            lambda conn: store.below_reorder_point(
                conn, location_id=location_id, limit=limit, offset=offset
            )
        )
        return paged(found, total, limit, offset)

    async def signals(request: web.Request) -> web.Response:
        limit, offset = page(request)
        q = request.query
        status = q.get("status") or None
        if status is not None and status not in SIGNAL_STATUSES:
            raise ApiError(400, "bad_query", "status must be open or closed")
        found, total = await runtime.store.run(
            lambda conn: store.list_signals(
                conn,
                status=status,
                location_id=q.get("location_id") or None,
                item_id=q.get("item_id") or None,
                limit=limit,
                offset=offset,
            )
        )
        return paged(found, total, limit, offset)

    async def signal(request: web.Request) -> web.Response:
        found = await runtime.store.run(store.signal, request.match_info["id"])
        if found is None:
            raise ApiError(404, "not_found", f"no signal {request.match_info['id']}")
        return json_response(found)

    async def history(request: web.Request) -> web.Response:
        limit, offset = page(request)
        location_id = request.match_info["id"]
        await known_location(location_id)
        q = request.query
        found, total = await runtime.store.run(
            lambda conn: store.history(
                conn,
                location_id,
                item_id=q.get("item_id") or None,
                lot=q.get("lot") or None,
                limit=limit,
                offset=offset,
            )
        )
        return paged(found, total, limit, offset)

    async def discrepancies(request: web.Request) -> web.Response:
        limit, offset = page(request)
        location_id = request.query.get("location_id") or None
        found, total = await runtime.store.run(
            lambda conn: store.discrepancies(
                conn, location_id=location_id, limit=limit, offset=offset
            )
        )
        return paged(found, total, limit, offset)

    return [
        web.get("/v1/positions", positions),
        web.get("/v1/locations/{id}/positions", location_positions),
        web.get("/v1/locations/{id}/history", history),
        web.get("/v1/below-par", below_par),
        web.get("/v1/signals", signals),
        web.get("/v1/signals/{id}", signal),
        web.get("/v1/discrepancies", discrepancies),
    ]


# -- NATS request/reply -------------------------------------------------------------------------


async def positions_endpoint(runtime, request: Request) -> None:
    """On-hand per location for {"lot": ...}, {"item_id": ...} or both (and "location_id")."""
    try:
        query = msgspec.json.decode(request.data or b"{}")
    except msgspec.DecodeError as error:
        await request.respond_error("400", f"malformed JSON: {error}")
        return
    if not isinstance(query, dict) or not (query.get("lot") or query.get("item_id")):
        await request.respond_error("400", "give lot, item_id or both")
        return
    found = await runtime.store.run(store.lot_positions, query)
    await request.respond(_encoder.encode({"items": found}))


ENDPOINTS = {"positions": positions_endpoint}
