"""Procurement's HTTP API under /v1: requisitions and their approval, purchase orders with their
history, and what a location has on order. Every change needs a bearer token; approving needs a
role the approval policy names for that requisition."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from sinew.common.http import (
    PRINCIPAL,
    ApiError,
    decode_body,
    json_response,
    page,
    paged,
    requires,
)

from . import commands, domain, store
from .approval import ApprovalPolicy
from .commands import Person
from .workflow import Refused

REQUISITION_STATUSES = ("pending_approval", "approved", "rejected", "cancelled")
ORIGINS = ("person", "replenishment", "bill_only")
STATES = domain.State.__args__


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise ApiError(400, "bad_filter", f"{name} must be one of {', '.join(allowed)}")
    return value


def _person(request: web.Request) -> Person:
    principal = request[PRINCIPAL]
    return Person(principal.name, principal.roles)


def routes(runtime, policy: ApprovalPolicy) -> list[web.RouteDef]:
    async def command(name: str, *args: Any, about: str | None = None) -> Any:
        try:
            return await runtime.command(name, *args, about=about)
        except Refused as refused:
            raise ApiError(refused.status, refused.code, refused.message) from None

    async def read(fn: Callable, *args: Any) -> Any:
        return await runtime.store.run(fn, *args)

    # Anyone with a token may ask for supplies; the approval policy is what guards spending.
    @requires()
    async def create_requisition(request: web.Request) -> web.Response:
        body = await decode_body(request, commands.RequisitionRequest)
        requisition_id = await command("request_requisition", _person(request), body)
        return json_response(await read(store.show_requisition, requisition_id), 201)

    async def list_requisitions(request: web.Request) -> web.Response:
        limit, offset = page(request)
        filters = dict(
            status=_choice(request, "status", REQUISITION_STATUSES),
            origin=_choice(request, "origin", ORIGINS),
            location_id=request.query.get("location_id"),
            cost_centre_id=request.query.get("cost_centre_id"),
        )
        items, total = await read(
            lambda conn: store.list_requisitions(conn, limit, offset, **filters)
        )
        return paged(items, total, limit, offset)

    async def show_requisition(request: web.Request) -> web.Response:
        requisition_id = request.match_info["requisition_id"]
        shown = await read(store.show_requisition, requisition_id)
        if shown is None:
            raise ApiError(404, "not_found", f"no requisition {requisition_id}")
        return json_response(shown)

    @requires()
    async def approve(request: web.Request) -> web.Response:
        requisition_id = request.match_info["requisition_id"]
        body = await decode_body(request, commands.Approval)
        await command("approve", _person(request), requisition_id, body, about=requisition_id)
        return json_response(await read(store.show_requisition, requisition_id))

    @requires()
    async def reject(request: web.Request) -> web.Response:
        requisition_id = request.match_info["requisition_id"]
        body = await decode_body(request, commands.Rejection)
        await command("reject", _person(request), requisition_id, body, about=requisition_id)
        return json_response(await read(store.show_requisition, requisition_id))

    async def list_purchase_orders(request: web.Request) -> web.Response:
        limit, offset = page(request)
        bill_only = _choice(request, "bill_only", ("true", "false"))
        filters = dict(
            state=_choice(request, "state", STATES),
            supplier_id=request.query.get("supplier_id"),
            location_id=request.query.get("location_id"),
            requisition_id=request.query.get("requisition_id"),
            bill_only=None if bill_only is None else int(bill_only == "true"),
        )
        items, total = await read(
            lambda conn: store.list_purchase_orders(conn, limit, offset, **filters)
        )
        return paged(items, total, limit, offset)

    async def show_purchase_order(request: web.Request) -> web.Response:
        po_number = request.match_info["po_number"]
        shown = await read(store.show_purchase_order, po_number)
        if shown is None:
            raise ApiError(404, "not_found", f"no purchase order {po_number}")
        return json_response(shown)

    @requires("supply-chain")
    async def cancel(request: web.Request) -> web.Response:
        po_number = request.match_info["po_number"]
        body = await decode_body(request, commands.PersonsReason)
        await command("cancel", _person(request), po_number, body, about=po_number)
        return json_response(await read(store.show_purchase_order, po_number))

    @requires("supply-chain")
    async def close(request: web.Request) -> web.Response:
        po_number = request.match_info["po_number"]
        body = await decode_body(request, commands.PersonsReason)
        await command("close", _person(request), po_number, body, about=po_number)
        return json_response(await read(store.show_purchase_order, po_number))

    async def on_order_for_location(request: web.Request) -> web.Response:
        """What a location is waiting for: its open POs, with backorders and substitutes."""
        limit, offset = page(request)
        location_id = request.match_info["location_id"]
        items, total = await read(
            lambda conn: store.list_purchase_orders(
                conn, limit, offset, open_only=True, location_id=location_id
            )
        )
        return paged(items, total, limit, offset)

    return [
        web.post("/v1/requisitions", create_requisition),
        web.get("/v1/requisitions", list_requisitions),
        web.get("/v1/requisitions/{requisition_id}", show_requisition),
        web.post("/v1/requisitions/{requisition_id}/approve", approve),
        web.post("/v1/requisitions/{requisition_id}/reject", reject),
        web.get("/v1/purchase-orders", list_purchase_orders),
        web.get("/v1/purchase-orders/{po_number}", show_purchase_order),
        web.post("/v1/purchase-orders/{po_number}/cancel", cancel),
        web.post("/v1/purchase-orders/{po_number}/close", close),
        web.get("/v1/locations/{location_id}/purchase-orders", on_order_for_location),
    ]
