"""Every v1 message round-trips through JSON, and the catalogue keeps its promises.

The examples follow the cardiology implant of the scenarios: site north, CATH-LAB-1, stent
STENT-DES-3x18 from MEDSUP at 1,200.00 USD each under contract C-MEDSUP-2025.
"""

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from sinew.contracts import CATALOGUE, COMMANDED, SERVICES
from sinew.contracts import items as it
from sinew.contracts import matching as ma
from sinew.contracts import procurement as pr
from sinew.contracts import receiving as rc
from sinew.contracts import replenishment as rp
from sinew.contracts import usage as us
from sinew.contracts.catalogue import JSON
from sinew.contracts.common import Quantity
from sinew.contracts.ops import CommandRecorded, DeadLetterRecorded, DeadLetterReplayed

SITE = "north"
AT = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
EXPIRY = date(2027, 6, 30)
STENT = "STENT-DES-3x18"
GTIN = "00614141999996"
UDI = "(01)00614141999996(17)270630(10)L1(21)S1"
TOKEN = "pt-7f3a9c2e4b1d8f60"


def ea(value: str) -> Quantity:
    return Quantity(Decimal(value), "EA")


def later(minutes: int) -> datetime:
    return AT + timedelta(minutes=minutes)


ITEM = dict(
    site=SITE,
    item_id=STENT,
    version=3,
    description="Drug-eluting coronary stent 3.0 x 18 mm",
    base_uom="EA",
    packs=(it.PackSize(uom="BX", base_units=Decimal(1), gtin=GTIN),),
    gtin=GTIN,
    udi_di=GTIN,
    udi_issuer="GS1",
    category="CARDIO-IMPLANT",
    manufacturer="Medsup Vascular",
    manufacturer_part="DES-3018",
    supplier_parts=(it.SupplierPart(supplier_id="MEDSUP", part_number="MS-DES-3018", uom="BX"),),
    implant=True,
    lot_controlled=True,
    serial_controlled=True,
    charge_code="2780-1185",
)
SUPPLIER = dict(
    site=SITE,
    supplier_id="MEDSUP",
    version=1,
    name="Medsup Medical Supply",
    gln="0614141000005",
    duns="123456789",
    edi_id="MEDSUPEDI",
    payment_terms="NET30",
)
CONTRACT = dict(
    site=SITE,
    contract_number="C-MEDSUP-2025",
    version=2,
    supplier_id="MEDSUP",
    effective_from=date(2025, 1, 1),
    effective_to=date(2025, 12, 31),
    title="Cardiology implants 2025",
    prices=(
        it.ContractPrice(
            item_id=STENT,
            uom="EA",
            unit_price=Decimal("1200.00"),
            tiers=(it.PriceTier(min_quantity=Decimal(10), unit_price=Decimal("1150.00")),),
            supplier_part="MS-DES-3018",
        ),
    ),
)
SUBSTITUTION = dict(
    site=SITE,
    substitution_id="SUB-0007",
    version=1,
    item_id=STENT,
    substitute_item_id="STENT-DES-3x18-B",
    contract_number="C-MEDSUP-2025",
)
LOCATION = dict(
    site=SITE,
    location_id="CATH-LAB-1",
    version=4,
    name="Cardiac catheterisation lab 1",
    location_type="procedure_room",
    cost_centre_id="CC-CARDIO",
    par_levels=(it.ParLevel(item_id=STENT, par_level=Decimal(4), reorder_point=Decimal(2)),),
)
COST_CENTRE = dict(
    site=SITE,
    cost_centre_id="CC-CARDIO",
    version=1,
    name="Cardiology",
    department="Heart and vascular",
    gl_account="6100-200",
)
UPSERTED = dict(source="mdm", upserted_at=AT)

