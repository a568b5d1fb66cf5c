"""The local master-data replica keeps the highest version and answers lookups."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from decimal import Decimal

import msgspec

from sinew.contracts.common import Quantity
from sinew.contracts.items import (
    ContractPrice,
    ContractUpserted,
    ItemUpserted,
    PackSize,
    SubstitutionUpserted,
    SupplierPart,
)
from sinew.masterdata.replica import MIGRATION, MasterData, apply

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def replica() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.executescript(MIGRATION)
    return conn


def stent(version: int, description: str = "Drug-eluting stent 3x18") -> ItemUpserted:
    return ItemUpserted(
        site="north",
        item_id="STENT-DES-3x18",
        version=version,
        description=description,
        base_uom="EA",
        gtin="09506000134352",
        udi_di="A99912345",
        packs=(PackSize(uom="BX", base_units=Decimal(10), gtin="19506000134359"),),
        supplier_parts=(SupplierPart(supplier_id="MEDSUP", part_number="MS-318"),),
        implant=True,
        source="mdm",
        upserted_at=NOW,
    )


def test_the_highest_version_wins_whatever_the_arrival_order():
    conn = replica()
    assert apply(conn, stent(2, "v2"))
    assert not apply(conn, stent(1, "v1"))  # late and older: ignored
    assert not apply(conn, stent(2, "v2 again"))
    assert MasterData(conn).item("STENT-DES-3x18").description == "v2"
    assert apply(conn, stent(3, "v3"))
    assert MasterData(conn).item("STENT-DES-3x18").description == "v3"


def test_lookups_by_gtin_pack_gtin_udi_and_supplier_part():
    conn = replica()
    apply(conn, stent(1))
    md = MasterData(conn)
    item, uom = md.item_by_code(gtin="9506000134352")
    assert (item.item_id, uom) == ("STENT-DES-3x18", "EA")
    assert md.item_by_code(gtin="19506000134359")[1] == "BX"
    assert md.item_by_code(udi_di="A99912345")[0].item_id == "STENT-DES-3x18"
    assert md.item_by_supplier_part("MEDSUP", "MS-318").item_id == "STENT-DES-3x18"
    assert md.item_by_code(gtin="00000000000000") is None


def test_price_and_substitution_through_the_replica():
    conn = replica()
    apply(conn, stent(1))
    apply(
        conn,
        ContractUpserted(
            site="north",
            contract_number="C-1",
            version=1,
            supplier_id="MEDSUP",
            effective_from=date(2026, 1, 1),
            source="mdm",
            upserted_at=NOW,
            prices=(
                ContractPrice(item_id="STENT-DES-3x18", uom="EA", unit_price=Decimal("1200.00")),
            ),
        ),
    )
    apply(
        conn,
        SubstitutionUpserted(
            site="north",
            substitution_id="S-1",
            version=1,
            item_id="STENT-DES-3x18",
            substitute_item_id="STENT-DES-3x20",
            contract_number="C-1",
            source="mdm",
            upserted_at=NOW,
        ),
    )
    md = MasterData(conn)
    quote = md.price(
        "STENT-DES-3x18", "MEDSUP", date(2026, 3, 1), Quantity(value=Decimal(2), uom="EA")
    )
    assert (quote.contract_number, quote.unit_price) == ("C-1", Decimal("1200.00"))
    assert (
        md.substitution("STENT-DES-3x18", "STENT-DES-3x20", date(2026, 3, 1)).substitution_id
        == "S-1"
    )
    assert md.substitution("STENT-DES-3x18", "OTHER", date(2026, 3, 1)) is None
    # The stored record decodes back to exactly what was applied.
    assert msgspec.structs.asdict(md.item("STENT-DES-3x18")) == msgspec.structs.asdict(stent(1))
