"""Receiving's tables and every SQL statement that reads or writes them.

Quantities are decimals kept as text, summed in Python, so nothing passes through a float.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import msgspec

from sinew.common.store import page_of
from sinew.contracts.common import Quantity
from sinew.contracts.procurement import PurchaseOrder, PurchaseOrderAcknowledged
from sinew.contracts.receiving import AdvanceShipNotice
from sinew.masterdata import replica

from .domain import (
    Evaluation,
    ItemMaster,
    Order,
    OrderLine,
    PendingReceipt,
    Problem,
    ReceiptHeader,
    ordered_base,
    plain,
)

MIGRATIONS = [
    replica.MIGRATION,
    """
    CREATE TABLE purchase_orders (
        po_number TEXT PRIMARY KEY,
        revision INTEGER NOT NULL,
        supplier_id TEXT NOT NULL,
        ship_to_location_id TEXT,
        order_date TEXT,
        bill_only INTEGER NOT NULL DEFAULT 0,
        -- open until procurement cancels or closes it; neither is ever undone
        status TEXT NOT NULL,
        status_reason TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE po_lines (
        po_number TEXT NOT NULL,
        line_number INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        quantity TEXT NOT NULL,
        uom TEXT NOT NULL,
        supplier_part TEXT,
        PRIMARY KEY (po_number, line_number)
    ) WITHOUT ROWID;
    CREATE INDEX po_lines_item ON po_lines(item_id);
    CREATE TABLE po_line_acks (
        po_number TEXT NOT NULL,
        line_number INTEGER NOT NULL,
        status TEXT NOT NULL,
        quantity TEXT,
        expected_ship_date TEXT,
        substitute_item_id TEXT,
        substitution_approved INTEGER,
        acknowledged_at TEXT NOT NULL,
        PRIMARY KEY (po_number, line_number)
    ) WITHOUT ROWID;
    CREATE TABLE asns (
        asn_number TEXT PRIMARY KEY,
        supplier_id TEXT NOT NULL,
        ship_to_location_id TEXT,
        shipped_at TEXT NOT NULL,
        expected_at TEXT,
        source_format TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        received_at TEXT,
        body BLOB NOT NULL
    );
    CREATE TABLE asn_lines (
        asn_number TEXT NOT NULL,
        ordinal INTEGER NOT NULL,
        po_number TEXT NOT NULL,
        po_line_number INTEGER,
        item_id TEXT,
        supplier_part TEXT,
        gtin TEXT,
        lot TEXT,
        expiry TEXT,
        quantity TEXT NOT NULL,
        uom TEXT NOT NULL,
        PRIMARY KEY (asn_number, ordinal)
    ) WITHOUT ROWID;
    CREATE INDEX asn_lines_po ON asn_lines(po_number);
    CREATE INDEX asn_lines_lot ON asn_lines(lot);
    CREATE TABLE asn_serials (
        serial TEXT NOT NULL,
        asn_number TEXT NOT NULL,
        ordinal INTEGER NOT NULL,
        PRIMARY KEY (serial, asn_number, ordinal)
    ) WITHOUT ROWID;
    CREATE TABLE receipts (
        receipt_id TEXT PRIMARY KEY,
        po_number TEXT NOT NULL,
        supplier_id TEXT NOT NULL,
        location_id TEXT NOT NULL,
        source TEXT NOT NULL,
        asn_number TEXT,
        scan_id TEXT,
        received_by TEXT NOT NULL,
        received_at TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    );
    CREATE INDEX receipts_po ON receipts(po_number);
    CREATE INDEX receipts_location ON receipts(location_id);
    CREATE TABLE receipt_lines (
        receipt_id TEXT NOT NULL REFERENCES receipts(receipt_id),
        ordinal INTEGER NOT NULL,
        po_number TEXT NOT NULL,
        po_line_number INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        quantity TEXT NOT NULL,
        uom TEXT NOT NULL,
        base_quantity TEXT NOT NULL,
        counted TEXT NOT NULL,
        lot TEXT,
        serial TEXT,
        expiry TEXT,
        gtin TEXT,
        PRIMARY KEY (receipt_id, ordinal)
    ) WITHOUT ROWID;
    CREATE INDEX receipt_lines_po ON receipt_lines(po_number, po_line_number);
    CREATE INDEX receipt_lines_item ON receipt_lines(item_id, serial);
    CREATE TABLE receipt_exceptions (
        exception_id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        status TEXT NOT NULL,
        explanation TEXT NOT NULL,
        po_number TEXT,
        po_line_number INTEGER,
        item_id TEXT,
        quantity TEXT,
        uom TEXT,
        lot TEXT,
        serial TEXT,
        expiry TEXT,
        receipt_id TEXT,
        asn_number TEXT,
        scan_id TEXT,
        location_id TEXT,
        raised_at TEXT NOT NULL,
        waiting_for TEXT,
        held BLOB NOT NULL,
        resolution TEXT,
        resolved_by TEXT,
        reason TEXT,
        resolved_at TEXT,
        resolution_receipt_id TEXT
    );
    CREATE INDEX receipt_exceptions_queue ON receipt_exceptions(status, type);
    CREATE INDEX receipt_exceptions_waiting ON receipt_exceptions(waiting_for)
        WHERE status = 'open';
    -- A scan or an HTTP receipt sent twice under its own id (not the event id the inbox sees)
    -- is answered from here instead of being received twice.
    CREATE TABLE arrivals_seen (
        key TEXT PRIMARY KEY,
        answer BLOB NOT NULL
    ) WITHOUT ROWID
    """,
]

_held_decoder = msgspec.json.Decoder(PendingReceipt)
_asn_decoder = msgspec.json.Decoder(AdvanceShipNotice)
_encoder = msgspec.json.Encoder(decimal_format="string")

TERMINAL = ("cancelled", "closed")


def _iso(value: date | datetime | None) -> str | None:
    # Times in UTC, so that sorting the text sorts the times.
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value.isoformat() if value is not None else None


# -- purchase orders ------------------------------------------------------------------------------


def keep_order(conn: sqlite3.Connection, po: PurchaseOrder, at: datetime) -> bool:
    """Keep the order at its highest revision. True when this revision is new."""
    held = conn.execute(
        "SELECT revision, status FROM purchase_orders WHERE po_number=?", (po.po_number,)
    ).fetchone()
    if held is not None and held["revision"] >= po.revision and _has_lines(conn, po.po_number):
        return False
    status = held["status"] if held is not None else "open"
    conn.execute(
        "INSERT OR REPLACE INTO purchase_orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            po.po_number,
            max(po.revision, held["revision"] if held else 0),
            po.supplier_id,
            po.ship_to_location_id,
            po.order_date.isoformat(),
            int(po.bill_only),
            status,
            _status_reason(conn, po.po_number),
            _iso(at),
        ),
    )
    conn.execute("DELETE FROM po_lines WHERE po_number=?", (po.po_number,))
    conn.executemany(
        "INSERT INTO po_lines VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                po.po_number,
                line.line_number,
                line.item_id,
                str(line.quantity.value),
                line.quantity.uom,
                line.supplier_part,
            )
            for line in po.lines
        ],
    )
    return True


def _has_lines(conn: sqlite3.Connection, po_number: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM po_lines WHERE po_number=?", (po_number,)).fetchone()
        is not None
    )


def _status_reason(conn: sqlite3.Connection, po_number: str) -> str | None:
    row = conn.execute(
        "SELECT status_reason FROM purchase_orders WHERE po_number=?", (po_number,)
    ).fetchone()
    return row[0] if row else None


def end_order(
    conn: sqlite3.Connection,
    po_number: str,
    supplier_id: str,
    status: str,
    reason: str,
    revision: int,
    at: datetime,
) -> bool:
    """Cancel or close an order, even one not seen yet: a receipt against it must still be
    stopped. True when its status changed."""
    held = conn.execute(
        "SELECT status FROM purchase_orders WHERE po_number=?", (po_number,)
    ).fetchone()
    if held is None:
        conn.execute(
            "INSERT INTO purchase_orders (po_number, revision, supplier_id, status, status_reason,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (po_number, revision, supplier_id, status, reason, _iso(at)),
        )
        return True
    if held["status"] in TERMINAL:
        return False
    conn.execute(
        "UPDATE purchase_orders SET status=?, status_reason=?, revision=max(revision, ?),"
        " updated_at=? WHERE po_number=?",
        (status, reason, revision, _iso(at), po_number),
    )
    return True


def keep_acknowledgement(conn: sqlite3.Connection, ack: PurchaseOrderAcknowledged) -> None:
    for line in ack.lines:
        held = conn.execute(
            "SELECT acknowledged_at FROM po_line_acks WHERE po_number=? AND line_number=?",
            (ack.po_number, line.line_number),
        ).fetchone()
        if held is not None and held[0] > _iso(ack.acknowledged_at):
            continue
        conn.execute(
            "INSERT OR REPLACE INTO po_line_acks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ack.po_number,
                line.line_number,
                line.status,
                str(line.quantity.value) + " " + line.quantity.uom if line.quantity else None,
                _iso(line.expected_ship_date),
                line.substitute_item_id,
                None if line.substitution_approved is None else int(line.substitution_approved),
                _iso(ack.acknowledged_at),
            ),
        )


def order(conn: sqlite3.Connection, po_number: str) -> Order | None:
    row = conn.execute("SELECT * FROM purchase_orders WHERE po_number=?", (po_number,)).fetchone()
    if row is None:
        return None
    lines = conn.execute(
        "SELECT l.*, a.substitute_item_id, a.substitution_approved FROM po_lines l"
        " LEFT JOIN po_line_acks a USING (po_number, line_number)"
        " WHERE l.po_number=? ORDER BY l.line_number",
        (po_number,),
    ).fetchall()
    if not lines and row["status"] == "open":
        return None
    return Order(
        po_number=po_number,
        revision=row["revision"],
        supplier_id=row["supplier_id"],
        ship_to_location_id=row["ship_to_location_id"],
        status=row["status"],
        lines=tuple(
            OrderLine(
                line_number=line["line_number"],
                item_id=line["item_id"],
                quantity=Quantity(Decimal(line["quantity"]), line["uom"]),
                substitute_item_id=line["substitute_item_id"]
                if line["substitution_approved"]
                else None,
            )
            for line in lines
        ),
    )


def open_lines_for(conn: sqlite3.Connection, item_ids: list[str]) -> list[tuple[str, int, str]]:
    """(PO, line, ship-to) of open orders with a line for one of these items, oldest first."""
    marks = ",".join("?" * len(item_ids))
    rows = conn.execute(
        "SELECT l.po_number, l.line_number, p.ship_to_location_id FROM po_lines l"
        " JOIN purchase_orders p USING (po_number)"
        f" WHERE l.item_id IN ({marks}) AND p.status='open' AND p.bill_only=0"
        " ORDER BY p.order_date, l.po_number, l.line_number",
        item_ids,
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


class History:
    """What was already received, as the receipt rules ask for it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def received(self, po_number: str, line_number: int) -> Decimal:
        rows = self.conn.execute(
            "SELECT counted FROM receipt_lines WHERE po_number=? AND po_line_number=?",
            (po_number, line_number),
        ).fetchall()
        return sum((Decimal(r[0]) for r in rows), Decimal(0))

    def serial_received(self, item_id: str, serial: str) -> bool:
        return (
            self.conn.execute(
                "SELECT 1 FROM receipt_lines WHERE item_id=? AND serial=?", (item_id, serial)
            ).fetchone()
            is not None
        )


# -- advance ship notices -------------------------------------------------------------------------


def keep_asn(
    conn: sqlite3.Connection, asn: AdvanceShipNotice, source_format: str, at: datetime
) -> None:
    """A supplier sending an ASN again under the same number replaces it (856 purpose 'replace')."""
    conn.execute("DELETE FROM asn_lines WHERE asn_number=?", (asn.asn_number,))
    conn.execute("DELETE FROM asn_serials WHERE asn_number=?", (asn.asn_number,))
    conn.execute(
        "INSERT OR REPLACE INTO asns VALUES (?, ?, ?, ?, ?, ?, ?, "
        "(SELECT received_at FROM asns WHERE asn_number=?), ?)",
        (
            asn.asn_number,
            asn.supplier_id,
            asn.ship_to_location_id,
            _iso(asn.shipped_at),
            _iso(asn.expected_at),
            source_format,
            _iso(at),
            asn.asn_number,
            _encoder.encode(asn),
        ),
    )
    ordinal = 0
    for shipped_order in asn.orders:
        for shipped in shipped_order.items:
            for lot in shipped.lots or (None,):
                ordinal += 1
                quantity = lot.quantity if lot is not None else shipped.quantity
                conn.execute(
                    "INSERT INTO asn_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        asn.asn_number,
                        ordinal,
                        shipped_order.po_number,
                        shipped.po_line_number,
                        shipped.item_id,
                        shipped.supplier_part,
                        shipped.gtin,
                        lot.lot if lot else None,
                        _iso(lot.expiry) if lot else None,
                        str(quantity.value),
                        quantity.uom,
                    ),
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO asn_serials VALUES (?, ?, ?)",
                    [(serial, asn.asn_number, ordinal) for serial in (lot.serials if lot else ())],
                )


