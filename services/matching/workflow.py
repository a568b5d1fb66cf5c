"""An invoice's life after it is admitted: matched (again) whenever something it waits on
arrives, its exceptions raised, kept, or resolved by themselves, and approval for payment once
nothing stands in the way. Message handlers and analysts' commands both come through here, inside
their one transaction; every timestamp is the triggering message's, so a rebuild from history
writes the same rows and the same event ids."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal

from sinew.common.context import Context
from sinew.contracts.items import Item
from sinew.contracts.matching import (
    InvoiceApproved,
    InvoiceLine,
    InvoiceMatched,
    InvoiceSubmitted,
    MatchCheck,
    MatchExceptionRaised,
    MatchExceptionResolved,
)
from sinew.masterdata.replica import MasterData

from . import store
from .domain import PROBLEM_ORDER, MatchFacts, clip, match
from .policies import Policies

MATCHER = "matching"
# Events stay well under a channel's size limit on a distributor's 500-line invoice; the whole
# explanation is kept in match_runs and served over HTTP.
CHECKS_ON_EVENTS = 200
# Exceptions about an invoice's match; the others (duplicates, payments) leave the invoice be.
MATCH_TYPES = frozenset(PROBLEM_ORDER)


def stable_id(prefix: str, *parts: str) -> str:
    """An id derived from business keys, so a redelivery or a rebuild names the same thing."""
    return f"{prefix}-{uuid.uuid5(uuid.NAMESPACE_URL, ':'.join(parts)).hex[:16].upper()}"


# -- matching -----------------------------------------------------------------------------------


def item_named(md: MasterData, supplier_id: str, line: InvoiceLine) -> Item | None:
    if line.item_id and (item := md.item(line.item_id)):
        return item
    if line.supplier_part and (item := md.item_by_supplier_part(supplier_id, line.supplier_part)):
        return item
    if line.gtin and (found := md.item_by_code(gtin=line.gtin)):
        return found[0]
    return None


def gather(conn: sqlite3.Connection, invoice: InvoiceSubmitted, seq: int) -> MatchFacts:
    """Everything the matcher needs about one invoice, read inside the transaction."""
    md = MasterData(conn)
    order, status = store.order(conn, invoice.po_number)
    invoice_items = {
        line.line_number: item
        for line in invoice.lines
        if (item := item_named(md, invoice.supplier_id, line))
    }
    deliveries = store.deliveries(conn, order) if order else []
    ordered_ids = {line.item_id for line in order.lines} if order else set()
    wanted = ordered_ids | {i.item_id for i in invoice_items.values()}
    wanted |= {d.item_id for d in deliveries}
    items = {item_id: item for item_id in sorted(wanted) if (item := md.item(item_id))}
    return MatchFacts(
        invoice=invoice,
        order=order,
        order_cancelled=status == "cancelled",
        invoice_items=invoice_items,
        items=items,
        contracts={item_id: md.contracts_for(item_id) for item_id in items},
        substitutions={item_id: md.substitutions_for(item_id) for item_id in ordered_ids},
        deliveries=deliveries,
        invoiced_before=store.invoiced_before(conn, order.po_number, seq) if order else {},
    )


def rematch_all(ctx: Context, policies: Policies, invoice_ids: Iterable[str], trigger: str) -> None:
    for invoice_id in invoice_ids:
        rematch(ctx, policies, invoice_id, trigger)


def rematch(ctx: Context, policies: Policies, invoice_id: str, trigger: str) -> None:
    """Match the invoice against what is known now; raise what newly fails, resolve what no
    longer does, and approve it for payment when nothing is left."""
    row = store.invoice_row(ctx.db, invoice_id)
    if row is None or row["status"] not in store.OPEN_INVOICE:
        return
    invoice = store.invoice_document(row)
    facts = gather(ctx.db, invoice, row["seq"])
    decision = match(facts, policies.tolerances)
    at = ctx.envelope.time
    involved = [i.item_id for i in facts.invoice_items.values()]
    involved += [line.item_id for line in facts.order.lines] if facts.order else []
    store.keep_evaluation(
        ctx.db,
        invoice_id,
        facts.order.po_number if facts.order else None,
        decision,
        involved,
        trigger,
        policies.tolerances.version,
        at,
    )
    overrides = json.loads(row["overrides"])
    failing = {p.type: p for p in decision.problems if p.type not in overrides}
    held = store.open_exceptions(ctx.db, invoice_id)
    for type_, exception in held.items():
        if type_ not in MATCH_TYPES:
            continue
        if type_ in failing:
            problem = failing[type_]
            store.update_open_exception(
                ctx.db,
                exception["exception_id"],
                problem.amount_at_stake,
                problem.explanation,
                list(problem.checks),
            )
            continue
        now = f"it is now {', '.join(failing)}" if failing else "the invoice now matches"
        resolve(
            ctx,
            exception,
            "rematched",
            MATCHER,
            clip(f"Re-matched after {trigger}: {type_} no longer applies; {now}."),
            automatic=True,
        )
    for type_, problem in failing.items():
        if type_ in held:
            continue
        raise_exception(
            ctx,
            policies,
            type_=type_,
            about=invoice_id,
            invoice_number=invoice.invoice_number,
            supplier_id=invoice.supplier_id,
            currency=invoice.currency,
            amount=problem.amount_at_stake,
            explanation=problem.explanation,
            checks=problem.checks,
            invoice_id=invoice_id,
            po_number=invoice.po_number,
            invoice_line_number=problem.invoice_line_number,
            item_id=problem.item_id,
            contract_number=problem.contract_number,
        )
    if failing:
        waiting = set(failing) == {"AWAITING_RECEIPT"}
        store.set_invoice_status(
            ctx.db,
            invoice_id,
            "awaiting_receipt" if waiting else "exception",
            at,
            first_pass=0,
            match_type=decision.match_type,
        )
        return
    first_pass = store.exceptions_raised_about_invoice(ctx.db, invoice_id) == 0
    store.set_invoice_status(
        ctx.db,
        invoice_id,
        row["status"],
        at,
        first_pass=int(first_pass),
        match_type=decision.match_type,
    )
    if overrides:
        # What the matcher still finds was accepted by a person: theirs is the approval.
        approve(ctx, invoice_id, "exception_approved", sorted(set(overrides.values()))[0])
        return
    assert facts.order is not None
    ctx.emit(
        InvoiceMatched(
            site=ctx.site,
            invoice_id=invoice_id,
            invoice_number=invoice.invoice_number,
            supplier_id=invoice.supplier_id,
            po_number=facts.order.po_number,
            match_type=decision.match_type,
            first_pass=first_pass,
            currency=invoice.currency,
            matched_amount=invoice.total,
            lines=decision.lines,
            checks=decision.checks[:CHECKS_ON_EVENTS],
            policy_version=policies.tolerances.version,
            matched_at=at,
        ),
        about=invoice.invoice_number,
    )
    approve(ctx, invoice_id, "matched", MATCHER)


def approve(ctx: Context, invoice_id: str, basis: str, by: str) -> None:
    """Clear the invoice for payment, less any credit an analyst asked the supplier for."""
    row = store.invoice_row(ctx.db, invoice_id)
    invoice = store.invoice_document(row)
    amount = invoice.total - Decimal(row["credit_amount"])
    at = ctx.envelope.time
    store.set_invoice_status(
        ctx.db,
        invoice_id,
        "approved",
        at,
        approved_amount=str(amount),
        approval_basis=basis,
        approved_by=by,
        approved_at=at.isoformat(),
    )
    ctx.emit(
        InvoiceApproved(
            site=ctx.site,
            invoice_id=invoice_id,
            invoice_number=invoice.invoice_number,
            supplier_id=invoice.supplier_id,
            currency=invoice.currency,
            approved_amount=amount,
            basis=basis,
            approved_by=by,
            po_number=invoice.po_number,
            due_date=invoice.due_date,
            approved_at=at,
        ),
        about=invoice.invoice_number,
    )


# -- exceptions ---------------------------------------------------------------------------------


def raise_exception(
    ctx: Context,
    policies: Policies,
    *,
    type_: str,
    about: str,
    invoice_number: str,
    supplier_id: str,
    currency: str,
    amount: Decimal,
    explanation: str,
    checks: Sequence[MatchCheck] = (),
    **context,
) -> str:
    """Route it by policy, give it an SLA, keep it and publish it. `about` is the invoice (or
    payment) it concerns: its n-th exception of a type always gets the same id."""
    ordinal = store.exceptions_raised(ctx.db, about, type_)
    exception_id = stable_id("MX", ctx.site, about, type_, str(ordinal))
    queue = policies.routing.route(type_, amount)
    raised_at = ctx.envelope.time
    event = MatchExceptionRaised(
        site=ctx.site,
        exception_id=exception_id,
        type=type_,
        queue=queue,
        invoice_number=invoice_number,
        supplier_id=supplier_id,
        currency=currency,
        amount_at_stake=amount,
        explanation=clip(explanation),
        checks=tuple(checks)[:CHECKS_ON_EVENTS],
        policy_version=policies.version,
        sla_due_at=policies.routing.sla_due(queue, raised_at),
        raised_at=raised_at,
        **context,
    )
    store.add_exception(ctx.db, event)
    ctx.emit(event, about=invoice_number)
    return exception_id


def resolve(
    ctx: Context,
    exception: sqlite3.Row,
    resolution: str,
    by: str,
    reason: str,
    *,
    automatic: bool = False,
    credit_amount: Decimal | None = None,
) -> None:
    at = ctx.envelope.time
    store.close_exception(
        ctx.db, exception["exception_id"], resolution, by, reason, at, credit_amount
    )
    ctx.emit(
        MatchExceptionResolved(
            site=ctx.site,
            exception_id=exception["exception_id"],
            type=exception["type"],
            invoice_number=exception["invoice_number"],
            supplier_id=exception["supplier_id"],
            resolution=resolution,
            resolved_by=by,
            reason=clip(reason),
            automatic=automatic,
            invoice_id=exception["invoice_id"],
            credit_amount=credit_amount,
            resolved_at=at,
        ),
        about=exception["invoice_number"],
    )


def settle(
    ctx: Context,
    policies: Policies,
    exception: sqlite3.Row,
    resolution: str,
    by: str,
    reason: str,
    credit_amount: Decimal | None,
) -> None:
    """A person's resolution and what it does to the invoice. Approving (or asking the supplier
    for a credit) accepts this exception type for the invoice, which is approved once nothing else
    is open; rejecting ends the invoice and closes its other exceptions."""
    resolve(ctx, exception, resolution, by, reason, credit_amount=credit_amount)
    invoice_id = exception["invoice_id"]
    if invoice_id is None or exception["type"] not in MATCH_TYPES:
        return
    row = store.invoice_row(ctx.db, invoice_id)
    if row["status"] not in store.OPEN_INVOICE:
        return
    at = ctx.envelope.time
    if resolution == "rejected":
        store.set_invoice_status(ctx.db, invoice_id, "rejected", at)
        for other in store.open_exceptions(ctx.db, invoice_id).values():
            resolve(
                ctx,
                other,
                "superseded",
                by,
                clip(
                    f"Invoice {row['invoice_number']} rejected with {exception['type']}: {reason}"
                ),
            )
        # What it claimed on its PO is free again for the invoices behind it.
        if row["po_number"]:
            behind = store.open_invoices(ctx.db, po_numbers=[row["po_number"]])
            rematch_all(ctx, policies, behind, f"invoice {row['invoice_number']} rejected")
        return
    overrides = json.loads(row["overrides"])
    overrides[exception["type"]] = by
    credit = Decimal(row["credit_amount"]) + (credit_amount or Decimal(0))
    store.set_invoice_status(
        ctx.db,
        invoice_id,
        row["status"],
        at,
        overrides=json.dumps(overrides, sort_keys=True),
        credit_amount=str(credit),
    )
    if not set(store.open_exceptions(ctx.db, invoice_id)) & MATCH_TYPES:
        approve(ctx, invoice_id, "exception_approved", by)
