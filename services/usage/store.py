"""Usage's tables and the reads behind its API.

`patients` is the only place an MRN is kept; every other table knows the patient by token, and
no patient name is stored at all. `usages` is both the record of each line and the traceability
index (lot, serial, GTIN and item to case, location, time and patient token).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from sinew.common.store import page_of
from sinew.masterdata import replica
from sinew.masterdata.barcodes import gtin14

MIGRATIONS = [
    replica.MIGRATION,
    """
    CREATE TABLE patients (
        mrn TEXT PRIMARY KEY,
        patient_token TEXT NOT NULL UNIQUE,
        first_seen_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE usages (
        usage_id TEXT PRIMARY KEY,
        source_usage_id TEXT NOT NULL UNIQUE,
        -- held: waits for the item master or a conflicting usage; recorded: its effect is out;
        -- voided: withdrawn by the EHR; dismissed: a person decided it never applies.
        status TEXT NOT NULL,
        hold_type TEXT,
        item_key TEXT NOT NULL,
        case_id TEXT NOT NULL,
        location_id TEXT NOT NULL,
        patient_token TEXT NOT NULL,
        item_id TEXT,
        gtin TEXT,
        lot TEXT,
        serial TEXT,
        expiry TEXT,
        used_at TEXT NOT NULL,
        source_format TEXT NOT NULL,
        line BLOB NOT NULL,
        recorded BLOB,
        received_at TEXT NOT NULL,
        recorded_at TEXT,
        voided_at TEXT,
        void_reason TEXT
    );
    CREATE INDEX usages_lot ON usages(lot) WHERE lot IS NOT NULL;
    CREATE INDEX usages_serial ON usages(serial) WHERE serial IS NOT NULL;
    CREATE INDEX usages_gtin ON usages(gtin) WHERE gtin IS NOT NULL;
    CREATE INDEX usages_item ON usages(item_id, serial);
    CREATE INDEX usages_case ON usages(case_id);
    CREATE INDEX usages_held ON usages(hold_type, item_key) WHERE status = 'held';
    CREATE TABLE usage_exceptions (
        exception_id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        source_usage_id TEXT NOT NULL,
        usage_id TEXT,
        case_id TEXT NOT NULL,
        location_id TEXT,
        held INTEGER NOT NULL,
        explanation TEXT NOT NULL,
        status TEXT NOT NULL,  -- open | cleared
        raised_at TEXT NOT NULL,
        cleared_at TEXT,
        resolution TEXT,
        cleared_by TEXT,
        reason TEXT
    );
    CREATE INDEX usage_exceptions_open ON usage_exceptions(source_usage_id) WHERE status = 'open';
    CREATE INDEX usage_exceptions_status ON usage_exceptions(status, type);
    -- A void that arrived before the usage it withdraws.
    CREATE TABLE pending_voids (
        source_usage_id TEXT PRIMARY KEY,
        case_id TEXT NOT NULL,
        voided_at TEXT NOT NULL,
        reason TEXT,
        exception_id TEXT NOT NULL
    ) WITHOUT ROWID;
    -- HL7 acknowledgements to send once their transaction has committed; a dead letter of the
    -- HL7 channel gets one row too (dead_letter_id), so each is answered exactly once.
    CREATE TABLE hl7_acks (
        ack_id TEXT PRIMARY KEY,
        dead_letter_id TEXT UNIQUE,
        reply_to TEXT,
        code TEXT,
        control_id TEXT,
        message BLOB,
        created_at TEXT NOT NULL,
        sent_at TEXT,
        state TEXT NOT NULL  -- pending | sent | not_requested
    );
    CREATE INDEX hl7_acks_pending ON hl7_acks(created_at) WHERE state = 'pending'
    """,
    # Which keys made the tokens in `patients` (a fingerprint, never the key): a start with
    # another key by mistake would give every returning patient a second token.
    """
    CREATE TABLE patient_token_keys (
        fingerprint TEXT PRIMARY KEY,
        first_used_at TEXT NOT NULL
    ) WITHOUT ROWID
    """,
]

USE_COLUMNS = (
    "usage_id, source_usage_id, status, hold_type, case_id, location_id, patient_token, item_id,"
    " gtin, lot, serial, expiry, used_at, source_format, recorded_at, voided_at, void_reason"
)


def uses_of(
    conn: sqlite3.Connection,
    *,
    lot: str | None = None,
    serial: str | None = None,
    gtin: str | None = None,
    item_ids: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Every usage line with this lot and serial (when given) of this product (when given: a
    GTIN, or the items it or an item id name, however the EHR named the item)."""
    where, params = [], []
    for column, wanted in (("lot", lot), ("serial", serial)):
        if wanted:
            where.append(f"{column} = ?")
            params.append(wanted)
    product = []
    if gtin:
        product.append("gtin = ?")
        params.append(gtin14(gtin))
    if item_ids:
        product.append(f"item_id IN ({', '.join('?' * len(item_ids))})")
        params.extend(item_ids)
    if product:
        where.append(f"({' OR '.join(product)})")
    if not where:
        return []
    rows = conn.execute(
        f"SELECT {USE_COLUMNS}, line, recorded FROM usages WHERE {' AND '.join(where)}"
        " ORDER BY used_at, usage_id",
        params,
    ).fetchall()
    return [dict(row) for row in rows]


def names_a_patient(conn: sqlite3.Connection, text: str) -> bool:
    """Whether a person's free text holds an MRN this site knows, as a word of its own."""
    words = {word.strip(".,;:!?()[]{}\"'") for word in text.split()} - {""}
    if not words:
        return False
    marks = ",".join("?" * len(words))
    found = conn.execute(f"SELECT 1 FROM patients WHERE mrn IN ({marks}) LIMIT 1", list(words))
    return found.fetchone() is not None


def list_usages(
    conn: sqlite3.Connection, filters: dict[str, str], limit: int, offset: int
) -> tuple[list[dict], int]:
    rows, total = page_of(
        conn,
        select=USE_COLUMNS,
        source="usages",
        where={
            f"{column} = ?": filters.get(column)
            for column in ("status", "case_id", "location_id", "item_id", "lot")
        },
        order_by="used_at DESC, usage_id",
        limit=limit,
        offset=offset,
    )
    return [dict(r) for r in rows], total


def get_usage(conn: sqlite3.Connection, usage_id: str) -> dict | None:
    row = conn.execute(f"SELECT {USE_COLUMNS} FROM usages WHERE usage_id=?", (usage_id,)).fetchone()
    if row is None:
        return None
    found = dict(row)
    found["exceptions"] = [
        dict(r)
        for r in conn.execute(
            "SELECT * FROM usage_exceptions WHERE source_usage_id=? ORDER BY raised_at",
            (found["source_usage_id"],),
        )
    ]
    return found


def list_exceptions(
    conn: sqlite3.Connection, filters: dict[str, str], limit: int, offset: int
) -> tuple[list[dict], int]:
    rows, total = page_of(
        conn,
        select="*",
        source="usage_exceptions",
        where={
            f"{column} = ?": filters.get(column)
            for column in ("status", "type", "case_id", "location_id")
        },
        order_by="raised_at, exception_id",
        limit=limit,
        offset=offset,
    )
    return [{**dict(r), "held": bool(r["held"])} for r in rows], total
