"""Requisition to purchase order, step by step. Message handlers and HTTP commands both call these
inside their one transaction (`ctx`); every change of state is recorded, audited where a person
or the policy decided, and published through the outbox."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import msgspec

from sinew.common.context import Context
from sinew.common.errors import Transient
from sinew.contracts.common import Quantity
from sinew.contracts.items import Item
from sinew.contracts.procurement import (
    BillOnlyUsage,
    PurchaseOrder,
    PurchaseOrderApproved,
    PurchaseOrderCancelled,
    PurchaseOrderChanged,
    PurchaseOrderClosed,
    PurchaseOrderSent,
    RequisitionApproved,
    RequisitionCreated,
    RequisitionLine,
    RequisitionOrigin,
    RequisitionRejected,
)
from sinew.masterdata.replica import MasterData
from sinew.masterdata.rules import PriceQuote, UnknownUnit, base_units_per

from . import documents, domain, store
from .approval import ApprovalPolicy, Decision, LineFacts, decide
from .store import LineTracking, PoRecord, RequisitionRecord

log = logging.getLogger("sinew.procurement")


class Refused(Exception):
    """A request a person made that the rules refuse; the HTTP API answers with it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def now(ctx: Context) -> datetime:
    # The time of the message being handled, so a rebuild from history records the same times.
    return ctx.envelope.time


def _tag(site: str) -> str:
    return site.upper()[:12]


def _fields(po: PurchaseOrder) -> dict:
    return {f: getattr(po, f) for f in PurchaseOrder.__struct_fields__}


def item_or_wait(md: MasterData, item_id: str) -> Item:
    item = md.item(item_id)
    if item is None:
        # The item master reaches this replica on its own stream; it is behind, not wrong.
        raise Transient(f"item {item_id} is not in procurement's item master replica yet")
    return item


# -- planning a line: which supplier, how many, at what price ------------------------------------


@dataclass(frozen=True)
class PlannedLine:
    item: Item
    quantity: Quantity
    supplier_id: str | None
    quote: PriceQuote | None
    unit_price: Decimal | None = None  # a person's price for a line off contract
    need_by: date | None = None

    def requisition_line(self, line_number: int) -> RequisitionLine:
        return RequisitionLine(
            line_number=line_number,
            item_id=self.item.item_id,
            quantity=self.quantity,
            supplier_id=self.supplier_id,
            contract_number=self.quote.contract_number if self.quote else None,
            unit_price=domain.unit_price(self.quote.unit_price) if self.quote else self.unit_price,
            off_contract=self.quote is None,
            non_formulary=not self.item.formulary,
            need_by=self.need_by,
        )


def contract_suppliers(md: MasterData, item_id: str) -> list[str]:
    return sorted({contract.supplier_id for contract in md.contracts_for(item_id)})


def _usual_supplier(item: Item) -> tuple[str | None, str]:
    """Off contract: the first supplier the item master names, in its unit if the item has it."""
    for part in item.supplier_parts:
        try:
            base_units_per(item, part.uom or item.base_uom)
        except UnknownUnit:
            continue
        return part.supplier_id, part.uom or item.base_uom
    return None, item.base_uom


def plan_line(
    md: MasterData,
    item: Item,
    quantity: Quantity,
    on: date,
    *,
    supplier_id: str | None = None,
    unit_price: Decimal | None = None,
    need_by: date | None = None,
) -> PlannedLine:
    if supplier_id is not None:
        quote = md.price(item.item_id, supplier_id, on, quantity)
    else:
        quotes = [
            md.price(item.item_id, s, on, quantity) for s in contract_suppliers(md, item.item_id)
        ]
        quote = domain.cheapest(item, [q for q in quotes if q])
        supplier_id = quote.supplier_id if quote else _usual_supplier(item)[0]
    return PlannedLine(item, quantity, supplier_id, quote, unit_price, need_by)


def plan_replenishment(md: MasterData, item: Item, base_quantity: Decimal, on: date) -> PlannedLine:
    """Up to par from the supplier cheapest per base unit, in the unit its contract prices."""
    in_base = Quantity(base_quantity, item.base_uom)
    quotes = [md.price(item.item_id, s, on, in_base) for s in contract_suppliers(md, item.item_id)]
    best = domain.cheapest(item, [q for q in quotes if q])
    if best is None:
        supplier_id, uom = _usual_supplier(item)
        return PlannedLine(item, domain.order_quantity(item, base_quantity, uom), supplier_id, None)
    quantity = domain.order_quantity(item, base_quantity, best.price_uom)
    # Priced again at the quantity ordered: whole packs may reach a better tier.
    quote = md.price(item.item_id, best.supplier_id, on, quantity)
    return PlannedLine(item, quantity, best.supplier_id, quote)