PO_LINE = pr.PurchaseOrderLine(
    line_number=1,
    item_id=STENT,
    quantity=ea("2"),
    unit_price=Decimal("1200.00"),
    extended_amount=Decimal("2400.00"),
    description="Drug-eluting coronary stent 3.0 x 18 mm",
    supplier_part="MS-DES-3018",
    contract_number="C-MEDSUP-2025",
    requisition_line_number=1,
)
BILL_ONLY_LINE = pr.PurchaseOrderLine(
    line_number=1,
    item_id="ICD-DUAL-7",
    quantity=ea("1"),
    unit_price=Decimal("18500.00"),
    extended_amount=Decimal("18500.00"),
    contract_number="C-MEDSUP-2025",
    bill_only_usage=pr.BillOnlyUsage(
        bill_only_request_id="BOR-2025-0042",
        usage_id="U-2025-118204",
        case_id="CASE-88120",
        lot="L7",
        serial="S7",
        expiry=EXPIRY,
    ),
)
PO = dict(
    site=SITE,
    po_number="PO-2025-000123",
    revision=1,
    supplier_id="MEDSUP",
    order_date=date(2025, 3, 14),
    cost_centre_id="CC-CARDIO",
    ship_to_location_id="CATH-LAB-1",
    lines=(PO_LINE,),
    total=Decimal("2400.00"),
    requisition_id="REQ-2025-000981",
)
ACK_LINE = dict(
    line_number=1,
    status="substituted",
    quantity=ea("2"),
    expected_ship_date=date(2025, 3, 17),
    substitute_item_id="STENT-DES-3x18-B",
    substitute_supplier_part="MS-DES-3018B",
)
ASN = dict(
    site=SITE,
    asn_number="ASN-778812",
    supplier_id="MEDSUP",
    shipped_at=later(60),
    expected_at=later(60 * 24),
    ship_to_location_id="CATH-LAB-1",
    carrier="UPS",
    tracking_number="1Z999AA10123456784",
    orders=(
        rc.ShippedOrder(
            po_number="PO-2025-000123",
            items=(
                rc.ShippedItem(
                    quantity=ea("2"),
                    po_line_number=1,
                    supplier_part="MS-DES-3018",
                    gtin=GTIN,
                    lots=(
                        rc.ShippedLot(quantity=ea("1"), lot="L1", expiry=EXPIRY, serials=("S1",)),
                        rc.ShippedLot(quantity=ea("1"), lot="L2", expiry=EXPIRY, serials=("S2",)),
                    ),
                ),
            ),
        ),
    ),
)
INVOICE = dict(
    site=SITE,
    supplier_id="MEDSUP",
    invoice_number="INV-55120",
    invoice_date=date(2025, 3, 18),
    po_number="PO-2025-000123",
    lines=(
        ma.InvoiceLine(
            line_number=1,
            quantity=ea("2"),
            unit_price=Decimal("1260.00"),
            extended_amount=Decimal("2520.00"),
            supplier_part="MS-DES-3018",
            po_line_number=1,
        ),
    ),
    subtotal=Decimal("2520.00"),
    freight=Decimal("15.00"),
    tax=Decimal("0.00"),
    total=Decimal("2535.00"),
    due_date=date(2025, 4, 17),
    payment_terms="NET30",
)
PRICE_CHECK = ma.MatchCheck(
    rule="price_vs_contract",
    passed=False,
    explanation="Invoiced 1260.00 per EA against contract 1200.00: 5.0% over, tolerance 24.00",
    invoice_line_number=1,
    po_line_number=1,
    expected=Decimal("1200.00"),
    actual=Decimal("1260.00"),
    tolerance="2% or 25.00, whichever is smaller",
)


def dead_letter_examples(service: str) -> dict[str, list[Any]]:
    return {
        f"{service}.dead-letter.recorded.v1": [
            DeadLetterRecorded(
                dead_letter_id="DL-000017",
                site=SITE,
                service=service,
                subject="sinew.ingress.north.invoice.submitted.v1",
                stream="INGRESS",
                stream_sequence=4411,
                contract="ingress.invoice.submitted.v1",
                cause="invalid",
                reason="Expected `str`, got `int` - at `$.invoice_number`",
                deliveries=1,
                size_bytes=812,
                event_id="0b8e7b7c-5f1e-4c43-9d55-5d3f1f2b8a10",
                recorded_at=AT,
            )
        ],
        f"{service}.dead-letter.replayed.v1": [
            DeadLetterReplayed(
                dead_letter_id="DL-000017",
                site=SITE,
                service=service,
                outcome="applied",
                replayed_by="sre:amira",
                replayed_at=later(30),
            )
        ],
    }