def asn(conn: sqlite3.Connection, asn_number: str) -> tuple[AdvanceShipNotice, sqlite3.Row] | None:
    row = conn.execute("SELECT * FROM asns WHERE asn_number=?", (asn_number,)).fetchone()
    return (_asn_decoder.decode(row["body"]), row) if row else None


def mark_asn_received(conn: sqlite3.Connection, asn_number: str, at: datetime) -> None:
    conn.execute("UPDATE asns SET received_at=? WHERE asn_number=?", (_iso(at), asn_number))


def asn_lines(
    conn: sqlite3.Connection,
    *,
    asn_number: str | None = None,
    serial: str | None = None,
    lot: str | None = None,
) -> list[sqlite3.Row]:
    """ASN lines with their supplier, newest ASN first: of one ASN, or naming a serial or lot."""
    select = "SELECT l.*, a.supplier_id FROM asn_lines l JOIN asns a USING (asn_number)"
    if asn_number is not None:
        where, params = " WHERE l.asn_number=?", (asn_number,)
    elif serial is not None:
        where = (
            " JOIN asn_serials s ON s.asn_number=l.asn_number AND s.ordinal=l.ordinal"
            " WHERE s.serial=?"
        )
        params = (serial,)
    else:
        where, params = " WHERE l.lot=?", (lot,)
    return conn.execute(
        select + where + " ORDER BY a.shipped_at DESC, l.asn_number, l.ordinal", params
    ).fetchall()


