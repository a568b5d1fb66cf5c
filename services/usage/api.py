"""Usage's system API: the recall query (HTTP and NATS), usage lines, and the exception queue.

The recall answers, in one call, every case, location, time and patient token that received a
lot, a serial or a product (GTIN), and the units of it still on shelves, which it asks the
replenishment service for over NATS request/reply (`sinew.api.<site>.replenishment.positions`,
see docs/services/usage.md for the contract). When replenishment does not answer, the recall
still answers, and says on-hand is unavailable.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

import msgspec
import nats.errors
from aiohttp import web
from nats.micro.request import Request

from sinew.common.http import PRINCIPAL, ApiError, json_response, page, paged, requires
from sinew.common.natsconfig import api_subject
from sinew.masterdata.replica import MasterData

from . import store
from .domain import GTIN, UsageLine

log = logging.getLogger("sinew.usage.api")

ON_HAND_TIMEOUT = 2.0
MAX_ON_HAND_REQUESTS = 10
QUERY_KEYS = ("lot", "serial", "gtin", "item_id")
_line = msgspec.json.Decoder(UsageLine).decode
_json = msgspec.json.Decoder().decode


class BadQuery(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def recall_query(raw: dict[str, Any]) -> dict[str, str]:
    query = {k: str(raw[k]).strip() for k in QUERY_KEYS if raw.get(k) and str(raw[k]).strip()}
    if not any(k in query for k in ("lot", "serial", "gtin")):
        raise BadQuery("bad_query", "give lot=, serial= or gtin= (item_id= narrows a lot)")
    if "gtin" in query and not GTIN.match(query["gtin"]):
        raise BadQuery("bad_gtin", f"{query['gtin']!r} is not a GTIN-8, -12, -13 or -14")
    return query


def _recalled_uses(conn: sqlite3.Connection, query: dict[str, str]) -> list[dict]:
    item_ids = [query["item_id"]] if query.get("item_id") else []
    if query.get("gtin"):
        found = MasterData(conn).item_by_code(gtin=query["gtin"])
        if found:
            item_ids.append(found[0].item_id)
    return store.uses_of(
        conn,
        lot=query.get("lot"),
        serial=query.get("serial"),
        gtin=query.get("gtin"),
        item_ids=item_ids,
    )


def _use(row: dict, site: str) -> dict:
    line = _line(row["line"])
    recorded = _json(row["recorded"]) if row["recorded"] else {}
    return {
        "usage_id": row["usage_id"],
        "source_usage_id": row["source_usage_id"],
        "status": row["status"],
        "site": site,
        "case_id": row["case_id"],
        "location_id": row["location_id"],
        "used_at": row["used_at"],
        "patient_token": row["patient_token"],
        "item_id": row["item_id"],
        "gtin": row["gtin"],
        "lot": row["lot"],
        "serial": row["serial"],
        "expiry": row["expiry"],
        "quantity": {"value": str(line.quantity.value), "uom": line.quantity.uom},
        "base_quantity": recorded.get("base_quantity"),
        "procedure_code": line.procedure_code,
        "physician_id": line.physician_id,
        "voided_at": row["voided_at"],
    }


async def recall(runtime, raw: dict[str, Any]) -> dict:
    query = recall_query(raw)
    rows = await runtime.store.run(_recalled_uses, query)
    uses = [_use(row, runtime.site) for row in rows]
    # A held line received the device as much as a recorded one; a voided one did not.
    received = [u for u in uses if u["status"] in ("recorded", "held")]
    return {
        "site": runtime.site,
        "query": query,
        "cases": sorted({u["case_id"] for u in received}),
        "patient_tokens": sorted({u["patient_token"] for u in received}),
        "locations": sorted({u["location_id"] for u in received}),
        "sites": sorted({u["site"] for u in received}),
        "uses": uses,
        "on_hand": await on_hand(runtime, query, received),
    }


def on_hand_requests(query: dict[str, str], received: list[dict]) -> list[dict[str, str]]:
    """What to ask replenishment: the lot itself (with the item when one is known), else the
    lots the recalled serial or product went out of, else the items."""
    items = sorted({u["item_id"] for u in received if u["item_id"]})
    if query.get("item_id"):
        items = [query["item_id"]]
    if query.get("lot"):
        if len(items) == 1:
            return [{"item_id": items[0], "lot": query["lot"]}]
        return [{"lot": query["lot"]}]
    lots = sorted({(u["item_id"], u["lot"]) for u in received if u["item_id"] and u["lot"]})
    if query.get("serial") and lots:
        return [{"item_id": item_id, "lot": lot} for item_id, lot in lots]
    return [{"item_id": item_id} for item_id in items]


async def on_hand(runtime, query: dict[str, str], received: list[dict]) -> dict:
    requests = on_hand_requests(query, received)[:MAX_ON_HAND_REQUESTS]
    if not requests:
        return {"available": False, "reason": "on-hand unavailable: no item to ask about"}
    subject = f"{api_subject(runtime.site, 'replenishment')}.positions"
    positions: list = []
    for request in requests:
        try:
            reply = await runtime.nc.request(
                subject, json.dumps(request).encode(), timeout=ON_HAND_TIMEOUT
            )
        except nats.errors.NoRespondersError:
            return _unavailable("replenishment is not running at this site")
        except (nats.errors.TimeoutError, TimeoutError):
            return _unavailable(f"replenishment did not answer within {ON_HAND_TIMEOUT:g}s")
        except Exception as error:  # disconnected, permission: the recall itself still answers
            return _unavailable(f"replenishment could not be asked ({type(error).__name__})")
        if reply.headers and reply.headers.get("Nats-Service-Error-Code"):
            code = reply.headers.get("Nats-Service-Error-Code")
            if code == "404":
                continue  # nothing of it on any shelf
            return _unavailable(
                f"replenishment answered {code} {reply.headers.get('Nats-Service-Error', '')}".strip()
            )
        try:
            body = json.loads(reply.data or b"[]")
        except ValueError:
            return _unavailable("replenishment's answer is not JSON")
        found = body.get("positions", body.get("items", [])) if isinstance(body, dict) else body
        if not isinstance(found, list):
            return _unavailable("replenishment's answer has no positions list")
        positions.extend(found)
    return {"available": True, "source": subject, "asked": requests, "positions": positions}


def _unavailable(why: str) -> dict:
    return {"available": False, "reason": f"on-hand unavailable: {why}"}


# -- HTTP -------------------------------------------------------------------------------------


def routes(runtime) -> list[web.RouteDef]:
    async def recall_over_http(request: web.Request) -> web.Response:
        try:
            return json_response(await recall(runtime, dict(request.query)))
        except BadQuery as problem:
            raise ApiError(400, problem.code, problem.message) from None

    async def usages(request: web.Request) -> web.Response:
        limit, offset = page(request)
        filters = dict(request.query)
        items, total = await runtime.store.run(store.list_usages, filters, limit, offset)
        return paged(items, total, limit, offset)

    async def usage(request: web.Request) -> web.Response:
        found = await runtime.store.run(store.get_usage, request.match_info["usage_id"])
        if found is None:
            raise ApiError(404, "not_found", f"no usage {request.match_info['usage_id']}")
        return json_response(found)

    async def exceptions(request: web.Request) -> web.Response:
        limit, offset = page(request)
        filters = {"status": "open", **request.query}
        if filters["status"] == "all":
            filters.pop("status")
        items, total = await runtime.store.run(store.list_exceptions, filters, limit, offset)
        return paged(items, total, limit, offset)

    @requires("supply-chain")
    async def dismiss_exception(request: web.Request) -> web.Response:
        body = _json(await request.read() or b"{}")
        reason = str(body.get("reason", "")).strip() if isinstance(body, dict) else ""
        if not reason:
            raise ApiError(422, "reason_required", "say why the exception is dismissed")
        # The reason travels in events every service reads (and to the hub): never a patient's.
        if await runtime.store.run(store.names_a_patient, reason):
            raise ApiError(
                422,
                "patient_identifier",
                "the reason holds a patient's MRN; patient identifiers never leave the usage "
                "service: name the case or the exception instead",
            )
        result = await runtime.command(
            "dismiss",
            request.match_info["exception_id"],
            request[PRINCIPAL].name,
            reason[:1000],
            about=request.match_info["exception_id"],
        )
        if result is None:
            raise ApiError(404, "not_found", f"no exception {request.match_info['exception_id']}")
        return json_response(result)

    return [
        web.get("/v1/recall", recall_over_http),
        web.get("/v1/usages", usages),
        web.get("/v1/usages/{usage_id}", usage),
        web.get("/v1/exceptions", exceptions),
        web.post("/v1/exceptions/{exception_id}/dismiss", dismiss_exception),
    ]


# -- NATS -------------------------------------------------------------------------------------


async def recall_over_nats(runtime, request: Request) -> None:
    try:
        raw = json.loads(request.data or b"{}")
        if not isinstance(raw, dict):
            raise ValueError("not an object")
    except ValueError:
        await request.respond_error("400", 'send a JSON object such as {"lot": "L1"}')
        return
    try:
        answer = await recall(runtime, raw)
    except BadQuery as problem:
        await request.respond_error("400", problem.message)
        return
    await request.respond(msgspec.json.encode(answer))


ENDPOINTS = {"recall": recall_over_nats}