def _estimated_total(lines: Iterable[RequisitionLine]) -> Decimal:
    return domain.money(
        sum(
            (domain.extended(line.unit_price, line.quantity) for line in lines if line.unit_price),
            Decimal(0),
        )
    )


def _decide(policy: ApprovalPolicy, created: RequisitionCreated) -> Decision:
    return decide(
        policy,
        origin=created.origin,
        cost_centre_id=created.cost_centre_id,
        estimated_total=created.estimated_total,
        lines=[
            LineFacts(
                line.non_formulary,
                line.off_contract,
                line.unit_price is not None and line.supplier_id is not None,
            )
            for line in created.lines
        ],
        urgent=created.urgent,
    )


def cost_centre_of(md: MasterData, location_id: str) -> str:
    location = md.location(location_id)
    return (location.cost_centre_id if location else None) or "UNASSIGNED"


# -- requisitions --------------------------------------------------------------------------------


def open_requisition(
    ctx: Context,
    policy: ApprovalPolicy,
    *,
    origin: RequisitionOrigin,
    requested_by: str,
    location_id: str,
    cost_centre_id: str,
    planned: list[PlannedLine],
    urgent: bool = False,
    justification: str | None = None,
    signal_id: str | None = None,
    bill_only_usage: BillOnlyUsage | None = None,
    priced_on: date | None = None,
) -> RequisitionRecord:
    at = now(ctx)
    number = store.next_number(ctx.db, "requisition")
    lines = tuple(line.requisition_line(n) for n, line in enumerate(planned, start=1))
    created = RequisitionCreated(
        site=ctx.site,
        requisition_id=f"RQ-{_tag(ctx.site)}-{number:06d}",
        origin=origin,
        requested_by=requested_by,
        cost_centre_id=cost_centre_id,
        location_id=location_id,
        lines=lines,
        estimated_total=_estimated_total(lines),
        urgent=urgent,
        replenishment_signal_id=signal_id,
        bill_only_request_id=bill_only_usage.bill_only_request_id if bill_only_usage else None,
        justification=justification,
        created_at=at,
    )
    decision = _decide(policy, created)
    created = msgspec.structs.replace(created, approval_reasons=decision.reasons)
    record = RequisitionRecord(
        created,
        "pending_approval",
        decision.policy_version,
        {reason: list(roles) for reason, roles in decision.needs.items()},
        bill_only_usage,
        priced_on,
    )
    store.insert_requisition(ctx.db, record)
    store.add_audit(ctx.db, "requisition", created.requisition_id, "requested", requested_by, at)
    ctx.emit(created, about=created.requisition_id)
    if decision.automatic:
        approve_requisition(
            ctx,
            record,
            by=decision.by,
            automatic=True,
            reason=f"within approval policy {decision.policy_version}",
        )
    else:
        store.add_audit(
            ctx.db,
            "requisition",
            created.requisition_id,
            "routed_for_approval",
            decision.by,
            at,
            reason=_needs_text(decision.needs),
            policy_version=decision.policy_version,
        )
    return record


def _needs_text(needs: dict) -> str:
    return "; ".join(f"{reason}: one of {', '.join(roles)}" for reason, roles in needs.items())


def approve_requisition(
    ctx: Context, record: RequisitionRecord, *, by: str, automatic: bool, reason: str | None
) -> list[PoRecord]:
    at = now(ctx)
    record.status = "approved"
    store.add_audit(
        ctx.db,
        "requisition",
        record.requisition_id,
        "approved",
        by,
        at,
        reason=reason,
        policy_version=record.policy_version,
    )
    store.record_decision(ctx.db, record.requisition_id, by, at, reason)
    ctx.emit(
        RequisitionApproved(
            site=ctx.site,
            requisition_id=record.requisition_id,
            approved_by=by,
            automatic=automatic,
            policy_version=record.policy_version,
            reason=reason,
            approved_at=at,
        ),
        about=record.requisition_id,
    )
    by_supplier: dict[str, list[RequisitionLine]] = {}
    for line in record.created.lines:
        by_supplier.setdefault(line.supplier_id or "", []).append(line)
    orders = [
        place_order(ctx, record, supplier_id, lines, approved_by=by)
        for supplier_id, lines in by_supplier.items()
    ]
    record.po_numbers = [order.po_number for order in orders]
    store.save_requisition(ctx.db, record)
    return orders


