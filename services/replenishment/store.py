"""The replenishment tables and their SQL: stock per lot, per item, every movement, the usages
seen (so a void reverses exactly what its usage took) and the signals.

Quantities are decimals kept as text (see domain.as_text) and summed in Python, never as binary
floats in SQL."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sinew.common.store import page_of
from sinew.contracts.common import Quantity
from sinew.masterdata import replica

from .domain import ZERO, OpenSignal, as_text, is_discrepancy

MIGRATIONS = [
    replica.MIGRATION,
    """
    -- On-hand per location, item and lot ('' when the stock carries no lot), in the base unit.
    CREATE TABLE stock_positions (
        location_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        lot TEXT NOT NULL,
        on_hand TEXT NOT NULL,
        uom TEXT NOT NULL,
        discrepancy INTEGER NOT NULL,
        discrepancy_since INTEGER,  -- the movement that took it below zero
        last_movement INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (location_id, item_id, lot)
    ) WITHOUT ROWID;
    CREATE INDEX stock_positions_item ON stock_positions(item_id, location_id, lot);
    CREATE INDEX stock_positions_discrepancy ON stock_positions(discrepancy, location_id);
    -- The same over every lot, with the par level it was last held against and whether it
    -- needs replenishing (at or below the reorder point and under par).
    CREATE TABLE stock_levels (
        location_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        on_hand TEXT NOT NULL,
        uom TEXT NOT NULL,
        par_level TEXT,
        reorder_point TEXT,
        needs_replenishment INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (location_id, item_id)
    ) WITHOUT ROWID;
    CREATE INDEX stock_levels_short ON stock_levels(needs_replenishment, location_id);
    CREATE TABLE stock_movements (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        location_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        lot TEXT NOT NULL,
        kind TEXT NOT NULL
            CHECK (kind IN ('receipt', 'usage', 'usage_voided', 'count', 'adjustment')),
        reference TEXT NOT NULL,  -- receipt id, usage id, count id or adjustment id
        reason TEXT,
        change TEXT NOT NULL,
        before TEXT NOT NULL,
        after TEXT NOT NULL,
        uom TEXT NOT NULL,
        source_event_id TEXT NOT NULL,
        occurred_at TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    );
    CREATE INDEX stock_movements_location ON stock_movements(location_id, seq);
    -- Each receipt, count and adjustment moves stock once, whatever event ids it arrives under.
    CREATE TABLE stock_sources (
        source TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        applied_at TEXT NOT NULL
    ) WITHOUT ROWID;
    -- What each usage took, so its void gives back exactly that, once; a void seen before its
    -- usage leaves a row that makes the usage take nothing when it comes.
    CREATE TABLE usages (
        usage_id TEXT PRIMARY KEY,
        location_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        lot TEXT NOT NULL,
        quantity TEXT NOT NULL,
        uom TEXT NOT NULL,
        bill_only INTEGER NOT NULL,
        recorded_event_id TEXT,
        voided_event_id TEXT
    ) WITHOUT ROWID;
    CREATE TABLE replenishment_signals (
        signal_id TEXT PRIMARY KEY,
        location_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
        quantity TEXT NOT NULL,
        on_hand TEXT NOT NULL,
        uom TEXT NOT NULL,
        par_level TEXT NOT NULL,
        reorder_point TEXT NOT NULL,
        raised_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        closed_at TEXT,
        close_reason TEXT,
        receipt_id TEXT,
        raised_by_event_id TEXT NOT NULL
    ) WITHOUT ROWID;
    -- The rule itself, held by the database too: one open signal per location and item.
    CREATE UNIQUE INDEX one_open_signal ON replenishment_signals(location_id, item_id)
        WHERE status = 'open';
    CREATE INDEX replenishment_signals_status ON replenishment_signals(status, raised_at);
    """,
]


def _time(value: datetime) -> str:
    return value.isoformat()


def _lot(key: str) -> str | None:
    return key or None


def _quantity(text: str | None, uom: str) -> Quantity | None:
    return None if text is None else Quantity(Decimal(text), uom)


# -- writes, inside the handler's transaction ---------------------------------------------------


def first_time(conn: sqlite3.Connection, source: str, event_id: str, at: datetime) -> bool:
    """Claim a business document; False when it already moved stock under some event id."""
    cursor = conn.execute(
        "INSERT INTO stock_sources VALUES (?, ?, ?) ON CONFLICT(source) DO NOTHING",
        (source, event_id, _time(at)),
    )
    return cursor.rowcount == 1


@dataclass(frozen=True)
class Movement:
    location_id: str
    item_id: str
    lot: str
    kind: str
    reference: str
    change: Decimal
    uom: str
    source_event_id: str
    occurred_at: datetime
    recorded_at: datetime
    reason: str | None = None


@dataclass(frozen=True)
class Moved:
    before: Decimal
    after: Decimal


class UnitMismatch(Exception):
    """Stock held in one unit, a movement in another, and no item master to convert."""


def held_unit(conn: sqlite3.Connection, location_id: str, item_id: str) -> str | None:
    row = conn.execute(
        "SELECT uom FROM stock_levels WHERE location_id=? AND item_id=?", (location_id, item_id)
    ).fetchone()
    return row["uom"] if row else None


def lots_held(conn: sqlite3.Connection, location_id: str, item_id: str) -> dict[str, Decimal]:
    rows = conn.execute(
        "SELECT lot, on_hand FROM stock_positions WHERE location_id=? AND item_id=?",
        (location_id, item_id),
    ).fetchall()
    return {row["lot"]: Decimal(row["on_hand"]) for row in rows}


def move(conn: sqlite3.Connection, movement: Movement) -> Moved:
    """Change one position by `movement.change` and write the movement to the history."""
    held = conn.execute(
        "SELECT on_hand, uom, discrepancy, discrepancy_since FROM stock_positions"
        " WHERE location_id=? AND item_id=? AND lot=?",
        (movement.location_id, movement.item_id, movement.lot),
    ).fetchone()
    unit = held["uom"] if held else held_unit(conn, movement.location_id, movement.item_id)
    if unit is not None and unit != movement.uom:
        raise UnitMismatch(
            f"{movement.item_id} at {movement.location_id} is held in {unit}, this movement is"
            f" in {movement.uom}"
        )
    before = Decimal(held["on_hand"]) if held else ZERO
    after = before + movement.change
    seq = conn.execute(
        "INSERT INTO stock_movements (location_id, item_id, lot, kind, reference, reason, change,"
        " before, after, uom, source_event_id, occurred_at, recorded_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            movement.location_id,
            movement.item_id,
            movement.lot,
            movement.kind,
            movement.reference,
            movement.reason,
            as_text(movement.change),
            as_text(before),
            as_text(after),
            movement.uom,
            movement.source_event_id,
            _time(movement.occurred_at),
            _time(movement.recorded_at),
        ),
    ).lastrowid
    negative = is_discrepancy(after)
    since = None
    if negative:
        since = held["discrepancy_since"] if held and held["discrepancy"] else seq
    conn.execute(
        "INSERT OR REPLACE INTO stock_positions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            movement.location_id,
            movement.item_id,
            movement.lot,
            as_text(after),
            movement.uom,
            int(negative),
            since,
            seq,
            _time(movement.recorded_at),
        ),
    )
    return Moved(before, after)


@dataclass(frozen=True)
class Level:
    on_hand: Decimal
    uom: str


def refresh_level(
    conn: sqlite3.Connection,
    location_id: str,
    item_id: str,
    par_level: Decimal | None,
    reorder_point: Decimal | None,
    short: bool,
    at: datetime,
) -> None:
    level = level_of(conn, location_id, item_id)
    assert level is not None
    conn.execute(
        "INSERT OR REPLACE INTO stock_levels VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            location_id,
            item_id,
            as_text(level.on_hand),
            level.uom,
            None if par_level is None else as_text(par_level),
            None if reorder_point is None else as_text(reorder_point),
            int(short),
            _time(at),
        ),
    )


def level_of(conn: sqlite3.Connection, location_id: str, item_id: str) -> Level | None:
    """The item's stock at the location over every lot; None when Sinew never saw any."""
    rows = conn.execute(
        "SELECT on_hand, uom FROM stock_positions WHERE location_id=? AND item_id=?",
        (location_id, item_id),
    ).fetchall()
    if not rows:
        return None
    return Level(sum((Decimal(r["on_hand"]) for r in rows), ZERO), rows[0]["uom"])


