"""What procurement does with each message it consumes. Plain functions keyed by message type;
each runs inside the batch transaction and calls the workflow steps."""

from __future__ import annotations

import dataclasses
import functools
from decimal import Decimal

import msgspec

from sinew.common.context import Context
from sinew.common.errors import Invalid
from sinew.contracts.common import Quantity
from sinew.contracts.matching import InvoiceApproved
from sinew.contracts.procurement import (
    AcknowledgedLine,
    BillOnlyUsage,
    PurchaseOrderAcknowledged,
    PurchaseOrderAcknowledgement,
    PurchaseOrderLine,
)
from sinew.contracts.receiving import GoodsReceived, ReceiptLine
from sinew.contracts.replenishment import (
    ReplenishmentSignalClosed,
    ReplenishmentSignalRaised,
    ReplenishmentSignalUpdated,
)
from sinew.contracts.usage import BillOnlyRequested, ProcedureUsageVoided
from sinew.masterdata import replica
from sinew.masterdata.replica import MasterData
from sinew.masterdata.rules import UnknownUnit, convert, to_base

from . import domain, store, workflow
from .approval import ApprovalPolicy
from .documents import X12Acknowledgement
from .store import LineTracking

REPLENISHMENT = "replenishment"

# -- replenishment signals -----------------------------------------------------------------------


def signal_raised(signal: ReplenishmentSignalRaised, ctx: Context, *, policy: ApprovalPolicy):
    # One requisition per signal, however often the signal arrives.
    if store.requisition_for_signal(ctx.db, signal.signal_id) is None:
        _requisition_for_signal(ctx, policy, signal)


def _base_quantity(md: MasterData, item_id: str, quantity: Quantity) -> tuple:
    item = workflow.item_or_wait(md, item_id)
    try:
        return item, to_base(item, quantity)
    except UnknownUnit as error:
        raise Invalid(str(error)) from None


def _requisition_for_signal(
    ctx: Context,
    policy: ApprovalPolicy,
    signal: ReplenishmentSignalRaised | ReplenishmentSignalUpdated,
) -> None:
    md = MasterData(ctx.db)
    item, base = _base_quantity(md, signal.item_id, signal.quantity)
    if base <= 0:
        return
    planned = workflow.plan_replenishment(md, item, base, workflow.now(ctx).date())
    workflow.open_requisition(
        ctx,
        policy,
        origin="replenishment",
        requested_by=REPLENISHMENT,
        location_id=signal.location_id,
        cost_centre_id=workflow.cost_centre_of(md, signal.location_id),
        planned=[planned],
        justification=f"replenishment signal {signal.signal_id}: {base} {item.base_uom} up to par",
        signal_id=signal.signal_id,
    )


def signal_updated(signal: ReplenishmentSignalUpdated, ctx: Context, *, policy: ApprovalPolicy):
    record = store.requisition_for_signal(ctx.db, signal.signal_id)
    if record is None:
        _requisition_for_signal(ctx, policy, signal)
        return
    md = MasterData(ctx.db)
    item, base = _base_quantity(md, signal.item_id, signal.quantity)
    why = f"replenishment signal {signal.signal_id} now asks for {base} {item.base_uom}"
    if record.status == "pending_approval":
        old = record.created.lines[0]
        planned = workflow.plan_line(
            md,
            item,
            domain.order_quantity(item, base, old.quantity.uom),
            workflow.now(ctx).date(),
            supplier_id=old.supplier_id,
            unit_price=None if old.contract_number else old.unit_price,
        )
        lines = (planned.requisition_line(1), *record.created.lines[1:])
        decision = workflow.replan_requisition(
            ctx, policy, record, lines, by=REPLENISHMENT, why=why
        )
        if decision.automatic:
            workflow.approve_requisition(
                ctx,
                record,
                by=decision.by,
                automatic=True,
                reason=f"within approval policy {decision.policy_version}",
            )
        return
    for order in store.purchase_orders_of(ctx.db, record.requisition_id):
        line = next((ln for ln in order.po.lines if ln.item_id == signal.item_id), None)
        if line is None:
            continue
        try:
            domain.transition(order.state, "buyer_change", bill_only=order.po.bill_only)
        except domain.IllegalTransition as refused:
            workflow.note(ctx, order, "signal_updated", f"{why}; not changed: {refused.reason}")
            continue
        quantity = domain.order_quantity(item, base, line.quantity.uom)
        lines = tuple(
            msgspec.structs.replace(
                ln, quantity=quantity, extended_amount=domain.extended(ln.unit_price, quantity)
            )
            if ln.line_number == line.line_number
            else ln
            for ln in order.po.lines
        )
        workflow.change_order(
            ctx, order, lines, action="buyer_change", cause="buyer", by=REPLENISHMENT, reason=why
        )


