"""What matching does with each message it consumes.

Master data, purchase orders, receipts and usage are kept, and each re-matches the invoices
waiting on it. Invoices (JSON from the AP system, X12 810 from suppliers) are admitted once per
supplier and normalised number, then matched. Payments close approved invoices; anything else a
payment claims is an exception, never silently accepted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from sinew.common.actor import Handler
from sinew.common.context import Context
from sinew.common.errors import Invalid
from sinew.contracts.items import (
    ContractUpserted,
    ItemUpserted,
    SubstitutionUpserted,
    SupplierUpserted,
)
from sinew.contracts.matching import (
    InvoiceSubmission,
    InvoiceSubmitted,
    MatchCheck,
    PaymentApplication,
    PaymentRelease,
    PaymentReleased,
)
from sinew.contracts.procurement import (
    PurchaseOrderApproved,
    PurchaseOrderCancelled,
    PurchaseOrderChanged,
    PurchaseOrderClosed,
)
from sinew.contracts.receiving import GoodsReceived
from sinew.contracts.usage import ProcedureUsageRecorded, ProcedureUsageVoided
from sinew.masterdata import replica

from . import store
from .domain import invoice_key, money
from .policies import Policies
from .workflow import raise_exception, rematch, rematch_all, stable_id

log = logging.getLogger("sinew.matching")

X12_INVOICES = "ingress.invoice-x12.received.v1"


# -- master data --------------------------------------------------------------------------------


def on_item(item: ItemUpserted, ctx: Context, policies: Policies) -> None:
    if replica.apply(ctx.db, item):
        waiting = store.open_invoices(ctx.db, item_ids=[item.item_id], with_open="UNKNOWN_ITEM")
        rematch_all(ctx, policies, waiting, f"item {item.item_id} version {item.version}")


def on_supplier(supplier: SupplierUpserted, ctx: Context, policies: Policies) -> None:
    replica.apply(ctx.db, supplier)


def on_contract(contract: ContractUpserted, ctx: Context, policies: Policies) -> None:
    # A corrected contract price can settle a price variance, or cause one.
    if replica.apply(ctx.db, contract):
        waiting = store.open_invoices(ctx.db, supplier_id=contract.supplier_id)
        trigger = f"contract {contract.contract_number} version {contract.version}"
        rematch_all(ctx, policies, waiting, trigger)


def on_substitution(substitution: SubstitutionUpserted, ctx: Context, policies: Policies) -> None:
    if replica.apply(ctx.db, substitution):
        items = [substitution.item_id, substitution.substitute_item_id]
        waiting = store.open_invoices(ctx.db, item_ids=items)
        trigger = f"substitution {substitution.substitution_id} version {substitution.version}"
        rematch_all(ctx, policies, waiting, trigger)


# -- purchase orders, receipts, usage -----------------------------------------------------------


def on_order(
    order: PurchaseOrderApproved | PurchaseOrderChanged, ctx: Context, policies: Policies
) -> None:
    if store.keep_order(ctx.db, order, ctx.envelope.time):
        waiting = store.open_invoices(ctx.db, po_numbers=[order.po_number])
        trigger = f"PO {order.po_number} revision {order.revision}"
        rematch_all(ctx, policies, waiting, trigger)


def on_order_cancelled(cancelled: PurchaseOrderCancelled, ctx: Context, policies: Policies) -> None:
    store.set_order_status(
        ctx.db,
        cancelled.po_number,
        cancelled.supplier_id,
        "cancelled",
        ctx.envelope.time,
        cancelled.revision,
    )
    waiting = store.open_invoices(ctx.db, po_numbers=[cancelled.po_number])
    rematch_all(ctx, policies, waiting, f"PO {cancelled.po_number} cancelled")


def on_order_closed(closed: PurchaseOrderClosed, ctx: Context, policies: Policies) -> None:
    # Closed means no more receipts; what was received can still be invoiced.
    store.set_order_status(
        ctx.db, closed.po_number, closed.supplier_id, "closed", ctx.envelope.time
    )


def on_goods_received(receipt: GoodsReceived, ctx: Context, policies: Policies) -> None:
    if store.add_receipt(ctx.db, receipt):
        waiting = store.open_invoices(ctx.db, po_numbers=[receipt.po_number])
        rematch_all(ctx, policies, waiting, f"goods receipt {receipt.receipt_id}")


def on_usage(usage: ProcedureUsageRecorded, ctx: Context, policies: Policies) -> None:
    store.record_usage(ctx.db, usage)
    orders = store.orders_for_usage(ctx.db, usage.usage_id, usage.case_id)
    waiting = store.open_invoices(ctx.db, po_numbers=orders)
    rematch_all(ctx, policies, waiting, f"usage {usage.usage_id} in case {usage.case_id}")


def on_usage_voided(voided: ProcedureUsageVoided, ctx: Context, policies: Policies) -> None:
    store.void_usage(ctx.db, voided.usage_id, voided.voided_at)
    orders = store.orders_for_usage(ctx.db, voided.usage_id, voided.case_id)
    waiting = store.open_invoices(ctx.db, po_numbers=orders)
    rematch_all(ctx, policies, waiting, f"usage {voided.usage_id} voided")


# -- invoices -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class X12Invoice:
    """An invoice read from an X12 810: the same submission, remembered as X12."""

    submission: InvoiceSubmission

    @property
    def site(self) -> str:
        return self.submission.site


def read_810(data: bytes, headers: dict[str, str], site: str) -> X12Invoice:
    try:
        from sinew.x12 import X12Error, parse_810
    except ImportError:
        raise Invalid(
            "this build has no X12 810 reader (sinew.x12.parse_810)", "unknown_contract"
        ) from None
    try:
        return X12Invoice(parse_810(data, site))
    except X12Error as error:
        raise Invalid(str(error), "malformed") from None
    except ValueError as error:  # read, but not a valid invoice (msgspec.ValidationError)
        raise Invalid(f"{X12_INVOICES}: {error}") from None


def on_invoice(
    submission: InvoiceSubmission, ctx: Context, policies: Policies, source_format: str = "json"
) -> None:
    key = invoice_key(submission.invoice_number)
    held = store.invoice_by_key(ctx.db, submission.supplier_id, key)
    if held is not None:
        _duplicate(ctx, policies, submission, key, source_format, held)
        return
    invoice = InvoiceSubmitted(
        **{name: getattr(submission, name) for name in InvoiceSubmission.__struct_fields__},
        invoice_id=stable_id("INV", ctx.site, submission.supplier_id, key),
        source_format=source_format,
        recorded_at=ctx.envelope.time,
    )
    store.admit_invoice(ctx.db, invoice, key)
    store.record_submission(
        ctx.db,
        ctx.envelope.id,
        submission,
        key,
        source_format,
        "admitted",
        invoice.invoice_id,
        None,
        ctx.envelope.time,
    )
    ctx.emit(invoice, about=invoice.invoice_number)
    rematch(ctx, policies, invoice.invoice_id, f"invoice {invoice.invoice_number} submitted")


def on_x12_invoice(document: X12Invoice, ctx: Context, policies: Policies) -> None:
    on_invoice(document.submission, ctx, policies, "x12")


def _duplicate(ctx, policies, submission, key, source_format, held) -> None:
    """Never a second invoice: one DUPLICATE_INVOICE exception per original while it is open;
    further copies are recorded against it."""
    open_one = store.open_duplicate(ctx.db, held["invoice_id"])
    exception_id = open_one["exception_id"] if open_one else None
    explanation = (
        f"Invoice {submission.invoice_number} from {submission.supplier_id} "
        f"({source_format.upper()}, {money(submission.total)} {submission.currency}) duplicates "
        f"invoice {held['invoice_number']} ({held['source_format'].upper()}, "
        f"{money(store.decimal(held['total']))} {held['currency']}), received "
        f"{held['submitted_at'][:10]} as {held['invoice_id']} and now {held['status']}: "
        "the same supplier and invoice number once case, spaces, dashes and leading zeros are "
        "set aside. It is not admitted and will not be paid."
    )
    if open_one is None:
        exception_id = raise_exception(
            ctx,
            policies,
            type_="DUPLICATE_INVOICE",
            about=held["invoice_id"],
            invoice_number=submission.invoice_number,
            supplier_id=submission.supplier_id,
            currency=submission.currency,
            amount=submission.total,
            explanation=explanation,
            checks=(
                MatchCheck(
                    rule="duplicate",
                    passed=False,
                    explanation=explanation,
                    expected=store.decimal(held["total"]),
                    actual=submission.total,
                ),
            ),
            po_number=submission.po_number,
            duplicate_of_invoice_id=held["invoice_id"],
        )
    else:
        store.record_action(
            ctx.db,
            exception_id,
            "duplicate_received",
            "matching",
            explanation,
            {"source_format": source_format, "event_id": ctx.envelope.id},
            ctx.envelope.time,
        )
    store.record_submission(
        ctx.db,
        ctx.envelope.id,
        submission,
        key,
        source_format,
        "duplicate",
        held["invoice_id"],
        exception_id,
        ctx.envelope.time,
    )


# -- payments -----------------------------------------------------------------------------------


def on_payment(payment: PaymentRelease, ctx: Context, policies: Policies) -> None:
    if store.payment_known(ctx.db, payment.payment_id):
        # The ERP sent the same payment again: it is one payment, already recorded.
        log.info("payment %s already recorded; ignored", payment.payment_id)
        return
    store.record_payment(ctx.db, payment, ctx.envelope.time)
    applications = []
    paid_here: set[str] = set()
    for position, paid in enumerate(payment.invoices):
        row = store.invoice_by_key(ctx.db, payment.supplier_id, invoice_key(paid.invoice_number))
        invoice_id = row["invoice_id"] if row else None
        problem = _payment_problem(payment, paid.invoice_number, row, paid_here)
        exception_id = None
        if problem:
            type_, explanation = problem
            exception_id = raise_exception(
                ctx,
                policies,
                type_=type_,
                about=payment.payment_id,
                invoice_number=paid.invoice_number,
                supplier_id=payment.supplier_id,
                currency=payment.currency,
                amount=paid.amount,
                explanation=explanation,
                invoice_id=invoice_id,
                po_number=row["po_number"] if row else None,
                payment_id=payment.payment_id,
            )
        else:
            store.set_invoice_status(
                ctx.db,
                invoice_id,
                "paid",
                ctx.envelope.time,
                payment_id=payment.payment_id,
                paid_amount=str(paid.amount),
                paid_at=payment.released_at.isoformat(),
            )
            paid_here.add(invoice_id)
        store.record_application(
            ctx.db,
            payment.payment_id,
            position,
            paid.invoice_number,
            invoice_id,
            paid.amount,
            paid.discount,
            {None: "paid", "DUPLICATE_PAYMENT": "duplicate"}.get(
                problem and problem[0], "unapproved"
            ),
            exception_id,
        )
        applications.append(
            PaymentApplication(
                invoice_number=paid.invoice_number,
                amount=paid.amount,
                discount=paid.discount,
                invoice_id=invoice_id,
            )
        )
    ctx.emit(
        PaymentReleased(
            **{
                name: getattr(payment, name)
                for name in PaymentRelease.__struct_fields__
                if name != "invoices"
            },
            invoices=tuple(applications),
            recorded_at=ctx.envelope.time,
        ),
        about=payment.payment_id,
    )


def _payment_problem(payment, invoice_number, row, paid_here) -> tuple[str, str] | None:
    pays = (
        f"Payment {payment.payment_id} ({payment.method}, released "
        f"{payment.released_at.date().isoformat()}) pays invoice {invoice_number} from "
        f"{payment.supplier_id}"
    )
    if row is None:
        return "UNAPPROVED_PAYMENT", f"{pays}, which Sinew never received."
    if row["status"] == "paid" or row["invoice_id"] in paid_here:
        return (
            "DUPLICATE_PAYMENT",
            f"{pays}, which payment {row['payment_id']} already paid "
            f"({money(store.decimal(row['paid_amount']))} on {row['paid_at'][:10]}).",
        )
    if row["status"] != "approved":
        return (
            "UNAPPROVED_PAYMENT",
            f"{pays}, which was never approved for payment: it is {row['status'].replace('_', ' ')}.",
        )
    return None


def build(policies: Policies) -> dict[type, Handler]:
    def bound(handler):
        return partial(handler, policies=policies)

    return {
        ItemUpserted: bound(on_item),
        SupplierUpserted: bound(on_supplier),
        ContractUpserted: bound(on_contract),
        SubstitutionUpserted: bound(on_substitution),
        PurchaseOrderApproved: bound(on_order),
        PurchaseOrderChanged: bound(on_order),
        PurchaseOrderCancelled: bound(on_order_cancelled),
        PurchaseOrderClosed: bound(on_order_closed),
        GoodsReceived: bound(on_goods_received),
        ProcedureUsageRecorded: bound(on_usage),
        ProcedureUsageVoided: bound(on_usage_voided),
        InvoiceSubmission: bound(on_invoice),
        X12Invoice: bound(on_x12_invoice),
        PaymentRelease: bound(on_payment),
    }


PARSERS = {X12_INVOICES: read_810}
