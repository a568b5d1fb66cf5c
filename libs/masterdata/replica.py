"""The local copy of master data a service keeps from the items service's events.

Each record is kept whole, at its highest version; an older version arriving late is ignored, so
a replay or an out-of-order feed never rolls master data back. Lookup tables (GTIN, UDI device
identifier, supplier part, contracts and substitutions per item) are maintained beside it.

A service adds `MIGRATION` to its migrations and the handlers it needs to its table, either
`HANDLERS` as they are or its own functions that call `apply` and then react.
"""

from __future__ import annotations

import sqlite3
from datetime import date
from typing import Any

import msgspec

from sinew.common.context import Context
from sinew.contracts.common import Quantity
from sinew.contracts.items import (
    Contract,
    ContractUpserted,
    CostCentreUpserted,
    ItemUpserted,
    LocationUpserted,
    Substitution,
    SubstitutionUpserted,
    SupplierUpserted,
)

from .barcodes import gtin14
from .rules import PriceQuote, approved_substitution, contract_price

MIGRATION = """
CREATE TABLE md_records (
    kind TEXT NOT NULL,
    record_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (kind, record_id)
) WITHOUT ROWID;
CREATE TABLE md_item_codes (
    code TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    uom TEXT
) WITHOUT ROWID;
CREATE TABLE md_supplier_parts (
    supplier_id TEXT NOT NULL,
    part_number TEXT NOT NULL,
    item_id TEXT NOT NULL,
    PRIMARY KEY (supplier_id, part_number)
) WITHOUT ROWID;
CREATE TABLE md_item_links (
    item_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    record_id TEXT NOT NULL,
    PRIMARY KEY (item_id, kind, record_id)
) WITHOUT ROWID
"""

KINDS: dict[type, str] = {
    ItemUpserted: "item",
    SupplierUpserted: "supplier",
    ContractUpserted: "contract",
    SubstitutionUpserted: "substitution",
    LocationUpserted: "location",
    CostCentreUpserted: "cost-centre",
}
TYPES = {kind: type_ for type_, kind in KINDS.items()}
_decoders = {kind: msgspec.json.Decoder(type_) for kind, type_ in TYPES.items()}
_encoder = msgspec.json.Encoder(decimal_format="string")


IDENTITY = {
    "item": "item_id",
    "supplier": "supplier_id",
    "contract": "contract_number",
    "substitution": "substitution_id",
    "location": "location_id",
    "cost-centre": "cost_centre_id",
}


def _identity_field(record: Any) -> str:
    return IDENTITY[KINDS[type(record)]]


def apply(conn: sqlite3.Connection, record: Any) -> bool:
    """Keep the record if it is newer than what is held. True when it was applied."""
    kind = KINDS[type(record)]
    identity = getattr(record, _identity_field(record))
    held = conn.execute(
        "SELECT version FROM md_records WHERE kind=? AND record_id=?", (kind, identity)
    ).fetchone()
    if held is not None and held[0] >= record.version:
        return False
    conn.execute(
        "INSERT OR REPLACE INTO md_records VALUES (?, ?, ?, ?)",
        (kind, identity, record.version, _encoder.encode(record)),
    )
    if kind == "item":
        _index_item(conn, record)
    elif kind == "contract":
        _link(conn, "contract", identity, {p.item_id for p in record.prices})
    elif kind == "substitution":
        _link(conn, "substitution", identity, {record.item_id})
    return True


def _index_item(conn: sqlite3.Connection, item: ItemUpserted) -> None:
    conn.execute("DELETE FROM md_item_codes WHERE item_id=?", (item.item_id,))
    conn.execute("DELETE FROM md_supplier_parts WHERE item_id=?", (item.item_id,))
    codes = []
    if item.gtin:
        codes.append((f"gtin:{gtin14(item.gtin)}", item.item_id, item.base_uom))
    for pack in item.packs:
        if pack.gtin:
            codes.append((f"gtin:{gtin14(pack.gtin)}", item.item_id, pack.uom))
    if item.udi_di:
        codes.append((f"udi:{item.udi_di}", item.item_id, None))
    conn.executemany("INSERT OR REPLACE INTO md_item_codes VALUES (?, ?, ?)", codes)
    conn.executemany(
        "INSERT OR REPLACE INTO md_supplier_parts VALUES (?, ?, ?)",
        [(p.supplier_id, p.part_number, item.item_id) for p in item.supplier_parts],
    )