# -- receipts and exceptions ----------------------------------------------------------------------


def free_receipt_id(conn: sqlite3.Connection, wanted: str) -> str:
    """The receipt id, or for a later receipt of lines held from it, the id with a suffix."""
    candidate, n = wanted, 1
    while conn.execute("SELECT 1 FROM receipts WHERE receipt_id=?", (candidate,)).fetchone():
        n += 1
        candidate = f"{wanted}-{n}"
    return candidate


def insert_receipt(
    conn: sqlite3.Connection,
    receipt_id: str,
    po_number: str,
    header: ReceiptHeader,
    evaluation: Evaluation,
    at: datetime,
) -> None:
    conn.execute(
        "INSERT INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            receipt_id,
            po_number,
            evaluation.supplier_id,
            evaluation.location_id,
            header.source,
            header.asn_number,
            header.scan_id,
            header.received_by,
            _iso(header.received_at),
            _iso(at),
        ),
    )
    conn.executemany(
        "INSERT INTO receipt_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                receipt_id,
                ordinal,
                po_number,
                line.po_line_number,
                line.item_id,
                str(line.quantity.value),
                line.quantity.uom,
                str(line.base_quantity),
                str(line.counted),
                line.lot,
                line.serial,
                _iso(line.expiry),
                line.gtin,
            )
            for ordinal, line in enumerate(evaluation.received, start=1)
        ],
    )


