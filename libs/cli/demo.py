"""The demo day: a three-hospital network's day played through the public ingress subjects, each
outside system as its own NATS user, and over HTTP where a person acts. Every business scenario of
SCENARIOS.md happens at least once, around a few thousand routine usage lines.

`plan_day` is pure (a seed gives the same plan); `play` sends a plan to a running site phase by
phase, waiting for the services to drain in between, and `outcomes` reads back what the services
made of it. `publish_all` is the publishing core a load generator reuses."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats

from sinew.common.natsconfig import inbox_prefix
from sinew.contracts import CATALOGUE
from sinew.contracts.common import Quantity
from sinew.contracts.envelope import Envelope, new_event_id, utc_now
from sinew.contracts.items import (
    ContractPrice,
    ContractUpsert,
    CostCentreUpsert,
    ItemUpsert,
    LocationUpsert,
    PackSize,
    ParLevel,
    PriceTier,
    SubstitutionUpsert,
    SupplierPart,
    SupplierUpsert,
)
from sinew.contracts.matching import InvoiceLine, InvoiceSubmission, PaidInvoice, PaymentRelease
from sinew.contracts.receiving import (
    AdvanceShipNotice,
    DockScan,
    ShippedItem,
    ShippedLot,
    ShippedOrder,
)
from sinew.contracts.replenishment import CountedLine, StockCount
from sinew.contracts.usage import UsageSubmitted
from sinew.masterdata.barcodes import HIBC_CHARSET

SITES = ("north", "south", "east")
MARKER = "demo-played.json"
SYSTEMS = ("mdm", "ehr", "ap", "supplier", "erp", "dock", "warehouse")

MEDSUP = "MEDSUP"
CONTRACT = "MEDSUP-2024-001"
CARDIOLOGY = "CC-CARDIO"
CATH_LAB = "CATH-LAB-1"  # par 4 / reorder point 2 for the stent: the replenishment scenario
CATH_LAB_2 = "CATH-LAB-2"  # where purchase orders deliver, so their stock leaves CATH-LAB-1 alone
STENT, STENT_GTIN, STENT_PART = "STENT-DES-3x18", "00812345000016", "MS-DES-318"
STENT_V2, STENT_V2_GTIN, STENT_V2_PART = "STENT-DES-3x18-V2", "00812345000023", "MS-DES-318-V2"
BMS, BMS_GTIN, BMS_PART = "STENT-BMS-3x18", "00812345000030", "MS-BMS-318"
ICD, ICD_HIBC_DI, ICD_PART = "ICD-DUAL-01", "H123ICD0110", "MS-ICD-01"
EP_CATHETER, EP_HIBC_DI, EP_PART = "EP-CATH-4MM", "H123EPC0210", "MS-EPC-04"
GUIDEWIRE, GUIDEWIRE_GTIN, GUIDEWIRE_PART = "GUIDEWIRE-035", "00812345000054", "MS-GW-035"
GUIDEWIRE_BOX_GTIN = "10812345000051"  # box of 10
BALLOON, BALLOON_GTIN = "BALLOON-3x15", "00812345000108"  # the item master learns it late
PRICES = {
    STENT: "1200.00",
    STENT_V2: "1180.00",
    BMS: "950.00",
    ICD: "18500.00",
    EP_CATHETER: "640.00",
}

# Routine stock: (item, description, GTIN, price per each).
FLOOR_STOCK = [
    ("GAUZE-4x4", "Gauze sponge 4 x 4 in, sterile", "00812345000207", "0.42"),
    ("SYRINGE-10ML", "Syringe 10 mL luer lock", "00812345000214", "0.31"),
    ("GLOVE-NITRILE-M", "Examination glove, nitrile, medium", "00812345000221", "0.09"),
    ("IV-START-KIT", "IV start kit", "00812345000238", "2.75"),
    ("SUTURE-3-0", "Suture 3-0 absorbable", "00812345000245", "4.10"),
]
FLOOR_LOCATIONS = {
    "OR-1": "Operating room 1",
    "ICU-2": "Intensive care unit 2",
    "ED-1": "Emergency department",
    "MED-SURG-4": "Medical-surgical ward 4",
}

# Every kind of step a day must contain: the scenario numbers of SCENARIOS.md and the formats.
SCENARIO_KINDS = (
    "masterdata",
    "stock_count",
    "requisition",
    "asn_json",
    "asn_x12",
    "asn_receive",
    "receipt_http",
    "dock_scan_gs1",
    "dock_scan_hibc",
    "usage_json",
    "usage_hl7",
    "usage_fhir",
    "cardiology_implant",
    "s01_clean_match",
    "s02_price_variance",
    "s02_analyst_resolves",
    "s03_invoice_before_receipt",
    "s04_bill_only",
    "s05_approved_substitution",
    "s05_substitution_not_approved",
    "s06_duplicate_invoice",
    "s07_quantity_variance",
    "s08_unknown_item",
    "s09_replenishment",
    "s10_recall",
    "s11_bad_input",
    "s12_redelivery",
    "s13_unit_of_measure",
    "s14_multi_site",
    "invoice_json",
    "invoice_x12",
    "invoice_unknown_item",
    "payment",
    "duplicate_payment",
)


# -- the plan: what happens, in order, with no I/O ---------------------------------------------


@dataclass(frozen=True)
class Send:
    """An outside system publishes on its site's ingress subject."""

    site: str
    kinds: tuple[str, ...]
    system: str
    channel: str
    payload: Any  # a Struct (rendered once the purchase order numbers are known) or raw bytes
    x12: str = ""  # "810" or "856": the Struct goes out as that X12 document
    subject: str | None = None  # another subject than the channel's (an unknown version)
    event_id: str | None = None  # the same id twice: the redelivery scenario
    corrupt: str = ""  # "segment_count": break the X12 after rendering


@dataclass(frozen=True)
class Call:
    """A person acts over HTTP; `binds` keeps the purchase order number the answer names."""

    site: str
    kinds: tuple[str, ...]
    person: str  # a name in DATA/secrets/api-tokens.json
    service: str
    method: str
    path: str
    body: Any = None
    binds: str = ""


@dataclass(frozen=True)
class Find:
    """Learn a number only a service knows: the bill-only PO of a case, an exception's id."""

    site: str
    kinds: tuple[str, ...]
    key: str
    what: str  # "bill_only_po" or "exception"
    case_id: str = ""
    invoice_number: str = ""
    exception_type: str = ""


Step = Send | Call | Find


@dataclass
class Phase:
    name: str
    steps: list[Step] = field(default_factory=list)


def po(key: str) -> str:
    return f"<<po:{key}>>"


def ref(key: str) -> str:
    return f"<<ref:{key}>>"


