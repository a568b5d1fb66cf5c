"""The KV replica other systems read: a background task that moves committed writes from the
kv_pending table into the site's bucket, then forgets them.

The rows are written in the same transaction as the change, so a crash loses none; one may be
put twice (a crash between the put and the delete), and a put never replaces a newer version of
the same record: the bucket only ever moves forward."""

from __future__ import annotations

import asyncio
import logging

from nats.js.api import StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from sinew.common.faults import fault_point
from sinew.common.store import Store

from . import store
from .domain import KvWrite, bucket_name, supersedes

log = logging.getLogger("sinew.items.kv")

BATCH = 200
IDLE_POLL_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 30.0
# Enough past revisions per key for an operator to see a record's recent changes.
HISTORY = 5


async def open_bucket(js, site: str) -> KeyValue:
    name = bucket_name(site)
    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        log.info("creating KV bucket %s", name)
        return await js.create_key_value(
            bucket=name,
            description=f"Item master replica of site {site}: canonical events by key",
            history=HISTORY,
            storage=StorageType.FILE,
            direct=True,
        )


async def put_if_newer(kv: KeyValue, write: KvWrite) -> bool:
    """Apply one write unless the bucket holds the same or a newer version; compare-and-set, so
    nothing written in between is overwritten unseen."""
    while True:
        try:
            entry = await kv.get(write.key)
            held, last = entry.value, entry.revision
        except KeyNotFoundError as missing:  # never written, or deleted
            held, last = None, missing.entry.revision if missing.entry else 0
        if not supersedes(write, held):
            return False
        try:
            if write.op == "put":
                await kv.update(write.key, write.value, last=last)
            else:
                await kv.delete(write.key, last=last)
            return True
        except KeyWrongLastSequenceError:
            continue  # written since we looked: look again


async def project_pending(db: Store, kv: KeyValue) -> int:
    rows = await db.run(store.pending_kv_writes, BATCH)
    for _, write in rows:
        await put_if_newer(kv, write)
    if rows:
        fault_point("after_kv_put")  # for crash tests: the bucket has them, the rows remain
        await db.transact(store.kv_written, [seq for seq, _ in rows])
    return len(rows)


async def project_to_kv(runtime) -> None:
    js = runtime.nc.jetstream()
    bucket: KeyValue | None = None
    backoff = 1.0
    while True:
        try:
            bucket = bucket or await open_bucket(js, runtime.site)
            written = await project_pending(runtime.store, bucket)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # NATS away, or the KV subjects not permitted: the rows wait
            log.warning(
                "KV projection of %s: %r; retrying in %.0fs",
                bucket_name(runtime.site),
                error,
                backoff,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            continue
        backoff = 1.0
        if not written:
            await asyncio.sleep(IDLE_POLL_SECONDS)