EXAMPLES: dict[str, list[Any]] = {
    # items
    "ingress.masterdata.upserted.v1": [
        it.ItemUpsert(**ITEM),
        it.SupplierUpsert(**SUPPLIER),
        it.ContractUpsert(**CONTRACT),
        it.SubstitutionUpsert(**SUBSTITUTION),
        it.LocationUpsert(**LOCATION),
        it.CostCentreUpsert(**COST_CENTRE),
    ],
    "items.item.upserted.v1": [it.ItemUpserted(**ITEM, **UPSERTED)],
    "items.supplier.upserted.v1": [it.SupplierUpserted(**SUPPLIER, **UPSERTED)],
    "items.contract.upserted.v1": [it.ContractUpserted(**CONTRACT, **UPSERTED)],
    "items.substitution.upserted.v1": [it.SubstitutionUpserted(**SUBSTITUTION, **UPSERTED)],
    "items.location.upserted.v1": [it.LocationUpserted(**LOCATION, **UPSERTED)],
    "items.cost-centre.upserted.v1": [
        it.CostCentreUpserted(**COST_CENTRE, source="api", upserted_at=AT)
    ],
    # procurement
    "ingress.po-acknowledgement.submitted.v1": [
        pr.PurchaseOrderAcknowledgement(
            site=SITE,
            po_number="PO-2025-000123",
            supplier_id="MEDSUP",
            status="accepted_with_changes",
            lines=(pr.AcknowledgementLine(**ACK_LINE),),
            acknowledgement_number="ACK-9912",
            acknowledged_at=later(20),
        )
    ],
    "procurement.requisition.created.v1": [
        pr.RequisitionCreated(
            site=SITE,
            requisition_id="REQ-2025-000981",
            origin="replenishment",
            requested_by="replenishment",
            cost_centre_id="CC-CARDIO",
            location_id="CATH-LAB-1",
            lines=(
                pr.RequisitionLine(
                    line_number=1,
                    item_id=STENT,
                    quantity=ea("2"),
                    supplier_id="MEDSUP",
                    contract_number="C-MEDSUP-2025",
                    unit_price=Decimal("1200.00"),
                    need_by=date(2025, 3, 17),
                ),
            ),
            estimated_total=Decimal("2400.00"),
            approval_reasons=("amount",),
            replenishment_signal_id="SIG-CATH-LAB-1-0031",
            created_at=AT,
        )
    ],
    "procurement.requisition.approved.v1": [
        pr.RequisitionApproved(
            site=SITE,
            requisition_id="REQ-2025-000981",
            approved_by="dr.okafor",
            policy_version="2025-02",
            reason="Within cardiology implant budget",
            approved_at=later(5),
        )
    ],
    "procurement.requisition.rejected.v1": [
        pr.RequisitionRejected(
            site=SITE,
            requisition_id="REQ-2025-000982",
            rejected_by="m.ortiz",
            reason="Non-formulary: use the contracted stent",
            policy_version="2025-02",
            rejected_at=later(6),
        )
    ],
    "procurement.purchase-order.approved.v1": [
        pr.PurchaseOrderApproved(**PO, approved_by="policy", approved_at=later(7)),
        pr.PurchaseOrderApproved(
            site=SITE,
            po_number="PO-2025-000124",
            supplier_id="MEDSUP",
            order_date=date(2025, 3, 14),
            cost_centre_id="CC-CARDIO",
            ship_to_location_id="CATH-LAB-1",
            lines=(BILL_ONLY_LINE,),
            total=Decimal("18500.00"),
            bill_only=True,
            case_id="CASE-88120",
            approved_by="policy",
            approved_at=later(8),
        ),
    ],
    "procurement.purchase-order.sent.v1": [
        pr.PurchaseOrderSent(**PO, format="json", sent_at=later(9)),
    ],
    "procurement.purchase-order.acknowledged.v1": [
        pr.PurchaseOrderAcknowledged(
            site=SITE,
            po_number="PO-2025-000123",
            supplier_id="MEDSUP",
            status="accepted_with_changes",
            lines=(pr.AcknowledgedLine(**ACK_LINE, substitution_approved=True),),
            acknowledgement_number="ACK-9912",
            source_format="x12",
            acknowledged_at=later(20),
            recorded_at=later(21),
        )
    ],
    "procurement.purchase-order.changed.v1": [
        pr.PurchaseOrderChanged(
            **{**PO, "revision": 2},
            cause="supplier_acknowledgement",
            changed_by="procurement",
            reason="Supplier ships approved substitute STENT-DES-3x18-B",
            changed_at=later(22),
        )
    ],
    "procurement.purchase-order.cancelled.v1": [
        pr.PurchaseOrderCancelled(
            site=SITE,
            po_number="PO-2025-000125",
            revision=1,
            supplier_id="MEDSUP",
            cancelled_by="m.ortiz",
            reason="Duplicate of PO-2025-000123",
            cancelled_at=later(23),
        )
    ],
    "procurement.purchase-order.closed.v1": [
        pr.PurchaseOrderClosed(
            site=SITE,
            po_number="PO-2025-000123",
            supplier_id="MEDSUP",
            reason="fully_received",
            closed_by="procurement",
            closed_at=later(60 * 30),
        )
    ],
    # receiving
    "ingress.asn.submitted.v1": [rc.AdvanceShipNotice(**ASN)],
    "ingress.dock-scan.scanned.v1": [
        rc.DockScan(
            site=SITE,
            scan_id="SCAN-DOCK2-000918",
            barcode=UDI,
            location_id="DOCK-2",
            scanned_at=later(60 * 25),
            po_number="PO-2025-000123",
            asn_number="ASN-778812",
            scanned_by="r.chen",
            device_id="ZEBRA-TC52-07",
        )
    ],
    "receiving.asn.received.v1": [
        rc.AsnReceived(**ASN, source_format="x12", recorded_at=later(61)),
    ],
    "receiving.goods.received.v1": [
        rc.GoodsReceived(
            site=SITE,
            receipt_id="RCV-2025-004410",
            po_number="PO-2025-000123",
            supplier_id="MEDSUP",
            location_id="CATH-LAB-1",
            lines=tuple(
                rc.ReceiptLine(
                    po_line_number=1,
                    item_id=STENT,
                    quantity=Quantity(Decimal(1), "BX"),
                    base_quantity=ea("1"),
                    lot=lot,
                    serial=serial,
                    expiry=EXPIRY,
                    gtin=GTIN,
                )
                for lot, serial in (("L1", "S1"), ("L2", "S2"))
            ),
            asn_number="ASN-778812",
            source="dock_scan",
            received_by="r.chen",
            received_at=later(60 * 25),
        )
    ],
    "receiving.exception.raised.v1": [
        rc.ReceiptExceptionRaised(
            site=SITE,
            exception_id="RX-000031",
            type="EXPIRED_LOT",
            explanation="Lot L9 expired on 2025-02-28, received 2025-03-15",
            po_number="PO-2025-000123",
            po_line_number=1,
            item_id=STENT,
            quantity=ea("1"),
            lot="L9",
            serial="S9",
            expiry=date(2025, 2, 28),
            scan_id="SCAN-DOCK2-000919",
            raised_at=later(60 * 25),
        )
    ],
    "receiving.exception.resolved.v1": [
        rc.ReceiptExceptionResolved(
            site=SITE,
            exception_id="RX-000031",
            type="EXPIRED_LOT",
            resolution="returned_to_supplier",
            resolved_by="r.chen",
            reason="RMA 44120 raised with Medsup",
            resolved_at=later(60 * 26),
        )
    ],
    # usage
    "ingress.usage.recorded.v1": [
        us.UsageSubmitted(
            site=SITE,
            source_usage_id="EHR-CHG-5512-1",
            case_id="CASE-88119",
            procedure_code="92928",
            physician_id="NPI-1234567893",
            location_id="CATH-LAB-1",
            mrn="MRN-00482913",
            patient_name="Synthetic, Patient",
            quantity=ea("1"),
            used_at=later(60 * 48),
            udi=UDI,
            procedure_name="Percutaneous coronary stent placement",
        )
    ],
    "ingress.usage.voided.v1": [
        us.UsageVoidSubmitted(
            site=SITE,
            source_usage_id="EHR-CHG-5512-1",
            case_id="CASE-88119",
            voided_at=later(60 * 49),
            reason="Charged to the wrong case",
        )
    ],
    "usage.procedure-usage.recorded.v1": [
        us.ProcedureUsageRecorded(
            site=SITE,
            usage_id="U-2025-118203",
            source_usage_id="EHR-CHG-5512-1",
            case_id="CASE-88119",
            procedure_code="92928",
            physician_id="NPI-1234567893",
            location_id="CATH-LAB-1",
            item_id=STENT,
            quantity=ea("1"),
            base_quantity=ea("1"),
            used_at=later(60 * 48),
            patient_token=TOKEN,
            gtin=GTIN,
            udi=UDI,
            lot="L1",
            serial="S1",
            expiry=EXPIRY,
            implant=True,
            supplier_id="MEDSUP",
            contract_number="C-MEDSUP-2025",
            source_format="hl7v2",
            recorded_at=later(60 * 48 + 1),
        )
    ],
    "usage.procedure-usage.voided.v1": [
        us.ProcedureUsageVoided(
            site=SITE,
            usage_id="U-2025-118203",
            source_usage_id="EHR-CHG-5512-1",
            case_id="CASE-88119",
            location_id="CATH-LAB-1",
            item_id=STENT,
            quantity=ea("1"),
            base_quantity=ea("1"),
            lot="L1",
            serial="S1",
            reason="Charged to the wrong case",
            voided_at=later(60 * 49),
        )
    ],
    "usage.exception.raised.v1": [
        us.UsageExceptionRaised(
            site=SITE,
            exception_id="UX-000212",
            type="UNKNOWN_ITEM",
            explanation="GTIN 00614141888883 is not in the item master yet; usage held",
            held=True,
            source_usage_id="EHR-CHG-5520-1",
            case_id="CASE-88125",
            location_id="CATH-LAB-1",
            gtin="00614141888883",
            lot="L44",
            serial="S44",
            raised_at=later(60 * 50),
        )
    ],
    "usage.exception.cleared.v1": [
        us.UsageExceptionCleared(
            site=SITE,
            exception_id="UX-000212",
            type="UNKNOWN_ITEM",
            source_usage_id="EHR-CHG-5520-1",
            resolution="item_master_updated",
            cleared_by="usage",
            usage_id="U-2025-118260",
            cleared_at=later(60 * 52),
        )
    ],
    "usage.bill-only.requested.v1": [
        us.BillOnlyRequested(
            site=SITE,
            request_id="BOR-2025-0042",
            usage_id="U-2025-118204",
            case_id="CASE-88120",
            procedure_code="33249",
            physician_id="NPI-1234567893",
            location_id="CATH-LAB-1",
            item_id="ICD-DUAL-7",
            quantity=ea("1"),
            used_at=later(60 * 47),
            lot="L7",
            serial="S7",
            expiry=EXPIRY,
            supplier_id="MEDSUP",
            contract_number="C-MEDSUP-2025",
            requested_at=later(60 * 47 + 1),
        )
    ],
    # matching
    "ingress.invoice.submitted.v1": [ma.InvoiceSubmission(**INVOICE)],
    "ingress.payment.released.v1": [
        ma.PaymentRelease(
            site=SITE,
            payment_id="PAY-2025-07781",
            supplier_id="MEDSUP",
            amount=Decimal("2415.00"),
            method="ach",
            invoices=(ma.PaidInvoice(invoice_number="INV-55120", amount=Decimal("2415.00")),),
            payment_reference="ACH-TRACE-0912",
            released_at=later(60 * 24 * 30),
        )
    ],
    "matching.invoice.submitted.v1": [
        ma.InvoiceSubmitted(
            **INVOICE, invoice_id="INVC-000511", source_format="json", recorded_at=later(60 * 96)
        )
    ],
    "matching.invoice.matched.v1": [
        ma.InvoiceMatched(
            site=SITE,
            invoice_id="INVC-000512",
            invoice_number="INV-55121",
            supplier_id="MEDSUP",
            po_number="PO-2025-000123",
            match_type="three_way",
            first_pass=True,
            matched_amount=Decimal("2400.00"),
            lines=(
                ma.MatchedLine(
                    invoice_line_number=1,
                    po_line_number=1,
                    item_id=STENT,
                    base_quantity=ea("2"),
                    unit_price=Decimal("1200.00"),
                    po_unit_price=Decimal("1200.00"),
                    contract_unit_price=Decimal("1200.00"),
                    contract_number="C-MEDSUP-2025",
                ),
            ),
            checks=(
                ma.MatchCheck(
                    rule="quantity_vs_receipt",
                    passed=True,
                    explanation="Invoiced 2 EA, received 2 EA on RCV-2025-004410",
                    invoice_line_number=1,
                    po_line_number=1,
                    expected=Decimal(2),
                    actual=Decimal(2),
                    tolerance="0",
                ),
            ),
            policy_version="2025-01",
            matched_at=later(60 * 97),
        )
    ],
    "matching.exception.raised.v1": [
        ma.MatchExceptionRaised(
            site=SITE,
            exception_id="MX-000734",
            type="PRICE_VARIANCE",
            queue="supply_chain",
            invoice_number="INV-55120",
            supplier_id="MEDSUP",
            amount_at_stake=Decimal("120.00"),
            explanation="Unit price 1260.00 is 60.00 over contract C-MEDSUP-2025 on 2 EA",
            invoice_id="INVC-000511",
            po_number="PO-2025-000123",
            invoice_line_number=1,
            item_id=STENT,
            contract_number="C-MEDSUP-2025",
            checks=(PRICE_CHECK,),
            policy_version="2025-01",
            sla_due_at=later(60 * 96 + 60 * 48),
            raised_at=later(60 * 96),
        )
    ],
    "matching.exception.resolved.v1": [
        ma.MatchExceptionResolved(
            site=SITE,
            exception_id="MX-000734",
            type="PRICE_VARIANCE",
            invoice_number="INV-55120",
            supplier_id="MEDSUP",
            resolution="credit_requested",
            resolved_by="analyst:l.nguyen",
            reason="Contract price holds; credit memo requested from Medsup",
            invoice_id="INVC-000511",
            credit_amount=Decimal("120.00"),
            resolved_at=later(60 * 100),
        )
    ],
    "matching.exception.reassigned.v1": [
        ma.MatchExceptionReassigned(
            site=SITE,
            exception_id="MX-000735",
            type="QUANTITY_VARIANCE",
            from_queue="receiving",
            to_queue="ap",
            reassigned_by="r.chen",
            reason="Receipt is complete; the supplier invoiced a line twice",
            reassigned_at=later(60 * 101),
        )
    ],
    "matching.invoice.approved.v1": [
        ma.InvoiceApproved(
            site=SITE,
            invoice_id="INVC-000511",
            invoice_number="INV-55120",
            supplier_id="MEDSUP",
            approved_amount=Decimal("2415.00"),
            basis="exception_approved",
            approved_by="analyst:l.nguyen",
            po_number="PO-2025-000123",
            due_date=date(2025, 4, 17),
            approved_at=later(60 * 101),
        )
    ],
    "matching.payment.released.v1": [
        ma.PaymentReleased(
            site=SITE,
            payment_id="PAY-2025-07781",
            supplier_id="MEDSUP",
            amount=Decimal("2415.00"),
            method="ach",
            invoices=(
                ma.PaymentApplication(
                    invoice_number="INV-55120",
                    amount=Decimal("2415.00"),
                    invoice_id="INVC-000511",
                ),
            ),
            payment_reference="ACH-TRACE-0912",
            released_at=later(60 * 24 * 30),
            recorded_at=later(60 * 24 * 30 + 1),
        )
    ],
    # replenishment
    "ingress.inventory.counted.v1": [
        rp.StockCount(
            site=SITE,
            count_id="CC-2025-0311",
            location_id="CATH-LAB-1",
            lines=(rp.CountedLine(item_id=STENT, quantity=ea("3"), lot="L2"),),
            counted_by="wms",
            counted_at=AT,
        ),
        rp.StockAdjustment(
            site=SITE,
            adjustment_id="ADJ-2025-0088",
            location_id="CATH-LAB-1",
            lines=(rp.AdjustedLine(item_id=STENT, change=ea("-1"), reason="damaged", lot="L2"),),
            adjusted_by="wms",
            note="Sterile barrier breached",
            adjusted_at=later(1),
        ),
    ],
    "replenishment.inventory.adjusted.v1": [
        rp.InventoryAdjusted(
            site=SITE,
            adjustment_id="IA-000412",
            location_id="CATH-LAB-1",
            source="adjustment",
            reference="ADJ-2025-0088",
            lines=(
                rp.StockChange(
                    item_id=STENT,
                    before=ea("3"),
                    change=ea("-1"),
                    after=ea("2"),
                    reason="damaged",
                    lot="L2",
                ),
            ),
            adjusted_by="wms",
            adjusted_at=later(2),
        )
    ],
    "replenishment.signal.raised.v1": [
        rp.ReplenishmentSignalRaised(
            site=SITE,
            signal_id="SIG-CATH-LAB-1-0031",
            location_id="CATH-LAB-1",
            item_id=STENT,
            quantity=ea("3"),
            on_hand=ea("1"),
            par_level=ea("4"),
            reorder_point=ea("2"),
            raised_at=later(60 * 48 + 2),
        )
    ],
    "replenishment.signal.updated.v1": [
        rp.ReplenishmentSignalUpdated(
            site=SITE,
            signal_id="SIG-CATH-LAB-1-0031",
            location_id="CATH-LAB-1",
            item_id=STENT,
            quantity=ea("4"),
            on_hand=ea("0"),
            updated_at=later(60 * 49),
        )
    ],
    "replenishment.signal.closed.v1": [
        rp.ReplenishmentSignalClosed(
            site=SITE,
            signal_id="SIG-CATH-LAB-1-0031",
            location_id="CATH-LAB-1",
            item_id=STENT,
            reason="stock_received",
            on_hand=ea("4"),
            receipt_id="RCV-2025-004433",
            closed_at=later(60 * 72),
        )
    ],
}
for _service in SERVICES:
    EXAMPLES.update(dead_letter_examples(_service))
