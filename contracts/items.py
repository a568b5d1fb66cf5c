"""Master data: items, suppliers, contracts, approved substitutions, locations and cost centres.

Every record carries a ``version`` that grows with each change to that record. A consumer keeps
the highest version it has seen and ignores an older one that arrives late, so replays and
out-of-order feeds never roll master data back.
"""

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

from .catalogue import INGRESS, Channel
from .common import Amount, Code, CurrencyCode, SiteCode, Text, UomCode, UtcTime

RecordVersion = Annotated[
    int, msgspec.Meta(ge=1, description="Version of this record; the higher version wins")
]
Gtin = Annotated[
    str, msgspec.Meta(pattern=r"^(\d{8}|\d{12,14})$", description="GS1 GTIN-8, -12, -13 or -14")
]
# GS1 caps lot (AI 10) and serial (AI 21) at 20 characters; HIBC and older feeds run longer.
Lot = Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="Lot or batch number")]
Serial = Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="Serial number")]
Barcode = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=512, description="A whole UDI barcode, GS1 or HIBC, as scanned"
    ),
]
# msgspec cannot bound a Decimal, so the Structs below check their bounds in __post_init__, which
# runs on decode too: a bad value fails validation with its path, like any other contract error.
Factor = Annotated[Decimal, msgspec.Meta(description="A decimal greater than 0, as a string")]
StockLevel = Annotated[Decimal, msgspec.Meta(description="At least 0, in the item's base UoM")]

LocationType = Literal["warehouse", "storeroom", "procedure_room", "par_area", "dock", "pharmacy"]
# Who changed a record: the MDM feed, a person over the HTTP API, or a bulk file import.
MasterDataSource = Literal["mdm", "api", "import"]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _positive(value: Decimal) -> bool:
    return value.is_finite() and value > 0


class PackSize(msgspec.Struct, frozen=True, kw_only=True):
    """How many base units one pack holds, e.g. BX = 10 EA."""

    uom: UomCode
    base_units: Factor
    gtin: Gtin | None = None  # each packaging level has its own GTIN

    def __post_init__(self) -> None:
        _require(_positive(self.base_units), "base_units must be greater than 0")


class SupplierPart(msgspec.Struct, frozen=True, kw_only=True):
    """The supplier's own number for the item: invoices and ASNs often name only this."""

    supplier_id: Code
    part_number: Code
    uom: UomCode | None = None


