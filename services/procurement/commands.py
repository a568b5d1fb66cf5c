"""Changes people make over HTTP, each run as one transaction by `runtime.command`. A refusal
(`Refused`) rolls the whole command back and becomes the HTTP error the person sees."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated

import msgspec

from sinew.common.context import Context
from sinew.contracts.common import Amount, Code, Quantity, Text
from sinew.contracts.procurement import LineNumber
from sinew.masterdata.replica import MasterData
from sinew.masterdata.rules import UnknownUnit, base_units_per

from . import domain, store, workflow
from .approval import ApprovalPolicy, Decision
from .store import RequisitionRecord
from .workflow import Refused

Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class RequestedLine(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    item_id: Code
    quantity: Quantity
    supplier_id: Code | None = None  # none: the supplier with the best contract price
    unit_price: Amount | None = None  # used only off contract, where no contract prices the line
    need_by: date | None = None


class RequisitionRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    location_id: Code
    lines: Annotated[tuple[RequestedLine, ...], msgspec.Meta(min_length=1, max_length=200)]
    cost_centre_id: Code | None = None  # none: the location's cost centre
    urgent: bool = False
    justification: Text | None = None


class LinePricing(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An approver prices a line no contract prices (a replenishment or bill-only line)."""

    line_number: LineNumber
    unit_price: Amount | None = None
    supplier_id: Code | None = None


