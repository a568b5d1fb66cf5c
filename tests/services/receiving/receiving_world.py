"""A receiving service on a real nats-server with the scenarios' master data, and what the
outside world does to it: procurement approving POs, suppliers sending ASNs, the dock scanning,
a receiving clerk over HTTP."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import count as counter

import aiohttp
import msgspec
import nats
import scenario_data as scenario
from helpers import eventually, new_site, publish, query, running, settings_for, subject_messages

from sinew.common.http import hash_token
from sinew.common.testing.nats_server import free_port
from sinew.contracts import CATALOGUE
from sinew.contracts.common import Quantity
from sinew.contracts.items import ItemUpserted
from sinew.contracts.procurement import PurchaseOrderApproved, PurchaseOrderLine
from sinew.contracts.receiving import (
    AdvanceShipNotice,
    DockScan,
    GoodsReceived,
    ReceiptExceptionRaised,
    ReceiptExceptionResolved,
    ShippedItem,
    ShippedLot,
    ShippedOrder,
)
from sinew.services.receiving.service import DEFINITION

# A lot-controlled item labelled with an HIBC UDI, for the HIBC dock scan.
SUTURE = "SUTURE-HIBC-3-0"
SUTURE_HIBC_DI = "A123SUTURE1"
CLERK = "clerk-token"
NURSE = "nurse-token"
FUTURE = date.today() + timedelta(days=400)
PAST = date.today() - timedelta(days=3)
_encoder = msgspec.json.Encoder(decimal_format="string")
_numbers = counter(1)


def suture(site: str) -> ItemUpserted:
    return ItemUpserted(
        site=site,
        item_id=SUTURE,
        version=1,
        description="Absorbable suture 3-0",
        base_uom="EA",
        udi_di=SUTURE_HIBC_DI,
        udi_issuer="HIBCC",
        lot_controlled=True,
        source="mdm",
        upserted_at=scenario.UPSERTED_AT,
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_numbers)}"


def purchase_order(
    site: str, po_number: str, *lines: tuple[str, int | str, str], revision: int = 1
) -> PurchaseOrderApproved:
    order_lines = tuple(
        PurchaseOrderLine(
            line_number=n,
            item_id=item_id,
            quantity=Quantity(Decimal(quantity), uom),
            unit_price=Decimal("100.00"),
            extended_amount=Decimal("100.00") * Decimal(quantity),
        )
        for n, (item_id, quantity, uom) in enumerate(lines, start=1)
    )
    return PurchaseOrderApproved(
        site=site,
        po_number=po_number,
        revision=revision,
        supplier_id=scenario.MEDSUP,
        order_date=date.today(),
        cost_centre_id=scenario.CARDIOLOGY,
        ship_to_location_id=scenario.CATH_LAB,
        lines=order_lines,
        total=sum((line.extended_amount for line in order_lines), Decimal(0)),
        approved_by="policy",
        approved_at=datetime.now(UTC),
    )


def stent_asn(
    site: str,
    asn_number: str,
    po_number: str,
    lots: dict[str, str],
    supplier_part: str = "MS-DES-318",
) -> bytes:
    """An ASN for stents (named by the supplier's part number), one serial per lot."""
    return _encoder.encode(
        AdvanceShipNotice(
            site=site,
            asn_number=asn_number,
            supplier_id=scenario.MEDSUP,
            shipped_at=datetime.now(UTC),
            ship_to_location_id=scenario.CATH_LAB,
            orders=(
                ShippedOrder(
                    po_number=po_number,
                    items=(
                        ShippedItem(
                            quantity=Quantity(Decimal(len(lots)), "EA"),
                            po_line_number=1,
                            supplier_part=supplier_part,
                            lots=tuple(
                                ShippedLot(
                                    quantity=Quantity(Decimal(1), "EA"),
                                    lot=lot,
                                    expiry=FUTURE,
                                    serials=(serial,),
                                )
                                for lot, serial in lots.items()
                            ),
                        ),
                    ),
                ),
            ),
        )
    )


class World:
    def __init__(self, site, js, http, runtime) -> None:
        self.site = site
        self.js = js
        self.http = http
        self.runtime = runtime

    @property
    def db(self):
        return self.runtime.settings.database_path

    async def emit(self, channel_name: str, payload: bytes, event_id: str | None = None) -> None:
        channel = CATALOGUE.channel(channel_name)
        await publish(
            self.js,
            channel.subject(self.site),
            payload,
            site=self.site,
            type_=channel.ce_type,
            event_id=event_id,
        )

    async def approve(self, po: PurchaseOrderApproved, wait: bool = True) -> None:
        await self.emit("procurement.purchase-order.approved.v1", _encoder.encode(po))
        if wait:
            await self.wait_for_po(po.po_number, po.revision)

    async def wait_for_po(self, po_number: str, revision: int = 1) -> None:
        await eventually(
            lambda: (
                query(
                    self.db,
                    "SELECT count(*) FROM purchase_orders WHERE po_number=? AND revision>=?",
                    (po_number, revision),
                )[0][0]
                == 1
            ),
            what=f"{po_number} known to receiving",
        )

    async def scan(self, barcode: str, scan_id: str | None = None, **fields) -> str:
        scan_id = scan_id or unique("SCAN")
        body = DockScan(
            site=self.site,
            scan_id=scan_id,
            barcode=barcode,
            location_id=fields.pop("location_id", scenario.CATH_LAB),
            scanned_at=fields.pop("scanned_at", datetime.now(UTC)),
            scanned_by=fields.pop("scanned_by", "dock-1"),
            **fields,
        )
        await self.emit("ingress.dock-scan.scanned.v1", _encoder.encode(body))
        return scan_id

    async def events(self, channel_name: str, type_):
        subject = CATALOGUE.channel(channel_name).subject(self.site)
        messages = await subject_messages(self.js, "RECEIVING", subject)
        return [msgspec.json.decode(m.data, type=type_) for m in messages]

    async def receipts_for(self, po_number: str, n: int | None = None) -> list[GoodsReceived]:
        async def found():
            events = [
                e
                for e in await self.events("receiving.goods.received.v1", GoodsReceived)
                if e.po_number == po_number
            ]
            return events if n is None or len(events) >= n else None

        if n:
            await eventually(found, what=f"{n} goods received for {po_number}")
        return await found() or []

    async def raised(self, n: int = 1, **match) -> list[ReceiptExceptionRaised]:
        async def found():
            events = [
                e
                for e in await self.events("receiving.exception.raised.v1", ReceiptExceptionRaised)
                if all(getattr(e, k) == v for k, v in match.items())
            ]
            return events if len(events) >= n else None

        await eventually(found, what=f"{n} exception(s) raised matching {match}")
        return await found()

    async def resolved(self, exception_id: str) -> ReceiptExceptionResolved:
        async def found():
            events = await self.events("receiving.exception.resolved.v1", ReceiptExceptionResolved)
            return next((e for e in events if e.exception_id == exception_id), None)

        await eventually(found, what=f"{exception_id} resolved")
        return await found()

    async def get(self, path: str, status: int = 200) -> dict:
        response = await self.http.get(path)
        body = await response.json()
        assert response.status == status, body
        return body

    async def post(self, path: str, body: dict | None, token: str = CLERK, status=(200, 201)):
        response = await self.http.post(
            path,
            data=json.dumps(body).encode() if body is not None else b"",
            headers={"Authorization": f"Bearer {token}"},
        )
        answer = await response.json()
        statuses = status if isinstance(status, tuple) else (status,)
        assert response.status in statuses, (response.status, answer)
        return answer

    async def receive(self, po_number: str, *lines: dict, **fields) -> dict:
        return await self.post("/v1/receipts", {"po_number": po_number, "lines": lines, **fields})

    async def status(self, po_number: str) -> dict:
        return await self.get(f"/v1/purchase-orders/{po_number}/receiving-status")


@asynccontextmanager
async def receiving_service(nats_server, tmp_path, site: str | None = None):
    """The receiving service of a new site, with the scenarios' master data loaded."""
    site = site or new_site()
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                hash_token(CLERK): {"name": "rita", "roles": ["receiving"]},
                hash_token(NURSE): {"name": "nora", "roles": ["supply-chain"]},
            }
        )
    )
    port = free_port()
    settings = settings_for(
        "receiving", site, nats_server, tmp_path, http_port=port, tokens_file=tokens
    )
    nc = await nats.connect(nats_server.url)
    try:
        async with (
            running(DEFINITION, settings, CATALOGUE) as runtime,
            aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http,
        ):
            records = [*scenario.master_data(site), suture(site)]
            await scenario.publish_master_data(nc.jetstream(), site, records)
            await eventually(
                lambda: (
                    query(settings.database_path, "SELECT count(*) FROM md_records")[0][0]
                    >= len(records) - 2
                ),  # receiving does not take contracts and cost centres
                what="master data in receiving's replica",
            )
            yield World(site, nc.jetstream(), http, runtime)
    finally:
        await nc.close()
