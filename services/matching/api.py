"""The analysts' HTTP API: exception queues with their ages and amounts, one exception in its full
context, resolving and reassigning (audited and published), invoices, PO positions and the
liabilities AP reports. Every route needs a token with an analyst role; working an exception
needs a role of the queue that owns it (routing policy)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from sinew.common.http import (
    PRINCIPAL,
    ApiError,
    Principal,
    decode_body,
    json_response,
    page,
    paged,
    requires,
)
from sinew.contracts.common import Amount
from sinew.contracts.envelope import utc_now
from sinew.contracts.matching import MatchExceptionReassigned, QueueName
from sinew.contracts.procurement import PurchaseOrder
from sinew.masterdata import rules
from sinew.masterdata.replica import MasterData

from . import store, workflow
from .domain import cents, delivered_by_line
from .policies import Policies

ANALYSTS = ("ap", "supply-chain", "receiving")
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=1000, pattern=r"\S")]
AGE_BUCKETS = (
    ("under_1_day", 24),
    ("1_to_3_days", 72),
    ("3_to_7_days", 168),
    ("over_7_days", None),
)


class Resolution(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """approved: pay it as invoiced (with a reason); rejected: do not pay it at all;
    credit_requested: pay it less the credit asked of the supplier (default the amount at stake)."""

    resolution: Literal["approved", "rejected", "credit_requested"]
    reason: Reason
    credit_amount: Amount | None = None


class Reassignment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    queue: QueueName
    reason: Reason


# -- views --------------------------------------------------------------------------------------


def exception_view(row: sqlite3.Row, now: datetime) -> dict[str, Any]:
    raised = store.raised_event(row)
    raised_at = datetime.fromisoformat(row["raised_at"])
    due = datetime.fromisoformat(row["sla_due_at"])
    open_ = row["status"] == "open"
    return {
        **msgspec.structs.asdict(raised),
        "queue": row["queue"],
        "amount_at_stake": store.decimal(row["amount_at_stake"]),
        "explanation": row["explanation"],
        "checks": msgspec.json.decode(row["checks"]),
        "status": row["status"],
        "age_hours": round(
            ((now if open_ else _at(row["resolved_at"])) - raised_at).total_seconds() / 3600, 1
        ),
        "overdue": open_ and now > due,
        "resolution": row["resolution"],
        "resolved_by": row["resolved_by"],
        "resolved_at": row["resolved_at"],
        "resolution_reason": row["resolution_reason"],
        "credit_amount": row["credit_amount"],
    }


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def invoice_view(conn: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
    open_ = store.open_exceptions(conn, row["invoice_id"])
    return {
        "invoice_id": row["invoice_id"],
        "invoice_number": row["invoice_number"],
        "supplier_id": row["supplier_id"],
        "po_number": row["po_number"],
        "source_format": row["source_format"],
        "currency": row["currency"],
        "total": store.decimal(row["total"]),
        "status": row["status"],
        "first_pass": None if row["first_pass"] is None else bool(row["first_pass"]),
        "match_type": row["match_type"],
        "open_exceptions": [
            {"exception_id": e["exception_id"], "type": t, "queue": e["queue"]}
            for t, e in open_.items()
        ],
        "approved_by_analysts": msgspec.json.decode(row["overrides"]),
        "credit_amount": store.decimal(row["credit_amount"]),
        "approved_amount": row["approved_amount"],
        "approval_basis": row["approval_basis"],
        "approved_by": row["approved_by"],
        "approved_at": row["approved_at"],
        "payment_id": row["payment_id"],
        "paid_amount": row["paid_amount"],
        "paid_at": row["paid_at"],
        "submitted_at": row["submitted_at"],
    }


def positions(conn: sqlite3.Connection, order: PurchaseOrder) -> list[dict[str, Any]]:
    """Per PO line, in the ordered item's base units: ordered, received (or used), invoiced."""
    md = MasterData(conn)
    deliveries = store.deliveries(conn, order)
    wanted = {line.item_id for line in order.lines} | {d.item_id for d in deliveries}
    items = {item_id: item for item_id in wanted if (item := md.item(item_id))}
    substitutions = {line.item_id: md.substitutions_for(line.item_id) for line in order.lines}
    delivered = delivered_by_line(order, deliveries, items, substitutions)
    claims = store.claims_by_line(conn, order.po_number)
    lines = []
    for line in order.lines:
        item = items.get(line.item_id)
        try:
            per_base = rules.base_units_per(item, line.quantity.uom) if item else None
        except rules.UnknownUnit:
            per_base = None
        invoiced, invoiced_amount = claims.get(line.line_number, (Decimal(0), Decimal(0)))
        lines.append(
            {
                "line_number": line.line_number,
                "item_id": line.item_id,
                "uom": item.base_uom if item else None,
                "ordered": line.quantity.value * per_base if per_base else None,
                "received": delivered[line.line_number],
                "invoiced": invoiced,
                "invoiced_amount": invoiced_amount,
                "po_unit_price": line.unit_price / per_base if per_base else None,
                "evidence": "usage" if order.bill_only or line.bill_only_usage else "receipt",
            }
        )
    return lines