for _service in COMMANDED:
    EXAMPLES[f"{_service}.command.recorded.v1"] = [
        CommandRecorded(
            command_id="5d1c2b8e-8a43-4f0a-9a55-2f3f1f2b8a11",
            site=SITE,
            service=_service,
            command="resolve",
            arguments=[
                "EXC-000042",
                {"resolution": "approved", "reason": "price agreed by phone"},
                {"name": "ap-clerk-1", "roles": ["ap"]},
            ],
            recorded_at=AT,
        )
    ]

CANONICAL = [c for c in CATALOGUE.channels if not c.is_ingress]
WITH_MESSAGE = [c for c in CATALOGUE.channels if c.message is not None]
EXAMPLE_CASES = [
    pytest.param(CATALOGUE.channel(name), example, id=f"{name}[{i}]")
    for name, examples in EXAMPLES.items()
    for i, example in enumerate(examples)
]

PHI_FIELDS = {"mrn", "patient_name", "patient_id", "birth_date", "date_of_birth"}
MONEY_FIELDS = {
    "amount",
    "amount_at_stake",
    "approved_amount",
    "credit_amount",
    "discount",
    "estimated_total",
    "extended_amount",
    "freight",
    "matched_amount",
    "po_unit_price",
    "contract_unit_price",
    "subtotal",
    "tax",
    "total",
    "unit_price",
}


