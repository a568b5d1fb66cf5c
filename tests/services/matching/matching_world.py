"""A matching service on a real nats-server with the scenarios' master data, and what the world
around it does: procurement approving POs, receiving taking goods, usage recording implants, the
AP system and suppliers sending invoices (JSON and X12 810), the ERP releasing payments, and
analysts working the queues over HTTP."""

from __future__ import annotations

import json
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
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
from sinew.contracts.matching import (
    InvoiceLine,
    InvoiceSubmission,
    PaidInvoice,
    PaymentRelease,
)
from sinew.contracts.procurement import (
    BillOnlyUsage,
    PurchaseOrderApproved,
    PurchaseOrderCancelled,
    PurchaseOrderChanged,
    PurchaseOrderClosed,
    PurchaseOrderLine,
)
from sinew.contracts.receiving import GoodsReceived, ReceiptLine
from sinew.contracts.usage import ProcedureUsageRecorded, ProcedureUsageVoided
from sinew.services.matching.service import DEFINITION
from sinew.x12 import write_810

AP, SUPPLY_CHAIN, RECEIVING, NURSE = "ap-token", "sc-token", "rcv-token", "nurse-token"
TOKENS = {
    AP: {"name": "alex.ap", "roles": ["ap"]},
    SUPPLY_CHAIN: {"name": "sam.contracts", "roles": ["supply-chain"]},
    RECEIVING: {"name": "rita.receiving", "roles": ["receiving"]},
    NURSE: {"name": "nora.nurse", "roles": ["clinician"]},
}
ORDER_DATE = date(2024, 3, 1)
INVOICE_DATE = date(2024, 3, 12)
_encoder = msgspec.json.Encoder(decimal_format="string")
_numbers = counter(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_numbers)}"


def q(value, uom: str = "EA") -> Quantity:
    return Quantity(Decimal(str(value)), uom)


def po_line(n: int, item_id: str, quantity, uom: str, price: str, **extra) -> PurchaseOrderLine:
    return PurchaseOrderLine(
        line_number=n,
        item_id=item_id,
        quantity=q(quantity, uom),
        unit_price=Decimal(price),
        extended_amount=Decimal(price) * Decimal(str(quantity)),
        contract_number=scenario.CONTRACT,
        **extra,
    )


def invoice_line(n: int, quantity, uom: str, price: str, **names) -> InvoiceLine:
    return InvoiceLine(
        line_number=n,
        quantity=q(quantity, uom),
        unit_price=Decimal(price),
        extended_amount=(Decimal(price) * Decimal(str(quantity))).quantize(Decimal("0.01")),
        **names,
    )