def plan_day(
    seed: int = 7, usages: int = 3000, sites: tuple[str, ...] = SITES, day: date | None = None
) -> list[Phase]:
    """The whole day, phase by phase; the same seed, size and day give the same plan."""
    day = day or (datetime.now(UTC).date() - timedelta(days=1))
    rng = random.Random(seed)
    phases = {
        name: Phase(name)
        for name in (
            "master data",
            "stock counts",
            "requisitions",
            "ship notices",
            "receipts",
            "the clinical day",
            "invoices",
            "follow-ups",
            "payments",
            "bad input",
        )
    }
    share = [
        usages // len(sites) + (1 if i < usages % len(sites) else 0) for i in range(len(sites))
    ]
    for site, count in zip(sites, share, strict=True):
        _site_day(site, count, rng, day, phases, bad_input=site == sites[0])
    if len(sites) > 1:
        # Each site's outside systems may publish only to their own site: this one is refused.
        phases["bad input"].steps.append(
            Send(
                sites[1],
                ("s14_multi_site",),
                "ehr",
                "ingress.usage.recorded.v1",
                b'{"site": "' + sites[0].encode() + b'"}',
                subject=CATALOGUE.channel("ingress.usage.recorded.v1").subject(sites[0]),
            )
        )
    return list(phases.values())


def kinds_of(plan: list[Phase]) -> Counter:
    return Counter(kind for phase in plan for step in phase.steps for kind in step.kinds)


