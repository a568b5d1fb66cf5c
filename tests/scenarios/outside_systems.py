"""What the hospital's outside systems send, built from a few keywords so each scenario says only
what matters to it: the EHR (JSON, HL7 v2 DFT^P03, FHIR R4), the supplier network (ASN as JSON
or X12 856, invoices as X12 810), the AP system (invoice JSON), the ERP (payments), the dock
scanners and the warehouse. Patients are synthetic."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import scenario_data as scenario

from sinew.contracts.common import Quantity
from sinew.contracts.matching import InvoiceLine, InvoiceSubmission, PaidInvoice, PaymentRelease
from sinew.contracts.procurement import AcknowledgementLine, PurchaseOrderAcknowledgement
from sinew.contracts.receiving import (
    AdvanceShipNotice,
    DockScan,
    ShippedItem,
    ShippedLot,
    ShippedOrder,
)
from sinew.contracts.replenishment import (
    AdjustedLine,
    CountedLine,
    StockAdjustment,
    StockCount,
)
from sinew.contracts.usage import UsageSubmitted
from sinew.x12 import write_810, write_855, write_856

EXPIRY = date.today() + timedelta(days=730)  # "expiry in the future"
STENT_PART = "MS-DES-318"  # MEDSUP's part number for the stent
_control_numbers = iter(range(1000, 999_999_999))


def now() -> datetime:
    return datetime.now(UTC)


def q(value, uom: str = "EA") -> Quantity:
    return Quantity(Decimal(str(value)), uom)


def each(value) -> dict:
    """A quantity in eaches as people type it into an HTTP API."""
    return {"value": str(value), "uom": "EA"}


def gtin14(first_13_digits: str) -> str:
    """A GTIN-14 with its GS1 check digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(first_13_digits)))
    return first_13_digits + str((10 - total % 10) % 10)


# -- the EHR ------------------------------------------------------------------------------------


def usage_json(
    site: str,
    line_id: str,
    case_id: str,
    *,
    mrn: str,
    quantity: Quantity | None = None,
    location_id: str = scenario.CATH_LAB,
    used_at: datetime | None = None,
    **item,
) -> UsageSubmitted:
    """One usage line; name the item with item_id=, gtin= or udi= (and lot=, serial=, ...)."""
    return UsageSubmitted(
        site=site,
        source_usage_id=line_id,
        case_id=case_id,
        procedure_code="92928",
        procedure_name="PCI with stent",
        physician_id="DR-7",
        location_id=location_id,
        mrn=mrn,
        quantity=quantity or q(1),
        used_at=used_at or now(),
        **item,
    )


@dataclass
class Charge:
    """One FT1 of a DFT^P03 and the PRT naming its device."""

    line_id: str
    udi: str = ""
    item_id: str = ""
    lot: str = ""
    serial: str = ""
    expiry: date | None = None
    quantity: str = "1"
    location: str = scenario.CATH_LAB


def _segment(name: str, fields: dict[int, str]) -> str:
    return "|".join([name] + [fields.get(i, "") for i in range(1, max(fields) + 1)])


def hl7_dft(
    control_id: str,
    case_id: str,
    charges: Sequence[Charge],
    *,
    mrn: str,
    with_evn: bool = True,
    used_at: datetime | None = None,
) -> bytes:
    """An HL7 v2.8.2 DFT^P03 as the EHR's interface engine sends it (segments end in CR)."""
    stamp = (used_at or now()).strftime("%Y%m%d%H%M%S")
    segments = [
        f"MSH|^~\\&|EPIC|NORTH-HOSP|SINEW|NORTH|{stamp}||DFT^P03^DFT_P03|{control_id}|P|2.8.2"
        "|||AL|AL"
    ]
    if with_evn:
        segments.append(f"EVN||{stamp}")
    segments.append(f"PID|1||{mrn}^^^NORTH^MR||ZZTEST^PATIENT")
    segments.append(
        _segment("PV1", {1: "1", 2: "I", 3: scenario.CATH_LAB, 19: f"{case_id}^^^NORTH^VN"})
    )
    for n, charge in enumerate(charges, start=1):
        ft1 = {
            1: str(n),
            2: charge.line_id,
            4: f"{stamp}+0000",
            6: "CG^^HL70017",
            7: "278-1001^Implant charge",
            10: charge.quantity,
            16: charge.location,
            20: "DR-7^Heart^Ann",
            25: "92928^PCI with stent^CPT4",
        }
        if charge.item_id:
            ft1[34] = charge.item_id
        segments.append(_segment("FT1", ft1))
        device = {
            10: charge.udi,
            18: charge.expiry.strftime("%Y%m%d") if charge.expiry else "",
            19: charge.lot,
            20: charge.serial,
        }
        if any(device.values()):
            segments.append(_segment("PRT", {1: str(n), 2: "UC", 4: "AD^Device^HL70912", **device}))
    return "\r".join(segments).encode()