class Item(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    item_id: Code
    version: RecordVersion
    description: Text
    base_uom: UomCode
    packs: tuple[PackSize, ...] = ()
    gtin: Gtin | None = None
    # HIBC device identifiers are not GTINs, so the UDI-DI is kept on its own.
    udi_di: Code | None = None
    udi_issuer: Literal["GS1", "HIBCC", "ICCBBA"] | None = None
    category: Code | None = None
    manufacturer: Text | None = None
    manufacturer_part: Code | None = None
    supplier_parts: tuple[SupplierPart, ...] = ()
    implant: bool = False
    lot_controlled: bool = False
    serial_controlled: bool = False
    # Consigned stock belongs to the supplier until used: it is bought after the fact (bill-only).
    consignment: bool = False
    formulary: bool = True
    charge_code: Code | None = None
    active: bool = True


class Supplier(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    supplier_id: Code
    version: RecordVersion
    name: Text
    gln: Annotated[str, msgspec.Meta(pattern=r"^\d{13}$")] | None = None
    duns: Annotated[str, msgspec.Meta(pattern=r"^\d{9}$")] | None = None
    edi_id: Code | None = None  # the supplier's X12 interchange id (ISA06)
    currency: CurrencyCode = "USD"
    payment_terms: Code | None = None
    active: bool = True


class PriceTier(msgspec.Struct, frozen=True, kw_only=True):
    """The unit price that applies from this quantity up, in the price's unit of measure."""

    min_quantity: Factor
    unit_price: Amount

    def __post_init__(self) -> None:
        _require(_positive(self.min_quantity), "min_quantity must be greater than 0")


class ContractPrice(msgspec.Struct, frozen=True, kw_only=True):
    item_id: Code
    uom: UomCode
    unit_price: Amount
    tiers: tuple[PriceTier, ...] = ()
    supplier_part: Code | None = None


class Contract(msgspec.Struct, frozen=True, kw_only=True):
    """Prices agreed with one supplier; both effective dates are inclusive, no end is open-ended."""

    site: SiteCode
    contract_number: Code
    version: RecordVersion
    supplier_id: Code
    effective_from: date
    effective_to: date | None = None
    currency: CurrencyCode = "USD"
    prices: tuple[ContractPrice, ...] = ()
    title: Text | None = None
    active: bool = True


class Substitution(msgspec.Struct, frozen=True, kw_only=True):
    """Item ``substitute_item_id`` may be shipped and invoiced for ``item_id`` under the contract,
    at the substitute's own contract price."""

    site: SiteCode
    substitution_id: Code
    version: RecordVersion
    item_id: Code
    substitute_item_id: Code
    contract_number: Code
    # Base units of the substitute that stand for one base unit of the ordered item.
    substitute_units: Factor = Decimal(1)
    effective_from: date | None = None
    effective_to: date | None = None
    active: bool = True

    def __post_init__(self) -> None:
        _require(_positive(self.substitute_units), "substitute_units must be greater than 0")


class ParLevel(msgspec.Struct, frozen=True, kw_only=True):
    """Stock to keep at a location: at or below the reorder point, replenish up to par."""

    item_id: Code
    par_level: StockLevel
    reorder_point: StockLevel

    def __post_init__(self) -> None:
        _require(
            self.par_level.is_finite()
            and self.reorder_point.is_finite()
            and 0 <= self.reorder_point <= self.par_level,
            "reorder_point must be between 0 and par_level",
        )


class Location(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    location_id: Code
    version: RecordVersion
    name: Text
    location_type: LocationType
    cost_centre_id: Code | None = None
    par_levels: tuple[ParLevel, ...] = ()
    active: bool = True


class CostCentre(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    cost_centre_id: Code
    version: RecordVersion
    name: Text
    department: Text | None = None
    gl_account: Code | None = None
    active: bool = True


# What the MDM feed sends: one record per message, its kind named by the "kind" field.


class ItemUpsert(Item, frozen=True, kw_only=True, tag_field="kind", tag="item"):
    pass


class SupplierUpsert(Supplier, frozen=True, kw_only=True, tag_field="kind", tag="supplier"):
    pass


class ContractUpsert(Contract, frozen=True, kw_only=True, tag_field="kind", tag="contract"):
    pass


class SubstitutionUpsert(
    Substitution, frozen=True, kw_only=True, tag_field="kind", tag="substitution"
):
    pass


class LocationUpsert(Location, frozen=True, kw_only=True, tag_field="kind", tag="location"):
    pass


class CostCentreUpsert(CostCentre, frozen=True, kw_only=True, tag_field="kind", tag="cost-centre"):
    pass


MasterDataUpsert = (
    ItemUpsert
    | SupplierUpsert
    | ContractUpsert
    | SubstitutionUpsert
    | LocationUpsert
    | CostCentreUpsert
)


# What items publishes once a record is accepted: the whole record at its new version.


class ItemUpserted(Item, frozen=True, kw_only=True):
    source: MasterDataSource
    upserted_at: UtcTime


class SupplierUpserted(Supplier, frozen=True, kw_only=True):
    source: MasterDataSource
    upserted_at: UtcTime


class ContractUpserted(Contract, frozen=True, kw_only=True):
    source: MasterDataSource
    upserted_at: UtcTime


class SubstitutionUpserted(Substitution, frozen=True, kw_only=True):
    source: MasterDataSource
    upserted_at: UtcTime


class LocationUpserted(Location, frozen=True, kw_only=True):
    source: MasterDataSource
    upserted_at: UtcTime


class CostCentreUpserted(CostCentre, frozen=True, kw_only=True):
    source: MasterDataSource
    upserted_at: UtcTime


# A contract may list thousands of prices.
LARGE = 1024 * 1024

# fmt: off
CHANNELS: list[Channel] = [
    Channel(INGRESS, "masterdata", "upserted", 1, MasterDataUpsert, "mdm", ("items",),
            "An item, supplier, contract, substitution, location or cost centre from the MDM feed",
            max_bytes=LARGE),
    Channel("items", "item", "upserted", 1, ItemUpserted, "items",
            ("procurement", "receiving", "usage", "matching", "replenishment", "observability"),
            "An item record at its new version: identifiers, units and packs, control flags"),
    Channel("items", "supplier", "upserted", 1, SupplierUpserted, "items",
            ("procurement", "receiving", "matching", "observability"),
            "A supplier record at its new version"),
    Channel("items", "contract", "upserted", 1, ContractUpserted, "items",
            ("procurement", "usage", "matching", "observability"),
            "A contract at its new version, with prices per unit of measure and quantity tiers",
            max_bytes=LARGE),
    Channel("items", "substitution", "upserted", 1, SubstitutionUpserted, "items",
            ("procurement", "receiving", "matching", "observability"),
            "An approved substitution (item A may be replaced by item B under contract C)"),
    Channel("items", "location", "upserted", 1, LocationUpserted, "items",
            ("procurement", "receiving", "usage", "replenishment", "observability"),
            "A location at its new version, with par level and reorder point per item"),
    Channel("items", "cost-centre", "upserted", 1, CostCentreUpserted, "items",
            ("procurement", "observability"),
            "A cost centre at its new version"),
]
# fmt: on