def schema_properties(message: Any) -> dict[str, dict]:
    """Every property of a message and of the Structs nested in it, by name."""
    schema = msgspec.json.schema(message)
    found: dict[str, dict] = {}
    for definition in schema.get("$defs", {}).values():
        found.update(definition.get("properties", {}))
    return found


def top_level_definitions(message: Any) -> list[dict]:
    schema = msgspec.json.schema(message)
    refs = [option["$ref"] for option in schema.get("anyOf", [schema])]
    return [schema["$defs"][ref.rsplit("/", 1)[1]] for ref in refs]


def walk(value: Any, key: str = ""):
    yield key, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v, key)


def test_catalogue_builds_with_unique_names():
    names = [c.name for c in CATALOGUE.channels]
    assert len(names) == len(set(names))
    assert {c.domain for c in CANONICAL} >= set(SERVICES) - {"observability"}


@pytest.mark.parametrize("channel", CATALOGUE.channels, ids=lambda c: c.name)
def test_subjects_follow_the_scheme(channel):
    subject = channel.subject(SITE)
    assert CATALOGUE.find(subject) is channel
    word = r"[a-z0-9]+(-[a-z0-9]+)*"
    pattern = rf"^sinew\.{word}\.north\.{word}\.{word}\.v[1-9][0-9]*$"
    assert re.match(pattern, subject), subject


