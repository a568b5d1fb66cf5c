"""Dead letters: list, show and replay, one by one or in bulk by cause or reason.

A replay runs the handler on the stored bytes (or on corrected bytes an operator supplies) in one
transaction with marking the dead letter replayed, so a dead letter is applied at most once
however often, and from however many places, it is replayed."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from sinew.contracts import ops
from sinew.contracts.envelope import utc_now

from .actor import Wiring
from .errors import Invalid
from .store import page_of

LIST_COLUMNS = (
    "id, subject, stream, stream_seq, contract, cause, reason, deliveries, recorded_at, status,"
    " replayed_at, replayed_by, length(payload) AS size_bytes"
)


def list_dead_letters(
    conn: sqlite3.Connection,
    *,
    status: str | None = "open",
    cause: str | None = None,
    reason: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict], int]:
    rows, total = page_of(
        conn,
        select=LIST_COLUMNS,
        source="sinew_dead_letters",
        where={"status = ?": status, "cause = ?": cause, "reason LIKE ?": reason and f"%{reason}%"},
        order_by="recorded_at, id",
        limit=limit,
        offset=offset,
    )
    return [dict(row) for row in rows], total


def show_dead_letter(conn: sqlite3.Connection, dead_letter_id: str) -> dict | None:
    row = conn.execute(
        f"SELECT {LIST_COLUMNS}, headers, payload, replay_reason FROM sinew_dead_letters"
        " WHERE id=?",
        (dead_letter_id,),
    ).fetchone()
    if row is None:
        return None
    shown = dict(row)
    shown["headers"] = msgspec.json.decode(shown["headers"])
    payload: bytes = shown.pop("payload")
    try:
        shown["payload"] = payload.decode()
    except UnicodeDecodeError:
        shown["payload_base64"] = msgspec.json.encode(payload).decode().strip('"')
    return shown


def replay_dead_letters(
    conn: sqlite3.Connection,
    wiring: Wiring,
    ids: list[str],
    replayed_by: str,
    payload: bytes | None = None,
) -> list[dict[str, Any]]:
    """Replay each dead letter in its own savepoint; the caller's transaction commits them all."""
    results = []
    for dead_letter_id in ids:
        conn.execute("SAVEPOINT replay")
        try:
            results.append(_replay_one(conn, wiring, dead_letter_id, replayed_by, payload))
        except BaseException:
            conn.execute("ROLLBACK TO replay")
            conn.execute("RELEASE replay")
            raise
        conn.execute("RELEASE replay")
    return results


def matching_ids(conn: sqlite3.Connection, *, cause: str | None, reason: str | None) -> list[str]:
    where, params = _filters("open", cause, reason)
    rows = conn.execute(f"SELECT id FROM sinew_dead_letters {where} ORDER BY recorded_at", params)
    return [row[0] for row in rows]


def _replay_one(
    conn: sqlite3.Connection,
    wiring: Wiring,
    dead_letter_id: str,
    replayed_by: str,
    payload: bytes | None,
) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM sinew_dead_letters WHERE id=?", (dead_letter_id,)).fetchone()
    if row is None:
        return {"id": dead_letter_id, "outcome": "not_found"}
    if row["status"] != "open":
        return {"id": dead_letter_id, "outcome": "already_applied", "status": row["status"]}
    delivery = wiring.decode(
        row["subject"],
        payload if payload is not None else row["payload"],
        msgspec.json.decode(row["headers"]),
        stream=row["stream"],
        stream_seq=row["stream_seq"],
        deliveries=row["deliveries"],
    )
    outcome, reason = "applied", None
    if delivery.invalid is not None:
        outcome, reason = "failed_again", delivery.invalid.reason
    else:
        conn.execute("SAVEPOINT handler")
        try:
            context = wiring.run_handler(
                conn, delivery.message, delivery.envelope, delivery.contract, delivery.inbox_key
            )
            context.flush()
            conn.execute("RELEASE handler")
        except Exception as error:
            conn.execute("ROLLBACK TO handler")
            conn.execute("RELEASE handler")
            problem = (
                error.reason if isinstance(error, Invalid) else f"{type(error).__name__}: {error}"
            )
            outcome, reason = "failed_again", problem
    now = utc_now()
    if outcome == "applied":
        conn.execute(
            "INSERT OR REPLACE INTO sinew_inbox VALUES (?, ?, ?, ?, 'applied', ?)",
            (delivery.inbox_key, row["stream"], row["stream_seq"], row["subject"], now.isoformat()),
        )
        conn.execute(
            "UPDATE sinew_dead_letters SET status='replayed', replayed_at=?, replayed_by=?,"
            " replay_reason=NULL WHERE id=?",
            (now.isoformat(), replayed_by, dead_letter_id),
        )
    else:
        conn.execute(
            "UPDATE sinew_dead_letters SET replay_reason=? WHERE id=?", (reason, dead_letter_id)
        )
    context = wiring.context(
        conn,
        delivery.envelope,
        delivery.envelope.traceparent or "",
        f"replay:{dead_letter_id}:{now.isoformat()}",
    )
    context.emit(
        ops.DeadLetterReplayed(
            dead_letter_id=dead_letter_id,
            site=wiring.site,
            service=wiring.service,
            outcome=outcome,
            reason=reason,
            replayed_by=replayed_by,
            replayed_at=now,
        ),
        channel=f"{wiring.service}.dead-letter.replayed.v1",
    )
    context.flush()
    return {"id": dead_letter_id, "outcome": outcome, "reason": reason}


def _filters(status: str | None, cause: str | None, reason: str | None) -> tuple[str, list]:
    clauses, params = [], []
    if status:
        clauses.append("status = ?")
        params.append(status)
    if cause:
        clauses.append("cause = ?")
        params.append(cause)
    if reason:
        clauses.append("reason LIKE ?")
        params.append(f"%{reason}%")
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params
