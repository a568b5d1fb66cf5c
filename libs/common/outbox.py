"""The outbox relay: publishes committed events in order, with Nats-Msg-Id, and keeps every
published row (with its stream sequence) for reconciliation."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import msgspec
from nats.js import JetStreamContext

from sinew.contracts.envelope import utc_now

from .faults import fault_point
from .metrics import RuntimeMetrics
from .store import Store

log = logging.getLogger("sinew.outbox")

BATCH = 500
PUBLISH_TIMEOUT = 10.0


def _unpublished(conn: sqlite3.Connection, limit: int) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT seq, subject, headers, payload FROM sinew_outbox WHERE published_at IS NULL"
        " ORDER BY seq LIMIT ?",
        (limit,),
    ).fetchall()


def _mark_published(conn: sqlite3.Connection, acks: list[tuple[int, int]]) -> int:
    now = utc_now().isoformat()
    conn.executemany(
        "UPDATE sinew_outbox SET published_at=?, stream_seq=? WHERE seq=?",
        [(now, stream_seq, seq) for seq, stream_seq in acks],
    )
    return conn.execute("SELECT count(*) FROM sinew_outbox WHERE published_at IS NULL").fetchone()[
        0
    ]


class OutboxRelay:
    def __init__(self, store: Store, js: JetStreamContext, metrics: RuntimeMetrics) -> None:
        self.store = store
        self.js = js
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._stopping = False
        self.backlog = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except TimeoutError:
                pass  # a periodic sweep too, for rows a failed round left behind
            self._wake.clear()
            try:
                while await self.publish_pending():
                    pass
                failures = 0
            except Exception as error:
                failures += 1
                log.warning("outbox relay: %r; backlog %d, retrying", error, self.backlog)
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))

    async def publish_pending(self) -> bool:
        """Publish one round of unpublished rows. True while more may be waiting."""
        rows = await self.store.run(_unpublished, BATCH)
        if not rows:
            self._set_backlog(0)
            return False
        acks: list[tuple[int, int]] = []
        futures = [
            await self.js.publish_async(
                row["subject"], row["payload"], headers=msgspec.json.decode(row["headers"])
            )
            for row in rows
        ]
        try:
            # Pipelined, in order; stop at the first failure so order holds on the retry.
            for row, future in zip(rows, futures, strict=True):
                ack = await asyncio.wait_for(future, timeout=PUBLISH_TIMEOUT)
                acks.append((row["seq"], ack.seq))
        finally:
            for future in futures[len(acks) :]:
                future.cancel()
            if acks:
                fault_point("after_publish")
                self._set_backlog(await self.store.transact(_mark_published, acks))
                self.metrics.labels(self.metrics.published).inc(len(acks))
        return len(rows) == BATCH

    async def flush(self, seconds: float = 10.0) -> None:
        """Publish everything committed so far (graceful shutdown)."""
        async with asyncio.timeout(seconds):
            while await self.publish_pending():
                pass

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def _set_backlog(self, backlog: int) -> None:
        self.backlog = backlog
        self.metrics.labels(self.metrics.outbox_backlog).set(backlog)
