"""What the runtime's own tables keep, and for how long.

The outbox keeps every event after JetStream acknowledged it, and the inbox every message key it
applied; without limits both grow for as long as the hospital runs. Published outbox rows are
kept a week (JetStream holds the events themselves); inbox keys as long as the streams keep
messages, because a message can be redelivered, replayed or rebuilt only while its stream still
holds it. Unpublished outbox rows and dead letters are never pruned.

Pruning walks each table in small transactions, so a batch of messages never waits long behind
it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta

from sinew.contracts.envelope import utc_now

log = logging.getLogger("sinew.retention")

CHUNK = 5000
EVERY_SECONDS = 6 * 3600.0


@dataclass(frozen=True)
class Retention:
    outbox_days: float = 7
    inbox_days: float = 400  # the streams' max age (contracts/catalogue.py)


def prune_outbox(conn: sqlite3.Connection, before: str, after: int) -> tuple[int, int | None]:
    """One chunk of the outbox from `after` on; returns the rows removed and where to go on
    (None: done). Rows are numbered in the order they were written, so the walk stops at the
    first one young enough to keep."""
    rows = conn.execute(
        "SELECT seq, created_at, published_at FROM sinew_outbox WHERE seq > ? ORDER BY seq LIMIT ?",
        (after, CHUNK),
    ).fetchall()
    old = [(seq,) for seq, created, published in rows if created < before and published]
    conn.executemany("DELETE FROM sinew_outbox WHERE seq=?", old)
    done = len(rows) < CHUNK or rows[-1][1] >= before
    return len(old), None if done else rows[-1][0]


def prune_inbox(conn: sqlite3.Connection, before: str, after: str) -> tuple[int, str | None]:
    """One chunk of the inbox in key order (keys are random, so every key is looked at)."""
    rows = conn.execute(
        "SELECT key, handled_at FROM sinew_inbox WHERE key > ? ORDER BY key LIMIT ?",
        (after, CHUNK),
    ).fetchall()
    old = [(key,) for key, handled in rows if handled < before]
    conn.executemany("DELETE FROM sinew_inbox WHERE key=?", old)
    return len(old), None if len(rows) < CHUNK else rows[-1][0]


async def prune(store, retention: Retention, now: datetime | None = None) -> dict[str, int]:
    """Everything past its time, chunk by chunk; returns the rows removed per table."""
    now = now or utc_now()
    removed = {}
    for table, fn, days, start in (
        ("outbox", prune_outbox, retention.outbox_days, 0),
        ("inbox", prune_inbox, retention.inbox_days, ""),
    ):
        before = (now - timedelta(days=days)).isoformat()
        removed[table], position = 0, start
        while position is not None:
            n, position = await store.transact(fn, before, position)
            removed[table] += n
    return removed


async def keep_pruning(runtime) -> None:
    """The runtime's background loop: prune at start, then every six hours."""
    m = runtime.metrics
    while not runtime.stopped.is_set():
        try:
            removed = await prune(runtime.store, runtime.settings.retention)
            for table, n in removed.items():
                m.labels(m.pruned, table=table).inc(n)
            if any(removed.values()):
                log.info("pruned %s", removed)
        except Exception as error:  # a failed prune is retried next round, never fatal
            log.warning("pruning failed: %r", error)
        try:
            await asyncio.wait_for(runtime.stopped.wait(), EVERY_SECONDS)
        except TimeoutError:
            pass