def signal_closed(signal: ReplenishmentSignalClosed, ctx: Context):
    record = store.requisition_for_signal(ctx.db, signal.signal_id)
    if record is None:
        return
    why = f"replenishment signal {signal.signal_id} closed ({signal.reason})"
    if record.status == "pending_approval":
        workflow.cancel_requisition(ctx, record, by=REPLENISHMENT, reason=why)
        return
    for order in store.purchase_orders_of(ctx.db, record.requisition_id):
        # Only what the supplier has not seen is withdrawn; a sent order is a commitment that a
        # person cancels, if it should be.
        if order.state in ("draft", "approved"):
            workflow.cancel_order(ctx, order, by=REPLENISHMENT, reason=why)
        elif order.state not in domain.FINISHED:
            workflow.note(ctx, order, "signal_closed", f"{why}; the order stands")


# -- bill-only implants --------------------------------------------------------------------------


def bill_only_requested(request: BillOnlyRequested, ctx: Context, *, policy: ApprovalPolicy):
    if store.requisition_for_bill_only(ctx.db, request.request_id) is not None:
        return
    md = MasterData(ctx.db)
    item = workflow.item_or_wait(md, request.item_id)
    used_on = request.used_at.date()
    supplier_id = request.supplier_id
    if supplier_id is None and request.contract_number:
        contract = md.contract(request.contract_number)
        supplier_id = contract.supplier_id if contract else None
    try:
        planned = workflow.plan_line(md, item, request.quantity, used_on, supplier_id=supplier_id)
    except UnknownUnit as error:
        raise Invalid(str(error)) from None
    workflow.open_requisition(
        ctx,
        policy,
        origin="bill_only",
        requested_by=f"physician {request.physician_id}",
        location_id=request.location_id,
        cost_centre_id=workflow.cost_centre_of(md, request.location_id),
        planned=[planned],
        justification=f"used in case {request.case_id} (usage {request.usage_id})",
        bill_only_usage=BillOnlyUsage(
            bill_only_request_id=request.request_id,
            usage_id=request.usage_id,
            case_id=request.case_id,
            lot=request.lot,
            serial=request.serial,
            expiry=request.expiry,
        ),
        priced_on=used_on,
    )


def usage_voided(voided: ProcedureUsageVoided, ctx: Context):
    why = f"usage {voided.usage_id} voided" + (f": {voided.reason}" if voided.reason else "")
    found = store.line_for_usage(ctx.db, voided.usage_id)
    if found is None:
        record = store.requisition_for_usage(ctx.db, voided.usage_id)
        if record is not None and record.status == "pending_approval":
            workflow.cancel_requisition(ctx, record, by="usage", reason=why)
        return
    po_number, line_number = found
    order = store.purchase_order(ctx.db, po_number)
    store.mark_usage_voided(ctx.db, po_number, line_number)
    if order.invoiced or order.state in domain.FINISHED:
        # Paid for, or on its way to payment: a person asks the supplier for a credit.
        workflow.note(
            ctx,
            order,
            "usage_voided",
            f"{why} after the order was {order.state}"
            + (" and invoiced" if order.invoiced else "")
            + "; credit needed",
        )
        return
    tracking = store.line_tracking(ctx.db, po_number)
    if all(t.usage_voided for t in tracking.values()):
        workflow.cancel_order(ctx, order, by="usage", reason=why)
    else:
        workflow.note(ctx, order, "usage_voided", f"{why}; other lines stand")


# -- receipts and invoices -----------------------------------------------------------------------


