"""Canonical events of one small day at a site, as the domain services publish them, for
observability to record: each built from its contract so a field change breaks here first."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import msgspec
from helpers import envelope_headers

from sinew.contracts import CATALOGUE
from sinew.contracts.common import Quantity
from sinew.contracts.matching import (
    InvoiceLine,
    InvoiceMatched,
    InvoiceSubmitted,
    MatchedLine,
    MatchExceptionRaised,
    MatchExceptionResolved,
    PaymentApplication,
    PaymentReleased,
)
from sinew.contracts.ops import DeadLetterRecorded, DeadLetterReplayed
from sinew.contracts.procurement import BillOnlyUsage, PurchaseOrderApproved, PurchaseOrderLine
from sinew.contracts.receiving import GoodsReceived, ReceiptLine
from sinew.contracts.replenishment import ReplenishmentSignalClosed, ReplenishmentSignalRaised
from sinew.contracts.usage import BillOnlyRequested, ProcedureUsageRecorded, UsageExceptionRaised

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
PATIENT_TOKEN = "pt-" + "a1b2c3d4" * 4
_encoder = msgspec.json.Encoder(decimal_format="string")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def each(n: int | str) -> Quantity:
    return Quantity(value=Decimal(str(n)), uom="EA")


class Feed:
    """Publishes events with envelopes that chain like the runtime's: a correlation id per
    transaction and each event's causation id pointing at the event that caused it."""

    def __init__(self, js, site: str) -> None:
        self.js, self.site = js, site

    async def emit(
        self,
        channel: str,
        message: msgspec.Struct,
        *,
        correlation: str,
        caused_by: str | None = None,
        seconds: float = 0,
        about: str | None = None,
        event_id: str | None = None,
    ) -> str:
        target = CATALOGUE.channel(channel)
        extra = {"correlation_id": correlation}
        headers = envelope_headers(self.site, target.ce_type, event_id, **extra)
        headers["ce-time"] = at(seconds).isoformat().replace("+00:00", "Z")
        headers["ce-source"] = f"/sinew/{self.site}/{target.publisher}"
        if caused_by:
            headers["sinew-causation-id"] = caused_by
        if about:
            headers["ce-subject"] = about
        await self.js.publish(target.subject(self.site), _encoder.encode(message), headers=headers)
        return headers["ce-id"]


def invoice_submitted(site: str, number: str, po: str, total: str, seconds: float = 0):
    line = InvoiceLine(
        line_number=1,
        quantity=each(1),
        unit_price=Decimal(total),
        extended_amount=Decimal(total),
        item_id="STENT-DES-3x18",
    )
    return InvoiceSubmitted(
        site=site,
        supplier_id="MEDSUP",
        invoice_number=number,
        invoice_date=date(2024, 3, 1),
        lines=(line,),
        subtotal=Decimal(total),
        total=Decimal(total),
        po_number=po,
        invoice_id=f"id-{number}",
        source_format="json",
        recorded_at=at(seconds),
    )


def invoice_matched(site: str, number: str, po: str, amount: str, first_pass: bool, seconds=0):
    line = MatchedLine(
        invoice_line_number=1,
        po_line_number=1,
        item_id="STENT-DES-3x18",
        base_quantity=each(1),
        unit_price=Decimal(amount),
        po_unit_price=Decimal(amount),
    )
    return InvoiceMatched(
        site=site,
        invoice_id=f"id-{number}",
        invoice_number=number,
        supplier_id="MEDSUP",
        po_number=po,
        match_type="three_way",
        first_pass=first_pass,
        matched_amount=Decimal(amount),
        lines=(line,),
        policy_version="2024-01",
        matched_at=at(seconds),
    )


def match_exception(site, exception_id, type_, queue, number, amount, raised_at, po=None):
    return MatchExceptionRaised(
        site=site,
        exception_id=exception_id,
        type=type_,
        queue=queue,
        invoice_number=number,
        supplier_id="MEDSUP",
        amount_at_stake=Decimal(amount),
        explanation=f"{type_} on {number}",
        invoice_id=f"id-{number}",
        po_number=po,
        policy_version="2024-01",
        sla_due_at=raised_at + timedelta(days=2),
        raised_at=raised_at,
    )


def match_resolved(site, exception_id, type_, number, seconds):
    return MatchExceptionResolved(
        site=site,
        exception_id=exception_id,
        type=type_,
        invoice_number=number,
        supplier_id="MEDSUP",
        resolution="approved",
        resolved_by="ana",
        reason="agreed with supplier",
        invoice_id=f"id-{number}",
        resolved_at=at(seconds),
    )