def fhir_procedure(procedure_id: str, case_id: str, devices: Sequence[dict], *, mrn: str) -> bytes:
    """A completed FHIR R4 Procedure, each device a contained Device."""
    return json.dumps(
        {
            "resourceType": "Procedure",
            "id": procedure_id,
            "identifier": [{"system": "urn:ehr:procedure", "value": procedure_id}],
            "status": "completed",
            "contained": [
                {
                    "resourceType": "Patient",
                    "id": "pat",
                    "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.1", "value": mrn}],
                    "name": [{"family": "ZZTEST", "given": ["PATIENT"]}],
                },
                *devices,
            ],
            "subject": {"reference": "#pat"},
            "encounter": {"identifier": {"value": case_id}},
            "code": {
                "coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "92928"}],
                "text": "PCI with stent",
            },
            "performedDateTime": now().isoformat().replace("+00:00", "Z"),
            "performer": [{"actor": {"reference": "Practitioner/DR-7"}}],
            "location": {"reference": f"Location/{scenario.CATH_LAB}"},
            "focalDevice": [{"manipulated": {"reference": f"#{d['id']}"}} for d in devices],
        }
    ).encode()


def fhir_device(device_id: str, *, udi: str, lot: str, serial: str | None = None) -> dict:
    device = {
        "resourceType": "Device",
        "id": device_id,
        "udiCarrier": [{"carrierHRF": udi}],
        "lotNumber": lot,
    }
    if serial:
        device["serialNumber"] = serial
    return device


def stent_udi(lot_number: str, serial: str) -> str:
    """The stent's GS1 UDI as the scanner in the cath lab reads it."""
    return scenario.gs1_barcode(scenario.STENT_GTIN, lot=lot_number, serial=serial, expiry=EXPIRY)


# -- the receiving clerk ------------------------------------------------------------------------


def stent_unit(lot_number: str, serial: str) -> dict:
    """One serialised stent received against PO line 1 (`POST /v1/receipts`)."""
    return {
        "po_line_number": 1,
        "item_id": scenario.STENT,
        "quantity": each(1),
        "lot": lot_number,
        "serial": serial,
        "expiry": EXPIRY.isoformat(),
    }


# -- the supplier network -----------------------------------------------------------------------


def shipped(
    po_line: int,
    quantity: Quantity,
    lots: Sequence[ShippedLot] = (),
    *,
    supplier_part: str | None = None,
    item_id: str | None = None,
) -> ShippedItem:
    return ShippedItem(
        po_line_number=po_line,
        quantity=quantity,
        supplier_part=supplier_part,
        item_id=item_id,
        lots=tuple(lots),
    )


def lot(name: str, *serials: str, quantity: Quantity | None = None) -> ShippedLot:
    return ShippedLot(
        quantity=quantity or q(len(serials) or 1),
        lot=name,
        expiry=EXPIRY,
        serials=serials,
    )


def asn(site: str, asn_number: str, po_number: str, *items: ShippedItem) -> AdvanceShipNotice:
    return AdvanceShipNotice(
        site=site,
        asn_number=asn_number,
        supplier_id=scenario.MEDSUP,
        orders=(ShippedOrder(po_number=po_number, items=items),),
        shipped_at=now() - timedelta(hours=20),
        expected_at=now(),
        ship_to_location_id=scenario.CATH_LAB,
        carrier="UPS Next Day Air",
        tracking_number="1Z999AA10123456784",
    )


def x12_856(ship_notice: AdvanceShipNotice) -> bytes:
    return write_856(
        ship_notice,
        sender_id=scenario.MEDSUP,
        receiver_id="SINEWNORTH",
        control_number=next(_control_numbers),
    )