def insert_exception(
    conn: sqlite3.Connection,
    exception_id: str,
    problem: Problem,
    location_id: str | None,
    at: datetime,
) -> None:
    header = problem.held.header
    conn.execute(
        "INSERT INTO receipt_exceptions (exception_id, type, status, explanation, po_number,"
        " po_line_number, item_id, quantity, uom, lot, serial, expiry, receipt_id, asn_number,"
        " scan_id, location_id, raised_at, waiting_for, held)"
        " VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            exception_id,
            problem.type,
            problem.explanation,
            header.po_number,
            problem.po_line_number,
            problem.item_id,
            str(problem.quantity.value) if problem.quantity else None,
            problem.quantity.uom if problem.quantity else None,
            problem.lot,
            problem.serial,
            _iso(problem.expiry),
            header.receipt_id,
            header.asn_number,
            header.scan_id,
            location_id,
            _iso(at),
            problem.waiting_for,
            _encoder.encode(problem.held),
        ),
    )


def exception_row(conn: sqlite3.Connection, exception_id: str) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT * FROM receipt_exceptions WHERE exception_id=?", (exception_id,)
    ).fetchone()


def held(row: sqlite3.Row) -> PendingReceipt:
    return _held_decoder.decode(row["held"])


def open_waiting(conn: sqlite3.Connection, keys: list[str]) -> list[sqlite3.Row]:
    if not keys:
        return []
    marks = ",".join("?" * len(keys))
    return conn.execute(
        "SELECT * FROM receipt_exceptions WHERE status='open'"
        f" AND waiting_for IN ({marks}) ORDER BY rowid",
        keys,
    ).fetchall()