def test_every_json_channel_has_an_example():
    json_channels = {c.name for c in CATALOGUE.channels if c.content_type == JSON}
    assert json_channels - set(EXAMPLES) == set()
    assert set(EXAMPLES) - json_channels == set(), "examples for channels that do not exist"


def test_foreign_formats_have_no_struct():
    foreign = [c for c in CATALOGUE.channels if c.content_type != JSON]
    assert {c.name for c in foreign} >= {
        "ingress.usage-hl7.received.v1",
        "ingress.usage-fhir.received.v1",
        "ingress.invoice-x12.received.v1",
        "ingress.po-acknowledgement-x12.received.v1",
        "ingress.asn-x12.received.v1",
    }
    assert all(c.message is None for c in foreign)


@pytest.mark.parametrize(("channel", "example"), EXAMPLE_CASES)
def test_example_round_trips(channel, example):
    encoded = msgspec.json.encode(example)
    decoded = msgspec.json.decode(encoded, type=channel.message)
    assert decoded == example
    assert type(decoded) is type(example)
    assert decoded.site == SITE


@pytest.mark.parametrize(("channel", "example"), EXAMPLE_CASES)
def test_money_and_quantities_travel_as_strings(channel, example):
    as_json = msgspec.json.decode(msgspec.json.encode(example))
    for key, value in walk(as_json):
        assert not isinstance(value, float), f"{channel.name}: float at {key!r}"
        if key in MONEY_FIELDS and value is not None:
            assert isinstance(value, str), f"{channel.name}: {key} is {value!r}"
            assert Decimal(value).is_finite()