def reject_requisition(ctx: Context, record: RequisitionRecord, *, by: str, reason: str) -> None:
    at = now(ctx)
    record.status = "rejected"
    store.save_requisition(ctx.db, record)
    store.record_decision(ctx.db, record.requisition_id, by, at, reason)
    store.add_audit(
        ctx.db,
        "requisition",
        record.requisition_id,
        "rejected",
        by,
        at,
        reason=reason,
        policy_version=record.policy_version,
    )
    ctx.emit(
        RequisitionRejected(
            site=ctx.site,
            requisition_id=record.requisition_id,
            rejected_by=by,
            reason=reason,
            policy_version=record.policy_version,
            rejected_at=at,
        ),
        about=record.requisition_id,
    )


def cancel_requisition(ctx: Context, record: RequisitionRecord, *, by: str, reason: str) -> None:
    record.status = "cancelled"
    store.save_requisition(ctx.db, record)
    store.add_audit(
        ctx.db, "requisition", record.requisition_id, "cancelled", by, now(ctx), reason=reason
    )


def replan_requisition(
    ctx: Context,
    policy: ApprovalPolicy,
    record: RequisitionRecord,
    lines: tuple[RequisitionLine, ...],
    *,
    by: str,
    why: str,
) -> Decision:
    """New lines on a requisition still waiting for approval: the policy decides again."""
    created = msgspec.structs.replace(
        record.created, lines=lines, estimated_total=_estimated_total(lines)
    )
    decision = _decide(policy, created)
    record.created = msgspec.structs.replace(created, approval_reasons=decision.reasons)
    record.policy_version = decision.policy_version
    record.needs = {reason: list(roles) for reason, roles in decision.needs.items()}
    store.save_requisition(ctx.db, record)
    store.add_audit(
        ctx.db,
        "requisition",
        record.requisition_id,
        "changed",
        by,
        now(ctx),
        reason=why,
        policy_version=decision.policy_version,
    )
    return decision


# -- purchase orders -----------------------------------------------------------------------------


def place_order(
    ctx: Context,
    record: RequisitionRecord,
    supplier_id: str,
    lines: list[RequisitionLine],
    *,
    approved_by: str,
) -> PoRecord:
    """A PO for one supplier's lines of an approved requisition: drafted at the contract price in
    force, approved and sent at once."""
    md = MasterData(ctx.db)
    at = now(ctx)
    on = record.priced_on or at.date()
    created = record.created
    po_lines, tracking, currencies = [], [], set()
    for number, line in enumerate(lines, start=1):
        item = item_or_wait(md, line.item_id)
        quote = md.price(item.item_id, supplier_id, on, line.quantity)
        if quote:
            currencies.add(quote.currency)
        po_line = domain.priced_line(
            number,
            item,
            line.quantity,
            quote,
            line.unit_price,
            supplier_id,
            requisition_line_number=line.line_number,
            bill_only_usage=record.bill_only_usage,
        )
        po_lines.append(po_line)
        tracking.append(
            LineTracking(
                line_number=number,
                item_id=item.item_id,
                base_uom=item.base_uom,
                ordered_base=domain.ordered_base(item, po_line),
                usage_id=record.bill_only_usage.usage_id if record.bill_only_usage else None,
            )
        )
    supplier = md.supplier(supplier_id)
    currency = (
        min(currencies) if currencies else (supplier.currency if supplier else created.currency)
    )
    po = PurchaseOrder(
        site=ctx.site,
        po_number=f"PO-{_tag(ctx.site)}-{store.next_number(ctx.db, 'purchase_order'):06d}",
        supplier_id=supplier_id,
        order_date=on,
        cost_centre_id=created.cost_centre_id,
        ship_to_location_id=created.location_id,
        currency=currency,
        lines=tuple(po_lines),
        total=domain.total(po_lines),
        requisition_id=created.requisition_id,
        bill_only=created.origin == "bill_only",
        case_id=record.bill_only_usage.case_id if record.bill_only_usage else None,
        urgent=created.urgent,
    )
    order = PoRecord(po, "draft")
    store.insert_po(ctx.db, order, tracking, at)
    off = [str(line.line_number) for line in po_lines if line.off_contract]
    store.add_history(
        ctx.db,
        order,
        "created",
        at,
        note=f"from requisition {created.requisition_id}"
        + (f"; off contract: line {', '.join(off)}" if off else ""),
    )
    approve_order(ctx, order, approved_by)
    send_order(ctx, order)
    return order


