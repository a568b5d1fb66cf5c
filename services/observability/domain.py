"""Pure rules of observability: which business keys an event names, where a hop starts and ends,
how old is old, and percentiles. No I/O."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

# Business keys worth following across services. Patient fields never enter the index: the
# canonical events carry only tokens, and even those stay out of an operators' tool.
KEY_FIELDS = {
    "po_number": "po",
    "invoice_number": "invoice",
    "invoice_id": "invoice_id",
    "case_id": "case",
    "lot": "lot",
    "serial": "serial",
    "serials": "serial",
    "receipt_id": "receipt",
    "usage_id": "usage",
    "exception_id": "exception",
    "request_id": "bill_only_request",
    "bill_only_request_id": "bill_only_request",
    "requisition_id": "requisition",
    "asn_number": "asn",
    "signal_id": "signal",
    "payment_id": "payment",
    "dead_letter_id": "dead_letter",
    "supplier_id": "supplier",
    "item_id": "item",
    "location_id": "location",
}
NEVER_INDEXED = {"patient_token", "mrn", "patient_name"}
# Keys that join the events of one transaction; suppliers, items, locations and lots join far
# too much to be followed (a lot is a fine starting point, never a bridge).
TRANSACTION_KINDS = (
    "po",
    "invoice",
    "invoice_id",
    "case",
    "serial",
    "receipt",
    "usage",
    "exception",
    "bill_only_request",
    "requisition",
    "payment",
    "signal",
)
AMOUNT_FIELDS = (
    "total",
    "amount",
    "amount_at_stake",
    "matched_amount",
    "approved_amount",
    "estimated_total",
    "credit_amount",
)

# The outside system behind the first canonical event of each ingress family: when these stop,
# a feed went quiet.
SOURCES = {
    "items.item.upserted.v1": "mdm",
    "items.supplier.upserted.v1": "mdm",
    "items.contract.upserted.v1": "mdm",
    "items.location.upserted.v1": "mdm",
    "procurement.purchase-order.acknowledged.v1": "supplier",
    "receiving.asn.received.v1": "supplier",
    "receiving.goods.received.v1": "dock",
    "usage.procedure-usage.recorded.v1": "ehr",
    "matching.invoice.submitted.v1": "ap",
    "matching.payment.released.v1": "erp",
    "replenishment.inventory.adjusted.v1": "warehouse",
}

AGE_BUCKETS = (("under_1_day", 1), ("1_to_3_days", 3), ("3_to_7_days", 7), ("over_7_days", None))


def business_keys(payload: Any) -> list[tuple[str, str]]:
    """(kind, value) for every business key anywhere in the payload, nested lines included."""
    found: set[tuple[str, str]] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for name, inner in value.items():
                if name in NEVER_INDEXED:
                    continue
                kind = KEY_FIELDS.get(name)
                if kind and isinstance(inner, str) and inner:
                    found.add((kind, inner))
                elif kind and isinstance(inner, list | tuple):
                    found.update((kind, v) for v in inner if isinstance(v, str) and v)
                else:
                    walk(inner)
        elif isinstance(value, list | tuple):
            for inner in value:
                walk(inner)

    walk(payload)
    return sorted(found)


def amounts(payload: dict) -> dict[str, str]:
    return {name: str(payload[name]) for name in AMOUNT_FIELDS if payload.get(name) is not None}


def age_bucket(raised_at: datetime, now: datetime) -> str:
    days = (now - raised_at).total_seconds() / 86400
    for name, limit in AGE_BUCKETS:
        if limit is None or days < limit:
            return name
    return AGE_BUCKETS[-1][0]


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Nearest-rank p50/p95/p99, in seconds, rounded to the millisecond."""
    ordered = sorted(values)
    result: dict[str, float | None] = {"count": len(ordered)}
    for name, rank in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        if not ordered:
            result[name] = None
            continue
        index = max(0, min(len(ordered) - 1, int(-(-rank * len(ordered) // 1)) - 1))
        result[name] = round(ordered[index], 3)
    return result


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def money(value: Decimal | str | None) -> str:
    return str(Decimal(value or 0).quantize(Decimal("0.01")))