@pytest.mark.parametrize("channel", WITH_MESSAGE, ids=lambda c: c.name)
def test_money_fields_are_decimal_strings_in_the_schema(channel):
    for name, prop in schema_properties(channel.message).items():
        if name not in MONEY_FIELDS:
            continue
        options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
        assert len(options) == 1, name
        decimal_string = options[0].get("type") == "string" and options[0]["format"] == "decimal"
        assert decimal_string or options[0].get("$ref", "").endswith("/Money"), name


@pytest.mark.parametrize("channel", WITH_MESSAGE, ids=lambda c: c.name)
def test_every_message_names_its_site(channel):
    for definition in top_level_definitions(channel.message):
        assert "site" in definition["required"], definition["title"]


@pytest.mark.parametrize("channel", [c for c in CANONICAL if c.message], ids=lambda c: c.name)
def test_no_patient_identifiers_leave_usage_ingress(channel):
    assert PHI_FIELDS.isdisjoint(schema_properties(channel.message))


def test_only_the_ehr_usage_ingress_carries_the_mrn():
    carriers = [c.name for c in WITH_MESSAGE if "mrn" in schema_properties(c.message)]
    assert carriers == ["ingress.usage.recorded.v1"]
    usage = CATALOGUE.channel("ingress.usage.recorded.v1")
    assert usage.publisher == "ehr" and usage.consumers == ("usage",)


