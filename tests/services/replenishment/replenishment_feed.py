"""What the replenishment service hears, published the way its real senders publish it: receipts
from receiving, usages and voids from usage, counts and adjustments from the warehouse, master
data from items (tests/scenario_data.py)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import msgspec
import nats
from helpers import eventually, publish, settings_for, subject_messages

from sinew.common.http import hash_token
from sinew.common.testing.nats_server import free_port
from sinew.contracts import CATALOGUE
from sinew.contracts.common import Quantity
from sinew.contracts.receiving import GoodsReceived, ReceiptLine
from sinew.contracts.replenishment import (
    AdjustedLine,
    CountedLine,
    StockAdjustment,
    StockCount,
)
from sinew.contracts.usage import ProcedureUsageRecorded, ProcedureUsageVoided

NOW = datetime(2024, 6, 3, 9, 30, tzinfo=UTC)
_encoder = msgspec.json.Encoder(decimal_format="string")

CHANNELS = {
    GoodsReceived: "receiving.goods.received.v1",
    ProcedureUsageRecorded: "usage.procedure-usage.recorded.v1",
    ProcedureUsageVoided: "usage.procedure-usage.voided.v1",
    StockCount: "ingress.inventory.counted.v1",
    StockAdjustment: "ingress.inventory.counted.v1",
}


def each(value: int | str, uom: str = "EA") -> Quantity:
    return Quantity(Decimal(value), uom)


def receipt(
    site: str,
    receipt_id: str,
    location_id: str,
    item_id: str,
    quantity: int,
    *,
    lot: str | None = "L1",
    uom: str = "EA",
) -> GoodsReceived:
    return GoodsReceived(
        site=site,
        receipt_id=receipt_id,
        po_number="PO-1001",
        supplier_id="MEDSUP",
        location_id=location_id,
        lines=(
            ReceiptLine(
                po_line_number=1,
                item_id=item_id,
                quantity=each(quantity, uom),
                base_quantity=each(quantity, uom),
                lot=lot,
            ),
        ),
        source="api",
        received_by="dock clerk",
        received_at=NOW,
    )


def usage(
    site: str,
    usage_id: str,
    location_id: str,
    item_id: str,
    quantity: int = 1,
    *,
    lot: str | None = "L1",
    bill_only: bool = False,
) -> ProcedureUsageRecorded:
    return ProcedureUsageRecorded(
        site=site,
        usage_id=usage_id,
        source_usage_id=f"EHR-{usage_id}",
        case_id=f"CASE-{usage_id}",
        procedure_code="92928",
        physician_id="DR-7",
        location_id=location_id,
        item_id=item_id,
        quantity=each(quantity),
        base_quantity=each(quantity),
        used_at=NOW,
        patient_token="pt-" + uuid.uuid4().hex[:20],
        lot=lot,
        bill_only=bill_only,
        consignment=bill_only,
        source_format="json",
        recorded_at=NOW,
    )


def void(recorded: ProcedureUsageRecorded) -> ProcedureUsageVoided:
    return ProcedureUsageVoided(
        site=recorded.site,
        usage_id=recorded.usage_id,
        source_usage_id=recorded.source_usage_id,
        case_id=recorded.case_id,
        location_id=recorded.location_id,
        item_id=recorded.item_id,
        quantity=recorded.quantity,
        base_quantity=recorded.base_quantity,
        lot=recorded.lot,
        bill_only=recorded.bill_only,
        reason="charted in error",
        voided_at=NOW,
    )


def count(
    site: str, count_id: str, location_id: str, *lines: tuple[str, int | str, str | None, str]
) -> StockCount:
    """lines: (item_id, quantity, lot, uom)."""
    return StockCount(
        site=site,
        count_id=count_id,
        location_id=location_id,
        lines=tuple(
            CountedLine(item_id=item, quantity=each(quantity, uom), lot=lot)
            for item, quantity, lot, uom in lines
        ),
        counted_by="store keeper",
        counted_at=NOW,
    )


def adjustment(
    site: str, adjustment_id: str, location_id: str, item_id: str, change: int, reason: str
) -> StockAdjustment:
    return StockAdjustment(
        site=site,
        adjustment_id=adjustment_id,
        location_id=location_id,
        lines=(AdjustedLine(item_id=item_id, change=each(change), reason=reason, lot="L1"),),
        adjusted_by="store keeper",
        adjusted_at=NOW,
    )


async def send(js, message: Any, *, event_id: str | None = None, **headers: str) -> str:
    """Publish as its sender would; returns the event id, to send the same event again."""
    channel = CATALOGUE.channel(CHANNELS[type(message)])
    event_id = event_id or str(uuid.uuid4())
    await publish(
        js,
        channel.subject(message.site),
        _encoder.encode(message),
        site=message.site,
        event_id=event_id,
        type_=channel.ce_type,
        **headers,
    )
    return event_id


async def published(js, site: str, channel_name: str) -> list[dict]:
    """Every event the service published on a channel, payloads decoded, in stream order."""
    subject = CATALOGUE.channel(channel_name).subject(site)
    return [json.loads(m.data) for m in await subject_messages(js, "REPLENISHMENT", subject)]


async def published_at_least(
    js, site: str, channel_name: str, n: int, location_id: str | None = None
) -> list[dict]:
    """The events once at least n are there (the outbox relays them just after the commit)."""
    found: list[dict] = []

    async def enough() -> bool:
        nonlocal found
        found = [
            e
            for e in await published(js, site, channel_name)
            if location_id is None or e["location_id"] == location_id
        ]
        return len(found) >= n

    await eventually(enough, what=f"{n} events on {channel_name}")
    return found


@dataclass
class Clerk:
    """A materials manager's view: the HTTP API of the running service."""

    http: aiohttp.ClientSession

    async def get(self, path: str, status: int = 200) -> Any:
        response = await self.http.get(path)
        assert response.status == status, await response.text()
        return await response.json()

    async def items(self, path: str) -> list[dict]:
        return (await self.get(path))["items"]

    async def on_hand(self, location_id: str, item_id: str) -> Decimal | None:
        response = await self.http.get(f"/v1/locations/{location_id}/positions")
        if response.status == 404:
            return None
        assert response.status == 200, await response.text()
        found = (await response.json())["items"]
        for row in found:
            if row["item_id"] == item_id:
                return None if row["on_hand"] is None else Decimal(row["on_hand"]["value"])
        return None

    async def wait_on_hand(self, location_id: str, item_id: str, expected: int | str) -> None:
        async def reached() -> bool:
            return await self.on_hand(location_id, item_id) == Decimal(expected)

        await eventually(reached, what=f"on-hand {expected} of {item_id} at {location_id}")


def http_settings(site: str, server, tmp_path):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({hash_token("tok"): {"name": "ana", "roles": ["supply-chain"]}}))
    port = free_port()
    settings = settings_for(
        "replenishment", site, server, tmp_path, http_port=port, tokens_file=tokens
    )
    return settings, f"http://127.0.0.1:{port}"


async def connect(server):
    nc = await nats.connect(server.url)
    return nc, nc.jetstream()