def _site_day(
    site: str, usages: int, rng: random.Random, day: date, phases: dict, bad_input: bool
) -> None:
    tag = site.upper()
    at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=7)
    expiry = day + timedelta(days=730)

    def moment(minutes: float) -> datetime:
        return at + timedelta(minutes=minutes)

    def add(phase: str, step: Step) -> None:
        phases[phase].steps.append(step)

    def send(phase, kinds, system, channel, payload, **kw) -> None:
        add(phase, Send(site, tuple(kinds), system, channel, payload, **kw))

    def call(phase, kinds, person, service, method, path, body=None, binds="") -> None:
        add(phase, Call(site, tuple(kinds), person, service, method, path, body, binds))

    # Routine usage first (its volume sets the par levels), sent later in the clinical day.
    routine: list[tuple[str, str, str, str, int]] = []  # (format, item, location, case, n)
    used: Counter = Counter()
    for n in range(usages):
        item = rng.choice(FLOOR_STOCK)[0]
        location = rng.choice(list(FLOOR_LOCATIONS))
        roll = rng.random()
        form = "usage_json" if roll < 0.7 else "usage_hl7" if roll < 0.9 else "usage_fhir"
        routine.append((form, item, location, f"CASE-{tag}-{n // 3:05d}", n))
        used[(location, item)] += 1

    # -- master data, through the MDM feed ------------------------------------------------------
    for record in _master_data(site, used):
        send("master data", ["masterdata"], "mdm", "ingress.masterdata.upserted.v1", record)
    # The shelves as counted at dawn: routine stock 30 above what the day will use (so it ends
    # below its reorder point of 60), and 3 stents at CATH-LAB-1.
    for location in FLOOR_LOCATIONS:
        lines = tuple(
            CountedLine(item_id=item, quantity=_q(used[(location, item)] + 30))
            for item, *_ in FLOOR_STOCK
        )
        count = _count(site, f"COUNT-{tag}-{location}", location, lines, at)
        send("stock counts", ["stock_count"], "warehouse", "ingress.inventory.counted.v1", count)
    stents_on_shelf = (CountedLine(item_id=STENT, quantity=_q(3), lot=f"L-{tag}-SHELF"),)
    shelf = _count(site, f"COUNT-{tag}-{CATH_LAB}", CATH_LAB, stents_on_shelf, at)
    send("stock counts", ["stock_count", "s09_replenishment"], "warehouse",
         "ingress.inventory.counted.v1", shelf)  # fmt: skip

    # -- requisitions: a nurse manager asks, the policy approves, procurement places the PO ------
    orders = {
        "clean": (STENT, 2, "EA", "s01_clean_match"),
        "price": (STENT, 2, "EA", "s02_price_variance"),
        "early": (STENT, 2, "EA", "s03_invoice_before_receipt"),
        "subst": (STENT, 1, "EA", "s05_approved_substitution"),
        "unapproved": (STENT, 1, "EA", "s05_substitution_not_approved"),
        "dup": (STENT, 1, "EA", "s06_duplicate_invoice"),
        "qty": (STENT, 3, "EA", "s07_quantity_variance"),
        "uom": (GUIDEWIRE, 2, "BX", "s13_unit_of_measure"),
        "hibc": (EP_CATHETER, 2, "EA", "dock_scan_hibc"),
        "unknown": (STENT, 1, "EA", "invoice_unknown_item"),
    }
    for key, (item, quantity, uom, kind) in orders.items():
        call(
            "requisitions",
            ["requisition", kind],
            "supply-chain-analyst",
            "procurement",
            "POST",
            "/v1/requisitions",
            {
                "location_id": CATH_LAB_2,
                "lines": [{"item_id": item, "quantity": {"value": str(quantity), "uom": uom}}],
            },
            binds=f"{site}:{key}",
        )

    def k(key: str) -> str:
        return po(f"{site}:{key}")

    # -- ship notices and receipts ----------------------------------------------------------------
    def notice(number: str, key: str, *items: ShippedItem) -> AdvanceShipNotice:
        return AdvanceShipNotice(
            site=site,
            asn_number=number,
            supplier_id=MEDSUP,
            orders=(ShippedOrder(po_number=k(key), items=items),),
            shipped_at=moment(-600),
            expected_at=moment(60),
            ship_to_location_id=CATH_LAB_2,
            carrier="UPS Next Day Air",
            tracking_number=f"1Z999AA1{rng.randrange(10**9):09d}",
        )

    def lots(part: str, lot: str, *serials: str) -> ShippedItem:
        shipped = ShippedLot(quantity=_q(len(serials)), lot=lot, expiry=expiry, serials=serials)
        return ShippedItem(
            po_line_number=1, quantity=_q(len(serials)), supplier_part=part, lots=(shipped,)
        )

    clean_asn = notice(f"ASN-{tag}-01", "clean",
                       lots(STENT_PART, f"L1-{tag}", f"S1-{tag}", f"S2-{tag}"))  # fmt: skip
    send("ship notices", ["asn_x12", "s01_clean_match"], "supplier",
         "ingress.asn-x12.received.v1", clean_asn, x12="856")  # fmt: skip
    subst_asn = notice(f"ASN-{tag}-05", "subst", lots(STENT_V2_PART, f"L5-{tag}", f"S5-{tag}"))
    send("ship notices", ["asn_json", "s05_approved_substitution"], "supplier",
         "ingress.asn.submitted.v1", subst_asn)  # fmt: skip
    bms_asn = notice(f"ASN-{tag}-05B", "unapproved", lots(BMS_PART, f"L5B-{tag}", f"S5B-{tag}"))
    send("ship notices", ["asn_json", "s05_substitution_not_approved"], "supplier",
         "ingress.asn.submitted.v1", bms_asn)  # fmt: skip
    for number, kind in ((clean_asn.asn_number, "s01_clean_match"),
                         (subst_asn.asn_number, "s05_approved_substitution"),
                         (bms_asn.asn_number, "s05_substitution_not_approved")):  # fmt: skip
        call("receipts", ["asn_receive", kind], "receiving-clerk", "receiving", "POST",
             f"/v1/asns/{number}/receive", {})  # fmt: skip

    def stents(lot: str, *serials: str) -> list[dict]:
        return [
            {"po_line_number": 1, "item_id": STENT, "quantity": {"value": "1", "uom": "EA"},
             "lot": lot, "serial": s, "expiry": expiry.isoformat()}
            for s in serials
        ]  # fmt: skip

    def receipt(phase: str, key: str, kind: str, lines: list[dict]) -> None:
        call(phase, ["receipt_http", kind], "receiving-clerk", "receiving", "POST",
             "/v1/receipts", {"po_number": k(key), "lines": lines})  # fmt: skip

    receipt("receipts", "price", "s02_price_variance",
            stents(f"L2-{tag}", f"S2A-{tag}", f"S2B-{tag}"))  # fmt: skip
    receipt("receipts", "dup", "s06_duplicate_invoice", stents(f"L6-{tag}", f"S6-{tag}"))
    receipt("receipts", "qty", "s07_quantity_variance",
            stents(f"L7-{tag}", f"S7A-{tag}", f"S7B-{tag}"))  # fmt: skip
    receipt("receipts", "unknown", "invoice_unknown_item", stents(f"LU-{tag}", f"SU-{tag}"))
    box = _gs1(GUIDEWIRE_BOX_GTIN, lot=f"GW-{tag}", expiry=expiry)
    for n in (1, 2):  # two boxes of 10 at the dock
        scan = _scan(site, f"SCAN-{tag}-GW-{n}", box, moment(30 + n), k("uom"))  # fmt: skip
        send("receipts", ["dock_scan_gs1", "s13_unit_of_measure"], "dock",
             "ingress.dock-scan.scanned.v1", scan)  # fmt: skip
    for n in (1, 2):
        label = _hibc(EP_HIBC_DI, lot=f"EP-{tag}-{n}")
        scan = _scan(site, f"SCAN-{tag}-EP-{n}", label, moment(40 + n), k("hibc"))  # fmt: skip
        kinds = ["dock_scan_hibc"] + (["s12_redelivery"] if n == 2 else [])
        event_id = f"EVT-{tag}-SCAN-EP-2" if n == 2 else None
        send("receipts", kinds, "dock", "ingress.dock-scan.scanned.v1", scan, event_id=event_id)
        if n == 2:  # the scanner's gateway retries with the same event id: one receipt
            send("receipts", kinds, "dock", "ingress.dock-scan.scanned.v1", scan,
                 event_id=event_id)  # fmt: skip

    # -- the clinical day -------------------------------------------------------------------------
    day_steps: list[Send] = []

    def usage(kinds, channel, payload) -> None:
        day_steps.append(Send(site, tuple(kinds), "ehr", channel, payload))

    gtins = {item: gtin for item, _, gtin, _ in FLOOR_STOCK}
    for form, item, location, case, n in routine:
        mrn = f"MRN-SYN-{tag}-{n // 3:05d}"
        line = f"U-{tag}-{n:05d}"
        when = moment(rng.uniform(0, 660))
        if form == "usage_json":
            payload = _usage(site, line, case, mrn, location, when, item_id=item)
            usage([form], "ingress.usage.recorded.v1", payload)
        elif form == "usage_hl7":
            payload = _hl7(f"MSG-{line}", case, mrn, when, [(line, "", item, "", "", location)])
            usage([form], "ingress.usage-hl7.received.v1", payload)
        else:
            udi = _gs1(gtins[item], lot=f"LOT-{item}")
            device = _fhir_device("d1", udi, f"LOT-{item}")
            payload = _fhir(f"PROC-{line}", case, mrn, when, location, [device])
            usage([form], "ingress.usage-fhir.received.v1", payload)
    rng.shuffle(day_steps)

    # The cardiology case of the brief: a PO-based stent (serial S1) through HL7.
    s1 = _gs1(STENT_GTIN, lot=f"L1-{tag}", serial=f"S1-{tag}", expiry=expiry)
    usage(["cardiology_implant", "s01_clean_match", "usage_hl7", "s10_recall"],
          "ingress.usage-hl7.received.v1",
          _hl7(f"MSG-{tag}-CARDIO", f"CASE-{tag}-CARDIO", f"MRN-SYN-{tag}-C1", moment(180),
               [(f"TX-{tag}-C1", s1, "", "", "", CATH_LAB_2)]))  # fmt: skip
    # A consigned defibrillator: bill-only, through FHIR, with its HIBC UDI.
    icd = _hibc(ICD_HIBC_DI, serial=f"SN-ICD-{tag}", expiry=expiry)
    usage(["s04_bill_only", "usage_fhir", "cardiology_implant"], "ingress.usage-fhir.received.v1",
          _fhir(f"PROC-{tag}-ICD", f"CASE-{tag}-ICD", f"MRN-SYN-{tag}-C2", moment(240), CATH_LAB,
                [_fhir_device("icd", icd, f"LICD-{tag}", f"SN-ICD-{tag}")]))  # fmt: skip
    # Two stents from the CATH-LAB-1 shelf at once: 3 -> 1, below the reorder point of 2.
    for n in (1, 2):
        udi = _gs1(STENT_GTIN, lot=f"L-{tag}-SHELF", serial=f"S-{tag}-SHELF-{n}", expiry=expiry)
        usage(["s09_replenishment", "usage_json", "cardiology_implant"],
              "ingress.usage.recorded.v1",
              _usage(site, f"U-{tag}-SHELF-{n}", f"CASE-{tag}-SHELF-{n}", f"MRN-SYN-{tag}-S{n}",
                     CATH_LAB, moment(300 + n), udi=udi))  # fmt: skip
    # A balloon the item master has not synchronised yet.
    usage(["s08_unknown_item", "usage_json"], "ingress.usage.recorded.v1",
          _usage(site, f"U-{tag}-BALLOON", f"CASE-{tag}-BALLOON", f"MRN-SYN-{tag}-B1", CATH_LAB,
                 moment(320), udi=_gs1(BALLOON_GTIN, lot=f"LB-{tag}")))  # fmt: skip
    # Five guidewires, in eaches, of the lot received in boxes.
    usage(["s13_unit_of_measure", "usage_json"], "ingress.usage.recorded.v1",
          _usage(site, f"U-{tag}-GW", f"CASE-{tag}-GW", f"MRN-SYN-{tag}-G1", CATH_LAB_2,
                 moment(330), quantity=_q(5), gtin=GUIDEWIRE_GTIN, lot=f"GW-{tag}"))  # fmt: skip
    phases["the clinical day"].steps.extend(day_steps)

    # -- invoices -----------------------------------------------------------------------------------
    def invoice(number: str, key: str, *lines: tuple) -> InvoiceSubmission:
        built = tuple(
            InvoiceLine(
                line_number=n,
                quantity=_q(quantity, uom),
                unit_price=Decimal(price),
                extended_amount=(Decimal(quantity) * Decimal(price)).quantize(Decimal("0.01")),
                po_line_number=1,
                supplier_part=part,
                **extra,
            )
            for n, (quantity, uom, price, part, extra) in enumerate(lines, start=1)
        )
        subtotal = sum((line.extended_amount for line in built), Decimal("0.00"))
        return InvoiceSubmission(
            site=site,
            supplier_id=MEDSUP,
            invoice_number=number,
            invoice_date=day,
            po_number=k(key) if key else None,
            lines=built,
            subtotal=subtotal,
            total=subtotal,
            due_date=day + timedelta(days=30),
            payment_terms="NET30",
        )

    def bill(phase: str, kinds: list[str], document: InvoiceSubmission, x12: bool = False):
        if x12:
            send(phase, ["invoice_x12", *kinds], "supplier", "ingress.invoice-x12.received.v1",
                 document, x12="810")  # fmt: skip
        else:
            send(phase, ["invoice_json", *kinds], "ap", "ingress.invoice.submitted.v1", document)

    clean = invoice(f"INV-{tag}-01", "clean",
                    (1, "EA", "1200.00", STENT_PART, {"lot": f"L1-{tag}", "serial": f"S1-{tag}"}),
                    (1, "EA", "1200.00", STENT_PART, {"lot": f"L1-{tag}", "serial": f"S2-{tag}"}))  # fmt: skip
    bill("invoices", ["s01_clean_match"], clean)
    bill("invoices", ["s02_price_variance"],
         invoice(f"INV-{tag}-02", "price", (2, "EA", "1260.00", STENT_PART, {})), x12=True)  # fmt: skip
    bill("invoices", ["s03_invoice_before_receipt"],
         invoice(f"INV-{tag}-03", "early", (2, "EA", "1200.00", STENT_PART, {})))  # fmt: skip
    subst = invoice(f"INV-{tag}-05", "subst", (1, "EA", "1180.00", STENT_V2_PART, {}))
    bill("invoices", ["s05_approved_substitution"], subst)
    bill("invoices", ["s05_substitution_not_approved"],
         invoice(f"INV-{tag}-05B", "unapproved", (1, "EA", "950.00", BMS_PART, {})))  # fmt: skip
    dup = invoice(f"INV-{tag}-06", "dup", (1, "EA", "1200.00", STENT_PART, {}))
    bill("invoices", ["s06_duplicate_invoice"], dup)
    bill("follow-ups", ["s06_duplicate_invoice"], dup, x12=True)  # the EDI gateway sends it too
    bill("invoices", ["s07_quantity_variance"],
         invoice(f"INV-{tag}-07", "qty", (3, "EA", "1200.00", STENT_PART, {})))  # fmt: skip
    uom = invoice(f"INV-{tag}-13", "uom", (2, "BX", "450.00", GUIDEWIRE_PART, {}))
    bill("invoices", ["s13_unit_of_measure"], uom, x12=True)
    hibc = invoice(f"INV-{tag}-EP", "hibc", (2, "EA", "640.00", EP_PART, {}))
    bill("invoices", ["dock_scan_hibc"], hibc)
    bill("invoices", ["invoice_unknown_item"],
         invoice(f"INV-{tag}-UNK", "unknown", (1, "EA", "310.00", "MS-NOBODY-999", {})))  # fmt: skip

    # -- follow-ups: the goods that were late, the item master catching up, the analysts -------
    receipt("follow-ups", "early", "s03_invoice_before_receipt",
            stents(f"L3-{tag}", f"S3A-{tag}", f"S3B-{tag}"))  # fmt: skip
    receipt("follow-ups", "qty", "s07_quantity_variance", stents(f"L7-{tag}", f"S7C-{tag}"))
    send("follow-ups", ["s08_unknown_item", "masterdata"], "mdm",
         "ingress.masterdata.upserted.v1", _balloon(site))  # fmt: skip
    add("follow-ups", Find(site, ("s04_bill_only",), f"{site}:bill-only", "bill_only_po",
                           case_id=f"CASE-{tag}-ICD"))  # fmt: skip
    icd_invoice = invoice(f"INV-{tag}-04", "bill-only",
                          (1, "EA", "18500.00", ICD_PART,
                           {"lot": f"LICD-{tag}", "serial": f"SN-ICD-{tag}"}))  # fmt: skip
    bill("follow-ups", ["s04_bill_only"], icd_invoice, x12=True)
    add("follow-ups", Find(site, ("s02_analyst_resolves",), f"{site}:price-variance", "exception",
                           invoice_number=f"INV-{tag}-02", exception_type="PRICE_VARIANCE"))  # fmt: skip
    call("follow-ups", ["s02_analyst_resolves", "s02_price_variance"], "supply-chain-analyst",
         "matching", "POST", f"/v1/exceptions/{ref(f'{site}:price-variance')}/resolve",
         {"resolution": "credit_requested", "reason": "bill us the contract price"})  # fmt: skip

    # -- payments from the ERP ------------------------------------------------------------------
    def pay(payment_id: str, document: InvoiceSubmission, kinds: list[str]) -> None:
        release = PaymentRelease(
            site=site,
            payment_id=payment_id,
            supplier_id=MEDSUP,
            amount=document.total,
            method="ach",
            invoices=(PaidInvoice(invoice_number=document.invoice_number, amount=document.total),),
            payment_reference=f"ACH-{payment_id}",
            released_at=moment(600),
        )
        send("payments", ["payment", *kinds], "erp", "ingress.payment.released.v1", release)

    pay(f"PAY-{tag}-01", clean, ["s01_clean_match"])
    pay(f"PAY-{tag}-05", subst, ["s05_approved_substitution"])
    pay(f"PAY-{tag}-13", uom, ["s13_unit_of_measure"])
    pay(f"PAY-{tag}-06A", dup, ["s06_duplicate_invoice"])
    pay(f"PAY-{tag}-06B", dup, ["s06_duplicate_invoice", "duplicate_payment"])

    # -- a burst of malformed messages (at the first site: one of each is enough to see) --------
    if bad_input:
        for step in _bad_input(site, clean, moment(700)):
            add("bad input", step)


