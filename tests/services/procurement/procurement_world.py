"""A procurement service on a real nats-server with the scenarios' master data, and the world
around it: people over HTTP, replenishment and usage raising demand, receiving and matching
reporting goods and invoices, suppliers acknowledging orders."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import count as counter
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
import scenario_data as scenario
from helpers import count, eventually, new_site, publish, running, settings_for, subject_messages

from sinew.common.http import hash_token
from sinew.common.testing.nats_server import free_port
from sinew.contracts import CATALOGUE
from sinew.contracts.common import Quantity
from sinew.contracts.items import (
    ContractPrice,
    ContractUpserted,
    ItemUpserted,
    PackSize,
    SupplierPart,
)
from sinew.contracts.matching import InvoiceApproved
from sinew.contracts.procurement import (
    PurchaseOrderAcknowledged,
    PurchaseOrderApproved,
    PurchaseOrderCancelled,
    PurchaseOrderChanged,
    PurchaseOrderClosed,
    PurchaseOrderSent,
    RequisitionApproved,
    RequisitionCreated,
    RequisitionRejected,
)
from sinew.contracts.receiving import GoodsReceived, ReceiptLine
from sinew.services.procurement.service import DEFINITION

NURSE = "nurse-token"  # a requester with no approval role
ANA = "ana-token"  # supply chain
OPERATOR = "sre-token"

# Gauze is priced per each under its own contract and ordered in boxes of 10 (scenario 13);
# a sterile drape has no contract at all (off contract).
GAUZE = "GAUZE-4x4"
GAUZE_CONTRACT = "MEDSUP-GAUZE-2024"
GAUZE_EACH_PRICE = Decimal("1.25")
DRAPE = "DRAPE-STERILE"

EVENT_TYPES = {
    "procurement.requisition.created.v1": RequisitionCreated,
    "procurement.requisition.approved.v1": RequisitionApproved,
    "procurement.requisition.rejected.v1": RequisitionRejected,
    "procurement.purchase-order.approved.v1": PurchaseOrderApproved,
    "procurement.purchase-order.sent.v1": PurchaseOrderSent,
    "procurement.purchase-order.acknowledged.v1": PurchaseOrderAcknowledged,
    "procurement.purchase-order.changed.v1": PurchaseOrderChanged,
    "procurement.purchase-order.cancelled.v1": PurchaseOrderCancelled,
    "procurement.purchase-order.closed.v1": PurchaseOrderClosed,
}
_encoder = msgspec.json.Encoder(decimal_format="string")
_numbers = counter(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_numbers)}"


def qty(value: str | int, uom: str = "EA") -> Quantity:
    return Quantity(Decimal(str(value)), uom)


def at() -> datetime:
    return datetime.now(UTC)


def gauze(site: str) -> ItemUpserted:
    return ItemUpserted(
        site=site,
        item_id=GAUZE,
        version=1,
        description="Gauze sponge 4x4 in, sterile",
        base_uom="EA",
        packs=(PackSize(uom="BX", base_units=Decimal(10)),),
        supplier_parts=(SupplierPart(supplier_id=scenario.MEDSUP, part_number="MS-GZ-44"),),
        source="mdm",
        upserted_at=scenario.UPSERTED_AT,
    )


def gauze_contract(site: str) -> ContractUpserted:
    return ContractUpserted(
        site=site,
        contract_number=GAUZE_CONTRACT,
        version=1,
        supplier_id=scenario.MEDSUP,
        effective_from=scenario.CONTRACT_START,
        prices=(ContractPrice(item_id=GAUZE, uom="EA", unit_price=GAUZE_EACH_PRICE),),
        source="mdm",
        upserted_at=scenario.UPSERTED_AT,
    )


def drape(site: str) -> ItemUpserted:
    return ItemUpserted(
        site=site,
        item_id=DRAPE,
        version=1,
        description="Sterile drape, large",
        base_uom="EA",
        formulary=False,
        supplier_parts=(SupplierPart(supplier_id=scenario.MEDSUP, part_number="MS-DR-L"),),
        source="mdm",
        upserted_at=scenario.UPSERTED_AT,
    )


def master_data(site: str) -> list[Any]:
    return [*scenario.master_data(site), gauze(site), gauze_contract(site), drape(site)]


def write_tokens(path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                hash_token(NURSE): {"name": "nina", "roles": []},
                hash_token(ANA): {"name": "ana", "roles": ["supply-chain"]},
                hash_token(OPERATOR): {"name": "sre", "roles": ["operator"]},
            }
        )
    )
    return path


@dataclass
class World:
    site: str
    js: Any
    runtime: Any
    http: aiohttp.ClientSession
    db: Path

    # -- what outside parties send -----------------------------------------------------------

    async def send(self, channel: str, message: Any, event_id: str | None = None) -> None:
        target = CATALOGUE.channel(channel)
        await publish(
            self.js,
            target.subject(self.site),
            _encoder.encode(message),
            site=self.site,
            event_id=event_id,
            type_=target.ce_type,
        )

    async def send_bytes(self, channel: str, data: bytes, event_id: str | None = None) -> None:
        target = CATALOGUE.channel(channel)
        await publish(
            self.js, target.subject(self.site), data, site=self.site, event_id=event_id,
            type_=target.ce_type,
        )  # fmt: skip

    async def receive(self, po: dict, *lines: tuple[int, str, str, str]) -> str:
        """Receiving reports goods against PO lines: (line, item, quantity, base quantity)."""
        receipt_id = unique("RCPT")
        await self.send(
            "receiving.goods.received.v1",
            GoodsReceived(
                site=self.site,
                receipt_id=receipt_id,
                po_number=po["po_number"],
                supplier_id=po["supplier_id"],
                location_id=po["ship_to_location_id"],
                lines=tuple(
                    ReceiptLine(
                        po_line_number=line,
                        item_id=item_id,
                        quantity=Quantity(Decimal(q.split()[0]), q.split()[1]),
                        base_quantity=Quantity(Decimal(b.split()[0]), b.split()[1]),
                    )
                    for line, item_id, q, b in lines
                ),
                source="api",
                received_by="dock",
                received_at=at(),
            ),
        )
        return receipt_id

    async def approve_invoice(self, po: dict, amount: str) -> None:
        await self.send(
            "matching.invoice.approved.v1",
            InvoiceApproved(
                site=self.site,
                invoice_id=unique("INV-ID"),
                invoice_number=unique("INV"),
                supplier_id=po["supplier_id"],
                approved_amount=Decimal(amount),
                basis="matched",
                approved_by="matcher",
                po_number=po["po_number"],
                approved_at=at(),
            ),
        )

    # -- HTTP --------------------------------------------------------------------------------

    async def post(self, path: str, body: Any, token: str | None = ANA) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(path, data=_encoder.encode(body), headers=headers)
        return response.status, await response.json()

    async def get(self, path: str) -> dict:
        response = await self.http.get(path)
        assert response.status == 200, await response.text()
        return await response.json()

    async def requisition(self, *lines: tuple[str, str | int, str], token: str = NURSE, **extra):
        body = {
            "location_id": scenario.CATH_LAB,
            "lines": [
                {"item_id": item, "quantity": {"value": str(value), "uom": uom}}
                for item, value, uom in lines
            ],
            **extra,
        }
        status, answer = await self.post("/v1/requisitions", body, token)
        assert status == 201, answer
        return answer

    async def purchase_order(self, po_number: str) -> dict:
        return await self.get(f"/v1/purchase-orders/{po_number}")

    async def wait_for_po(self, state: str | None = None, **filters: str) -> dict:
        query = "&".join(
            f"{k}={v}" for k, v in {**filters, **({"state": state} if state else {})}.items()
        )
        found: list[dict] = []

        async def listed() -> bool:
            found[:] = (await self.get(f"/v1/purchase-orders?{query}"))["items"]
            return bool(found)

        await eventually(listed, what=f"a purchase order with {query}")
        return await self.purchase_order(found[0]["po_number"])

    async def wait_for_state(self, po_number: str, state: str) -> dict:
        shown: dict = {}

        async def reached() -> bool:
            shown.update(await self.purchase_order(po_number))
            return shown["state"] == state

        await eventually(reached, what=f"{po_number} {state}")
        return shown

    # -- what procurement published ----------------------------------------------------------

    async def events(self, channel: str, at_least: int = 0) -> list[Any]:
        subject = CATALOGUE.channel(channel).subject(self.site)
        decoder = msgspec.json.Decoder(EVENT_TYPES[channel]) if channel in EVENT_TYPES else None
        messages: list = []

        async def published() -> bool:
            messages[:] = await subject_messages(self.js, "PROCUREMENT", subject)
            return len(messages) >= at_least

        await eventually(published, what=f"{at_least} events on {channel}")
        return [decoder.decode(m.data) if decoder else m for m in messages]


@asynccontextmanager
async def procurement_world(nats_server, tmp_path: Path, records: list[Any] | None = None):
    site = new_site()
    port = free_port()
    settings = settings_for(
        "procurement",
        site,
        nats_server,
        tmp_path,
        http_port=port,
        tokens_file=write_tokens(tmp_path / "tokens.json"),
    )
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        async with (
            running(DEFINITION, settings, CATALOGUE) as runtime,
            aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http,
        ):
            records = master_data(site) if records is None else records
            await scenario.publish_master_data(js, site, records)
            db = settings.database_path
            await eventually(
                lambda: count(db, "md_records") == len(records), what="master data replicated"
            )
            yield World(site, js, runtime, http, db)
    finally:
        await nc.close()


def today() -> date:
    return datetime.now(UTC).date()