def usage(site, case_id, serial, seconds=0):
    return ProcedureUsageRecorded(
        site=site,
        usage_id=f"U-{serial}",
        source_usage_id=f"SRC-{serial}",
        case_id=case_id,
        procedure_code="33249",
        physician_id="DR-7",
        location_id="CATH-LAB-1",
        item_id="ICD-DUAL-01",
        quantity=each(1),
        base_quantity=each(1),
        used_at=at(seconds),
        patient_token=PATIENT_TOKEN,
        serial=serial,
        lot="L-ICD-1",
        implant=True,
        consignment=True,
        bill_only=True,
        supplier_id="MEDSUP",
        source_format="hl7v2",
        recorded_at=at(seconds),
    )


def bill_only_requested(site, case_id, serial, seconds):
    return BillOnlyRequested(
        site=site,
        request_id=f"BO-{serial}",
        usage_id=f"U-{serial}",
        case_id=case_id,
        procedure_code="33249",
        physician_id="DR-7",
        location_id="CATH-LAB-1",
        item_id="ICD-DUAL-01",
        quantity=each(1),
        used_at=at(0),
        serial=serial,
        lot="L-ICD-1",
        supplier_id="MEDSUP",
        requested_at=at(seconds),
    )


def po_approved(site, po, unit_price, seconds, *, case_id=None, serial=None, quantity=1):
    bill_only = (
        BillOnlyUsage(
            bill_only_request_id=f"BO-{serial}",
            usage_id=f"U-{serial}",
            case_id=case_id,
            serial=serial,
        )
        if case_id
        else None
    )
    line = PurchaseOrderLine(
        line_number=1,
        item_id="ICD-DUAL-01" if case_id else "GUIDEWIRE-035",
        quantity=each(quantity),
        unit_price=Decimal(unit_price),
        extended_amount=Decimal(unit_price) * quantity,
        bill_only_usage=bill_only,
    )
    return PurchaseOrderApproved(
        site=site,
        po_number=po,
        supplier_id="MEDSUP",
        order_date=date(2024, 3, 1),
        cost_centre_id="CC-CARDIO",
        ship_to_location_id="CATH-LAB-1",
        lines=(line,),
        total=Decimal(unit_price) * quantity,
        bill_only=bool(case_id),
        case_id=case_id,
        approved_by="policy",
        approved_at=at(seconds),
    )


def goods_received(site, receipt_id, po, quantity, seconds):
    return GoodsReceived(
        site=site,
        receipt_id=receipt_id,
        po_number=po,
        supplier_id="MEDSUP",
        location_id="CATH-LAB-1",
        lines=(
            ReceiptLine(
                po_line_number=1,
                item_id="GUIDEWIRE-035",
                quantity=each(quantity),
                base_quantity=each(quantity),
            ),
        ),
        source="api",
        received_by="dock",
        received_at=at(seconds),
    )


def payment(site, payment_id, number, amount, seconds):
    return PaymentReleased(
        site=site,
        payment_id=payment_id,
        supplier_id="MEDSUP",
        amount=Decimal(amount),
        method="ach",
        invoices=(
            PaymentApplication(
                invoice_number=number, amount=Decimal(amount), invoice_id=f"id-{number}"
            ),
        ),
        released_at=at(seconds),
        recorded_at=at(seconds),
    )


def usage_exception(site, exception_id, seconds):
    return UsageExceptionRaised(
        site=site,
        exception_id=exception_id,
        type="UNKNOWN_ITEM",
        explanation="GTIN 00812345999999 is not in the item master",
        held=True,
        source_usage_id="SRC-X",
        case_id="CASE-X",
        gtin="00812345999999",
        raised_at=at(seconds),
    )


def signal_raised(site, signal_id, item_id, on_hand, seconds):
    return ReplenishmentSignalRaised(
        site=site,
        signal_id=signal_id,
        location_id="CATH-LAB-1",
        item_id=item_id,
        quantity=each(10),
        on_hand=each(on_hand),
        par_level=each(12),
        reorder_point=each(4),
        raised_at=at(seconds),
    )


def signal_closed(site, signal_id, item_id, seconds):
    return ReplenishmentSignalClosed(
        site=site,
        signal_id=signal_id,
        location_id="CATH-LAB-1",
        item_id=item_id,
        reason="stock_received",
        on_hand=each(12),
        closed_at=at(seconds),
    )


def dead_letter(site, service, dead_letter_id, cause, reason):
    return DeadLetterRecorded(
        dead_letter_id=dead_letter_id,
        site=site,
        service=service,
        subject=f"sinew.ingress.{site}.usage-hl7.received.v1",
        stream="CLINICAL_INGRESS",
        stream_sequence=7,
        contract="ingress.usage-hl7.received.v1",
        cause=cause,
        reason=reason,
        deliveries=1,
        size_bytes=120,
        recorded_at=at(0),
    )


def dead_letter_replayed(site, service, dead_letter_id):
    return DeadLetterReplayed(
        dead_letter_id=dead_letter_id,
        site=site,
        service=service,
        outcome="applied",
        replayed_by="sre",
        replayed_at=at(60),
    )