def goods_received(goods: GoodsReceived, ctx: Context):
    order = store.purchase_order(ctx.db, goods.po_number)
    # Receiving raises UNKNOWN_PO itself; a receipt for a PO procurement never had changes nothing.
    if order is None or store.receipt_seen(ctx.db, goods.receipt_id):
        return
    md = MasterData(ctx.db)
    tracking = store.line_tracking(ctx.db, goods.po_number)
    unmatched = []
    for index, line in enumerate(goods.lines):
        ordered = tracking.get(line.po_line_number)
        if ordered is None:
            unmatched.append(str(line.po_line_number))
            continue
        counted = _counted(md, ordered, line, goods.received_at.date())
        store.insert_receipt_line(
            ctx.db,
            goods.receipt_id,
            index,
            goods.po_number,
            line.po_line_number,
            line.item_id,
            line.base_quantity.value,
            counted,
            goods.received_at,
        )
    if unmatched:
        workflow.note(
            ctx, order, "receipt_recorded",
            f"receipt {goods.receipt_id} names PO lines this order does not have: {', '.join(unmatched)}",
        )  # fmt: skip
    workflow.record_receipt_progress(ctx, order, goods.receipt_id)


def _counted(md: MasterData, ordered: LineTracking, line: ReceiptLine, on) -> Decimal:
    """What a receipt line counts toward its PO line, in the ordered item's base units."""
    if line.item_id == ordered.item_id:
        if line.base_quantity.uom == ordered.base_uom:
            return line.base_quantity.value
        item = md.item(ordered.item_id)
        return (
            convert(item, line.base_quantity, ordered.base_uom)
            if item
            else line.base_quantity.value
        )
    substitution = md.substitution(ordered.item_id, line.item_id, on)
    units = substitution.substitute_units if substitution else Decimal(1)
    return line.base_quantity.value / units


def invoice_approved(invoice: InvoiceApproved, ctx: Context):
    if invoice.po_number is None:
        return
    order = store.purchase_order(ctx.db, invoice.po_number)
    if order is None:
        return
    order.invoiced = True
    store.save_po(ctx.db, order, workflow.now(ctx))
    what = f"invoice {invoice.invoice_number} approved for {invoice.approved_amount} {invoice.currency}"
    workflow.note(ctx, order, "invoice_approved", what)
    by = f"matching ({invoice.approved_by})"
    if order.po.bill_only and order.state in ("approved", "sent", "acknowledged"):
        workflow.close_order(
            ctx, order, "close_bill_only", why="bill_only_invoiced", by=by, note_text=what
        )
    elif order.state == "received":
        workflow.close_order(
            ctx, order, "close_received", why="fully_received", by=by, note_text=what
        )


# -- supplier acknowledgements -------------------------------------------------------------------


def acknowledgement(
    ack: PurchaseOrderAcknowledgement, ctx: Context, *, source_format: str = "json"
) -> None:
    order = store.purchase_order(ctx.db, ack.po_number)
    named = (
        f"acknowledgement {ack.acknowledgement_number or ctx.envelope.id} from {ack.supplier_id}"
    )
    if order is None:
        # The supplier must correct the PO number and send it again: a dead letter tells the
        # integration team exactly that, and a replay with corrected bytes applies it once.
        raise Invalid(f"{named}: no purchase order {ack.po_number} at site {ctx.site}")
    if ack.supplier_id != order.po.supplier_id:
        raise Invalid(
            f"{named}: purchase order {ack.po_number} was placed with {order.po.supplier_id}"
        )
    key = ack.acknowledgement_number or ctx.envelope.id
    if store.acknowledgement_seen(ctx.db, ack.po_number, key):
        return
    try:
        domain.transition(order.state, "acknowledge", bill_only=order.po.bill_only)
    except domain.IllegalTransition as refused:
        raise Invalid(f"{named}: {refused.reason}") from None

    md = MasterData(ctx.db)
    lines = {line.line_number: line for line in order.po.lines}
    tracking = store.line_tracking(ctx.db, ack.po_number)
    acknowledged_lines = []
    for answer in ack.lines:
        line = lines.get(answer.line_number)
        if line is None:
            raise Invalid(
                f"{named}: purchase order {ack.po_number} has no line {answer.line_number}"
            )
        acknowledged = _acknowledged_line(
            md, order.po.supplier_id, line, answer, ack.acknowledged_at.date()
        )
        acknowledged_lines.append(acknowledged)
        store.record_answer(
            ctx.db,
            ack.po_number,
            dataclasses.replace(
                tracking[line.line_number],
                ack_status=acknowledged.status,
                ack_quantity=store.encode(acknowledged.quantity).decode()
                if acknowledged.quantity
                else None,
                supplier_unit_price=acknowledged.unit_price,
                expected_ship_date=acknowledged.expected_ship_date,
                substitute_item_id=acknowledged.substitute_item_id,
                substitution_approved=acknowledged.substitution_approved,
                substitution_id=_substitution_id(md, line, acknowledged, ack),
            ),
        )
    recorded = PurchaseOrderAcknowledged(
        site=ctx.site,
        po_number=ack.po_number,
        supplier_id=ack.supplier_id,
        status=ack.status,
        lines=tuple(acknowledged_lines),
        acknowledgement_number=ack.acknowledgement_number,
        source_format=source_format,
        acknowledged_at=ack.acknowledged_at,
        recorded_at=workflow.now(ctx),
    )
    store.insert_acknowledgement(ctx.db, ack.po_number, key, recorded)
    workflow.step(ctx, order, "acknowledge", "acknowledged", recorded, note=_summary(recorded))

    try:
        answer = domain.answer(order.po, ack.lines, functools.partial(_in_line_uom, md))
    except UnknownUnit as error:
        raise Invalid(f"{named}: {error}") from None
    for number, price in answer.price_not_taken.items():
        workflow.note(
            ctx, order, "supplier_price_not_taken",
            f"line {number}: supplier quotes {price}, the contract price "
            f"{lines[number].unit_price} under {lines[number].contract_number} stands",
        )  # fmt: skip
    if answer.changed:
        workflow.change_order(
            ctx,
            order,
            answer.lines,
            action="supplier_change",
            cause="supplier_acknowledgement",
            by=f"supplier {ack.supplier_id}",
            reason="; ".join(answer.changed),
        )
    if ack.status == "rejected":
        try:
            workflow.cancel_order(
                ctx,
                order,
                by=f"supplier {ack.supplier_id}",
                reason="the supplier rejected the order",
            )
        except domain.IllegalTransition as refused:
            workflow.note(ctx, order, "supplier_rejected", refused.reason)


