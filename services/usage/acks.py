"""Sends HL7 acknowledgements once what they acknowledge has committed.

A JetStream-delivered message carries no reply subject of its sender, so an HL7 sender names one
in the `sinew-reply-to` header (an inbox of its own, `_INBOX_ehr-<site>.…`). The handler writes
an AA row into `hl7_acks` in the message's own transaction; a message that became a dead letter
(the runtime wrote it, no handler ran) is found here in `sinew_dead_letters` and gets its AR or
AE row with the dead letter's reason. This loop then publishes each pending row on core NATS
and marks it sent: at least once (a crash between the publish and the mark sends it again), the
ACK always naming the original MSH-10 in MSA-2 so the sender can match it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid

import msgspec

from sinew.contracts.envelope import utc_now

from . import hl7
from .domain import ack_code_for_dead_letter, ack_wanted

log = logging.getLogger("sinew.usage.acks")

POLL_SECONDS = 0.2
HL7_SUBJECT = "sinew.ingress.{site}.usage-hl7.received.%"


def _unanswered_dead_letters(conn: sqlite3.Connection, site: str) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT d.id, d.cause, d.reason, d.headers, d.payload FROM sinew_dead_letters d"
        " LEFT JOIN hl7_acks a ON a.dead_letter_id = d.id"
        " WHERE a.ack_id IS NULL AND d.subject LIKE ? ORDER BY d.recorded_at LIMIT 100",
        (HL7_SUBJECT.format(site=site),),
    ).fetchall()


def answer_dead_letters(conn: sqlite3.Connection, site: str) -> int:
    """Write an AR/AE row for every HL7 dead letter not answered yet (one transaction)."""
    rows = _unanswered_dead_letters(conn, site)
    now = utc_now()
    for row in rows:
        headers = msgspec.json.decode(row["headers"])
        request = hl7.ack_request_from_raw(row["payload"], headers, site)
        code = ack_code_for_dead_letter(row["cause"])
        seed = f"dead-letter:{row['id']}"
        ack_id = f"ACK-{uuid.uuid5(uuid.NAMESPACE_URL, seed).hex[:16].upper()}"
        wanted = request is not None and ack_wanted(
            request.accept_ack, request.application_ack, code
        )
        message = (
            hl7.build_ack(request, code, row["reason"], site=site, control_id=ack_id, at=now)
            if wanted
            else None
        )
        conn.execute(
            "INSERT INTO hl7_acks (ack_id, dead_letter_id, reply_to, code, control_id, message,"
            " created_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ack_id,
                row["id"],
                request.reply_to if request else None,
                code,
                request.control_id if request else None,
                message,
                now.isoformat(),
                "pending" if wanted else "not_requested",
            ),
        )
    return len(rows)


def _pending(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT ack_id, reply_to, code, control_id, message FROM hl7_acks"
        " WHERE state='pending' ORDER BY created_at, ack_id LIMIT 200"
    ).fetchall()


def _mark_sent(conn: sqlite3.Connection, ack_ids: list[str]) -> None:
    now = utc_now().isoformat()
    conn.executemany(
        "UPDATE hl7_acks SET state='sent', sent_at=? WHERE ack_id=?",
        [(now, ack_id) for ack_id in ack_ids],
    )


async def send_hl7_acks(runtime) -> None:
    while True:
        try:
            if await runtime.store.run(_unanswered_dead_letters, runtime.site):
                await runtime.store.transact(answer_dead_letters, runtime.site)
            pending = await runtime.store.run(_pending)
            if pending:
                for row in pending:
                    await runtime.nc.publish(
                        row["reply_to"],
                        row["message"],
                        headers={
                            "Content-Type": "application/hl7-v2",
                            "sinew-ack-code": row["code"],
                        },
                    )
                await runtime.nc.flush(timeout=5)
                await runtime.store.transact(_mark_sent, [row["ack_id"] for row in pending])
                log.info("sent %d HL7 acknowledgement(s)", len(pending))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # NATS down, database busy: the rows wait for the next round
            log.warning("HL7 acknowledgements not sent yet: %r", error)
            await asyncio.sleep(1.0)
        await asyncio.sleep(POLL_SECONDS)