def _bad_input(site: str, document: InvoiceSubmission, when: datetime) -> list[Send]:
    valid = msgspec.to_builtins(document)
    tag = site.upper()
    count = msgspec.to_builtins(
        _count(site, f"COUNT-{tag}-BAD", "OR-1",
               (CountedLine(item_id="GAUZE-4x4", quantity=_q(10)),), when)
    )  # fmt: skip
    asn = {"site": site, "supplier_id": MEDSUP, "orders": [], "shipped_at": when.isoformat()}
    unknown_version = CATALOGUE.channel("ingress.payment.released.v1").subject(site)
    broken_hl7 = _hl7(f"MSG-{tag}-BAD", f"CASE-{tag}-BAD", f"MRN-SYN-{tag}-X1", when,
                      [(f"TX-{tag}-BAD", "", "GAUZE-4x4", "", "", "OR-1")], with_evn=False)  # fmt: skip
    bad = replace_number(document, f"INV-{tag}-BAD-X12")
    kinds = ("s11_bad_input",)
    return [
        Send(site, kinds, "ap", "ingress.invoice.submitted.v1",
             b'{"site": "' + site.encode() + b'", "invoice_number": "INV-BAD", "lines": ['),
        Send(site, kinds, "supplier", "ingress.asn.submitted.v1", json.dumps(asn).encode()),
        Send(site, kinds, "warehouse", "ingress.inventory.counted.v1",
             json.dumps({**count, "location_id": 7}).encode()),
        Send(site, kinds, "erp", "ingress.payment.released.v1",
             b'{"payment_id": "PAY-' + tag.encode() + b'-V2"}',
             subject=unknown_version[: -len("v1")] + "v2"),
        Send(site, kinds, "ap", "ingress.invoice.submitted.v1",
             json.dumps({**valid, "invoice_number": f"INV-{tag}-BIG",
                         "note": "x" * 300_000}).encode()),
        Send(site, kinds, "ehr", "ingress.usage-hl7.received.v1", broken_hl7),
        Send(site, kinds, "supplier", "ingress.invoice-x12.received.v1", bad, x12="810",
             corrupt="segment_count"),
    ]  # fmt: skip