def stocked_items(conn: sqlite3.Connection, location_id: str) -> set[str]:
    rows = conn.execute(
        "SELECT item_id FROM stock_levels WHERE location_id=?", (location_id,)
    ).fetchall()
    return {row["item_id"] for row in rows}


@dataclass(frozen=True)
class Usage:
    usage_id: str
    location_id: str
    item_id: str
    lot: str
    quantity: Decimal
    uom: str
    bill_only: bool
    recorded_event_id: str | None
    voided_event_id: str | None


def usage(conn: sqlite3.Connection, usage_id: str) -> Usage | None:
    row = conn.execute("SELECT * FROM usages WHERE usage_id=?", (usage_id,)).fetchone()
    if row is None:
        return None
    return Usage(
        row["usage_id"],
        row["location_id"],
        row["item_id"],
        row["lot"],
        Decimal(row["quantity"]),
        row["uom"],
        bool(row["bill_only"]),
        row["recorded_event_id"],
        row["voided_event_id"],
    )


def keep_usage(conn: sqlite3.Connection, usage: Usage) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO usages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            usage.usage_id,
            usage.location_id,
            usage.item_id,
            usage.lot,
            as_text(usage.quantity),
            usage.uom,
            int(usage.bill_only),
            usage.recorded_event_id,
            usage.voided_event_id,
        ),
    )


