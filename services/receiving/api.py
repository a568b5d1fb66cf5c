"""Receiving's HTTP API: receipts, ASNs, a PO's receiving status, and the exception queue."""

from __future__ import annotations

from typing import get_args

from aiohttp import web

from sinew.common.http import (
    PRINCIPAL,
    ApiError,
    decode_body,
    error_response,
    json_response,
    page,
    paged,
    requires,
)
from sinew.common.service import Runtime
from sinew.masterdata.replica import MasterData

from . import commands, store
from .domain import ExceptionType

EXCEPTION_TYPES = set(get_args(ExceptionType))


def routes(runtime: Runtime) -> list[web.RouteDef]:
    @requires("receiving")
    async def post_receipt(request: web.Request) -> web.Response:
        body = await decode_body(request, commands.ReceiptRequest)
        status, answer = await runtime.command(
            "receive", body, request[PRINCIPAL].name, about=body.po_number
        )
        return json_response(answer, status)

    async def list_receipts(request: web.Request) -> web.Response:
        limit, offset = page(request)
        q = request.query
        items, total = await runtime.store.run(
            lambda conn: store.list_receipts(
                conn,
                po_number=q.get("po_number"),
                item_id=q.get("item_id") or q.get("item"),
                location_id=q.get("location_id") or q.get("location"),
                limit=limit,
                offset=offset,
            )
        )
        return paged(items, total, limit, offset)

    async def show_receipt(request: web.Request) -> web.Response:
        receipt_id = request.match_info["receipt_id"]
        receipt = await runtime.store.run(store.receipt_view, receipt_id)
        if receipt is None:
            return error_response(404, "not_found", f"no receipt {receipt_id}")
        return json_response(receipt)

    async def list_asns(request: web.Request) -> web.Response:
        limit, offset = page(request)
        q = request.query
        items, total = await runtime.store.run(
            lambda conn: store.list_asns(
                conn,
                po_number=q.get("po_number"),
                supplier_id=q.get("supplier_id"),
                limit=limit,
                offset=offset,
            )
        )
        return paged(items, total, limit, offset)

    async def show_asn(request: web.Request) -> web.Response:
        asn_number = request.match_info["asn_number"]

        def read(conn):
            row = conn.execute("SELECT * FROM asns WHERE asn_number=?", (asn_number,)).fetchone()
            return store.asn_view(conn, row) if row else None

        asn = await runtime.store.run(read)
        if asn is None:
            return error_response(404, "not_found", f"no ASN {asn_number}")
        return json_response(asn)

    @requires("receiving")
    async def receive_asn(request: web.Request) -> web.Response:
        raw = await request.read()
        body = (
            await decode_body(request, commands.AsnReceiptRequest)
            if raw.strip()
            else commands.AsnReceiptRequest()
        )
        asn_number = request.match_info["asn_number"]
        answer = await runtime.command(
            "receive_asn", asn_number, body, request[PRINCIPAL].name, about=asn_number
        )
        return json_response(answer, 201)

    async def receiving_status(request: web.Request) -> web.Response:
        po_number = request.match_info["po_number"]
        status = await runtime.store.run(
            lambda conn: store.receiving_status(conn, po_number, MasterData(conn))
        )
        if status is None:
            return error_response(404, "not_found", f"no purchase order {po_number} here")
        return json_response(status)

    async def list_exceptions(request: web.Request) -> web.Response:
        limit, offset = page(request)
        q = request.query
        type_ = q.get("type")
        if type_ and type_ not in EXCEPTION_TYPES:
            raise ApiError(
                400, "bad_filter", f"type must be one of {', '.join(sorted(EXCEPTION_TYPES))}"
            )
        status = q.get("status")
        if status and status not in ("open", "resolved"):
            raise ApiError(400, "bad_filter", "status must be open or resolved")
        items, total = await runtime.store.run(
            lambda conn: store.list_exceptions(
                conn,
                type_=type_,
                status=status,
                po_number=q.get("po_number"),
                limit=limit,
                offset=offset,
            )
        )
        return paged(items, total, limit, offset)

    async def show_exception(request: web.Request) -> web.Response:
        exception_id = request.match_info["exception_id"]
        row = await runtime.store.run(store.exception_row, exception_id)
        if row is None:
            return error_response(404, "not_found", f"no receiving exception {exception_id}")
        return json_response(store.exception_view(row))

    @requires("receiving")
    async def resolve_exception(request: web.Request) -> web.Response:
        body = await decode_body(request, commands.ResolveRequest)
        exception_id = request.match_info["exception_id"]
        answer = await runtime.command(
            "resolve_exception",
            exception_id,
            body,
            request[PRINCIPAL].name,
            about=exception_id,
        )
        return json_response(answer)

    return [
        web.post("/v1/receipts", post_receipt),
        web.get("/v1/receipts", list_receipts),
        web.get("/v1/receipts/{receipt_id}", show_receipt),
        web.get("/v1/asns", list_asns),
        web.get("/v1/asns/{asn_number}", show_asn),
        web.post("/v1/asns/{asn_number}/receive", receive_asn),
        web.get("/v1/purchase-orders/{po_number}/receiving-status", receiving_status),
        web.get("/v1/exceptions", list_exceptions),
        web.get("/v1/exceptions/{exception_id}", show_exception),
        web.post("/v1/exceptions/{exception_id}/resolve", resolve_exception),
    ]