def _acknowledged_line(md: MasterData, supplier_id: str, line: PurchaseOrderLine, answer, on):
    substitute = answer.substitute_item_id
    if substitute is None and answer.substitute_supplier_part:
        by_part = md.item_by_supplier_part(supplier_id, answer.substitute_supplier_part)
        substitute = by_part.item_id if by_part else None
    approved = None
    if answer.status == "substituted" or substitute:
        approved = bool(substitute and md.substitution(line.item_id, substitute, on))
    return AcknowledgedLine(
        **{**msgspec.structs.asdict(answer), "substitute_item_id": substitute},
        substitution_approved=approved,
    )


def _substitution_id(md: MasterData, line, acknowledged: AcknowledgedLine, ack) -> str | None:
    if not acknowledged.substitution_approved:
        return None
    found = md.substitution(
        line.item_id, acknowledged.substitute_item_id, ack.acknowledged_at.date()
    )
    return found.substitution_id if found else None


def _in_line_uom(md: MasterData, line: PurchaseOrderLine, quantity: Quantity) -> Decimal:
    if quantity.uom == line.quantity.uom:
        return quantity.value
    item = workflow.item_or_wait(md, line.item_id)
    return convert(item, quantity, line.quantity.uom)


def _summary(acknowledged: PurchaseOrderAcknowledged) -> str:
    parts = [acknowledged.status]
    for line in acknowledged.lines:
        if line.status == "backordered":
            parts.append(f"line {line.line_number} backordered to {line.expected_ship_date}")
        elif line.status == "substituted":
            verdict = "approved" if line.substitution_approved else "NOT approved"
            parts.append(
                f"line {line.line_number} substituted by {line.substitute_item_id} ({verdict})"
            )
        elif line.status != "accepted":
            parts.append(f"line {line.line_number} {line.status.replace('_', ' ')}")
    return "; ".join(parts)


def table(policy: ApprovalPolicy) -> dict[type, object]:
    return {
        **replica.HANDLERS,
        ReplenishmentSignalRaised: functools.partial(signal_raised, policy=policy),
        ReplenishmentSignalUpdated: functools.partial(signal_updated, policy=policy),
        ReplenishmentSignalClosed: signal_closed,
        BillOnlyRequested: functools.partial(bill_only_requested, policy=policy),
        ProcedureUsageVoided: usage_voided,
        GoodsReceived: goods_received,
        InvoiceApproved: invoice_approved,
        PurchaseOrderAcknowledgement: acknowledgement,
        X12Acknowledgement: functools.partial(acknowledgement, source_format="x12"),
    }