def step(
    ctx: Context,
    order: PoRecord,
    action: domain.Action,
    name: str,
    event: msgspec.Struct | None = None,
    note: str | None = None,
) -> None:
    order.state = domain.transition(order.state, action, bill_only=order.po.bill_only)
    event_id = ctx.emit(event, about=order.po_number) if event is not None else None
    at = now(ctx)
    store.save_po(ctx.db, order, at)
    store.add_history(ctx.db, order, name, at, event_id=event_id, note=note, payload=event)


def note(ctx: Context, order: PoRecord, what: str, text: str) -> None:
    store.add_history(ctx.db, order, what, now(ctx), note=text)


def approve_order(ctx: Context, order: PoRecord, approved_by: str) -> None:
    step(
        ctx,
        order,
        "approve",
        "approved",
        PurchaseOrderApproved(**_fields(order.po), approved_by=approved_by, approved_at=now(ctx)),
    )


def send_order(ctx: Context, order: PoRecord) -> None:
    """JSON always goes to the supplier network; the X12 850 too when the supplier trades EDI."""
    po = order.po
    supplier = MasterData(ctx.db).supplier(po.supplier_id)
    document, problem = None, None
    if supplier and supplier.edi_id:
        control_number = store.next_number(ctx.db, "x12_850")
        try:
            document = documents.purchase_order_850(
                po, receiver_id=supplier.edi_id, control_number=control_number
            )
        except ValueError as error:  # X12Error: a value the 850 cannot carry
            problem = f"850 not written: {error}"
            log.warning("%s: %s", po.po_number, problem)
    sent = PurchaseOrderSent(**_fields(po), format="x12" if document else "json", sent_at=now(ctx))
    step(ctx, order, "send", "sent", sent, note=problem)
    if document is not None:
        event_id = ctx.emit_document(
            document, channel=documents.PURCHASE_ORDER_X12, about=po.po_number
        )
        store.add_history(
            ctx.db,
            order,
            "x12_850_sent",
            now(ctx),
            event_id=event_id,
            note=f"X12 850 to {supplier.edi_id}, control number {control_number}",
        )


def change_order(
    ctx: Context,
    order: PoRecord,
    lines: tuple[domain.PurchaseOrderLine, ...],
    *,
    action: domain.Action,
    cause: str,
    by: str,
    reason: str,
) -> None:
    domain.transition(order.state, action, bill_only=order.po.bill_only)
    order.po = domain.revised(order.po, lines)
    md = MasterData(ctx.db)
    for line in order.po.lines:
        item = item_or_wait(md, line.item_id)
        store.set_ordered(
            ctx.db, order.po_number, line.line_number, domain.ordered_base(item, line)
        )
    changed = PurchaseOrderChanged(
        **_fields(order.po), cause=cause, changed_by=by, reason=reason, changed_at=now(ctx)
    )
    step(ctx, order, action, "changed", changed, note=reason)


def cancel_order(ctx: Context, order: PoRecord, *, by: str, reason: str) -> None:
    at = now(ctx)
    cancelled = PurchaseOrderCancelled(
        site=ctx.site,
        po_number=order.po_number,
        revision=order.po.revision,
        supplier_id=order.po.supplier_id,
        cancelled_by=by,
        reason=reason,
        cancelled_at=at,
    )
    step(ctx, order, "cancel", "cancelled", cancelled, note=reason)
    store.add_audit(ctx.db, "purchase_order", order.po_number, "cancelled", by, at, reason=reason)


def close_order(
    ctx: Context, order: PoRecord, action: domain.Action, *, why: str, by: str, note_text: str
) -> None:
    at = now(ctx)
    closed = PurchaseOrderClosed(
        site=ctx.site,
        po_number=order.po_number,
        supplier_id=order.po.supplier_id,
        reason=why,
        closed_by=by,
        closed_at=at,
    )
    step(ctx, order, action, "closed", closed, note=note_text)
    store.add_audit(ctx.db, "purchase_order", order.po_number, "closed", by, at, reason=note_text)


def record_receipt_progress(ctx: Context, order: PoRecord, receipt_id: str) -> None:
    tracking = store.line_tracking(ctx.db, order.po_number)
    action = domain.receipt_action(
        domain.LineProgress(t.ordered_base, t.received_base) for t in tracking.values()
    )
    if action is None:
        return
    label = "received" if action == "receive_all" else "partially_received"
    try:
        step(ctx, order, action, label, note=f"receipt {receipt_id}")
    except domain.IllegalTransition as refused:
        # The goods are there whatever the PO says; receiving raised its own exception for them.
        note(ctx, order, "receipt_recorded", f"receipt {receipt_id}: {refused.reason}")