def replace_number(document: InvoiceSubmission, number: str) -> InvoiceSubmission:
    return msgspec.structs.replace(document, invoice_number=number)


# -- master data --------------------------------------------------------------------------------


def _master_data(site: str, used: Counter) -> list[Any]:
    stamp = {"site": site, "version": 1}
    items = [
        ItemUpsert(item_id=STENT, description="Drug-eluting coronary stent 3.0 x 18 mm",
                   base_uom="EA", packs=(PackSize(uom="BX", base_units=Decimal(1),
                                                  gtin="10812345000013"),),
                   gtin=STENT_GTIN, udi_di=STENT_GTIN, udi_issuer="GS1", category="CARDIAC-STENT",
                   manufacturer="Acme Cardio", manufacturer_part="DES-3018",
                   supplier_parts=(SupplierPart(supplier_id=MEDSUP, part_number=STENT_PART,
                                                uom="EA"),),
                   implant=True, lot_controlled=True, serial_controlled=True,
                   charge_code="278-1001", **stamp),
        ItemUpsert(item_id=STENT_V2, description="Drug-eluting stent 3.0 x 18 mm, 2nd generation",
                   base_uom="EA", gtin=STENT_V2_GTIN, udi_di=STENT_V2_GTIN, udi_issuer="GS1",
                   category="CARDIAC-STENT", manufacturer="Acme Cardio",
                   supplier_parts=(SupplierPart(supplier_id=MEDSUP, part_number=STENT_V2_PART),),
                   implant=True, lot_controlled=True, serial_controlled=True,
                   charge_code="278-1002", **stamp),
        ItemUpsert(item_id=BMS, description="Bare-metal coronary stent 3.0 x 18 mm",
                   base_uom="EA", gtin=BMS_GTIN, category="CARDIAC-STENT",
                   supplier_parts=(SupplierPart(supplier_id=MEDSUP, part_number=BMS_PART),),
                   implant=True, lot_controlled=True, serial_controlled=True, **stamp),
        ItemUpsert(item_id=ICD, description="Implantable cardioverter-defibrillator (consigned)",
                   base_uom="EA", udi_di=ICD_HIBC_DI, udi_issuer="HIBCC",
                   category="CARDIAC-DEVICE",
                   supplier_parts=(SupplierPart(supplier_id=MEDSUP, part_number=ICD_PART),),
                   implant=True, lot_controlled=True, serial_controlled=True, consignment=True,
                   charge_code="278-2001", **stamp),
        ItemUpsert(item_id=EP_CATHETER, description="Electrophysiology catheter 4 mm",
                   base_uom="EA", udi_di=EP_HIBC_DI, udi_issuer="HIBCC", category="EP-CATHETER",
                   supplier_parts=(SupplierPart(supplier_id=MEDSUP, part_number=EP_PART),),
                   lot_controlled=True, **stamp),
        ItemUpsert(item_id=GUIDEWIRE, description="Guidewire 0.035 in x 150 cm", base_uom="EA",
                   packs=(PackSize(uom="BX", base_units=Decimal(10), gtin=GUIDEWIRE_BOX_GTIN),
                          PackSize(uom="CA", base_units=Decimal(100), gtin="20812345000058")),
                   gtin=GUIDEWIRE_GTIN, category="CATH-ACCESSORY",
                   supplier_parts=(SupplierPart(supplier_id=MEDSUP, part_number=GUIDEWIRE_PART,
                                                uom="BX"),),
                   lot_controlled=True, **stamp),
    ]  # fmt: skip
    for item, description, gtin, _ in FLOOR_STOCK:
        items.append(
            ItemUpsert(item_id=item, description=description, base_uom="EA", gtin=gtin,
                       category="MED-SURG", supplier_parts=(
                           SupplierPart(supplier_id=MEDSUP, part_number=f"MS-{item}"),), **stamp)
        )  # fmt: skip
    prices = [
        ContractPrice(item_id=item, uom="EA", unit_price=Decimal(price))
        for item, price in PRICES.items()
    ]
    prices.append(
        ContractPrice(item_id=GUIDEWIRE, uom="BX", unit_price=Decimal("450.00"),
                      tiers=(PriceTier(min_quantity=Decimal(5), unit_price=Decimal("430.00")),))
    )  # fmt: skip
    prices += [
        ContractPrice(item_id=item, uom="EA", unit_price=Decimal(price))
        for item, _, _, price in FLOOR_STOCK
    ]
    start = date(2024, 1, 1)
    locations = [
        LocationUpsert(location_id=CATH_LAB, name="Cardiac catheterisation lab 1",
                       location_type="procedure_room", cost_centre_id=CARDIOLOGY,
                       par_levels=(ParLevel(item_id=STENT, par_level=Decimal(4),
                                            reorder_point=Decimal(2)),), **stamp),
        LocationUpsert(location_id=CATH_LAB_2, name="Cardiac catheterisation lab 2",
                       location_type="procedure_room", cost_centre_id=CARDIOLOGY, **stamp),
    ]  # fmt: skip
    for location, name in FLOOR_LOCATIONS.items():
        pars = tuple(
            ParLevel(item_id=item, par_level=Decimal(used[(location, item)] + 120),
                     reorder_point=Decimal(60))
            for item, *_ in FLOOR_STOCK
        )  # fmt: skip
        locations.append(
            LocationUpsert(location_id=location, name=name,
                           location_type="par_area", cost_centre_id=CARDIOLOGY, par_levels=pars,
                           **stamp)
        )  # fmt: skip
    return [
        SupplierUpsert(supplier_id=MEDSUP, name="Medical Supplies Inc.", gln="0614141000005",
                       duns="123456789", edi_id="MEDSUP", payment_terms="NET30", **stamp),
        CostCentreUpsert(cost_centre_id=CARDIOLOGY, name="Cardiology",
                         department="Cardiovascular services", gl_account="6100-200", **stamp),
        *items,
        ContractUpsert(contract_number=CONTRACT, supplier_id=MEDSUP, effective_from=start,
                       title="MEDSUP network agreement", prices=tuple(prices), **stamp),
        SubstitutionUpsert(substitution_id="SUB-STENT-V2", item_id=STENT,
                           substitute_item_id=STENT_V2, contract_number=CONTRACT,
                           effective_from=start, **stamp),
        *locations,
    ]  # fmt: skip


