"""Procurement's tables, the records handlers load and save, and the reads behind the HTTP API.

A requisition and a purchase order are each kept whole as their contract Struct (the body), with
the columns lists filter on beside it. Each PO line has a row for what happened to it after it
was ordered: received quantity, the supplier's answer, the usage it pays for."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec

from sinew.common.store import page_of
from sinew.contracts.procurement import BillOnlyUsage, PurchaseOrder, RequisitionCreated

SCHEMA = """
CREATE TABLE sequences (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE requisitions (
    requisition_id TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    status TEXT NOT NULL,
    location_id TEXT NOT NULL,
    cost_centre_id TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    urgent INTEGER NOT NULL,
    estimated_total TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    needs TEXT NOT NULL,
    replenishment_signal_id TEXT UNIQUE,
    bill_only_request_id TEXT UNIQUE,
    bill_only_usage TEXT,
    priced_on TEXT,
    po_numbers TEXT NOT NULL DEFAULT '[]',
    decided_by TEXT,
    decided_at TEXT,
    decision_reason TEXT,
    created_at TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX requisitions_status ON requisitions(status, urgent DESC, created_at);
CREATE TABLE purchase_orders (
    po_number TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    supplier_id TEXT NOT NULL,
    location_id TEXT NOT NULL,
    requisition_id TEXT,
    bill_only INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    invoiced INTEGER NOT NULL DEFAULT 0,
    order_date TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX purchase_orders_state ON purchase_orders(state, created_at);
CREATE INDEX purchase_orders_location ON purchase_orders(location_id, state);
CREATE INDEX purchase_orders_supplier ON purchase_orders(supplier_id, state);
CREATE TABLE po_lines (
    po_number TEXT NOT NULL REFERENCES purchase_orders(po_number),
    line_number INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    base_uom TEXT NOT NULL,
    ordered_base TEXT NOT NULL,
    received_base TEXT NOT NULL DEFAULT '0',
    ack_status TEXT,
    ack_quantity TEXT,
    supplier_unit_price TEXT,
    expected_ship_date TEXT,
    substitute_item_id TEXT,
    substitution_approved INTEGER,
    substitution_id TEXT,
    usage_id TEXT,
    usage_voided INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (po_number, line_number)
) WITHOUT ROWID;
CREATE INDEX po_lines_usage ON po_lines(usage_id) WHERE usage_id IS NOT NULL;
CREATE TABLE receipts (
    receipt_id TEXT NOT NULL,
    line_index INTEGER NOT NULL,
    po_number TEXT NOT NULL,
    po_line_number INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    base_quantity TEXT NOT NULL,
    counted_base TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (receipt_id, line_index)
) WITHOUT ROWID;
CREATE TABLE acknowledgements (
    po_number TEXT NOT NULL,
    acknowledgement_key TEXT NOT NULL,
    status TEXT NOT NULL,
    source_format TEXT NOT NULL,
    acknowledged_at TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (po_number, acknowledgement_key)
) WITHOUT ROWID;
CREATE TABLE po_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    po_number TEXT NOT NULL,
    event TEXT NOT NULL,
    event_id TEXT,
    revision INTEGER NOT NULL,
    state TEXT NOT NULL,
    at TEXT NOT NULL,
    note TEXT,
    payload BLOB
);
CREATE INDEX po_history_po ON po_history(po_number, id);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entity TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT,
    policy_version TEXT,
    at TEXT NOT NULL
);
CREATE INDEX audit_entity ON audit(entity, entity_id, id)
"""

_encoder = msgspec.json.Encoder(decimal_format="string")
_requisition = msgspec.json.Decoder(RequisitionCreated)
_purchase_order = msgspec.json.Decoder(PurchaseOrder)
_usage = msgspec.json.Decoder(BillOnlyUsage)


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def next_number(conn: sqlite3.Connection, name: str) -> int:
    return conn.execute(
        "INSERT INTO sequences VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1"
        " RETURNING value",
        (name,),
    ).fetchone()[0]


# -- requisitions --------------------------------------------------------------------------------


@dataclass
class RequisitionRecord:
    created: RequisitionCreated
    status: str  # pending_approval | approved | rejected | cancelled
    policy_version: str
    needs: dict[str, list[str]]
    bill_only_usage: BillOnlyUsage | None = None
    # The date lines are priced on when it is not the order date: a bill-only implant is
    # bought at the contract price in force the day it was used.
    priced_on: date | None = None
    po_numbers: list[str] = field(default_factory=list)

    @property
    def requisition_id(self) -> str:
        return self.created.requisition_id


def insert_requisition(conn: sqlite3.Connection, record: RequisitionRecord) -> None:
    created = record.created
    conn.execute(
        "INSERT INTO requisitions (requisition_id, origin, status, location_id, cost_centre_id,"
        " requested_by, urgent, estimated_total, policy_version, needs, replenishment_signal_id,"
        " bill_only_request_id, bill_only_usage, priced_on, created_at, body)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            created.requisition_id,
            created.origin,
            record.status,
            created.location_id,
            created.cost_centre_id,
            created.requested_by,
            int(created.urgent),
            str(created.estimated_total),
            record.policy_version,
            encode(record.needs).decode(),
            created.replenishment_signal_id,
            created.bill_only_request_id,
            encode(record.bill_only_usage).decode() if record.bill_only_usage else None,
            record.priced_on.isoformat() if record.priced_on else None,
            created.created_at.isoformat(),
            encode(created),
        ),
    )


def save_requisition(conn: sqlite3.Connection, record: RequisitionRecord) -> None:
    conn.execute(
        "UPDATE requisitions SET status=?, estimated_total=?, policy_version=?, needs=?,"
        " po_numbers=?, body=? WHERE requisition_id=?",
        (
            record.status,
            str(record.created.estimated_total),
            record.policy_version,
            encode(record.needs).decode(),
            encode(record.po_numbers).decode(),
            encode(record.created),
            record.requisition_id,
        ),
    )


def record_decision(
    conn: sqlite3.Connection, requisition_id: str, by: str, at: datetime, reason: str | None
) -> None:
    conn.execute(
        "UPDATE requisitions SET decided_by=?, decided_at=?, decision_reason=?"
        " WHERE requisition_id=?",
        (by, at.isoformat(), reason, requisition_id),
    )


def _requisition_from(row: sqlite3.Row | None) -> RequisitionRecord | None:
    if row is None:
        return None
    return RequisitionRecord(
        created=_requisition.decode(row["body"]),
        status=row["status"],
        policy_version=row["policy_version"],
        needs=msgspec.json.decode(row["needs"]),
        bill_only_usage=_usage.decode(row["bill_only_usage"]) if row["bill_only_usage"] else None,
        priced_on=date.fromisoformat(row["priced_on"]) if row["priced_on"] else None,
        po_numbers=msgspec.json.decode(row["po_numbers"]),
    )


def requisition(conn: sqlite3.Connection, requisition_id: str) -> RequisitionRecord | None:
    row = conn.execute(
        "SELECT * FROM requisitions WHERE requisition_id=?", (requisition_id,)
    ).fetchone()
    return _requisition_from(row)


def requisition_for_signal(conn: sqlite3.Connection, signal_id: str) -> RequisitionRecord | None:
    return _requisition_from(
        conn.execute(
            "SELECT * FROM requisitions WHERE replenishment_signal_id=?", (signal_id,)
        ).fetchone()
    )


def requisition_for_bill_only(
    conn: sqlite3.Connection, request_id: str
) -> RequisitionRecord | None:
    return _requisition_from(
        conn.execute(
            "SELECT * FROM requisitions WHERE bill_only_request_id=?", (request_id,)
        ).fetchone()
    )


# -- purchase orders -----------------------------------------------------------------------------


@dataclass
class PoRecord:
    po: PurchaseOrder
    state: str
    invoiced: bool = False

    @property
    def po_number(self) -> str:
        return self.po.po_number


@dataclass(frozen=True)
class LineTracking:
    """A PO line's row: what was ordered and received in base units, and the supplier's answer."""

    line_number: int
    item_id: str
    base_uom: str
    ordered_base: Decimal
    received_base: Decimal = Decimal(0)
    ack_status: str | None = None
    ack_quantity: str | None = None
    supplier_unit_price: Decimal | None = None
    expected_ship_date: date | None = None
    substitute_item_id: str | None = None
    substitution_approved: bool | None = None
    substitution_id: str | None = None
    usage_id: str | None = None
    usage_voided: bool = False


def insert_po(
    conn: sqlite3.Connection, record: PoRecord, lines: list[LineTracking], at: datetime
) -> None:
    po = record.po
    conn.execute(
        "INSERT INTO purchase_orders (po_number, state, supplier_id, location_id, requisition_id,"
        " bill_only, revision, order_date, created_at, updated_at, body)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            po.po_number,
            record.state,
            po.supplier_id,
            po.ship_to_location_id,
            po.requisition_id,
            int(po.bill_only),
            po.revision,
            po.order_date.isoformat(),
            at.isoformat(),
            at.isoformat(),
            encode(po),
        ),
    )
    for line in lines:
        conn.execute(
            "INSERT INTO po_lines (po_number, line_number, item_id, base_uom, ordered_base,"
            " usage_id) VALUES (?, ?, ?, ?, ?, ?)",
            (
                po.po_number,
                line.line_number,
                line.item_id,
                line.base_uom,
                str(line.ordered_base),
                line.usage_id,
            ),
        )


def save_po(conn: sqlite3.Connection, record: PoRecord, at: datetime) -> None:
    conn.execute(
        "UPDATE purchase_orders SET state=?, revision=?, invoiced=?, updated_at=?, body=?"
        " WHERE po_number=?",
        (
            record.state,
            record.po.revision,
            int(record.invoiced),
            at.isoformat(),
            encode(record.po),
            record.po_number,
        ),
    )


def purchase_order(conn: sqlite3.Connection, po_number: str) -> PoRecord | None:
    row = conn.execute(
        "SELECT state, invoiced, body FROM purchase_orders WHERE po_number=?", (po_number,)
    ).fetchone()
    if row is None:
        return None
    return PoRecord(_purchase_order.decode(row["body"]), row["state"], bool(row["invoiced"]))


def purchase_orders_of(conn: sqlite3.Connection, requisition_id: str) -> list[PoRecord]:
    rows = conn.execute(
        "SELECT po_number FROM purchase_orders WHERE requisition_id=? ORDER BY po_number",
        (requisition_id,),
    ).fetchall()
    return [record for (number,) in rows if (record := purchase_order(conn, number))]


def line_tracking(conn: sqlite3.Connection, po_number: str) -> dict[int, LineTracking]:
    rows = conn.execute(
        "SELECT * FROM po_lines WHERE po_number=? ORDER BY line_number", (po_number,)
    ).fetchall()
    return {row["line_number"]: _tracking(row) for row in rows}


def _tracking(row: sqlite3.Row) -> LineTracking:
    return LineTracking(
        line_number=row["line_number"],
        item_id=row["item_id"],
        base_uom=row["base_uom"],
        ordered_base=Decimal(row["ordered_base"]),
        received_base=Decimal(row["received_base"]),
        ack_status=row["ack_status"],
        ack_quantity=row["ack_quantity"],
        supplier_unit_price=(
            Decimal(row["supplier_unit_price"]) if row["supplier_unit_price"] else None
        ),
        expected_ship_date=(
            date.fromisoformat(row["expected_ship_date"]) if row["expected_ship_date"] else None
        ),
        substitute_item_id=row["substitute_item_id"],
        substitution_approved=(
            None if row["substitution_approved"] is None else bool(row["substitution_approved"])
        ),
        substitution_id=row["substitution_id"],
        usage_id=row["usage_id"],
        usage_voided=bool(row["usage_voided"]),
    )


def set_ordered(conn: sqlite3.Connection, po_number: str, line_number: int, base: Decimal) -> None:
    conn.execute(
        "UPDATE po_lines SET ordered_base=? WHERE po_number=? AND line_number=?",
        (str(base), po_number, line_number),
    )


def record_answer(conn: sqlite3.Connection, po_number: str, line: LineTracking) -> None:
    conn.execute(
        "UPDATE po_lines SET ack_status=?, ack_quantity=?, supplier_unit_price=?,"
        " expected_ship_date=?, substitute_item_id=?, substitution_approved=?, substitution_id=?"
        " WHERE po_number=? AND line_number=?",
        (
            line.ack_status,
            line.ack_quantity,
            str(line.supplier_unit_price) if line.supplier_unit_price is not None else None,
            line.expected_ship_date.isoformat() if line.expected_ship_date else None,
            line.substitute_item_id,
            None if line.substitution_approved is None else int(line.substitution_approved),
            line.substitution_id,
            po_number,
            line.line_number,
        ),
    )


def acknowledgement_seen(conn: sqlite3.Connection, po_number: str, key: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM acknowledgements WHERE po_number=? AND acknowledgement_key=?",
            (po_number, key),
        ).fetchone()
        is not None
    )


def insert_acknowledgement(
    conn: sqlite3.Connection, po_number: str, key: str, acknowledged: msgspec.Struct
) -> None:
    conn.execute(
        "INSERT INTO acknowledgements VALUES (?, ?, ?, ?, ?, ?)",
        (
            po_number,
            key,
            acknowledged.status,
            acknowledged.source_format,
            acknowledged.acknowledged_at.isoformat(),
            encode(acknowledged),
        ),
    )


def receipt_seen(conn: sqlite3.Connection, receipt_id: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM receipts WHERE receipt_id=? LIMIT 1", (receipt_id,)).fetchone()
        is not None
    )


def insert_receipt_line(
    conn: sqlite3.Connection,
    receipt_id: str,
    index: int,
    po_number: str,
    po_line_number: int,
    item_id: str,
    base_quantity: Decimal,
    counted_base: Decimal,
    received_at: datetime,
) -> None:
    conn.execute(
        "INSERT INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            receipt_id,
            index,
            po_number,
            po_line_number,
            item_id,
            str(base_quantity),
            str(counted_base),
            received_at.isoformat(),
        ),
    )
    row = conn.execute(
        "SELECT received_base FROM po_lines WHERE po_number=? AND line_number=?",
        (po_number, po_line_number),
    ).fetchone()
    if row is not None:
        conn.execute(
            "UPDATE po_lines SET received_base=? WHERE po_number=? AND line_number=?",
            (str(Decimal(row[0]) + counted_base), po_number, po_line_number),
        )


def requisition_for_usage(conn: sqlite3.Connection, usage_id: str) -> RequisitionRecord | None:
    return _requisition_from(
        conn.execute(
            "SELECT * FROM requisitions WHERE json_extract(bill_only_usage, '$.usage_id')=?",
            (usage_id,),
        ).fetchone()
    )


def line_for_usage(conn: sqlite3.Connection, usage_id: str) -> tuple[str, int] | None:
    row = conn.execute(
        "SELECT po_number, line_number FROM po_lines WHERE usage_id=? LIMIT 1", (usage_id,)
    ).fetchone()
    return (row[0], row[1]) if row else None


def mark_usage_voided(conn: sqlite3.Connection, po_number: str, line_number: int) -> None:
    conn.execute(
        "UPDATE po_lines SET usage_voided=1 WHERE po_number=? AND line_number=?",
        (po_number, line_number),
    )


# -- history and audit ---------------------------------------------------------------------------


def add_history(
    conn: sqlite3.Connection,
    record: PoRecord,
    event: str,
    at: datetime,
    *,
    event_id: str | None = None,
    note: str | None = None,
    payload: msgspec.Struct | None = None,
) -> None:
    conn.execute(
        "INSERT INTO po_history (po_number, event, event_id, revision, state, at, note, payload)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.po_number,
            event,
            event_id,
            record.po.revision,
            record.state,
            at.isoformat(),
            note,
            encode(payload) if payload is not None else None,
        ),
    )


def add_audit(
    conn: sqlite3.Connection,
    entity: str,
    entity_id: str,
    action: str,
    actor: str,
    at: datetime,
    *,
    reason: str | None = None,
    policy_version: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO audit (entity, entity_id, action, actor, reason, policy_version, at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (entity, entity_id, action, actor, reason, policy_version, at.isoformat()),
    )


# -- reads for the HTTP API ----------------------------------------------------------------------


def _audit(conn: sqlite3.Connection, entity: str, entity_id: str) -> list[dict]:
    rows = conn.execute(
        "SELECT action, actor, reason, policy_version, at FROM audit"
        " WHERE entity=? AND entity_id=? ORDER BY id",
        (entity, entity_id),
    ).fetchall()
    return [dict(row) for row in rows]


def requisition_view(conn: sqlite3.Connection, row: sqlite3.Row) -> dict:
    body = msgspec.json.decode(row["body"])
    return {
        **body,
        "status": row["status"],
        "policy_version": row["policy_version"],
        "approver_roles": msgspec.json.decode(row["needs"]),
        "decided_by": row["decided_by"],
        "decided_at": row["decided_at"],
        "decision_reason": row["decision_reason"],
        "po_numbers": msgspec.json.decode(row["po_numbers"]),
    }


def list_requisitions(
    conn: sqlite3.Connection, limit: int, offset: int, **filters: Any
) -> tuple[list[dict], int]:
    rows, total = page_of(
        conn,
        select="*",
        source="requisitions",
        where={f"{column}=?": value for column, value in filters.items()},
        # Urgent requests first, so an approver sees them at the top of the queue.
        order_by="urgent DESC, created_at, requisition_id",
        limit=limit,
        offset=offset,
    )
    return [requisition_view(conn, row) for row in rows], total


def show_requisition(conn: sqlite3.Connection, requisition_id: str) -> dict | None:
    row = conn.execute(
        "SELECT * FROM requisitions WHERE requisition_id=?", (requisition_id,)
    ).fetchone()
    if row is None:
        return None
    return {
        **requisition_view(conn, row),
        "audit": _audit(conn, "requisition", requisition_id),
    }


def _line_view(line: dict, tracking: LineTracking | None) -> dict:
    if tracking is None:
        return line
    view = {
        **line,
        "base_uom": tracking.base_uom,
        "ordered_base_quantity": tracking.ordered_base,
        "received_base_quantity": tracking.received_base,
        "acknowledgement": None,
    }
    if tracking.ack_status:
        view["acknowledgement"] = {
            "status": tracking.ack_status,
            "quantity": msgspec.json.decode(tracking.ack_quantity)
            if tracking.ack_quantity
            else None,
            "supplier_unit_price": tracking.supplier_unit_price,
            "expected_ship_date": tracking.expected_ship_date,
            "substitute_item_id": tracking.substitute_item_id,
            "substitution_approved": tracking.substitution_approved,
            "substitution_id": tracking.substitution_id,
        }
    if tracking.usage_id:
        view["usage_voided"] = tracking.usage_voided
    return view


def po_summary(conn: sqlite3.Connection, row: sqlite3.Row) -> dict:
    body = msgspec.json.decode(row["body"])
    tracking = line_tracking(conn, row["po_number"])
    lines = [_line_view(line, tracking.get(line["line_number"])) for line in body["lines"]]
    backorders = [
        {
            "line_number": t.line_number,
            "item_id": t.item_id,
            "expected_ship_date": t.expected_ship_date,
        }
        for t in tracking.values()
        if t.ack_status == "backordered"
    ]
    substitutions = [
        {
            "line_number": t.line_number,
            "item_id": t.item_id,
            "substitute_item_id": t.substitute_item_id,
            "approved": t.substitution_approved,
            "substitution_id": t.substitution_id,
        }
        for t in tracking.values()
        if t.ack_status == "substituted"
    ]
    return {
        **body,
        "lines": lines,
        "state": row["state"],
        "invoiced": bool(row["invoiced"]),
        "backorders": backorders,
        "substitutions": substitutions,
        "updated_at": row["updated_at"],
    }


def list_purchase_orders(
    conn: sqlite3.Connection, limit: int, offset: int, *, open_only: bool = False, **filters: Any
) -> tuple[list[dict], int]:
    rows, total = page_of(
        conn,
        select="*",
        source="purchase_orders",
        where={
            **{f"{column}=?": value for column, value in filters.items()},
            "state NOT IN ('closed', 'cancelled')": open_only,
        },
        order_by="created_at DESC, po_number DESC",
        limit=limit,
        offset=offset,
    )
    return [po_summary(conn, row) for row in rows], total


def show_purchase_order(conn: sqlite3.Connection, po_number: str) -> dict | None:
    row = conn.execute("SELECT * FROM purchase_orders WHERE po_number=?", (po_number,)).fetchone()
    if row is None:
        return None
    history = conn.execute(
        "SELECT event, event_id, revision, state, at, note, payload FROM po_history"
        " WHERE po_number=? ORDER BY id",
        (po_number,),
    ).fetchall()
    acknowledgements = conn.execute(
        "SELECT acknowledgement_key, status, source_format, acknowledged_at FROM acknowledgements"
        " WHERE po_number=? ORDER BY acknowledged_at",
        (po_number,),
    ).fetchall()
    receipts = conn.execute(
        "SELECT receipt_id, po_line_number, item_id, base_quantity, received_at FROM receipts"
        " WHERE po_number=? ORDER BY received_at, receipt_id, line_index",
        (po_number,),
    ).fetchall()
    return {
        **po_summary(conn, row),
        "history": [
            {
                **{k: entry[k] for k in ("event", "event_id", "revision", "state", "at", "note")},
                "payload": msgspec.json.decode(entry["payload"]) if entry["payload"] else None,
            }
            for entry in history
        ],
        "acknowledgements": [dict(a) for a in acknowledgements],
        "receipts": [dict(r) for r in receipts],
        "audit": _audit(conn, "purchase_order", po_number),
    }