def resolve_exception(
    conn: sqlite3.Connection,
    exception_id: str,
    resolution: str,
    resolved_by: str,
    reason: str,
    receipt_id: str | None,
    at: datetime,
) -> None:
    conn.execute(
        "UPDATE receipt_exceptions SET status='resolved', resolution=?, resolved_by=?, reason=?,"
        " resolved_at=?, resolution_receipt_id=? WHERE exception_id=?",
        (resolution, resolved_by, reason, _iso(at), receipt_id, exception_id),
    )


def seen(conn: sqlite3.Connection, key: str) -> Any | None:
    row = conn.execute("SELECT answer FROM arrivals_seen WHERE key=?", (key,)).fetchone()
    return msgspec.json.decode(row[0]) if row else None


def remember(conn: sqlite3.Connection, key: str, answer: Any) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO arrivals_seen VALUES (?, ?)", (key, _encoder.encode(answer))
    )


# -- reads for the HTTP API -----------------------------------------------------------------------


def _quantity(value: str | None, uom: str | None) -> dict | None:
    return {"value": plain(Decimal(value)), "uom": uom} if value is not None else None


def receipt_view(conn: sqlite3.Connection, receipt_id: str) -> dict | None:
    row = conn.execute("SELECT * FROM receipts WHERE receipt_id=?", (receipt_id,)).fetchone()
    if row is None:
        return None
    lines = conn.execute(
        "SELECT * FROM receipt_lines WHERE receipt_id=? ORDER BY ordinal", (receipt_id,)
    ).fetchall()
    return {
        "receipt_id": row["receipt_id"],
        "po_number": row["po_number"],
        "supplier_id": row["supplier_id"],
        "location_id": row["location_id"],
        "source": row["source"],
        "asn_number": row["asn_number"],
        "scan_id": row["scan_id"],
        "received_by": row["received_by"],
        "received_at": row["received_at"],
        "lines": [
            {
                "po_line_number": line["po_line_number"],
                "item_id": line["item_id"],
                "quantity": _quantity(line["quantity"], line["uom"]),
                "base_quantity": plain(Decimal(line["base_quantity"])),
                "lot": line["lot"],
                "serial": line["serial"],
                "expiry": line["expiry"],
                "gtin": line["gtin"],
            }
            for line in lines
        ],
    }


def list_receipts(
    conn: sqlite3.Connection,
    *,
    po_number: str | None,
    item_id: str | None,
    location_id: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict], int]:
    ids, total = page_of(
        conn,
        select="receipt_id",
        source="receipts",
        where={
            "po_number=?": po_number,
            "location_id=?": location_id,
            "receipt_id IN (SELECT receipt_id FROM receipt_lines WHERE item_id=?)": item_id,
        },
        order_by="received_at, rowid",
        limit=limit,
        offset=offset,
    )
    return [receipt_view(conn, r[0]) for r in ids], total


def exception_view(row: sqlite3.Row) -> dict:
    return {
        "exception_id": row["exception_id"],
        "type": row["type"],
        "status": row["status"],
        "explanation": row["explanation"],
        "po_number": row["po_number"],
        "po_line_number": row["po_line_number"],
        "item_id": row["item_id"],
        "quantity": _quantity(row["quantity"], row["uom"]),
        "lot": row["lot"],
        "serial": row["serial"],
        "expiry": row["expiry"],
        "receipt_id": row["receipt_id"],
        "asn_number": row["asn_number"],
        "scan_id": row["scan_id"],
        "location_id": row["location_id"],
        "raised_at": row["raised_at"],
        "waiting_for": row["waiting_for"],
        "resolution": None
        if row["status"] == "open"
        else {
            "resolution": row["resolution"],
            "resolved_by": row["resolved_by"],
            "reason": row["reason"],
            "resolved_at": row["resolved_at"],
            "receipt_id": row["resolution_receipt_id"],
        },
    }