def open_signal(conn: sqlite3.Connection, location_id: str, item_id: str) -> OpenSignal | None:
    row = conn.execute(
        "SELECT signal_id, quantity FROM replenishment_signals"
        " WHERE location_id=? AND item_id=? AND status='open'",
        (location_id, item_id),
    ).fetchone()
    return OpenSignal(row["signal_id"], Decimal(row["quantity"])) if row else None


def signals_so_far(conn: sqlite3.Connection, location_id: str, item_id: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM replenishment_signals WHERE location_id=? AND item_id=?",
        (location_id, item_id),
    ).fetchone()[0]


def raise_signal(
    conn: sqlite3.Connection,
    signal_id: str,
    location_id: str,
    item_id: str,
    quantity: Decimal,
    level: Level,
    par_level: Decimal,
    reorder_point: Decimal,
    at: datetime,
    event_id: str,
) -> None:
    conn.execute(
        "INSERT INTO replenishment_signals VALUES"
        " (?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?)",
        (
            signal_id,
            location_id,
            item_id,
            as_text(quantity),
            as_text(level.on_hand),
            level.uom,
            as_text(par_level),
            as_text(reorder_point),
            _time(at),
            _time(at),
            event_id,
        ),
    )


def update_signal(
    conn: sqlite3.Connection,
    signal_id: str,
    quantity: Decimal,
    on_hand: Decimal,
    par_level: Decimal,
    reorder_point: Decimal,
    at: datetime,
) -> None:
    conn.execute(
        "UPDATE replenishment_signals SET quantity=?, on_hand=?, par_level=?, reorder_point=?,"
        " updated_at=? WHERE signal_id=?",
        (
            as_text(quantity),
            as_text(on_hand),
            as_text(par_level),
            as_text(reorder_point),
            _time(at),
            signal_id,
        ),
    )


def close_signal(
    conn: sqlite3.Connection,
    signal_id: str,
    on_hand: Decimal,
    reason: str,
    receipt_id: str | None,
    at: datetime,
) -> None:
    conn.execute(
        "UPDATE replenishment_signals SET status='closed', on_hand=?, close_reason=?,"
        " receipt_id=?, closed_at=?, updated_at=? WHERE signal_id=?",
        (as_text(on_hand), reason, receipt_id, _time(at), _time(at), signal_id),
    )


# -- reads, for the HTTP and NATS APIs ----------------------------------------------------------