class World:
    def __init__(self, settings, js, http: aiohttp.ClientSession | None = None) -> None:
        self.settings, self.site, self.js, self.http = settings, settings.site, js, http

    @property
    def db(self):
        return self.settings.database_path

    # -- the outside world ---------------------------------------------------------------------

    async def emit(self, channel_name: str, payload: bytes, event_id: str | None = None) -> str:
        channel = CATALOGUE.channel(channel_name)
        event_id = event_id or str(uuid.uuid4())
        await publish(
            self.js,
            channel.subject(self.site),
            payload,
            site=self.site,
            type_=channel.ce_type,
            event_id=event_id,
        )
        return event_id

    async def handled(self, event_id: str) -> None:
        """Wait until matching took the event (applied, or dead-lettered)."""
        await eventually(
            lambda: (
                query(
                    self.db, "SELECT count(*) FROM sinew_inbox WHERE key LIKE ?", (f"%:{event_id}",)
                )[0][0]
                == 1
            ),
            what=f"event {event_id} handled",
        )

    async def send(self, channel_name: str, message, wait: bool = True, **kw) -> str:
        event_id = await self.emit(channel_name, _encoder.encode(message), **kw)
        if wait:
            await self.handled(event_id)
        return event_id

    async def master_data(self, records=None) -> None:
        for record in scenario.master_data(self.site) if records is None else records:
            name = scenario._CHANNEL_OF[type(record)]
            if name in {c.name for c in CATALOGUE.consumed_by("matching")}:
                await self.send(name, record)

    async def order(
        self,
        po_number: str,
        *lines: PurchaseOrderLine,
        revision: int = 1,
        changed: bool = False,
        bill_only: bool = False,
        case_id: str | None = None,
        order_date: date = ORDER_DATE,
    ) -> None:
        fields = dict(
            site=self.site,
            po_number=po_number,
            revision=revision,
            supplier_id=scenario.MEDSUP,
            order_date=order_date,
            cost_centre_id=scenario.CARDIOLOGY,
            ship_to_location_id=scenario.CATH_LAB,
            lines=lines,
            total=sum((line.extended_amount for line in lines), Decimal(0)),
            bill_only=bill_only,
            case_id=case_id,
        )
        if changed:
            message = PurchaseOrderChanged(
                **fields,
                cause="buyer",
                changed_by="buyer",
                reason="price corrected",
                changed_at=datetime.now(UTC),
            )
            await self.send("procurement.purchase-order.changed.v1", message)
        else:
            message = PurchaseOrderApproved(
                **fields, approved_by="policy", approved_at=datetime.now(UTC)
            )
            await self.send("procurement.purchase-order.approved.v1", message)

    async def cancel(self, po_number: str, revision: int = 1) -> None:
        await self.send(
            "procurement.purchase-order.cancelled.v1",
            PurchaseOrderCancelled(
                site=self.site,
                po_number=po_number,
                revision=revision,
                supplier_id=scenario.MEDSUP,
                cancelled_by="buyer",
                reason="ordered twice",
                cancelled_at=datetime.now(UTC),
            ),
        )

    async def close(self, po_number: str) -> None:
        await self.send(
            "procurement.purchase-order.closed.v1",
            PurchaseOrderClosed(
                site=self.site,
                po_number=po_number,
                supplier_id=scenario.MEDSUP,
                reason="fully_received",
                closed_by="receiving",
                closed_at=datetime.now(UTC),
            ),
        )

    async def receive(
        self, po_number: str, *lines: tuple[int, str, Quantity, Quantity], receipt_id: str = ""
    ) -> str:
        """Lines of (PO line, item, quantity as received, quantity in base units)."""
        receipt_id = receipt_id or unique("RCPT")
        await self.send(
            "receiving.goods.received.v1",
            GoodsReceived(
                site=self.site,
                receipt_id=receipt_id,
                po_number=po_number,
                supplier_id=scenario.MEDSUP,
                location_id=scenario.CATH_LAB,
                lines=tuple(
                    ReceiptLine(
                        po_line_number=n,
                        item_id=item_id,
                        quantity=quantity,
                        base_quantity=base,
                        lot=f"L{n}",
                    )
                    for n, item_id, quantity, base in lines
                ),
                source="api",
                received_by="dock-1",
                received_at=datetime.now(UTC),
            ),
        )
        return receipt_id

    async def use(self, usage_id: str, case_id: str, item_id: str, serial: str) -> None:
        await self.send(
            "usage.procedure-usage.recorded.v1",
            ProcedureUsageRecorded(
                site=self.site,
                usage_id=usage_id,
                source_usage_id=f"EHR-{usage_id}",
                case_id=case_id,
                procedure_code="92928",
                physician_id="DR-1",
                location_id=scenario.CATH_LAB,
                item_id=item_id,
                quantity=q(1),
                base_quantity=q(1),
                used_at=datetime.now(UTC),
                patient_token="pt-" + "a" * 20,
                serial=serial,
                lot="L9",
                implant=True,
                consignment=True,
                bill_only=True,
                supplier_id=scenario.MEDSUP,
                contract_number=scenario.CONTRACT,
                source_format="json",
                recorded_at=datetime.now(UTC),
            ),
        )

    async def void(self, usage_id: str, case_id: str, item_id: str) -> None:
        await self.send(
            "usage.procedure-usage.voided.v1",
            ProcedureUsageVoided(
                site=self.site,
                usage_id=usage_id,
                source_usage_id=f"EHR-{usage_id}",
                case_id=case_id,
                location_id=scenario.CATH_LAB,
                item_id=item_id,
                quantity=q(1),
                base_quantity=q(1),
                bill_only=True,
                reason="documented on the wrong case",
                voided_at=datetime.now(UTC),
            ),
        )

    def invoice_document(
        self,
        number: str,
        po_number: str | None,
        *lines: InvoiceLine,
        freight: str = "0.00",
        total: Decimal | None = None,
    ) -> InvoiceSubmission:
        subtotal = sum((line.extended_amount for line in lines), Decimal(0))
        return InvoiceSubmission(
            site=self.site,
            supplier_id=scenario.MEDSUP,
            invoice_number=number,
            invoice_date=INVOICE_DATE,
            po_number=po_number,
            lines=lines,
            subtotal=subtotal,
            freight=Decimal(freight),
            total=subtotal + Decimal(freight) if total is None else total,
            due_date=date(2024, 4, 11),
            payment_terms="NET30",
        )

    async def invoice(self, number: str, po_number: str | None, *lines: InvoiceLine, **kw) -> str:
        document = self.invoice_document(number, po_number, *lines, **kw)
        return await self.send("ingress.invoice.submitted.v1", document)

    async def invoice_x12(self, document: InvoiceSubmission, control_number: int = 1) -> str:
        data = write_810(
            document, sender_id="MEDSUP", receiver_id="SINEWNORTH", control_number=control_number
        )
        event_id = await self.emit("ingress.invoice-x12.received.v1", data)
        await self.handled(event_id)
        return event_id

    async def pay(self, payment_id: str, *invoices: tuple[str, str], wait: bool = True) -> str:
        amount = sum((Decimal(a) for _, a in invoices), Decimal(0))
        return await self.send(
            "ingress.payment.released.v1",
            PaymentRelease(
                site=self.site,
                payment_id=payment_id,
                supplier_id=scenario.MEDSUP,
                amount=amount,
                method="ach",
                invoices=tuple(
                    PaidInvoice(invoice_number=n, amount=Decimal(a)) for n, a in invoices
                ),
                released_at=datetime.now(UTC),
            ),
            wait=wait,
        )

    # -- what matching says --------------------------------------------------------------------

    async def get(self, path: str, token: str = AP, status: int = 200) -> dict:
        response = await self.http.get(path, headers={"Authorization": f"Bearer {token}"})
        body = await response.json()
        assert response.status == status, body
        return body

    async def post(self, path: str, body: dict, token: str, status: int = 200) -> dict:
        response = await self.http.post(
            path, data=json.dumps(body), headers={"Authorization": f"Bearer {token}"}
        )
        answer = await response.json()
        assert response.status == status, answer
        return answer

    async def invoice_state(self, number: str) -> dict:
        (found,) = (await self.get(f"/v1/invoices?number={number}"))["items"]
        return await self.get(f"/v1/invoices/{found['invoice_id']}")

    async def exceptions(self, **filters) -> list[dict]:
        filters.setdefault("status", "all")
        path = "/v1/exceptions?" + "&".join(f"{k}={v}" for k, v in filters.items())
        return (await self.get(path))["items"]

    async def events(self, channel_name: str) -> list:
        channel = CATALOGUE.channel(channel_name)
        messages = await subject_messages(self.js, "MATCHING", channel.subject(self.site))
        return [msgspec.json.decode(m.data, type=channel.message) for m in messages]

    async def published(self, channel_name: str, n: int) -> list:
        """Wait until at least n events are on the channel; all of them."""

        async def enough() -> bool:
            return len(await self.events(channel_name)) >= n

        await eventually(enough, what=f"{n} {channel_name}")
        return await self.events(channel_name)