class Approval(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Reason
    lines: tuple[LinePricing, ...] = ()


class Rejection(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Reason


class PersonsReason(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Reason


@dataclass(frozen=True)
class Person:
    name: str
    roles: frozenset[str]


def request_requisition(
    ctx: Context, person: Person, request: RequisitionRequest, *, policy: ApprovalPolicy
) -> str:
    md = MasterData(ctx.db)
    location = md.location(request.location_id)
    if location is None or not location.active:
        raise Refused(422, "unknown_location", f"no active location {request.location_id}")
    cost_centre_id = request.cost_centre_id or location.cost_centre_id
    if cost_centre_id is None:
        raise Refused(
            422,
            "cost_centre_required",
            f"location {location.location_id} has no cost centre; name one",
        )
    on = workflow.now(ctx).date()
    planned = []
    for number, line in enumerate(request.lines, start=1):
        planned.append(_plan(md, number, line, on))
    record = workflow.open_requisition(
        ctx,
        policy,
        origin="person",
        requested_by=person.name,
        location_id=location.location_id,
        cost_centre_id=cost_centre_id,
        planned=planned,
        urgent=request.urgent,
        justification=request.justification,
    )
    return record.requisition_id


def _plan(md: MasterData, number: int, line: RequestedLine, on: date) -> workflow.PlannedLine:
    where = f"line {number}"
    item = md.item(line.item_id)
    if item is None or not item.active:
        raise Refused(
            422, "unknown_item", f"{where}: no active item {line.item_id} in the item master"
        )
    if not line.quantity.value.is_finite() or line.quantity.value <= 0:
        raise Refused(422, "bad_quantity", f"{where}: quantity must be greater than 0")
    try:
        base_units_per(item, line.quantity.uom)
    except UnknownUnit as error:
        raise Refused(422, "unknown_unit", f"{where}: {error}") from None
    if line.supplier_id and md.supplier(line.supplier_id) is None:
        raise Refused(422, "unknown_supplier", f"{where}: no supplier {line.supplier_id}")
    planned = workflow.plan_line(
        md,
        item,
        line.quantity,
        on,
        supplier_id=line.supplier_id,
        unit_price=line.unit_price,
        need_by=line.need_by,
    )
    if planned.supplier_id is None:
        raise Refused(
            422,
            "no_supplier",
            f"{where}: no contract for {item.item_id} is in force on {on}; name supplier_id and "
            "unit_price to order it off contract",
        )
    if planned.quote is None and line.unit_price is None:
        raise Refused(
            422,
            "no_price",
            f"{where}: no contract price for {item.item_id} from {planned.supplier_id} is in "
            f"force on {on}; give unit_price to order it off contract",
        )
    return planned


def _pending(ctx: Context, requisition_id: str) -> RequisitionRecord:
    record = store.requisition(ctx.db, requisition_id)
    if record is None:
        raise Refused(404, "not_found", f"no requisition {requisition_id}")
    if record.status != "pending_approval":
        raise Refused(
            409,
            "not_pending",
            f"requisition {requisition_id} is {record.status}, not pending approval",
        )
    return record


def _check_approver(record: RequisitionRecord, person: Person) -> None:
    missing = Decision(record.policy_version, record.needs).missing(person.roles)
    if missing:
        raise Refused(
            403,
            "forbidden",
            f"under approval policy {record.policy_version}, "
            + "; ".join(
                f"{reason} needs one of the roles {', '.join(roles)}"
                for reason, roles in missing.items()
            ),
        )


def approve(
    ctx: Context, person: Person, requisition_id: str, approval: Approval, *, policy: ApprovalPolicy
) -> list[str]:
    record = _pending(ctx, requisition_id)
    if person.name == record.created.requested_by:
        raise Refused(
            403, "own_requisition", "a requisition is approved by someone other than its requester"
        )
    if approval.lines:
        lines = _priced_by_hand(MasterData(ctx.db), record, approval.lines)
        workflow.replan_requisition(
            ctx, policy, record, lines, by=person.name, why="lines priced by the approver"
        )
    unpriced = [
        str(line.line_number)
        for line in record.created.lines
        if line.unit_price is None or line.supplier_id is None
    ]
    if unpriced:
        raise Refused(
            409,
            "unpriced",
            f"line {', '.join(unpriced)} has no contract price or no supplier; approve with "
            "lines[].unit_price and lines[].supplier_id",
        )
    _check_approver(record, person)
    orders = workflow.approve_requisition(
        ctx, record, by=person.name, automatic=False, reason=approval.reason
    )
    return [order.po_number for order in orders]


def _priced_by_hand(md: MasterData, record: RequisitionRecord, pricing: tuple[LinePricing, ...]):
    lines = {line.line_number: line for line in record.created.lines}
    for given in pricing:
        line = lines.get(given.line_number)
        if line is None:
            raise Refused(422, "unknown_line", f"requisition has no line {given.line_number}")
        if given.supplier_id and md.supplier(given.supplier_id) is None:
            raise Refused(422, "unknown_supplier", f"no supplier {given.supplier_id}")
        if line.contract_number is not None:
            raise Refused(
                409,
                "on_contract",
                f"line {line.line_number} is priced by contract {line.contract_number}; "
                "a contract price is not set by hand",
            )
        lines[line.line_number] = msgspec.structs.replace(
            line,
            unit_price=given.unit_price if given.unit_price is not None else line.unit_price,
            supplier_id=given.supplier_id or line.supplier_id,
            off_contract=True,
        )
    return tuple(lines.values())


def reject(ctx: Context, person: Person, requisition_id: str, rejection: Rejection) -> None:
    record = _pending(ctx, requisition_id)
    _check_approver(record, person)
    workflow.reject_requisition(ctx, record, by=person.name, reason=rejection.reason)


def _order(ctx: Context, po_number: str) -> store.PoRecord:
    order = store.purchase_order(ctx.db, po_number)
    if order is None:
        raise Refused(404, "not_found", f"no purchase order {po_number}")
    return order


def cancel(ctx: Context, person: Person, po_number: str, why: PersonsReason) -> str:
    order = _order(ctx, po_number)
    try:
        workflow.cancel_order(ctx, order, by=person.name, reason=why.reason)
    except domain.IllegalTransition as refused:
        raise Refused(409, "illegal_transition", refused.reason) from None
    return order.state


def close(ctx: Context, person: Person, po_number: str, why: PersonsReason) -> str:
    """A person closes a PO: fully received ones as such, partly received ones short."""
    order = _order(ctx, po_number)
    received = order.state == "received"
    try:
        workflow.close_order(
            ctx,
            order,
            "close_received" if received else "close_short",
            why="fully_received" if received else "short_closed",
            by=person.name,
            note_text=why.reason,
        )
    except domain.IllegalTransition as refused:
        raise Refused(409, "illegal_transition", refused.reason) from None
    return order.state