# A service's record of its own commands is private to it: observability sees their outcome in
# the events the command emitted (an approval, a resolution), never the command's arguments.
COMMAND_RECORDS = {f"{service}.command.recorded.v1" for service in COMMANDED}


@pytest.mark.parametrize(
    "channel", [c for c in CANONICAL if c.name not in COMMAND_RECORDS], ids=lambda c: c.name
)
def test_observability_consumes_every_canonical_channel(channel):
    assert "observability" in channel.consumers


@pytest.mark.parametrize("name", sorted(COMMAND_RECORDS))
def test_a_command_record_is_read_back_only_by_its_own_service(name):
    channel = CATALOGUE.channel(name)
    assert channel.consumers == (channel.publisher,) and channel.readers == ()


def test_masterdata_ingress_decodes_each_kind():
    channel = CATALOGUE.channel("ingress.masterdata.upserted.v1")
    kinds = {"item", "supplier", "contract", "substitution", "location", "cost-centre"}
    seen = set()
    for example in EXAMPLES[channel.name]:
        payload = msgspec.json.decode(msgspec.json.encode(example))
        seen.add(payload["kind"])
        assert isinstance(
            msgspec.json.decode(msgspec.json.encode(payload), type=channel.message), type(example)
        )
    assert seen == kinds


def test_every_master_data_event_carries_a_record_version():
    for channel in CATALOGUE.channels:
        if channel.domain == "items" and channel.event == "upserted":
            assert "version" in top_level_definitions(channel.message)[0]["required"]
    item = msgspec.json.encode(EXAMPLES["items.item.upserted.v1"][0])
    stale = item.replace(b'"version":3', b'"version":0')
    with pytest.raises(msgspec.ValidationError, match=r"\$\.version"):
        msgspec.json.decode(stale, type=it.ItemUpserted)


@pytest.mark.parametrize("base_units", ["0", "-10", "NaN"])
def test_pack_sizes_must_be_positive(base_units):
    payload = msgspec.json.encode({"uom": "BX", "base_units": base_units})
    with pytest.raises(msgspec.ValidationError, match="greater than 0"):
        msgspec.json.decode(payload, type=it.PackSize)


def test_reorder_point_may_not_exceed_par():
    location = msgspec.json.decode(msgspec.json.encode(EXAMPLES["items.location.upserted.v1"][0]))
    location["par_levels"][0]["reorder_point"] = "5"
    with pytest.raises(msgspec.ValidationError, match=r"\$\.par_levels\[0\]"):
        msgspec.json.decode(msgspec.json.encode(location), type=it.LocationUpserted)


def test_a_patient_token_is_not_an_mrn():
    usage = msgspec.json.decode(
        msgspec.json.encode(EXAMPLES["usage.procedure-usage.recorded.v1"][0])
    )
    usage["patient_token"] = "MRN-00482913"
    with pytest.raises(msgspec.ValidationError, match=r"\$\.patient_token"):
        msgspec.json.decode(msgspec.json.encode(usage), type=us.ProcedureUsageRecorded)


def test_times_must_carry_an_offset():
    receipt = msgspec.json.decode(msgspec.json.encode(EXAMPLES["receiving.goods.received.v1"][0]))
    receipt["received_at"] = "2025-03-15T10:30:00"
    with pytest.raises(msgspec.ValidationError, match=r"\$\.received_at"):
        msgspec.json.decode(msgspec.json.encode(receipt), type=rc.GoodsReceived)