def _balloon(site: str) -> ItemUpsert:
    return ItemUpsert(site=site, item_id=BALLOON, version=1, base_uom="EA", gtin=BALLOON_GTIN,
                      description="Coronary balloon catheter 3.0 x 15 mm",
                      category="CATH-ACCESSORY")  # fmt: skip


# -- what the outside systems send --------------------------------------------------------------


def _count(site: str, count_id: str, location: str, lines: tuple, when: datetime) -> StockCount:
    return StockCount(site=site, count_id=count_id, location_id=location, lines=lines,
                      counted_by="storeroom", counted_at=when)  # fmt: skip


def _scan(site: str, scan_id: str, barcode: str, when: datetime, po_number: str) -> DockScan:
    return DockScan(site=site, scan_id=scan_id, barcode=barcode, location_id=CATH_LAB_2,
                    scanned_at=when, po_number=po_number, scanned_by="dock-clerk-1",
                    device_id="ZEBRA-7")  # fmt: skip


def _q(value, uom: str = "EA") -> Quantity:
    return Quantity(Decimal(str(value)), uom)


def _gs1(gtin: str, *, lot: str = "", serial: str = "", expiry: date | None = None) -> str:
    text = f"(01){gtin}"
    if expiry:
        text += f"(17){expiry:%y%m%d}"
    if lot:
        text += f"(10){lot}"
    if serial:
        text += f"(21){serial}"
    return text


def _hibc(device: str, *, lot: str = "", serial: str = "", expiry: date | None = None) -> str:
    data = f"+{device}"
    if lot or serial:
        dated = f"3{expiry:%y%m%d}" if expiry else "7"
        data += f"/$${'+' if serial else ''}{dated}{serial or lot}"
    return data + HIBC_CHARSET[sum(HIBC_CHARSET.index(c) for c in data) % 43]


def _usage(site, line, case, mrn, location, when, quantity=None, **item) -> UsageSubmitted:
    return UsageSubmitted(site=site, source_usage_id=line, case_id=case, procedure_code="92928",
                          procedure_name="PCI with stent", physician_id="DR-7",
                          location_id=location, mrn=mrn, quantity=quantity or _q(1),
                          used_at=when, **item)  # fmt: skip


def _segment(name: str, fields: dict[int, str]) -> str:
    return "|".join([name] + [fields.get(i, "") for i in range(1, max(fields) + 1)])


def _hl7(control: str, case: str, mrn: str, when: datetime, charges: list[tuple], *,
         with_evn: bool = True) -> bytes:  # fmt: skip
    """A DFT^P03; each charge is (line id, UDI, item id, lot, serial, location)."""
    stamp = when.strftime("%Y%m%d%H%M%S")
    segments = [
        f"MSH|^~\\&|EPIC|HOSP|SINEW|SINEW|{stamp}||DFT^P03^DFT_P03|{control}|P|2.8.2|||AL|AL"
    ]
    if with_evn:
        segments.append(f"EVN||{stamp}")
    segments.append(f"PID|1||{mrn}^^^HOSP^MR||ZZTEST^PATIENT")
    segments.append(_segment("PV1", {1: "1", 2: "I", 3: charges[0][5], 19: f"{case}^^^HOSP^VN"}))
    for n, (line, udi, item, lot, serial, location) in enumerate(charges, start=1):
        ft1 = {1: str(n), 2: line, 4: f"{stamp}+0000", 6: "CG^^HL70017", 7: "278-1001^Charge",
               10: "1", 16: location, 20: "DR-7^Heart^Ann", 25: "92928^PCI with stent^CPT4"}  # fmt: skip
        if item:
            ft1[34] = item
        segments.append(_segment("FT1", ft1))
        if udi or lot or serial:
            segments.append(_segment("PRT", {1: str(n), 2: "UC", 4: "AD^Device^HL70912",
                                             10: udi, 19: lot, 20: serial}))  # fmt: skip
    return "\r".join(segments).encode()


def _fhir_device(device_id: str, udi: str, lot: str, serial: str = "") -> dict:
    device = {"resourceType": "Device", "id": device_id, "udiCarrier": [{"carrierHRF": udi}],
              "lotNumber": lot}  # fmt: skip
    if serial:
        device["serialNumber"] = serial
    return device


def _fhir(procedure: str, case: str, mrn: str, when: datetime, location: str, devices) -> bytes:
    patient = {"resourceType": "Patient", "id": "pat",
               "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.1", "value": mrn}],
               "name": [{"family": "ZZTEST", "given": ["PATIENT"]}]}  # fmt: skip
    return json.dumps({
        "resourceType": "Procedure", "id": procedure,
        "identifier": [{"system": "urn:ehr:procedure", "value": procedure}],
        "status": "completed", "contained": [patient, *devices],
        "subject": {"reference": "#pat"}, "encounter": {"identifier": {"value": case}},
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "92928"}],
                 "text": "PCI with stent"},
        "performedDateTime": when.isoformat().replace("+00:00", "Z"),
        "performer": [{"actor": {"reference": "Practitioner/DR-7"}}],
        "location": {"reference": f"Location/{location}"},
        "focalDevice": [{"manipulated": {"reference": f"#{d['id']}"}} for d in devices],
    }).encode()  # fmt: skip


# -- playing a plan against a running site ------------------------------------------------------

ROUTINE = {("usage_json",), ("usage_hl7",), ("usage_fhir",)}
_encode = msgspec.json.Encoder(decimal_format="string").encode
_PLACEHOLDER = re.compile(r"<<(po|ref):([^>]+)>>")


@dataclass
class Target:
    """Where a site answers: NATS, the data folder with its secrets, each service's HTTP."""

    nats_url: str
    data: Path
    urls: dict[tuple[str, str], str]  # (service, site) -> http://host:port

    def passwords(self) -> dict[str, str]:
        path = self.data / "secrets" / "nats-credentials.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def tokens(self) -> dict[str, str]:
        path = self.data / "secrets" / "api-tokens.json"
        return json.loads(path.read_text()) if path.exists() else {}


