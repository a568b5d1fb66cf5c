"""Supplier invoices, how they matched, the exceptions analysts work, approval and payment."""

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

from .catalogue import INGRESS, X12, Channel
from .common import Amount, Code, CurrencyCode, Quantity, SiteCode, Text, UtcTime
from .items import Gtin, Lot, Serial
from .procurement import DocumentFormat, LineNumber

# Exception queues are routing policy data, so a new queue needs no new contract version.
QueueName = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="Exception queue, e.g. supply_chain, receiving, ap",
    ),
]

MatchExceptionType = Literal[
    "PRICE_VARIANCE",
    "QUANTITY_VARIANCE",
    "AWAITING_RECEIPT",
    "NO_PO",
    "UNKNOWN_ITEM",
    "SUBSTITUTION_NOT_APPROVED",
    "DUPLICATE_INVOICE",
    "TOTALS_MISMATCH",
    "UNAPPROVED_PAYMENT",
    "DUPLICATE_PAYMENT",
]


class InvoiceLine(msgspec.Struct, frozen=True, kw_only=True):
    """Name the item by item_id, the supplier's part number or GTIN; at least one."""

    line_number: LineNumber
    quantity: Quantity
    unit_price: Amount
    extended_amount: Amount
    item_id: Code | None = None
    supplier_part: Code | None = None
    gtin: Gtin | None = None
    description: Text | None = None
    po_line_number: LineNumber | None = None
    lot: Lot | None = None
    serial: Serial | None = None


class InvoiceSubmission(msgspec.Struct, frozen=True, kw_only=True):
    """A supplier invoice as the AP automation system sends it; X12 810 documents say the same."""

    site: SiteCode
    supplier_id: Code
    invoice_number: Code
    invoice_date: date
    currency: CurrencyCode = "USD"
    lines: tuple[InvoiceLine, ...]
    subtotal: Amount
    freight: Amount = Decimal("0.00")
    tax: Amount = Decimal("0.00")
    total: Amount
    po_number: Code | None = None
    due_date: date | None = None
    payment_terms: Code | None = None


class InvoiceSubmitted(InvoiceSubmission, frozen=True, kw_only=True):
    invoice_id: Code
    source_format: DocumentFormat
    recorded_at: UtcTime


class MatchCheck(msgspec.Struct, frozen=True, kw_only=True):
    """One comparison the matcher made, with the numbers, so an analyst reads the reason."""

    rule: Code  # e.g. price_vs_contract, quantity_vs_receipt, substitution, totals
    passed: bool
    explanation: Text
    invoice_line_number: LineNumber | None = None
    po_line_number: LineNumber | None = None
    expected: Amount | None = None
    actual: Amount | None = None
    tolerance: Text | None = None  # e.g. "2% or 25.00, whichever is smaller"


class MatchedLine(msgspec.Struct, frozen=True, kw_only=True):
    invoice_line_number: LineNumber
    po_line_number: LineNumber
    item_id: Code
    base_quantity: Quantity
    unit_price: Amount
    po_unit_price: Amount
    # Invoiced above contract but within tolerance is still contract leakage.
    contract_unit_price: Amount | None = None
    contract_number: Code | None = None
    substitution_id: Code | None = None
    ordered_item_id: Code | None = None  # the PO line's item, when a substitute was invoiced


