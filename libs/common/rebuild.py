"""Rebuild a service's database from stream history into an empty one.

Every message the service consumes is still in its streams (limits retention), so its state is a
fold over them: read every stream it consumes from the first message, merged in stream-time
order, through the very same batch transaction the live service uses. Events the handlers emit
are already in the streams, so they are written to the outbox as published, not sent again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from .actor import Delivery, Wiring
from .provision import mailbox_filters
from .store import Store

log = logging.getLogger("sinew.rebuild")
BATCH = 500


@dataclass
class RebuildReport:
    messages: int = 0
    applied: int = 0
    dead_letters: int = 0
    duplicates: int = 0


def _apply_as_history(conn, wiring: Wiring, deliveries: list[Delivery]):
    outcomes = wiring.apply_batch(conn, deliveries)
    conn.execute("UPDATE sinew_outbox SET published_at='rebuild' WHERE published_at IS NULL")
    return outcomes


class _StreamReader:
    def __init__(self, js, stream: str, subjects: list[str], wiring: Wiring) -> None:
        self.js, self.stream, self.subjects, self.wiring = js, stream, subjects, wiring
        self.name = f"rebuild-{wiring.service}-{wiring.site}-{uuid.uuid4().hex[:8]}"
        self.pending = 1
        self.subscription = None

    async def open(self) -> None:
        await self.js.add_consumer(
            self.stream,
            ConsumerConfig(
                name=self.name,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.NONE,
                filter_subjects=self.subjects,
                inactive_threshold=300.0,
                mem_storage=True,
            ),
        )
        self.subscription = await self.js.pull_subscribe_bind(
            consumer=self.name, stream=self.stream
        )
        info = await self.js.consumer_info(self.stream, self.name)
        self.pending = info.num_pending

    async def next_batch(self) -> list[tuple[float, int, Delivery]]:
        if self.pending == 0:
            return []
        try:
            messages = await self.subscription.fetch(BATCH, timeout=5.0)
        except TimeoutError:
            self.pending = 0
            return []
        batch = []
        for message in messages:
            meta = message.metadata
            self.pending = meta.num_pending
            delivery = self.wiring.decode(
                message.subject,
                message.data,
                message.headers,
                stream=meta.stream,
                stream_seq=meta.sequence.stream,
                deliveries=1,
            )
            batch.append((meta.timestamp.timestamp(), meta.sequence.stream, delivery))
        return batch

    async def close(self) -> None:
        if self.subscription is not None:
            await self.subscription.unsubscribe()
        await self.js.delete_consumer(self.stream, self.name)


async def rebuild(
    js,
    wiring: Wiring,
    target: Path,
    migrations: list[str],
    progress: Callable[[int, int], None] | None = None,
    stream_name: Callable[[str], str] = lambda stream: stream,
) -> RebuildReport:
    """Fold the service's stream history into the empty database at `target`. `stream_name`
    says where each of its streams is held, when not under its own name (the hub holds north's
    MATCHING as NORTH_MATCHING, with the same subjects)."""
    if await asyncio.to_thread(target.exists):
        raise FileExistsError(f"{target} exists; rebuild writes only into an empty database")
    readers = [
        _StreamReader(js, stream_name(stream), subjects, wiring)
        for stream, subjects in mailbox_filters(
            wiring.catalogue, wiring.service, wiring.site
        ).items()
    ]
    report = RebuildReport()
    async with Store(target, migrations) as store:
        try:
            for reader in readers:
                await reader.open()
            total = sum(r.pending for r in readers)
            buffers = {r.stream: await r.next_batch() for r in readers}
            while any(buffers.values()):
                # Merge the streams in the order JetStream stored the messages. A stream with
                # more to fetch holds nothing older than what it has handed over, so everything
                # up to the oldest of those last-handed-over times is safe to apply now.
                horizon = min(
                    (buffers[r.stream][-1][0] for r in readers if buffers[r.stream] and r.pending),
                    default=float("inf"),
                )
                ready = sorted(
                    (item for buffer in buffers.values() for item in buffer if item[0] <= horizon),
                    key=lambda item: item[:2],
                )
                for reader in readers:
                    buffers[reader.stream] = [i for i in buffers[reader.stream] if i[0] > horizon]
                batch = [delivery for _, _, delivery in ready]
                outcomes = await store.transact(_apply_as_history, wiring, batch)
                report.messages += len(batch)
                report.applied += sum(o.kind == "applied" for o in outcomes)
                report.dead_letters += sum(o.kind == "dead_letter" for o in outcomes)
                report.duplicates += sum(o.kind == "duplicate" for o in outcomes)
                if progress:
                    progress(report.messages, total)
                for reader in readers:
                    if not buffers[reader.stream]:
                        buffers[reader.stream] = await reader.next_batch()
        finally:
            for reader in readers:
                try:
                    await reader.close()
                except Exception as error:  # an inactive consumer removes itself anyway
                    log.warning("could not remove %s: %r", reader.name, error)
    return report