def _where(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    clauses = [f"{column}=?" for column, value in filters.items() if value is not None]
    params = [value for value in filters.values() if value is not None]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _position(row: sqlite3.Row) -> dict:
    return {
        "location_id": row["location_id"],
        "item_id": row["item_id"],
        "lot": _lot(row["lot"]),
        "on_hand": _quantity(row["on_hand"], row["uom"]),
        "discrepancy": bool(row["discrepancy"]),
        "last_movement": row["last_movement"],
        "updated_at": row["updated_at"],
    }


def list_positions(
    conn: sqlite3.Connection,
    *,
    location_id: str | None,
    item_id: str | None,
    lot: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict], int]:
    rows, total = page_of(
        conn,
        select="*",
        source="stock_positions",
        where={"location_id=?": location_id, "item_id=?": item_id, "lot=?": lot},
        order_by="location_id, item_id, lot",
        limit=limit,
        offset=offset,
    )
    return [_position(row) for row in rows], total


def _signal(row: sqlite3.Row) -> dict:
    uom = row["uom"]
    return {
        "signal_id": row["signal_id"],
        "location_id": row["location_id"],
        "item_id": row["item_id"],
        "status": row["status"],
        "quantity": _quantity(row["quantity"], uom),
        "on_hand": _quantity(row["on_hand"], uom),
        "par_level": _quantity(row["par_level"], uom),
        "reorder_point": _quantity(row["reorder_point"], uom),
        "raised_at": row["raised_at"],
        "updated_at": row["updated_at"],
        "closed_at": row["closed_at"],
        "close_reason": row["close_reason"],
        "receipt_id": row["receipt_id"],
    }


def location_known(conn: sqlite3.Connection, location_id: str) -> bool:
    return bool(
        conn.execute(
            "SELECT 1 FROM md_records WHERE kind='location' AND record_id=?"
            " UNION ALL SELECT 1 FROM stock_levels WHERE location_id=? LIMIT 1",
            (location_id, location_id),
        ).fetchone()
    )


def location_positions(
    conn: sqlite3.Connection, location_id: str, par_levels: list, uom_of
) -> list[dict]:
    """Every item stocked at the location or given a par level there, with its lots, its par
    level and its open signal. An item with a par level but no stock Sinew has seen shows an
    unknown on-hand, not zero: its first receipt or count says what is there."""
    levels = {
        row["item_id"]: row
        for row in conn.execute(
            "SELECT * FROM stock_levels WHERE location_id=?", (location_id,)
        ).fetchall()
    }
    lots: dict[str, list[dict]] = {}
    for row in conn.execute(
        "SELECT * FROM stock_positions WHERE location_id=? ORDER BY item_id, lot", (location_id,)
    ).fetchall():
        lots.setdefault(row["item_id"], []).append(
            {
                "lot": _lot(row["lot"]),
                "on_hand": _quantity(row["on_hand"], row["uom"]),
                "discrepancy": bool(row["discrepancy"]),
            }
        )
    signals = {
        row["item_id"]: row
        for row in conn.execute(
            "SELECT * FROM replenishment_signals WHERE location_id=? AND status='open'",
            (location_id,),
        ).fetchall()
    }
    pars = {par.item_id: par for par in par_levels}
    answer = []
    for item_id in sorted(set(levels) | set(pars)):
        level, par = levels.get(item_id), pars.get(item_id)
        uom = level["uom"] if level else uom_of(item_id)
        on_hand = Decimal(level["on_hand"]) if level else None
        signal = signals.get(item_id)
        answer.append(
            {
                "item_id": item_id,
                "on_hand": None if on_hand is None else Quantity(on_hand, uom),
                "par_level": Quantity(par.par_level, uom) if par else None,
                "reorder_point": Quantity(par.reorder_point, uom) if par else None,
                "needs_replenishment": bool(level and level["needs_replenishment"]),
                "discrepancy": any(lot["discrepancy"] for lot in lots.get(item_id, []))
                or (on_hand is not None and is_discrepancy(on_hand)),
                "lots": lots.get(item_id, []),
                "open_signal": None
                if signal is None
                else {
                    "signal_id": signal["signal_id"],
                    "quantity": _quantity(signal["quantity"], signal["uom"]),
                },
            }
        )
    return answer