def tokens_file(directory) -> object:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokens.json"
    path.write_text(json.dumps({hash_token(t): entry for t, entry in TOKENS.items()}))
    return path


def matching_settings(nats_server, tmp_path, site: str | None = None):
    return settings_for(
        "matching",
        site or new_site(),
        nats_server,
        tmp_path,
        http_port=free_port(),
        tokens_file=tokens_file(tmp_path),
    )


@asynccontextmanager
async def matching_world(nats_server, tmp_path, settings=None, master_data: bool = True):
    """A running matching service (in this process) and the world around it."""
    settings = settings or matching_settings(nats_server, tmp_path)
    nc = await nats.connect(nats_server.url)
    try:
        async with (
            running(DEFINITION, settings, CATALOGUE),
            aiohttp.ClientSession(f"http://127.0.0.1:{settings.http_port}") as http,
        ):
            world = World(settings, nc.jetstream(), http)
            if master_data:
                await world.master_data()
            yield world
    finally:
        await nc.close()


def stent_order_line(quantity=2, price="1200.00") -> PurchaseOrderLine:
    return po_line(1, scenario.STENT, quantity, "EA", price, supplier_part="MS-DES-318")


def stent_invoice_line(quantity=2, price="1200.00", n: int = 1, **names) -> InvoiceLine:
    names = names or {"supplier_part": "MS-DES-318", "po_line_number": 1}
    return invoice_line(n, quantity, "EA", price, **names)


def bill_only_line(usage_id: str, case_id: str, serial: str) -> PurchaseOrderLine:
    return po_line(
        1,
        scenario.ICD,
        1,
        "EA",
        str(scenario.ICD_PRICE),
        bill_only_usage=BillOnlyUsage(
            bill_only_request_id=f"BOR-{usage_id}",
            usage_id=usage_id,
            case_id=case_id,
            lot="L9",
            serial=serial,
        ),
    )
