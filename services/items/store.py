"""The item master's tables and their SQL. Records themselves live in the master-data replica
tables (sinew.masterdata.replica), kept at their highest version; beside them the service keeps
its change log, a search index of items, and the KV writes not yet in the bucket."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import msgspec

from sinew.common.store import page_of
from sinew.contracts.envelope import utc_now
from sinew.masterdata import replica
from sinew.masterdata.replica import MasterData

from .domain import KINDS, KvWrite

MIGRATIONS = [
    replica.MIGRATION,
    """
    CREATE TABLE item_search (
        item_id TEXT PRIMARY KEY,
        description TEXT NOT NULL,
        category TEXT,
        manufacturer TEXT,
        manufacturer_part TEXT,
        active INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX item_search_category ON item_search(category, item_id);
    -- Every change the service took or ignored, with who made it and what to look at.
    CREATE TABLE masterdata_changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        record_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        source TEXT NOT NULL,
        changed_by TEXT,
        event_id TEXT,
        notes TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    );
    CREATE INDEX masterdata_changes_record ON masterdata_changes(kind, record_id, seq);
    -- The KV outbox: written in the change's own transaction, emptied once the bucket has it.
    -- One row per key: a newer change to a key replaces a row not yet put.
    CREATE TABLE kv_pending (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        op TEXT NOT NULL CHECK (op IN ('put', 'delete')),
        kind TEXT NOT NULL,
        record_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        value BLOB
    );
    """,
]


class HeldMasterData(MasterData):
    """The replica's reads, plus who holds a code: what the domain rules look at."""

    def code_owner(self, code: str) -> str | None:
        row = self.conn.execute(
            "SELECT item_id FROM md_item_codes WHERE code=?", (code,)
        ).fetchone()
        return row[0] if row else None

    def part_owner(self, supplier_id: str, part_number: str) -> str | None:
        row = self.conn.execute(
            "SELECT item_id FROM md_supplier_parts WHERE supplier_id=? AND part_number=?",
            (supplier_id, part_number),
        ).fetchone()
        return row[0] if row else None

    def held_version(self, kind: str, identity: str) -> int | None:
        row = self.conn.execute(
            "SELECT version FROM md_records WHERE kind=? AND record_id=?", (kind, identity)
        ).fetchone()
        return row[0] if row else None

    def record(self, kind: str, identity: str) -> Any | None:
        return self._get(kind, identity)


# -- writes, inside the change's transaction ----------------------------------------------------


def index_item(conn: sqlite3.Connection, item) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO item_search VALUES (?, ?, ?, ?, ?, ?)",
        (
            item.item_id,
            item.description,
            item.category,
            item.manufacturer,
            item.manufacturer_part,
            int(item.active),
        ),
    )


def record_change(
    conn: sqlite3.Connection,
    *,
    kind: str,
    record_id: str,
    version: int,
    outcome: str,
    source: str,
    changed_by: str | None,
    event_id: str | None,
    notes: list[str],
) -> None:
    conn.execute(
        "INSERT INTO masterdata_changes (kind, record_id, version, outcome, source, changed_by,"
        " event_id, notes, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            kind,
            record_id,
            version,
            outcome,
            source,
            changed_by,
            event_id,
            json.dumps(notes),
            utc_now().isoformat(),
        ),
    )


def queue_kv_writes(conn: sqlite3.Connection, writes: list[KvWrite]) -> None:
    # REPLACE takes a new seq, so the projector never deletes a row newer than the one it put.
    conn.executemany(
        "INSERT OR REPLACE INTO kv_pending (key, op, kind, record_id, version, value)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(w.key, w.op, w.kind, w.record_id, w.version, w.value) for w in writes],
    )


# -- the KV projector's side --------------------------------------------------------------------


def pending_kv_writes(conn: sqlite3.Connection, limit: int) -> list[tuple[int, KvWrite]]:
    rows = conn.execute(
        "SELECT seq, key, op, kind, record_id, version, value FROM kv_pending ORDER BY seq LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        (
            row["seq"],
            KvWrite(
                row["key"], row["op"], row["kind"], row["record_id"], row["version"], row["value"]
            ),
        )
        for row in rows
    ]


def kv_written(conn: sqlite3.Connection, seqs: list[int]) -> None:
    conn.executemany("DELETE FROM kv_pending WHERE seq=?", [(seq,) for seq in seqs])


# -- reads for the API --------------------------------------------------------------------------


def _decoded(kind: str, bodies: list[bytes]) -> list[Any]:
    decoder = msgspec.json.Decoder(KINDS[kind].upserted)
    return [decoder.decode(body) for body in bodies]


def search_items(
    conn: sqlite3.Connection,
    *,
    text: str | None,
    category: str | None,
    active: bool | None,
    limit: int,
    offset: int,
) -> tuple[list[Any], int]:
    pattern = None
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    mentions_text = (
        "(s.item_id LIKE ? ESCAPE '\\' OR s.description LIKE ? ESCAPE '\\'"
        " OR s.manufacturer LIKE ? ESCAPE '\\' OR s.manufacturer_part LIKE ? ESCAPE '\\')"
    )
    rows, total = page_of(
        conn,
        select="r.body",
        # Every indexed item has its record: the join neither adds nor drops rows from the count.
        source="item_search s JOIN md_records r ON r.kind='item' AND r.record_id=s.item_id",
        where={
            mentions_text: pattern,
            "s.category = ?": category,
            "s.active = ?": None if active is None else int(active),
        },
        order_by="s.item_id",
        limit=limit,
        offset=offset,
    )
    return _decoded("item", [row[0] for row in rows]), total


def list_records(
    conn: sqlite3.Connection, kind: str, *, item_id: str | None, limit: int, offset: int
) -> tuple[list[Any], int]:
    source = "md_records r"
    if item_id:
        source += " JOIN md_item_links l ON l.kind=r.kind AND l.record_id=r.record_id"
    rows, total = page_of(
        conn,
        select="r.body",
        source=source,
        where={"r.kind=?": kind, "l.item_id=?": item_id},
        order_by="r.record_id",
        limit=limit,
        offset=offset,
    )
    return _decoded(kind, [row[0] for row in rows]), total


def list_changes(
    conn: sqlite3.Connection,
    *,
    kind: str | None,
    record_id: str | None,
    outcome: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict], int]:
    rows, total = page_of(
        conn,
        select="kind, record_id, version, outcome, source, changed_by, event_id, notes, recorded_at",
        source="masterdata_changes",
        where={"kind = ?": kind, "record_id = ?": record_id, "outcome = ?": outcome},
        order_by="seq DESC",
        limit=limit,
        offset=offset,
    )
    changes = [{**dict(row), "notes": json.loads(row["notes"])} for row in rows]
    return changes, total