@dataclass
class Player:
    target: Target
    sent: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)
    bound: dict[str, str] = field(default_factory=dict)
    connections: dict[str, Any] = field(default_factory=dict)
    http: aiohttp.ClientSession | None = None
    control_number: int = 1000

    async def __aenter__(self) -> Player:
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self.passwords = self.target.passwords()
        self.tokens = self.target.tokens()
        return self

    async def __aexit__(self, *_: Any) -> None:
        for nc in self.connections.values():
            await nc.close()
        if self.http:
            await self.http.close()

    async def js(self, user: str):
        if user not in self.connections:
            secured = user in self.passwords
            self.connections[user] = await nats.connect(
                self.target.nats_url,
                user=user if secured else None,
                password=self.passwords.get(user),
                inbox_prefix=inbox_prefix(user) if secured else "_INBOX",
                name=f"demo-{user}",
                max_reconnect_attempts=3,
                error_cb=_quiet,
            )
        return self.connections[user].jetstream()

    # -- one step ------------------------------------------------------------------------------

    def resolve(self, text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: self.bound.get(f"{m[1]}:{m[2]}", m[0]), text)

    def render(self, step: Send) -> bytes:
        if isinstance(step.payload, bytes):
            return step.payload
        data = self.resolve(_encode(step.payload).decode()).encode()
        if not step.x12:
            return data
        from sinew.x12 import write_810, write_856

        self.control_number += 1
        ids = {"sender_id": MEDSUP, "receiver_id": f"SINEW{step.site.upper()}"[:15]}
        if step.x12 == "810":
            document = write_810(msgspec.json.decode(data, type=InvoiceSubmission),
                                 control_number=self.control_number, **ids)  # fmt: skip
        else:
            document = write_856(msgspec.json.decode(data, type=AdvanceShipNotice),
                                 control_number=self.control_number, **ids)  # fmt: skip
        if step.corrupt == "segment_count":
            document = re.sub(rb"SE\*(\d+)\*", lambda m: b"SE*%d*" % (int(m[1]) + 3), document)
        return document

    async def publish(self, step: Send) -> bool:
        channel = CATALOGUE.channel(step.channel)
        event_id = step.event_id or new_event_id()
        envelope = Envelope(id=event_id, source=f"/demo/{step.system}/{step.site}",
                            type=channel.ce_type, time=utc_now(), site=step.site,
                            correlation_id=new_event_id())  # fmt: skip
        headers = envelope.headers()
        js = await self.js(f"{step.system}-{step.site}")
        try:
            await js.publish(step.subject or channel.subject(step.site), self.render(step),
                             headers=headers, timeout=2)  # fmt: skip
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            self.refused.update(step.kinds)
            return False
        self.sent.update(step.kinds)
        return True

    async def request(self, site: str, service: str, method: str, path: str, person: str = "admin",
                      body: Any = None) -> tuple[int, Any]:  # fmt: skip
        url = self.target.urls[(service, site)] + path
        headers = (
            {"Authorization": f"Bearer {self.tokens[person]}"} if person in self.tokens else {}
        )
        async with self.http.request(method, url, json=body, headers=headers) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text) if text else None
            except ValueError:
                return response.status, text

    async def call(self, step: Call) -> None:
        path = self.resolve(step.path)
        body = json.loads(self.resolve(json.dumps(step.body))) if step.body is not None else None
        status, answer = await self.request(step.site, step.service, step.method, path,
                                            step.person, body)  # fmt: skip
        if status >= 300:
            self.failed.append(f"{step.site} {step.method} {step.service}{path}: {status} {answer}")
            return
        self.sent.update(step.kinds)
        if step.binds and answer.get("po_numbers"):
            self.bound[f"po:{step.binds}"] = answer["po_numbers"][0]

    async def find(self, step: Find, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = await self._look(step)
            if found:
                self.bound[("po:" if step.what == "bill_only_po" else "ref:") + step.key] = found
                self.sent.update(step.kinds)
                return
            await asyncio.sleep(0.3)
        self.failed.append(f"{step.site}: could not find {step.what} {step.key}")

    async def _look(self, step: Find) -> str | None:
        if step.what == "bill_only_po":
            _, listed = await self.request(step.site, "procurement", "GET",
                                           "/v1/purchase-orders?bill_only=true&limit=500")  # fmt: skip
            found = [p for p in (listed or {}).get("items", []) if p.get("case_id") == step.case_id]
            return found[0]["po_number"] if found else None
        _, listed = await self.request(step.site, "matching", "GET",
                                       f"/v1/invoices?number={step.invoice_number}")  # fmt: skip
        if not (listed or {}).get("items"):
            return None
        invoice_id = listed["items"][0]["invoice_id"]
        _, exceptions = await self.request(
            step.site, "matching", "GET",
            f"/v1/exceptions?invoice={invoice_id}&type={step.exception_type}&status=open",
        )  # fmt: skip
        items = (exceptions or {}).get("items", [])
        return items[0]["exception_id"] if items else None

    async def known_orders(self, within: float = 30.0) -> None:
        """Receiving and matching learn a new PO in their own time; ship notices wait for it."""
        for key, number in list(self.bound.items()):
            if not key.startswith("po:"):
                continue
            site = key.split(":")[1]
            checks = [("receiving", f"/v1/purchase-orders/{number}/receiving-status"),
                      ("matching", f"/v1/purchase-orders/{number}")]  # fmt: skip
            deadline = time.monotonic() + within
            for service, path in checks:
                while (await self.request(site, service, "GET", path))[0] != 200:
                    if time.monotonic() > deadline:
                        self.failed.append(f"{site}: {service} never learnt {number}")
                        break
                    await asyncio.sleep(0.2)

    async def run_site(self, steps: list[Step]) -> None:
        for step in steps:
            if isinstance(step, Send):
                await self.publish(step)
            elif isinstance(step, Call):
                await self.call(step)
            else:
                await self.find(step)


async def publish_all(player: Player, steps: list[Send], concurrency: int = 64) -> Counter:
    """Publish many independent messages at once; what was sent, by kind. The load generator's
    core: the order between them does not matter, only the rate."""
    gate = asyncio.Semaphore(concurrency)

    async def one(step: Send) -> None:
        async with gate:
            await player.publish(step)

    before = Counter(player.sent)
    await asyncio.gather(*(one(s) for s in steps))
    return player.sent - before


async def drained(nats_url: str, data: Path, within: float = 90.0) -> bool:
    """Every consumer has taken everything and the streams stopped growing."""
    from sinew.services import built

    from .operate import connect_operator

    nc = await connect_operator(nats_url, data, None, None)
    js = nc.jetstream()
    # The dashboard reads every stream at its own pace; the day waits for the domain services.
    services = set(built()) - {"observability"}

    async def snapshot() -> tuple | None:
        positions = []
        for stream in CATALOGUE.streams:
            try:
                positions.append((await js.stream_info(stream.name)).state.last_seq)
                consumers = await js.consumers_info(stream.name)
            except Exception:
                continue
            if any(
                c.num_pending or c.num_ack_pending
                for c in consumers
                if c.name.split("-")[0] in services  # outside systems read at their own pace
            ):
                return None
        return tuple(positions)

    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            before = await snapshot()
            if before is not None:
                await asyncio.sleep(0.4)
                if before == await snapshot():
                    return True
            else:
                await asyncio.sleep(0.2)
        return False
    finally:
        await nc.close()


async def play(player: Player, plan: list[Phase], say=print) -> None:
    """Play the plan phase by phase; each site's steps in order, the sites side by side."""
    for phase in plan:
        started = time.monotonic()
        by_site: dict[str, list[Step]] = {}
        for step in phase.steps:
            by_site.setdefault(step.site, []).append(step)
        # Routine usage lines (one kind, nothing waits on them) go out as fast as NATS takes
        # them; the scenarios' steps keep their order.
        routine = [s for s in phase.steps if isinstance(s, Send) and s.kinds in ROUTINE]
        await publish_all(player, routine)
        skip = {id(s) for s in routine}
        await asyncio.gather(
            *(
                player.run_site([s for s in steps if id(s) not in skip])
                for steps in by_site.values()
            )
        )
        if phase.name == "requisitions":
            await player.known_orders()
        quiet = await drained(player.target.nats_url, player.target.data)
        say(f"  {phase.name:<18} {len(phase.steps):>6} steps  {time.monotonic() - started:5.1f}s"
            + ("" if quiet else "  (still busy; going on)"), flush=True)  # fmt: skip


# -- outcomes, read back from the services -------------------------------------------------------


async def outcomes(player: Player, sites: list[str]) -> dict:
    async def every(site: str, service: str, path: str) -> list[dict]:
        found: list[dict] = []
        offset = 0
        sep = "&" if "?" in path else "?"
        while True:
            status, answer = await player.request(site, service, "GET",
                                                  f"{path}{sep}limit=500&offset={offset}")  # fmt: skip
            if status != 200 or not isinstance(answer, dict):
                return found
            found += answer.get("items", [])
            if not answer.get("next_offset"):
                return found
            offset = answer["next_offset"]

    result: dict[str, Any] = {}
    for site in sites:
        invoices = await every(site, "matching", "/v1/invoices")
        matching_exceptions = await every(site, "matching", "/v1/exceptions?status=all")
        _, queues = await player.request(site, "matching", "GET", "/v1/queues")
        usage_exceptions = await every(site, "usage", "/v1/exceptions?status=all")
        receiving_exceptions = [  # receiving's queue knows no "all"
            *await every(site, "receiving", "/v1/exceptions?status=open"),
            *await every(site, "receiving", "/v1/exceptions?status=resolved"),
        ]
        signals = await every(site, "replenishment", "/v1/signals?status=open")
        _, recall = await player.request(site, "usage", "GET", f"/v1/recall?lot=L1-{site.upper()}")
        dead: dict[str, dict] = {}
        for service, url_site in player.target.urls:
            if url_site == site:
                letters = await every(site, service, "/v1/dead-letters")
                if letters:
                    dead[service] = dict(Counter(d.get("cause", "?") for d in letters))
        result[site] = {
            "invoices": dict(Counter(i["status"] for i in invoices)),
            "first_pass": sum(1 for i in invoices if i.get("first_pass")),
            "matching_exceptions": dict(Counter(e["type"] for e in matching_exceptions)),
            "open_queues": {
                q["queue"]: q["open"] for q in (queues or {}).get("queues", []) if q.get("open")
            },
            "usage_exceptions": dict(Counter(e["type"] for e in usage_exceptions)),
            "receiving_exceptions": dict(Counter(e["type"] for e in receiving_exceptions)),
            "open_signals": len(signals),
            "recall_L1": _recalled(recall),
            "dead_letters": dead,
        }
    return result


def _recalled(answer: Any) -> int:
    if not isinstance(answer, dict):
        return 0
    for key in ("cases", "usages", "items", "recipients"):
        if isinstance(answer.get(key), list):
            return len(answer[key])
    return 0


def report(sent: Counter, refused: Counter, failed: list[str], result: dict) -> str:
    lines = ["", "What the outside systems and people sent:"]
    for kind, n in sorted(sent.items()):
        lines.append(f"  {kind:<32} {n:>6}")
    if refused:
        lines.append("Refused by NATS (publishing to another site's subjects): "
                     + ", ".join(f"{k} {n}" for k, n in sorted(refused.items())))  # fmt: skip
    for problem, n in Counter(failed).most_common(10):
        lines.append(f"  ! {problem[:160]}" + (f" (x{n})" if n > 1 else ""))
    lines.append("")
    lines.append("What the services made of it:")
    for site, figures in result.items():
        lines.append(f"  {site}:")
        for name, value in figures.items():
            lines.append(f"    {name:<22} {json.dumps(value, sort_keys=True)}")
    return "\n".join(lines)


async def _quiet(_: Exception) -> None:
    # A refused cross-site publish is reported by its timeout; the server's async error adds
    # nothing to it.
    return None


def played(data: Path) -> bool:
    return (data / MARKER).exists()


async def run_demo(target: Target, sites: list[str], *, seed: int, usages: int, say=print) -> dict:
    """Play the day once against a running site, record it in the data folder, report it."""
    started = time.monotonic()
    plan = plan_day(seed, usages, tuple(sites))
    say(f"\nPlaying the demo day ({usages} usage lines, seed {seed}) for {', '.join(sites)}:",
        flush=True)  # fmt: skip
    async with Player(target) as player:
        await play(player, plan, say)
        result = await outcomes(player, sites)
    say(report(player.sent, player.refused, player.failed, result), flush=True)
    record = {"seed": seed, "usages": usages, "sites": sites, "sent": dict(player.sent),
              "refused": dict(player.refused), "failed": player.failed, "outcomes": result,
              "seconds": round(time.monotonic() - started, 1)}  # fmt: skip
    (target.data / MARKER).write_text(json.dumps(record, indent=2))
    say(
        f"\nDemo day played in {record['seconds']}s; recorded in {target.data / MARKER}", flush=True
    )
    return record


# -- wiring for `sinew up --demo` and `sinew demo` ------------------------------------------------


def target_of(site: Any) -> Target:
    urls = {
        (service, code): url
        for service, code, url in site.endpoints()
        if code != "-" and url.startswith("http")
    }
    return Target(site.url, site.data, urls)


async def ready(target: Target, within: float = 120.0) -> None:
    """Every service answers /readyz."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        for url in target.urls.values():
            while True:
                try:
                    async with http.get(url + "/readyz") as response:
                        if response.status == 200:
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} not ready after {within:.0f}s")
                await asyncio.sleep(0.3)


async def demo_against(site: Any, *, seed: int, usages: int, again: bool = False) -> None:
    target = target_of(site)
    if played(site.data) and not again:
        print(f"The demo day was already played in {site.data} ({MARKER}); --again to replay.")
        return
    await ready(target)
    await run_demo(target, site.sites, seed=seed, usages=usages)
    dashboard(site)


def dashboard(site: Any) -> None:
    found = [url for service, _, url in site.endpoints() if service == "observability"]
    if found:
        print(f"Dashboard: {found[0]}/ (observability)", flush=True)
    else:
        print("Dashboard: no observability service in this build yet; the figures above come "
              "from each service's HTTP API.", flush=True)  # fmt: skip


async def up_with_demo(site: Any, *, seed: int, usages: int) -> None:
    """`sinew up`, and once every service is ready, the demo day (once per data folder)."""
    running = asyncio.create_task(site.run())

    async def day() -> None:
        while not site.children or len(site.children) < len(site.services) * len(site.sites):
            if running.done():
                return
            await asyncio.sleep(0.2)
        try:
            if played(site.data):
                print(f"The demo day was already played in {site.data}; the site is as it left "
                      "it. Remove the data folder for a fresh day.", flush=True)  # fmt: skip
                dashboard(site)
                return
            await demo_against(site, seed=seed, usages=usages)
        except Exception as error:  # the site stays up for a look at what went wrong
            print(f"The demo day stopped: {error!r}", flush=True)
        print("The site keeps running; Ctrl-C stops it.", flush=True)

    playing = asyncio.create_task(day())
    stopping = asyncio.create_task(site.stopping.wait())
    # Ctrl-C in the middle of the day stops the day first, then the site.
    stopping.add_done_callback(lambda _: playing.cancel())
    try:
        await running
    finally:
        playing.cancel()
        stopping.cancel()
