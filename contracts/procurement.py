"""Requisitions, their approval, purchase orders and the supplier's acknowledgement of them."""

from datetime import date
from typing import Annotated, Literal

import msgspec

from .catalogue import INGRESS, X12, Channel
from .common import Amount, Code, CurrencyCode, Quantity, SiteCode, Text, UtcTime
from .items import Lot, Serial

LineNumber = Annotated[int, msgspec.Meta(ge=1)]

RequisitionOrigin = Literal["person", "replenishment", "bill_only"]
# Why the approval policy routed a requisition to a person rather than approving it itself.
ApprovalReason = Literal["amount", "non_formulary", "off_contract", "urgent"]
DocumentFormat = Literal["json", "x12"]


class RequisitionLine(msgspec.Struct, frozen=True, kw_only=True):
    line_number: LineNumber
    item_id: Code
    quantity: Quantity
    supplier_id: Code | None = None
    contract_number: Code | None = None
    unit_price: Amount | None = None  # the contract price in force, when there is one
    off_contract: bool = False
    non_formulary: bool = False
    need_by: date | None = None


class RequisitionCreated(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    requisition_id: Code
    origin: RequisitionOrigin
    requested_by: Text
    cost_centre_id: Code
    location_id: Code
    lines: tuple[RequisitionLine, ...]
    currency: CurrencyCode = "USD"
    estimated_total: Amount
    urgent: bool = False
    approval_reasons: tuple[ApprovalReason, ...] = ()
    replenishment_signal_id: Code | None = None
    bill_only_request_id: Code | None = None
    justification: Text | None = None
    created_at: UtcTime


class RequisitionApproved(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    requisition_id: Code
    approved_by: Text
    automatic: bool = False  # approved by policy, no person involved
    policy_version: Code
    reason: Text | None = None
    approved_at: UtcTime


class RequisitionRejected(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    requisition_id: Code
    rejected_by: Text
    reason: Text
    policy_version: Code
    rejected_at: UtcTime


class BillOnlyUsage(msgspec.Struct, frozen=True, kw_only=True):
    """The implant a bill-only line pays for. Its usage stands in for the goods receipt."""

    bill_only_request_id: Code
    usage_id: Code
    case_id: Code
    lot: Lot | None = None
    serial: Serial | None = None
    expiry: date | None = None


class PurchaseOrderLine(msgspec.Struct, frozen=True, kw_only=True):
    line_number: LineNumber
    item_id: Code
    quantity: Quantity
    unit_price: Amount
    extended_amount: Amount
    description: Text | None = None
    supplier_part: Code | None = None
    contract_number: Code | None = None
    off_contract: bool = False  # priced without a contract in force: contract leakage
    requisition_line_number: LineNumber | None = None
    bill_only_usage: BillOnlyUsage | None = None


class PurchaseOrder(msgspec.Struct, frozen=True, kw_only=True):
    """The whole purchase order at one revision; every PO event carries all of it, so a consumer
    keeps the highest revision and needs nothing else."""

    site: SiteCode
    po_number: Code
    revision: Annotated[int, msgspec.Meta(ge=1)] = 1
    supplier_id: Code
    order_date: date
    cost_centre_id: Code
    ship_to_location_id: Code
    currency: CurrencyCode = "USD"
    lines: tuple[PurchaseOrderLine, ...]
    total: Amount
    requisition_id: Code | None = None
    # A bill-only PO is raised after a consigned implant was used; it needs no receipt.
    bill_only: bool = False
    case_id: Code | None = None
    urgent: bool = False


class PurchaseOrderApproved(PurchaseOrder, frozen=True, kw_only=True):
    approved_by: Text
    approved_at: UtcTime


class PurchaseOrderSent(PurchaseOrder, frozen=True, kw_only=True):
    """The order as sent to the supplier network; the X12 850 carries the same order."""

    format: DocumentFormat
    sent_at: UtcTime


class PurchaseOrderChanged(PurchaseOrder, frozen=True, kw_only=True):
    cause: Literal["buyer", "supplier_acknowledgement"]
    changed_by: Text
    reason: Text
    changed_at: UtcTime


class PurchaseOrderCancelled(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    po_number: Code
    revision: Annotated[int, msgspec.Meta(ge=1)]
    supplier_id: Code
    cancelled_by: Text
    reason: Text
    cancelled_at: UtcTime


class PurchaseOrderClosed(msgspec.Struct, frozen=True, kw_only=True):
    """No more receipts are expected; a receipt against a closed PO is an exception."""

    site: SiteCode
    po_number: Code
    supplier_id: Code
    reason: Literal["fully_received", "bill_only_invoiced", "short_closed"]
    closed_by: Text
    closed_at: UtcTime


AcknowledgementStatus = Literal["accepted", "accepted_with_changes", "rejected"]
AcknowledgedLineStatus = Literal[
    "accepted", "quantity_changed", "price_changed", "backordered", "substituted", "rejected"
]


class AcknowledgementLine(msgspec.Struct, frozen=True, kw_only=True):
    line_number: LineNumber
    status: AcknowledgedLineStatus
    quantity: Quantity | None = None  # what the supplier will ship, when it differs
    unit_price: Amount | None = None  # what the supplier will charge, when it differs
    expected_ship_date: date | None = None  # for a backorder, when it will ship
    substitute_item_id: Code | None = None
    substitute_supplier_part: Code | None = None
    note: Text | None = None


class PurchaseOrderAcknowledgement(msgspec.Struct, frozen=True, kw_only=True):
    """A supplier's answer to a PO, in JSON; X12 855 documents say the same."""

    site: SiteCode
    po_number: Code
    supplier_id: Code
    status: AcknowledgementStatus
    lines: tuple[AcknowledgementLine, ...] = ()
    acknowledgement_number: Code | None = None
    acknowledged_at: UtcTime


class AcknowledgedLine(AcknowledgementLine, frozen=True, kw_only=True):
    # Checked against the approved substitutions; None when nothing was substituted.
    substitution_approved: bool | None = None


class PurchaseOrderAcknowledged(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    po_number: Code
    supplier_id: Code
    status: AcknowledgementStatus
    lines: tuple[AcknowledgedLine, ...] = ()
    acknowledgement_number: Code | None = None
    source_format: DocumentFormat
    acknowledged_at: UtcTime
    recorded_at: UtcTime


# fmt: off
CHANNELS: list[Channel] = [
    Channel(INGRESS, "po-acknowledgement", "submitted", 1, PurchaseOrderAcknowledgement,
            "supplier", ("procurement",), "A supplier's PO acknowledgement in JSON"),
    Channel(INGRESS, "po-acknowledgement-x12", "received", 1, None, "supplier", ("procurement",),
            "A supplier's PO acknowledgement as an X12 855 document", content_type=X12),
    Channel("procurement", "requisition", "created", 1, RequisitionCreated, "procurement",
            ("observability",),
            "A requisition from a person, a replenishment signal or a bill-only request"),
    Channel("procurement", "requisition", "approved", 1, RequisitionApproved, "procurement",
            ("observability",), "A requisition approved, by whom (or by policy) and why"),
    Channel("procurement", "requisition", "rejected", 1, RequisitionRejected, "procurement",
            ("observability",), "A requisition rejected, by whom and why"),
    Channel("procurement", "purchase-order", "approved", 1, PurchaseOrderApproved, "procurement",
            ("receiving", "matching", "observability"),
            "A purchase order approved, lines priced from the contract in force"),
    Channel("procurement", "purchase-order", "sent", 1, PurchaseOrderSent, "procurement",
            ("observability",), "A purchase order as sent to the supplier network",
            readers=("supplier",)),
    Channel("procurement", "purchase-order-x12", "sent", 1, None, "procurement",
            ("observability",), "A purchase order as an X12 850 document", content_type=X12,
            readers=("supplier",)),
    Channel("procurement", "purchase-order", "acknowledged", 1, PurchaseOrderAcknowledged,
            "procurement", ("receiving", "observability"),
            "The supplier accepted, changed, backordered or substituted PO lines"),
    Channel("procurement", "purchase-order", "changed", 1, PurchaseOrderChanged, "procurement",
            ("receiving", "matching", "observability"),
            "A purchase order at a new revision, with why it changed"),
    Channel("procurement", "purchase-order", "cancelled", 1, PurchaseOrderCancelled,
            "procurement", ("receiving", "matching", "observability"),
            "A purchase order cancelled, by whom and why"),
    Channel("procurement", "purchase-order", "closed", 1, PurchaseOrderClosed, "procurement",
            ("receiving", "matching", "observability"),
            "A purchase order closed: no more receipts expected"),
]
# fmt: on