def below_reorder_point(
    conn: sqlite3.Connection, *, location_id: str | None, limit: int, offset: int
) -> tuple[list[dict], int]:
    rows, total = page_of(
        conn,
        select="l.*, s.signal_id, s.quantity AS signal_quantity",
        # At most one open signal per location and item (one_open_signal), so the join keeps
        # the count of stock levels.
        source="stock_levels l LEFT JOIN replenishment_signals s"
        " ON s.location_id = l.location_id AND s.item_id = l.item_id AND s.status = 'open'",
        where={"l.needs_replenishment=?": 1, "l.location_id=?": location_id},
        order_by="l.location_id, l.item_id",
        limit=limit,
        offset=offset,
    )
    answer = []
    for row in rows:
        uom = row["uom"]
        answer.append(
            {
                "location_id": row["location_id"],
                "item_id": row["item_id"],
                "on_hand": _quantity(row["on_hand"], uom),
                "par_level": _quantity(row["par_level"], uom),
                "reorder_point": _quantity(row["reorder_point"], uom),
                "shortfall": Quantity(Decimal(row["par_level"]) - Decimal(row["on_hand"]), uom),
                "signal_id": row["signal_id"],
            }
        )
    return answer, total


def list_signals(
    conn: sqlite3.Connection,
    *,
    status: str | None,
    location_id: str | None,
    item_id: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict], int]:
    rows, total = page_of(
        conn,
        select="*",
        source="replenishment_signals",
        where={"status=?": status, "location_id=?": location_id, "item_id=?": item_id},
        order_by="raised_at, signal_id",
        limit=limit,
        offset=offset,
    )
    return [_signal(row) for row in rows], total


def signal(conn: sqlite3.Connection, signal_id: str) -> dict | None:
    row = conn.execute(
        "SELECT * FROM replenishment_signals WHERE signal_id=?", (signal_id,)
    ).fetchone()
    return _signal(row) if row else None


def _movement(row: sqlite3.Row) -> dict:
    uom = row["uom"]
    return {
        "seq": row["seq"],
        "location_id": row["location_id"],
        "item_id": row["item_id"],
        "lot": _lot(row["lot"]),
        "kind": row["kind"],
        "reference": row["reference"],
        "reason": row["reason"],
        "change": _quantity(row["change"], uom),
        "before": _quantity(row["before"], uom),
        "after": _quantity(row["after"], uom),
        "source_event_id": row["source_event_id"],
        "occurred_at": row["occurred_at"],
        "recorded_at": row["recorded_at"],
    }


def history(
    conn: sqlite3.Connection,
    location_id: str,
    *,
    item_id: str | None,
    lot: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict], int]:
    rows, total = page_of(
        conn,
        select="*",
        source="stock_movements",
        where={"location_id=?": location_id, "item_id=?": item_id, "lot=?": lot},
        order_by="seq",
        limit=limit,
        offset=offset,
    )
    return [_movement(row) for row in rows], total


def discrepancies(
    conn: sqlite3.Connection, *, location_id: str | None, limit: int, offset: int
) -> tuple[list[dict], int]:
    rows, total = page_of(
        conn,
        select="p.*, m.kind AS since_kind, m.reference AS since_reference,"
        " m.source_event_id AS since_event_id, m.recorded_at AS since_at",
        source="stock_positions p LEFT JOIN stock_movements m ON m.seq = p.discrepancy_since",
        where={"p.discrepancy=?": 1, "p.location_id=?": location_id},
        order_by="p.location_id, p.item_id, p.lot",
        limit=limit,
        offset=offset,
    )
    answer = []
    for row in rows:
        found = _position(row)
        found["since"] = {
            "movement": row["discrepancy_since"],
            "kind": row["since_kind"],
            "reference": row["since_reference"],
            "source_event_id": row["since_event_id"],
            "recorded_at": row["since_at"],
        }
        answer.append(found)
    return answer, total


def lot_positions(conn: sqlite3.Connection, query: dict[str, Any]) -> list[dict]:
    """On-hand per location for a lot (a recall), an item, or both."""
    where, params = _where(
        {
            "item_id": query.get("item_id"),
            "lot": query.get("lot"),
            "location_id": query.get("location_id"),
        }
    )
    rows = conn.execute(
        f"SELECT * FROM stock_positions{where} ORDER BY location_id, item_id, lot LIMIT 1000",
        params,
    ).fetchall()
    return [_position(row) for row in rows]