def substituted(
    site: str, ack_number: str, po_number: str, substitute_part: str
) -> PurchaseOrderAcknowledgement:
    """The supplier accepts the PO but will ship another product on line 1."""
    return PurchaseOrderAcknowledgement(
        site=site,
        po_number=po_number,
        supplier_id=scenario.MEDSUP,
        status="accepted_with_changes",
        lines=(
            AcknowledgementLine(
                line_number=1, status="substituted", substitute_supplier_part=substitute_part
            ),
        ),
        acknowledgement_number=ack_number,
        acknowledged_at=now(),
    )


def x12_855(acknowledgement: PurchaseOrderAcknowledgement) -> bytes:
    return write_855(
        acknowledgement,
        sender_id=scenario.MEDSUP,
        receiver_id="SINEWNORTH",
        control_number=next(_control_numbers),
    )


def invoice_line(
    n: int, quantity: Quantity, price: str, *, po_line: int = 1, **names
) -> InvoiceLine:
    """Name the item with item_id=, supplier_part= or gtin=; lot= and serial= optional."""
    return InvoiceLine(
        line_number=n,
        quantity=quantity,
        unit_price=Decimal(price),
        extended_amount=(quantity.value * Decimal(price)).quantize(Decimal("0.01")),
        po_line_number=po_line,
        **names,
    )


def invoice(
    site: str, number: str, po_number: str | None, *lines: InvoiceLine
) -> InvoiceSubmission:
    subtotal = sum((line.extended_amount for line in lines), Decimal("0.00"))
    return InvoiceSubmission(
        site=site,
        supplier_id=scenario.MEDSUP,
        invoice_number=number,
        invoice_date=date.today(),
        po_number=po_number,
        lines=lines,
        subtotal=subtotal,
        total=subtotal,
        due_date=date.today() + timedelta(days=30),
        payment_terms="NET30",
    )


def stent_invoice(
    site: str, number: str, po_number: str, quantity: int = 1, price: str = "1200.00"
) -> InvoiceSubmission:
    return invoice(
        site, number, po_number, invoice_line(1, q(quantity), price, supplier_part=STENT_PART)
    )


def x12_810(document: InvoiceSubmission) -> bytes:
    return write_810(
        document,
        sender_id=scenario.MEDSUP,
        receiver_id="SINEWNORTH",
        control_number=next(_control_numbers),
    )


# -- the ERP, the dock and the warehouse ---------------------------------------------------------


def payment(site: str, payment_id: str, *invoices: tuple[str, str]) -> PaymentRelease:
    return PaymentRelease(
        site=site,
        payment_id=payment_id,
        supplier_id=scenario.MEDSUP,
        amount=sum((Decimal(amount) for _, amount in invoices), Decimal("0.00")),
        method="ach",
        invoices=tuple(PaidInvoice(invoice_number=n, amount=Decimal(a)) for n, a in invoices),
        payment_reference=f"ACH-{payment_id}",
        released_at=now(),
    )


def dock_scan(
    site: str, scan_id: str, barcode: str, po_number: str, location_id: str = scenario.CATH_LAB
) -> DockScan:
    return DockScan(
        site=site,
        scan_id=scan_id,
        barcode=barcode,
        location_id=location_id,
        scanned_at=now(),
        po_number=po_number,
        scanned_by="dock-clerk-1",
        device_id="ZEBRA-7",
    )


def stock_count(site: str, count_id: str, location_id: str, *lines: CountedLine) -> StockCount:
    return StockCount(
        site=site,
        count_id=count_id,
        location_id=location_id,
        lines=lines,
        counted_by="storeroom",
        counted_at=now(),
    )


def counted(item_id: str, quantity: Quantity, lot: str | None = None) -> CountedLine:
    return CountedLine(item_id=item_id, quantity=quantity, lot=lot)


def adjustment(
    site: str, adjustment_id: str, location_id: str, *lines: AdjustedLine
) -> StockAdjustment:
    return StockAdjustment(
        site=site,
        adjustment_id=adjustment_id,
        location_id=location_id,
        lines=lines,
        adjusted_by="storeroom",
        adjusted_at=now(),
    )