def liabilities(conn: sqlite3.Connection, supplier_id: str | None) -> list[dict[str, Any]]:
    totals: dict[tuple[str, str], dict[str, Decimal]] = {}

    def entry(key: tuple[str, str]) -> dict[str, Decimal]:
        return totals.setdefault(
            key,
            {
                "approved_unpaid": Decimal(0),
                "received_not_invoiced": Decimal(0),
                "invoiced_not_received": Decimal(0),
            },
        )

    for key, amount in store.approved_unpaid(conn, supplier_id).items():
        entry(key)["approved_unpaid"] += amount
    for order in store.orders_with_positions(conn, supplier_id):
        amounts = entry((order.supplier_id, order.currency))
        for line in positions(conn, order):
            received, invoiced = line["received"], line["invoiced"]
            if received > invoiced and line["po_unit_price"] is not None:
                amounts["received_not_invoiced"] += (received - invoiced) * line["po_unit_price"]
            if invoiced > received:
                price = line["invoiced_amount"] / invoiced
                amounts["invoiced_not_received"] += (invoiced - received) * price
    return [
        {
            "supplier_id": supplier,
            "currency": currency,
            **{name: cents(value) for name, value in amounts.items()},
        }
        for (supplier, currency), amounts in sorted(totals.items())
    ]


def exception_context(conn: sqlite3.Connection, exception_id: str) -> dict[str, Any] | None:
    row = store.exception_row(conn, exception_id)
    if row is None:
        return None
    invoice_id = row["invoice_id"] or row["duplicate_of_invoice_id"]
    invoice = store.invoice_row(conn, invoice_id) if invoice_id else None
    po_number = row["po_number"] or (invoice["po_number"] if invoice else None)
    order, order_status = store.order(conn, po_number)
    md = MasterData(conn)
    deliveries = store.deliveries(conn, order) if order else []
    contracts, substitutions = {}, {}
    if order:
        for line in order.lines:
            for contract in md.contracts_for(line.item_id):
                if contract.supplier_id == order.supplier_id:
                    contracts[contract.contract_number] = contract
            for substitution in md.substitutions_for(line.item_id):
                substitutions[substitution.substitution_id] = substitution
    if row["body"] and (number := store.raised_event(row).contract_number):
        if contract := md.contract(number):
            contracts[number] = contract
    return {
        "exception": exception_view(row, utc_now()),
        "history": store.actions(conn, exception_id),
        "invoice": invoice_view(conn, invoice) if invoice else None,
        "invoice_document": store.invoice_document(invoice) if invoice else None,
        "submissions": store.submissions(conn, invoice_id) if invoice_id else [],
        "purchase_order": order,
        "purchase_order_status": order_status,
        "positions": positions(conn, order) if order else [],
        "receipts": [d for d in deliveries if d.kind == "receipt"],
        "usage": [d for d in deliveries if d.kind == "usage"],
        "contracts": list(contracts.values()),
        "substitutions": list(substitutions.values()),
        "match": store.latest_run(conn, invoice_id) if row["invoice_id"] else None,
        "payments": store.payments_of(conn, invoice_id) if invoice_id else [],
    }


# -- commands (one transaction each, like a handler) --------------------------------------------


