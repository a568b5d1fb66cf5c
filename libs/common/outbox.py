"""The outbox relay: publishes committed events in order, with Nats-Msg-Id, and keeps every
published row (with its stream sequence) for reconciliation."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque

import msgspec
from nats.js import JetStreamContext

from sinew.contracts.envelope import utc_now

from .faults import fault_point
from .metrics import RuntimeMetrics
from .store import Store

log = logging.getLogger("sinew.outbox")

BATCH = 500
WINDOW = 4000  # publishes awaiting their PubAck at once
PUBLISH_TIMEOUT = 10.0


def _unpublished(conn: sqlite3.Connection, after: int, limit: int) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT seq, subject, headers, payload FROM sinew_outbox"
        " WHERE published_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
        (after, limit),
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
    """Two loops over one window of in-flight publishes: the sender hands committed rows to
    JetStream as soon as they exist, the confirmer takes the PubAcks in order and marks rows
    published in batches. Neither waits for the other, so the broker's fsync and ours overlap.
    On a failure everything after the last confirmed row is sent again; JetStream drops what
    it already has by Nats-Msg-Id."""

    def __init__(self, store: Store, js: JetStreamContext, metrics: RuntimeMetrics) -> None:
        self.store = store
        self.js = js
        self.metrics = metrics
        self.backlog = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._sent = asyncio.Event()
        self._stopping = False
        self._cursor = 0  # highest outbox seq handed to JetStream
        self._generation = 0  # bumped on every rewind, so a sender round in progress gives up
        self._inflight: deque[tuple[int, asyncio.Future]] = deque()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        confirmer = asyncio.create_task(self._confirm(), name="outbox-confirmer")
        try:
            await self._send()
        finally:
            confirmer.cancel()
            await asyncio.gather(confirmer, return_exceptions=True)

    async def _send(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except TimeoutError:
                pass  # a periodic sweep too, for rows a rewind left behind
            self._wake.clear()
            try:
                while not self._stopping and await self._send_round():
                    pass
            except Exception as error:
                log.warning("outbox relay: %r; backlog %d, retrying", error, self.backlog)
                self._rewind()
                await asyncio.sleep(1.0)

    async def _send_round(self) -> bool:
        """Hand one batch of committed rows to JetStream. True while more may be waiting."""
        while len(self._inflight) >= WINDOW:
            self._room.clear()
            await self._room.wait()
        generation = self._generation
        rows = await self.store.run(_unpublished, self._cursor, BATCH)
        for row in rows:
            future = await self.js.publish_async(
                row["subject"], row["payload"], headers=msgspec.json.decode(row["headers"])
            )
            if generation != self._generation:
                future.cancel()
                return True
            self._inflight.append((row["seq"], future))
            self._cursor = row["seq"]
            self._sent.set()
        if not rows and not self._inflight:
            self._set_backlog(0)
        return len(rows) == BATCH

    async def _confirm(self) -> None:
        while True:
            await self._sent.wait()
            acks: list[tuple[int, int]] = []
            try:
                while self._inflight and len(acks) < BATCH:
                    seq, future = self._inflight[0]
                    ack = await asyncio.wait_for(asyncio.shield(future), timeout=PUBLISH_TIMEOUT)
                    self._inflight.popleft()
                    acks.append((seq, ack.seq))
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                # The sender rewound and cancelled what was in flight; it sends it again.
            except Exception as error:
                log.warning("outbox publish not acknowledged: %r; sending again", error)
                self._rewind()
                await asyncio.sleep(0.5)
            if acks:
                fault_point("after_publish")
                self._set_backlog(await self.store.transact(_mark_published, acks))
                self.metrics.labels(self.metrics.published).inc(len(acks))
            self._room.set()
            if not self._inflight:
                self._sent.clear()
                self._wake.set()  # let the sender sweep for rows that arrived meanwhile

    def _rewind(self) -> None:
        """Forget everything in flight; the sender starts again after the last confirmed row."""
        self._generation += 1
        if self._inflight:
            self._cursor = self._inflight[0][0] - 1
        for _, future in self._inflight:
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # a failure already seen: its row is sent again
        self._inflight.clear()
        self._room.set()
        self._wake.set()

    async def flush(self, seconds: float = 10.0) -> None:
        """Publish everything committed so far (graceful shutdown; run() has stopped)."""
        async with asyncio.timeout(seconds):
            while True:
                rows = await self.store.run(_unpublished, 0, BATCH)
                if not rows:
                    self._set_backlog(0)
                    return
                futures = [
                    await self.js.publish_async(
                        row["subject"], row["payload"], headers=msgspec.json.decode(row["headers"])
                    )
                    for row in rows
                ]
                # Every future awaited, so a failure of one leaves none unread.
                results = await asyncio.gather(*futures, return_exceptions=True)
                failed = next((r for r in results if isinstance(r, BaseException)), None)
                if failed is not None:
                    raise failed
                acks = [(row["seq"], r.seq) for row, r in zip(rows, results, strict=True)]
                self._set_backlog(await self.store.transact(_mark_published, acks))

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def _set_backlog(self, backlog: int) -> None:
        self.backlog = backlog
        self.metrics.labels(self.metrics.outbox_backlog).set(backlog)