def list_exceptions(
    conn: sqlite3.Connection,
    *,
    type_: str | None,
    status: str | None,
    po_number: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict], int]:
    rows, total = page_of(
        conn,
        select="*",
        source="receipt_exceptions",
        where={"type=?": type_, "status=?": status, "po_number=?": po_number},
        order_by="rowid",
        limit=limit,
        offset=offset,
    )
    return [exception_view(r) for r in rows], total


def asn_view(conn: sqlite3.Connection, row: sqlite3.Row) -> dict:
    body = msgspec.json.decode(row["body"])
    return {
        **body,
        "source_format": row["source_format"],
        "recorded_at": row["recorded_at"],
        "received_at": row["received_at"],
    }


def list_asns(
    conn: sqlite3.Connection,
    *,
    po_number: str | None,
    supplier_id: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict], int]:
    rows, total = page_of(
        conn,
        select="*",
        source="asns",
        where={
            "supplier_id=?": supplier_id,
            "asn_number IN (SELECT asn_number FROM asn_lines WHERE po_number=?)": po_number,
        },
        order_by="shipped_at, rowid",
        limit=limit,
        offset=offset,
    )
    return [asn_view(conn, r) for r in rows], total


def receiving_status(conn: sqlite3.Connection, po_number: str, items: ItemMaster) -> dict | None:
    """Ordered against received, per line, in base units of the item ordered."""
    row = conn.execute("SELECT * FROM purchase_orders WHERE po_number=?", (po_number,)).fetchone()
    if row is None:
        return None
    history = History(conn)
    lines = conn.execute(
        "SELECT l.*, a.status AS ack_status, a.expected_ship_date, a.substitute_item_id"
        " FROM po_lines l LEFT JOIN po_line_acks a USING (po_number, line_number)"
        " WHERE l.po_number=? ORDER BY l.line_number",
        (po_number,),
    ).fetchall()
    views = []
    for line in lines:
        order_line = OrderLine(
            line["line_number"], line["item_id"], Quantity(Decimal(line["quantity"]), line["uom"])
        )
        ordered = ordered_base(order_line, items)
        received = history.received(po_number, line["line_number"])
        item = items.item(line["item_id"])
        open_exceptions = conn.execute(
            "SELECT type, count(*) FROM receipt_exceptions WHERE status='open' AND po_number=?"
            " AND po_line_number=? GROUP BY type ORDER BY type",
            (po_number, line["line_number"]),
        ).fetchall()
        views.append(
            {
                "line_number": line["line_number"],
                "item_id": line["item_id"],
                "ordered": _quantity(line["quantity"], line["uom"]),
                "base_uom": item.base_uom if item else None,
                "ordered_base": plain(ordered) if ordered is not None else None,
                "received_base": plain(received),
                "remaining_base": plain(max(ordered - received, Decimal(0)))
                if ordered is not None
                else None,
                "state": _line_state(ordered, received),
                "acknowledgement": {
                    "status": line["ack_status"],
                    "expected_ship_date": line["expected_ship_date"],
                    "substitute_item_id": line["substitute_item_id"],
                }
                if line["ack_status"]
                else None,
                "open_exceptions": {t: n for t, n in open_exceptions},
            }
        )
    return {
        "po_number": po_number,
        "revision": row["revision"],
        "supplier_id": row["supplier_id"],
        "ship_to_location_id": row["ship_to_location_id"],
        "status": row["status"],
        "status_reason": row["status_reason"],
        "fully_received": bool(views)
        and all(v["state"] in ("received", "over_received") for v in views),
        "lines": views,
    }


def _line_state(ordered: Decimal | None, received: Decimal) -> str:
    if ordered is None:
        return "unknown_item"
    if received == 0:
        return "open"
    if received < ordered:
        return "partially_received"
    return "received" if received == ordered else "over_received"
