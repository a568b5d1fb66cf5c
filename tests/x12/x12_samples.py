"""Realistic documents for the X12 tests: a cath lab ordering coronary stents in boxes of 10."""

from datetime import UTC, date, datetime
from decimal import Decimal

from sinew.contracts.common import Quantity
from sinew.contracts.matching import InvoiceLine, InvoiceSubmission
from sinew.contracts.procurement import (
    AcknowledgementLine,
    BillOnlyUsage,
    PurchaseOrder,
    PurchaseOrderAcknowledgement,
    PurchaseOrderLine,
)
from sinew.contracts.receiving import AdvanceShipNotice, ShippedItem, ShippedLot, ShippedOrder

SITE = "north"
HOSPITAL, SUPPLIER = "SINEWNORTH", "BSXEDI"
STENT_GTIN = "00812345678901"


def boxes(n: str) -> Quantity:
    return Quantity(Decimal(n), "BX")


def each(n: str) -> Quantity:
    return Quantity(Decimal(n), "EA")


def purchase_order(**changes) -> PurchaseOrder:
    fields = dict(
        site=SITE,
        po_number="PO-2025-1001",
        supplier_id="SUP-BSX",
        order_date=date(2025, 3, 3),
        cost_centre_id="CC-CATHLAB",
        ship_to_location_id="LOC-CATH-STORE",
        lines=(
            PurchaseOrderLine(
                line_number=1,
                item_id="ITEM-STENT-3018",
                quantity=boxes("2"),
                unit_price=Decimal("1200.00"),
                extended_amount=Decimal("2400.00"),
                description="Coronary stent, drug-eluting, 3.0 x 18 mm, box of 10",
                supplier_part="H7493926018300",
                contract_number="C-2025-BSX-01",
            ),
            PurchaseOrderLine(
                line_number=2,
                item_id="ITEM-GUIDEWIRE-014",
                quantity=each("25"),
                unit_price=Decimal("38.50"),
                extended_amount=Decimal("962.50"),
                description="Guidewire 0.014 in x 190 cm",
                supplier_part="M0014190",
                contract_number="C-2025-BSX-01",
            ),
        ),
        total=Decimal("3362.50"),
        requisition_id="REQ-88812",
    )
    fields.update(changes)
    return PurchaseOrder(**fields)


def bill_only_order() -> PurchaseOrder:
    return purchase_order(
        po_number="PO-2025-BO-0042",
        bill_only=True,
        case_id="CASE-20250302-07",
        requisition_id=None,
        revision=2,
        lines=(
            PurchaseOrderLine(
                line_number=1,
                item_id="ITEM-ICD-DR",
                quantity=each("1"),
                unit_price=Decimal("18950.00"),
                extended_amount=Decimal("18950.00"),
                description="Implantable cardioverter defibrillator, dual chamber",
                supplier_part="D433",
                contract_number="C-2025-BSX-07",
                bill_only_usage=BillOnlyUsage(
                    bill_only_request_id="BOR-311",
                    usage_id="USE-90210",
                    case_id="CASE-20250302-07",
                    lot="LOT-A7731",
                    serial="SN-PJK204411",
                    expiry=date(2027, 6, 30),
                ),
            ),
        ),
        total=Decimal("18950.00"),
    )


def acknowledgement(**changes) -> PurchaseOrderAcknowledgement:
    fields = dict(
        site=SITE,
        po_number="PO-2025-1001",
        supplier_id="SUP-BSX",
        status="accepted_with_changes",
        lines=(
            AcknowledgementLine(line_number=1, status="accepted", quantity=boxes("2")),
            AcknowledgementLine(
                line_number=2,
                status="backordered",
                quantity=each("25"),
                expected_ship_date=date(2025, 3, 20),
                note="Guidewires on backorder at the distribution centre; ships from Memphis.",
            ),
            AcknowledgementLine(line_number=3, status="price_changed", unit_price=Decimal("41.00")),
            AcknowledgementLine(
                line_number=4,
                status="substituted",
                quantity=boxes("1"),
                substitute_item_id="ITEM-STENT-3020",
                substitute_supplier_part="H7493926020300",
            ),
            AcknowledgementLine(line_number=5, status="quantity_changed", quantity=boxes("3")),
            AcknowledgementLine(line_number=6, status="rejected", note="Discontinued"),
        ),
        acknowledgement_number="SO-556120",
        acknowledged_at=datetime(2025, 3, 3, 16, 42, 5, tzinfo=UTC),
    )
    fields.update(changes)
    return PurchaseOrderAcknowledgement(**fields)


def ship_notice(**changes) -> AdvanceShipNotice:
    fields = dict(
        site=SITE,
        asn_number="ASN-77120",
        supplier_id="SUP-BSX",
        orders=(
            ShippedOrder(
                po_number="PO-2025-1001",
                items=(
                    ShippedItem(
                        quantity=boxes("2"),
                        po_line_number=1,
                        item_id="ITEM-STENT-3018",
                        supplier_part="H7493926018300",
                        gtin=STENT_GTIN,
                        lots=(
                            ShippedLot(
                                quantity=boxes("1"),
                                lot="L23A0917",
                                expiry=date(2027, 1, 31),
                                serials=tuple(f"SN{n:06d}" for n in range(1, 11)),
                            ),
                            ShippedLot(
                                quantity=boxes("1"),
                                lot="L23A1002",
                                expiry=date(2027, 2, 28),
                            ),
                        ),
                    ),
                    ShippedItem(quantity=each("25"), po_line_number=2, supplier_part="M0014190"),
                ),
            ),
        ),
        shipped_at=datetime(2025, 3, 5, 14, 30, tzinfo=UTC),
        expected_at=datetime(2025, 3, 6, 9, 0, tzinfo=UTC),
        ship_to_location_id="LOC-DOCK-A",
        carrier="UPS Next Day Air",
        tracking_number="1Z999AA10123456784",
    )
    fields.update(changes)
    return AdvanceShipNotice(**fields)


def invoice(**changes) -> InvoiceSubmission:
    fields = dict(
        site=SITE,
        supplier_id="SUP-BSX",
        invoice_number="INV-300551",
        invoice_date=date(2025, 3, 10),
        lines=(
            InvoiceLine(
                line_number=1,
                quantity=boxes("2"),
                unit_price=Decimal("1200.00"),
                extended_amount=Decimal("2400.00"),
                item_id="ITEM-STENT-3018",
                supplier_part="H7493926018300",
                gtin=STENT_GTIN,
                description="Coronary stent, drug-eluting, 3.0 x 18 mm, box of 10",
                po_line_number=1,
                lot="L23A0917",
            ),
            InvoiceLine(
                line_number=2,
                quantity=each("1"),
                unit_price=Decimal("18950.00"),
                extended_amount=Decimal("18950.00"),
                supplier_part="D433",
                po_line_number=2,
                lot="LOT-A7731",
                serial="SN-PJK204411",
            ),
        ),
        subtotal=Decimal("21350.00"),
        freight=Decimal("45.00"),
        tax=Decimal("12.60"),
        total=Decimal("21407.60"),
        po_number="PO-2025-1001",
        due_date=date(2025, 4, 9),
        payment_terms="NET30",
    )
    fields.update(changes)
    return InvoiceSubmission(**fields)