def _workable(policies: Policies, row: sqlite3.Row | None, principal: Principal) -> sqlite3.Row:
    if row is None:
        raise ApiError(404, "not_found", "no such exception")
    if row["status"] != "open":
        raise ApiError(
            409, "not_open", f"exception {row['exception_id']} is already {row['resolution']}"
        )
    queue = row["queue"]
    if queue not in policies.routing.queues or not policies.routing.may_work(
        queue, principal.roles
    ):
        roles = policies.routing.queues[queue].roles if queue in policies.routing.queues else ()
        raise ApiError(
            403, "forbidden", f"queue {queue} is worked by the roles {sorted(roles)} (or admin)"
        )
    return row


def resolve_command(
    ctx, exception_id: str, body: Resolution, who: Principal, *, policies: Policies
):
    row = _workable(policies, store.exception_row(ctx.db, exception_id), who)
    credit = None
    if body.resolution == "credit_requested":
        credit = body.credit_amount or store.decimal(row["amount_at_stake"])
        invoice = store.invoice_row(ctx.db, row["invoice_id"]) if row["invoice_id"] else None
        ceiling = (
            store.decimal(invoice["total"]) - store.decimal(invoice["credit_amount"])
            if invoice
            else None
        )
        if credit <= 0 or (ceiling is not None and credit > ceiling):
            raise ApiError(
                422, "invalid", f"credit_amount must be more than 0 and at most {ceiling}"
            )
    elif body.credit_amount is not None:
        raise ApiError(422, "invalid", "credit_amount goes only with credit_requested")
    workflow.settle(ctx, policies, row, body.resolution, who.name, body.reason, credit)
    return exception_view(store.exception_row(ctx.db, exception_id), ctx.envelope.time)


def reassign_command(
    ctx, exception_id: str, body: Reassignment, who: Principal, *, policies: Policies
):
    row = _workable(policies, store.exception_row(ctx.db, exception_id), who)
    if body.queue not in policies.routing.queues:
        known = ", ".join(sorted(policies.routing.queues))
        raise ApiError(422, "unknown_queue", f"no queue {body.queue}; queues are {known}")
    if body.queue == row["queue"]:
        raise ApiError(409, "same_queue", f"exception is in {body.queue} already")
    at = ctx.envelope.time
    store.move_exception(ctx.db, exception_id, body.queue, who.name, body.reason, at)
    ctx.emit(
        MatchExceptionReassigned(
            site=ctx.site,
            exception_id=exception_id,
            type=row["type"],
            from_queue=row["queue"],
            to_queue=body.queue,
            reassigned_by=who.name,
            reason=body.reason,
            reassigned_at=at,
        ),
        about=row["invoice_number"],
    )
    return exception_view(store.exception_row(ctx.db, exception_id), at)


# -- routes -------------------------------------------------------------------------------------


