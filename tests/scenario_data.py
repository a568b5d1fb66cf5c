"""The master data of the business scenarios (../shared/design/SCENARIOS.md), for every service's
tests: site north, supplier MEDSUP, the drug-eluting stent STENT-DES-3x18 at 1,200.00 USD each
under contract, CATH-LAB-1 with par 4 / reorder point 2 for it, an approved and an unapproved
substitute, a consigned implant (bill-only) with an HIBC UDI, and a guidewire sold in boxes of 10
(scenario 13).

Each function returns the canonical event the items service publishes (what other services
consume); `as_upsert` turns one into what the MDM feed sends to items. `publish_master_data`
puts them on the items channels of a site, as items would."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import msgspec
from helpers import publish

from sinew.contracts import CATALOGUE
from sinew.contracts.items import (
    ContractPrice,
    ContractUpsert,
    ContractUpserted,
    CostCentreUpsert,
    CostCentreUpserted,
    ItemUpsert,
    ItemUpserted,
    LocationUpsert,
    LocationUpserted,
    PackSize,
    ParLevel,
    PriceTier,
    SubstitutionUpsert,
    SubstitutionUpserted,
    SupplierPart,
    SupplierUpsert,
    SupplierUpserted,
)
from sinew.masterdata.barcodes import HIBC_CHARSET

SITE = "north"
UPSERTED_AT = datetime(2024, 1, 1, tzinfo=UTC)
CONTRACT_START = date(2024, 1, 1)

MEDSUP = "MEDSUP"
MEDSUP_GLN = "0614141000005"
STENT = "STENT-DES-3x18"
STENT_GTIN = "00812345000016"  # the each, and its GS1 UDI-DI
STENT_BOX_GTIN = "10812345000013"  # box of 1
STENT_V2 = "STENT-DES-3x18-V2"  # approved substitute
STENT_V2_GTIN = "00812345000023"
BARE_METAL_STENT = "STENT-BMS-3x18"  # a substitute nobody approved
BARE_METAL_STENT_GTIN = "00812345000030"
ICD = "ICD-DUAL-01"  # consigned: bought after use (bill-only)
ICD_HIBC_DI = "H123ICD0110"
GUIDEWIRE = "GUIDEWIRE-035"
GUIDEWIRE_GTIN = "00812345000054"
GUIDEWIRE_BOX_GTIN = "10812345000051"  # box of 10
GUIDEWIRE_CASE_GTIN = "20812345000058"  # case of 100
CONTRACT = "MEDSUP-2024-001"
SUBSTITUTION = "SUB-STENT-V2"
CATH_LAB = "CATH-LAB-1"
CARDIOLOGY = "CC-CARDIO"

STENT_PRICE = Decimal("1200.00")
STENT_V2_PRICE = Decimal("1180.00")
BARE_METAL_STENT_PRICE = Decimal("950.00")
ICD_PRICE = Decimal("18500.00")
GUIDEWIRE_BOX_PRICE = Decimal("450.00")  # per box of 10
GUIDEWIRE_TIER = (Decimal(5), Decimal("430.00"))  # from 5 boxes


def _stamp() -> dict:
    return {"version": 1, "source": "mdm", "upserted_at": UPSERTED_AT}


def medsup(site: str = SITE) -> SupplierUpserted:
    return SupplierUpserted(
        site=site,
        supplier_id=MEDSUP,
        name="Medical Supplies Inc.",
        gln=MEDSUP_GLN,
        duns="123456789",
        edi_id="MEDSUP",
        payment_terms="NET30",
        **_stamp(),
    )


def stent(site: str = SITE) -> ItemUpserted:
    return ItemUpserted(
        site=site,
        item_id=STENT,
        description="Drug-eluting coronary stent 3.0 x 18 mm",
        base_uom="EA",
        packs=(PackSize(uom="BX", base_units=Decimal(1), gtin=STENT_BOX_GTIN),),
        gtin=STENT_GTIN,
        udi_di=STENT_GTIN,
        udi_issuer="GS1",
        category="CARDIAC-STENT",
        manufacturer="Acme Cardio",
        manufacturer_part="DES-3018",
        supplier_parts=(SupplierPart(supplier_id=MEDSUP, part_number="MS-DES-318", uom="EA"),),
        implant=True,
        lot_controlled=True,
        serial_controlled=True,
        charge_code="278-1001",
        **_stamp(),
    )


def stent_v2(site: str = SITE) -> ItemUpserted:
    return ItemUpserted(
        site=site,
        item_id=STENT_V2,
        description="Drug-eluting coronary stent 3.0 x 18 mm, second generation",
        base_uom="EA",
        gtin=STENT_V2_GTIN,
        udi_di=STENT_V2_GTIN,
        udi_issuer="GS1",
        category="CARDIAC-STENT",
        manufacturer="Acme Cardio",
        supplier_parts=(SupplierPart(supplier_id=MEDSUP, part_number="MS-DES-318-V2"),),
        implant=True,
        lot_controlled=True,
        serial_controlled=True,
        charge_code="278-1002",
        **_stamp(),
    )


def bare_metal_stent(site: str = SITE) -> ItemUpserted:
    return ItemUpserted(
        site=site,
        item_id=BARE_METAL_STENT,
        description="Bare-metal coronary stent 3.0 x 18 mm",
        base_uom="EA",
        gtin=BARE_METAL_STENT_GTIN,
        category="CARDIAC-STENT",
        supplier_parts=(SupplierPart(supplier_id=MEDSUP, part_number="MS-BMS-318"),),
        implant=True,
        lot_controlled=True,
        serial_controlled=True,
        **_stamp(),
    )


def consigned_icd(site: str = SITE) -> ItemUpserted:
    return ItemUpserted(
        site=site,
        item_id=ICD,
        description="Implantable cardioverter-defibrillator, dual chamber (consigned)",
        base_uom="EA",
        udi_di=ICD_HIBC_DI,
        udi_issuer="HIBCC",
        category="CARDIAC-DEVICE",
        supplier_parts=(SupplierPart(supplier_id=MEDSUP, part_number="MS-ICD-01"),),
        implant=True,
        lot_controlled=True,
        serial_controlled=True,
        consignment=True,
        charge_code="278-2001",
        **_stamp(),
    )


def guidewire(site: str = SITE) -> ItemUpserted:
    return ItemUpserted(
        site=site,
        item_id=GUIDEWIRE,
        description="Guidewire 0.035 in x 150 cm",
        base_uom="EA",
        packs=(
            PackSize(uom="BX", base_units=Decimal(10), gtin=GUIDEWIRE_BOX_GTIN),
            PackSize(uom="CA", base_units=Decimal(100), gtin=GUIDEWIRE_CASE_GTIN),
        ),
        gtin=GUIDEWIRE_GTIN,
        category="CATH-ACCESSORY",
        supplier_parts=(SupplierPart(supplier_id=MEDSUP, part_number="MS-GW-035", uom="BX"),),
        lot_controlled=True,
        **_stamp(),
    )


def cardiology(site: str = SITE) -> CostCentreUpserted:
    return CostCentreUpserted(
        site=site,
        cost_centre_id=CARDIOLOGY,
        name="Cardiology",
        department="Cardiovascular services",
        gl_account="6100-200",
        **_stamp(),
    )


def cath_lab(site: str = SITE) -> LocationUpserted:
    return LocationUpserted(
        site=site,
        location_id=CATH_LAB,
        name="Cardiac catheterisation lab 1",
        location_type="procedure_room",
        cost_centre_id=CARDIOLOGY,
        par_levels=(ParLevel(item_id=STENT, par_level=Decimal(4), reorder_point=Decimal(2)),),
        **_stamp(),
    )


def medsup_contract(site: str = SITE) -> ContractUpserted:
    minimum, tier_price = GUIDEWIRE_TIER
    return ContractUpserted(
        site=site,
        contract_number=CONTRACT,
        supplier_id=MEDSUP,
        effective_from=CONTRACT_START,
        title="MEDSUP cardiology agreement",
        prices=(
            ContractPrice(
                item_id=STENT, uom="EA", unit_price=STENT_PRICE, supplier_part="MS-DES-318"
            ),
            ContractPrice(item_id=STENT_V2, uom="EA", unit_price=STENT_V2_PRICE),
            ContractPrice(item_id=BARE_METAL_STENT, uom="EA", unit_price=BARE_METAL_STENT_PRICE),
            ContractPrice(item_id=ICD, uom="EA", unit_price=ICD_PRICE),
            ContractPrice(
                item_id=GUIDEWIRE,
                uom="BX",
                unit_price=GUIDEWIRE_BOX_PRICE,
                tiers=(PriceTier(min_quantity=minimum, unit_price=tier_price),),
            ),
        ),
        **_stamp(),
    )


def stent_substitution(site: str = SITE) -> SubstitutionUpserted:
    return SubstitutionUpserted(
        site=site,
        substitution_id=SUBSTITUTION,
        item_id=STENT,
        substitute_item_id=STENT_V2,
        contract_number=CONTRACT,
        effective_from=CONTRACT_START,
        **_stamp(),
    )


def master_data(site: str = SITE) -> list[Any]:
    """Every record of the scenarios, referenced records first."""
    return [
        medsup(site),
        cardiology(site),
        stent(site),
        stent_v2(site),
        bare_metal_stent(site),
        consigned_icd(site),
        guidewire(site),
        medsup_contract(site),
        stent_substitution(site),
        cath_lab(site),
    ]


_UPSERT_OF = {
    ItemUpserted: ItemUpsert,
    SupplierUpserted: SupplierUpsert,
    ContractUpserted: ContractUpsert,
    SubstitutionUpserted: SubstitutionUpsert,
    LocationUpserted: LocationUpsert,
    CostCentreUpserted: CostCentreUpsert,
}
_CHANNEL_OF = {
    ItemUpserted: "items.item.upserted.v1",
    SupplierUpserted: "items.supplier.upserted.v1",
    ContractUpserted: "items.contract.upserted.v1",
    SubstitutionUpserted: "items.substitution.upserted.v1",
    LocationUpserted: "items.location.upserted.v1",
    CostCentreUpserted: "items.cost-centre.upserted.v1",
}


def as_upsert(event: Any, **changes: Any) -> Any:
    """What the MDM feed sends for this record (with any fields changed, e.g. version=2)."""
    upsert = _UPSERT_OF[type(event)]
    fields = {name: getattr(event, name) for name in upsert.__struct_fields__}
    return upsert(**{**fields, **changes})


def changed(event: Any, **changes: Any) -> Any:
    """The same canonical event with fields changed (a later version, say)."""
    return msgspec.structs.replace(event, **changes)


async def publish_master_data(js, site: str = SITE, records: list[Any] | None = None) -> None:
    """Publish canonical master-data events on the items channels, as the items service does."""
    encoder = msgspec.json.Encoder(decimal_format="string")
    for record in master_data(site) if records is None else records:
        channel = CATALOGUE.channel(_CHANNEL_OF[type(record)])
        await publish(
            js, channel.subject(site), encoder.encode(record), site=site, type_=channel.ce_type
        )


# -- UDI barcodes as a scanner reads them -------------------------------------------------------


def gs1_barcode(
    gtin: str, *, lot: str | None = None, serial: str | None = None, expiry: date | None = None
) -> str:
    """The human-readable GS1 element string: (01) GTIN, (17) expiry, (10) lot, (21) serial."""
    text = f"(01){gtin}"
    if expiry:
        text += f"(17){expiry:%y%m%d}"
    if lot:
        text += f"(10){lot}"
    if serial:
        text += f"(21){serial}"
    return text


def hibc_barcode(
    device_identifier: str,
    *,
    lot: str | None = None,
    serial: str | None = None,
    expiry: date | None = None,
) -> str:
    """An HIBC primary + secondary in one symbol, with its modulo-43 check character."""
    data = f"+{device_identifier}"
    if lot or serial:
        flag = "+" if serial else ""
        dated = f"3{expiry:%y%m%d}" if expiry else "7"
        data += f"/$${flag}{dated}{serial or lot}"
    check = HIBC_CHARSET[sum(HIBC_CHARSET.index(c) for c in data) % 43]
    return data + check