class InvoiceMatched(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    invoice_id: Code
    invoice_number: Code
    supplier_id: Code
    po_number: Code
    # Three-way: PO, receipt, invoice. Two-way for bill-only: PO and usage.
    match_type: Literal["three_way", "two_way"]
    first_pass: bool
    currency: CurrencyCode = "USD"
    matched_amount: Amount
    lines: tuple[MatchedLine, ...]
    checks: tuple[MatchCheck, ...] = ()
    policy_version: Code
    matched_at: UtcTime


class MatchExceptionRaised(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    exception_id: Code
    type: MatchExceptionType
    queue: QueueName
    invoice_number: Code
    supplier_id: Code
    currency: CurrencyCode = "USD"
    amount_at_stake: Amount
    explanation: Text
    invoice_id: Code | None = None  # none for a duplicate that was never admitted as an invoice
    po_number: Code | None = None
    invoice_line_number: LineNumber | None = None
    item_id: Code | None = None
    contract_number: Code | None = None
    checks: tuple[MatchCheck, ...] = ()
    duplicate_of_invoice_id: Code | None = None
    payment_id: Code | None = None
    policy_version: Code
    sla_due_at: UtcTime
    raised_at: UtcTime


class MatchExceptionResolved(msgspec.Struct, frozen=True, kw_only=True):
    """Every resolution is audited: who, when, why. ``rematched`` is the matcher's own, when
    what was missing (a receipt, a usage, a PO change) arrived."""

    site: SiteCode
    exception_id: Code
    type: MatchExceptionType
    invoice_number: Code
    supplier_id: Code
    resolution: Literal["approved", "rejected", "credit_requested", "rematched", "superseded"]
    resolved_by: Text
    reason: Text
    automatic: bool = False
    invoice_id: Code | None = None
    credit_amount: Amount | None = None
    resolved_at: UtcTime


class MatchExceptionReassigned(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    exception_id: Code
    type: MatchExceptionType
    from_queue: QueueName
    to_queue: QueueName
    reassigned_by: Text
    reason: Text
    reassigned_at: UtcTime


class InvoiceApproved(msgspec.Struct, frozen=True, kw_only=True):
    """Cleared for payment, either matched or approved by an analyst."""

    site: SiteCode
    invoice_id: Code
    invoice_number: Code
    supplier_id: Code
    currency: CurrencyCode = "USD"
    approved_amount: Amount
    basis: Literal["matched", "exception_approved"]
    approved_by: Text
    po_number: Code | None = None
    due_date: date | None = None
    approved_at: UtcTime


PaymentMethod = Literal["ach", "check", "wire", "card", "virtual_card"]


class PaidInvoice(msgspec.Struct, frozen=True, kw_only=True):
    invoice_number: Code
    amount: Amount
    discount: Amount = Decimal("0.00")


class PaymentRelease(msgspec.Struct, frozen=True, kw_only=True):
    """A payment the ERP released to a supplier, covering one or more invoices."""

    site: SiteCode
    payment_id: Code
    supplier_id: Code
    currency: CurrencyCode = "USD"
    amount: Amount
    method: PaymentMethod
    invoices: tuple[PaidInvoice, ...]
    payment_reference: Code | None = None  # check number or bank trace number
    released_at: UtcTime


class PaymentApplication(msgspec.Struct, frozen=True, kw_only=True):
    invoice_number: Code
    amount: Amount
    discount: Amount = Decimal("0.00")
    invoice_id: Code | None = None  # none when Sinew holds no such invoice: an exception


class PaymentReleased(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    payment_id: Code
    supplier_id: Code
    currency: CurrencyCode = "USD"
    amount: Amount
    method: PaymentMethod
    invoices: tuple[PaymentApplication, ...]
    payment_reference: Code | None = None
    released_at: UtcTime
    recorded_at: UtcTime


# fmt: off
CHANNELS: list[Channel] = [
    Channel(INGRESS, "invoice", "submitted", 1, InvoiceSubmission, "ap", ("matching",),
            "A supplier invoice from the AP automation system in JSON"),
    Channel(INGRESS, "invoice-x12", "received", 1, None, "supplier", ("matching",),
            "A supplier invoice as an X12 810 document", content_type=X12,
            max_bytes=1024 * 1024),
    Channel(INGRESS, "payment", "released", 1, PaymentRelease, "erp", ("matching",),
            "A payment the ERP released, with the invoices it pays"),
    Channel("matching", "invoice", "submitted", 1, InvoiceSubmitted, "matching",
            ("observability",), "A supplier invoice admitted (not a duplicate), JSON or X12"),
    Channel("matching", "invoice", "matched", 1, InvoiceMatched, "matching", ("observability",),
            "An invoice matched to PO and receipt (or usage), with every check made"),
    Channel("matching", "exception", "raised", 1, MatchExceptionRaised, "matching",
            ("observability",),
            "A match exception routed to a queue, with the amount at stake and why"),
    Channel("matching", "exception", "resolved", 1, MatchExceptionResolved, "matching",
            ("observability",), "A match exception resolved, by a person or by a re-match"),
    Channel("matching", "exception", "reassigned", 1, MatchExceptionReassigned, "matching",
            ("observability",), "A match exception moved to another queue"),
    Channel("matching", "invoice", "approved", 1, InvoiceApproved, "matching",
            ("procurement", "observability"), "An invoice cleared for payment"),
    Channel("matching", "payment", "released", 1, PaymentReleased, "matching",
            ("observability",), "A payment recorded against the invoices it pays"),
]
# fmt: on