def routes(runtime, policies: Policies) -> list[web.RouteDef]:
    @requires(*ANALYSTS)
    async def queues(request: web.Request) -> web.Response:
        rows = await runtime.store.run(store.open_exception_rows)
        now = utc_now()
        summary: dict[str, dict[str, Any]] = {}

        def queue(name: str) -> dict[str, Any]:
            policy = policies.routing.queues.get(name)
            return summary.setdefault(
                name,
                {
                    "queue": name,
                    "description": policy.description if policy else "(no longer in the policy)",
                    "roles": list(policy.roles) if policy else [],
                    "sla_hours": policy.sla_hours if policy else None,
                    "open": 0,
                    "overdue": 0,
                    "amount_at_stake": Decimal(0),
                    "by_type": {},
                    "age": {bucket: 0 for bucket, _ in AGE_BUCKETS},
                },
            )

        for name in policies.routing.queues:
            queue(name)
        for row in rows:
            entry = queue(row["queue"])
            entry["open"] += 1
            entry["amount_at_stake"] += store.decimal(row["amount_at_stake"])
            entry["by_type"][row["type"]] = entry["by_type"].get(row["type"], 0) + 1
            entry["overdue"] += now > _at(row["sla_due_at"])
            hours = (now - _at(row["raised_at"])).total_seconds() / 3600
            bucket = next(b for b, limit in AGE_BUCKETS if limit is None or hours < limit)
            entry["age"][bucket] += 1
        return json_response(
            {"policy_version": policies.routing.version, "queues": list(summary.values())}
        )

    @requires(*ANALYSTS)
    async def list_exceptions(request: web.Request) -> web.Response:
        limit, offset = page(request)
        q = request.query
        status = q.get("status", "open")
        if status not in ("open", "resolved", "all"):
            raise ApiError(400, "bad_filter", "status is open, resolved or all")
        filters = {name: q[name] for name in store.EXCEPTION_FILTERS if q.get(name)}
        rows, total = await runtime.store.run(
            store.list_exceptions, filters, None if status == "all" else status, limit, offset
        )
        now = utc_now()
        return paged([exception_view(row, now) for row in rows], total, limit, offset)

    @requires(*ANALYSTS)
    async def show_exception(request: web.Request) -> web.Response:
        shown = await runtime.store.run(exception_context, request.match_info["id"])
        if shown is None:
            raise ApiError(404, "not_found", "no such exception")
        return json_response(shown)

    @requires(*ANALYSTS)
    async def resolve(request: web.Request) -> web.Response:
        body = await decode_body(request, Resolution)
        shown = await runtime.command(
            "resolve",
            request.match_info["id"],
            body,
            request[PRINCIPAL],
            about=request.match_info["id"],
        )
        return json_response(shown)

    @requires(*ANALYSTS)
    async def reassign(request: web.Request) -> web.Response:
        body = await decode_body(request, Reassignment)
        shown = await runtime.command(
            "reassign",
            request.match_info["id"],
            body,
            request[PRINCIPAL],
            about=request.match_info["id"],
        )
        return json_response(shown)

    @requires(*ANALYSTS)
    async def list_invoices(request: web.Request) -> web.Response:
        limit, offset = page(request)
        q = request.query
        filters = {name: q[name] for name in store.INVOICE_FILTERS if q.get(name)}

        def read(conn):
            rows, total = store.list_invoices(conn, filters, limit, offset)
            return [invoice_view(conn, row) for row in rows], total

        items, total = await runtime.store.run(read)
        return paged(items, total, limit, offset)

    @requires(*ANALYSTS)
    async def show_invoice(request: web.Request) -> web.Response:
        def read(conn):
            row = store.invoice_row(conn, request.match_info["id"])
            if row is None:
                return None
            invoice_id = row["invoice_id"]
            now = utc_now()
            return {
                **invoice_view(conn, row),
                "document": store.invoice_document(row),
                "match_runs": store.runs(conn, invoice_id),
                "exceptions": [
                    exception_view(e, now)
                    for e in store.list_exceptions(conn, {"invoice": invoice_id}, None, 500, 0)[0]
                ],
                "submissions": store.submissions(conn, invoice_id),
                "payments": store.payments_of(conn, invoice_id),
            }

        shown = await runtime.store.run(read)
        if shown is None:
            raise ApiError(404, "not_found", "no such invoice")
        return json_response(shown)

    @requires(*ANALYSTS)
    async def show_order(request: web.Request) -> web.Response:
        def read(conn):
            order, status = store.order(conn, request.match_info["po_number"])
            if order is None:
                return None
            return {
                "purchase_order": order,
                "status": status,
                "positions": positions(conn, order),
                "invoices": [
                    invoice_view(conn, row)
                    for row in store.list_invoices(conn, {"po": order.po_number}, 500, 0)[0]
                ],
            }

        shown = await runtime.store.run(read)
        if shown is None:
            raise ApiError(404, "not_found", "no such purchase order")
        return json_response(shown)

    @requires(*ANALYSTS)
    async def show_liabilities(request: web.Request) -> web.Response:
        supplier = request.query.get("supplier") or None
        suppliers = await runtime.store.run(liabilities, supplier)
        return json_response({"as_of": utc_now(), "suppliers": suppliers})

    return [
        web.get("/v1/queues", queues),
        web.get("/v1/exceptions", list_exceptions),
        web.get("/v1/exceptions/{id}", show_exception),
        web.post("/v1/exceptions/{id}/resolve", resolve),
        web.post("/v1/exceptions/{id}/reassign", reassign),
        web.get("/v1/invoices", list_invoices),
        web.get("/v1/invoices/{id}", show_invoice),
        web.get("/v1/purchase-orders/{po_number}", show_order),
        web.get("/v1/liabilities", show_liabilities),
    ]
