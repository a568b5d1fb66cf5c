"""Advance ship notices, dock scans and goods receipts against purchase order lines."""

from datetime import date
from typing import Literal

import msgspec

from .catalogue import INGRESS, X12, Channel
from .common import Code, Quantity, SiteCode, Text, UtcTime
from .items import Barcode, Gtin, Lot, Serial
from .procurement import DocumentFormat, LineNumber


class ShippedLot(msgspec.Struct, frozen=True, kw_only=True):
    quantity: Quantity
    lot: Lot | None = None
    expiry: date | None = None
    serials: tuple[Serial, ...] = ()


class ShippedItem(msgspec.Struct, frozen=True, kw_only=True):
    """One PO line in the shipment; suppliers often name only their own part number."""

    quantity: Quantity
    po_line_number: LineNumber | None = None
    item_id: Code | None = None
    supplier_part: Code | None = None
    gtin: Gtin | None = None
    lots: tuple[ShippedLot, ...] = ()


class ShippedOrder(msgspec.Struct, frozen=True, kw_only=True):
    po_number: Code
    items: tuple[ShippedItem, ...]


class AdvanceShipNotice(msgspec.Struct, frozen=True, kw_only=True):
    """A supplier's ASN in JSON: shipment, then orders, then items with their lots and serials.
    X12 856 documents say the same."""

    site: SiteCode
    asn_number: Code
    supplier_id: Code
    orders: tuple[ShippedOrder, ...]
    shipped_at: UtcTime
    expected_at: UtcTime | None = None
    ship_to_location_id: Code | None = None
    carrier: Text | None = None
    tracking_number: Code | None = None


class AsnReceived(AdvanceShipNotice, frozen=True, kw_only=True):
    source_format: DocumentFormat
    recorded_at: UtcTime


class DockScan(msgspec.Struct, frozen=True, kw_only=True):
    """One barcode scanned at the dock or point of use; receiving turns it into a receipt line."""

    site: SiteCode
    scan_id: Code
    barcode: Barcode
    location_id: Code
    scanned_at: UtcTime
    po_number: Code | None = None
    asn_number: Code | None = None
    quantity: Quantity | None = None  # none: one of the pack the barcode identifies
    scanned_by: Text | None = None
    device_id: Code | None = None


class ReceiptLine(msgspec.Struct, frozen=True, kw_only=True):
    po_line_number: LineNumber
    item_id: Code
    quantity: Quantity
    # Converted through the item master, so matching and replenishment count alike.
    base_quantity: Quantity
    lot: Lot | None = None
    serial: Serial | None = None
    expiry: date | None = None
    gtin: Gtin | None = None


class GoodsReceived(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    receipt_id: Code
    po_number: Code
    supplier_id: Code
    location_id: Code
    lines: tuple[ReceiptLine, ...]
    asn_number: Code | None = None
    source: Literal["dock_scan", "api", "asn"]
    received_by: Text
    received_at: UtcTime


ReceiptExceptionType = Literal[
    "OVER_RECEIPT",
    "UNKNOWN_PO",
    "CLOSED_PO",
    "UNKNOWN_ITEM",
    "EXPIRED_LOT",
    "DUPLICATE_SERIAL",
    "LOT_OR_SERIAL_MISSING",
    "UNREADABLE_BARCODE",
]


class ReceiptExceptionRaised(msgspec.Struct, frozen=True, kw_only=True):
    """Something that arrived and cannot simply be received; a person decides."""

    site: SiteCode
    exception_id: Code
    type: ReceiptExceptionType
    explanation: Text
    po_number: Code | None = None
    po_line_number: LineNumber | None = None
    item_id: Code | None = None
    quantity: Quantity | None = None
    lot: Lot | None = None
    serial: Serial | None = None
    expiry: date | None = None
    receipt_id: Code | None = None
    asn_number: Code | None = None
    scan_id: Code | None = None
    raised_at: UtcTime


class ReceiptExceptionResolved(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    exception_id: Code
    type: ReceiptExceptionType
    resolution: Literal["accepted", "returned_to_supplier", "corrected", "dismissed"]
    resolved_by: Text
    reason: Text
    receipt_id: Code | None = None
    resolved_at: UtcTime


# An 856 for a large shipment with every serial listed runs past the default limit.
LARGE = 1024 * 1024

# fmt: off
CHANNELS: list[Channel] = [
    Channel(INGRESS, "asn", "submitted", 1, AdvanceShipNotice, "supplier", ("receiving",),
            "A supplier's advance ship notice in JSON", max_bytes=LARGE),
    Channel(INGRESS, "asn-x12", "received", 1, None, "supplier", ("receiving",),
            "A supplier's advance ship notice as an X12 856 document", content_type=X12,
            max_bytes=LARGE),
    Channel(INGRESS, "dock-scan", "scanned", 1, DockScan, "dock", ("receiving",),
            "A UDI barcode scanned at the dock or point of use"),
    Channel("receiving", "asn", "received", 1, AsnReceived, "receiving", ("observability",),
            "An advance ship notice accepted: what is on its way, with lots, serials and expiry",
            max_bytes=LARGE),
    Channel("receiving", "goods", "received", 1, GoodsReceived, "receiving",
            ("procurement", "matching", "replenishment", "observability"),
            "Goods received against PO lines, with lot, serial, expiry and quantity"),
    Channel("receiving", "exception", "raised", 1, ReceiptExceptionRaised, "receiving",
            ("observability",),
            "A receiving problem: over-receipt, closed or unknown PO, expired lot, serial twice"),
    Channel("receiving", "exception", "resolved", 1, ReceiptExceptionResolved, "receiving",
            ("observability",), "A receiving exception resolved, by whom and how"),
]
# fmt: on
