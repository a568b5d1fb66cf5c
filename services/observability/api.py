"""Read-only HTTP: business KPIs, technical health, the timeline of one transaction, and the
dashboard page; the timeline also over NATS (sinew.api.<site>.observability.timeline)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from aiohttp import web
from nats.micro.request import Request

from sinew.common.http import ApiError, json_response

from . import store
from .live import live

STATIC = Path(__file__).parent / "static"
ASSETS = {"app.js": "application/javascript", "style.css": "text/css"}


def _site(runtime, request: web.Request) -> None:
    asked = request.query.get("site")
    if asked and asked != runtime.site:
        raise ApiError(404, "unknown_site", f"this observability serves site {runtime.site}")


async def technical(runtime) -> dict:
    now = datetime.now(UTC)
    state = live(runtime)

    def read(conn):
        return {
            "latency_seconds": store.latency(conn),
            "dead_letters": store.dead_letters(conn),
            "dead_letter_reasons": store.dead_letter_reasons(conn),
            "feeds": store.feeds(conn, now),
            "events_recorded": store.event_count(conn),
        }

    figures = await runtime.store.run(read)
    return {
        "site": runtime.site,
        "as_of": now.isoformat(),
        "polled_at": state.polled_at,
        "backlog": state.backlog,
        "streams": state.streams,
        "services": [{"service": name, **s} for name, s in sorted(state.services.items())],
        "advisories": state.advisories,
        "not_visible": state.refused,
        **figures,
    }


async def timeline_of(runtime, key: str) -> dict:
    events = await runtime.store.run(store.timeline, key)
    return {"site": runtime.site, "key": key, "events": events}


def routes(runtime) -> list[web.RouteDef]:
    async def kpis(request: web.Request) -> web.Response:
        _site(runtime, request)
        now = datetime.now(UTC)
        return json_response(await runtime.store.run(store.business_kpis, runtime.site, now))

    async def technical_view(request: web.Request) -> web.Response:
        _site(runtime, request)
        return json_response(await technical(runtime))

    async def timeline(request: web.Request) -> web.Response:
        _site(runtime, request)
        key = request.query.get("key", "").strip()
        if not key:
            raise ApiError(400, "key_required", "timeline needs key= (case, lot, serial, PO, ...)")
        found = await timeline_of(runtime, key)
        if not found["events"]:
            raise ApiError(404, "not_found", f"no event names {key}")
        return json_response(found)

    async def dashboard(_: web.Request) -> web.Response:
        return web.FileResponse(STATIC / "index.html", headers={"Content-Type": "text/html"})

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise ApiError(404, "not_found", f"no asset {name}")
        return web.FileResponse(STATIC / name, headers={"Content-Type": ASSETS[name]})

    async def site(_: web.Request) -> web.Response:
        return json_response({"site": runtime.site})

    return [
        web.get("/", dashboard),
        web.get("/static/{name}", asset),
        web.get("/v1/site", site),
        web.get("/v1/kpis", kpis),
        web.get("/v1/technical", technical_view),
        web.get("/v1/timeline", timeline),
    ]


async def timeline_endpoint(runtime, request: Request) -> None:
    try:
        key = str(json.loads(request.data or b"{}").get("key", "")).strip()
    except (ValueError, AttributeError):
        key = ""
    if not key:
        await request.respond_error("400", 'timeline needs {"key": ...}')
        return
    await request.respond(msgspec.json.encode(await timeline_of(runtime, key)))


ENDPOINTS = {"timeline": timeline_endpoint}