def _link(conn: sqlite3.Connection, kind: str, identity: str, item_ids: set[str]) -> None:
    conn.execute("DELETE FROM md_item_links WHERE kind=? AND record_id=?", (kind, identity))
    conn.executemany(
        "INSERT INTO md_item_links VALUES (?, ?, ?)",
        [(item_id, kind, identity) for item_id in sorted(item_ids)],
    )


def _keep(record: Any, ctx: Context) -> None:
    apply(ctx.db, record)


HANDLERS = dict.fromkeys(KINDS, _keep)


class MasterData:
    """Reads of the replica, inside the caller's transaction (handlers) or a read (HTTP)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def _get(self, kind: str, identity: str) -> Any | None:
        row = self.conn.execute(
            "SELECT body FROM md_records WHERE kind=? AND record_id=?", (kind, identity)
        ).fetchone()
        return _decoders[kind].decode(row[0]) if row else None

    def item(self, item_id: str) -> ItemUpserted | None:
        return self._get("item", item_id)

    def supplier(self, supplier_id: str) -> SupplierUpserted | None:
        return self._get("supplier", supplier_id)

    def contract(self, contract_number: str) -> ContractUpserted | None:
        return self._get("contract", contract_number)

    def location(self, location_id: str) -> LocationUpserted | None:
        return self._get("location", location_id)

    def cost_centre(self, cost_centre_id: str) -> CostCentreUpserted | None:
        return self._get("cost-centre", cost_centre_id)

    def item_by_code(
        self, *, gtin: str | None = None, udi_di: str | None = None
    ) -> tuple[ItemUpserted, str | None] | None:
        """The item (and the unit of measure that GTIN packs) for a GTIN or UDI-DI."""
        code = f"gtin:{gtin14(gtin)}" if gtin else f"udi:{udi_di}"
        row = self.conn.execute(
            "SELECT item_id, uom FROM md_item_codes WHERE code=?", (code,)
        ).fetchone()
        item = self.item(row[0]) if row else None
        return (item, row[1]) if item else None

    def item_by_supplier_part(self, supplier_id: str, part_number: str) -> ItemUpserted | None:
        row = self.conn.execute(
            "SELECT item_id FROM md_supplier_parts WHERE supplier_id=? AND part_number=?",
            (supplier_id, part_number),
        ).fetchone()
        return self.item(row[0]) if row else None

    def _linked(self, item_id: str, kind: str) -> list[Any]:
        rows = self.conn.execute(
            "SELECT record_id FROM md_item_links WHERE item_id=? AND kind=? ORDER BY record_id",
            (item_id, kind),
        ).fetchall()
        return [record for (identity,) in rows if (record := self._get(kind, identity))]

    def contracts_for(self, item_id: str) -> list[Contract]:
        return self._linked(item_id, "contract")

    def substitutions_for(self, item_id: str) -> list[Substitution]:
        return self._linked(item_id, "substitution")

    def price(
        self, item_id: str, supplier_id: str, on: date, quantity: Quantity
    ) -> PriceQuote | None:
        item = self.item(item_id)
        if item is None:
            return None
        return contract_price(item, self.contracts_for(item_id), supplier_id, on, quantity)

    def substitution(self, item_id: str, substitute_item_id: str, on: date) -> Substitution | None:
        return approved_substitution(
            self.substitutions_for(item_id), item_id, substitute_item_id, on
        )

    def par_level(self, location_id: str, item_id: str):
        location = self.location(location_id)
        if location is None:
            return None
        return next((p for p in location.par_levels if p.item_id == item_id), None)
