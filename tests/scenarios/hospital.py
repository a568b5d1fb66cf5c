"""The whole site as `sinew up` runs it, in one process, for the business scenarios
(../shared/design/SCENARIOS.md): a secured nats-server, every built service for north and south,
each under its own NATS user with its generated permissions, and the outside systems (MDM, EHR,
AP, supplier, ERP, dock, warehouse) as their own users. Tests drive it only the way people and
systems do: ingress subjects and the services' HTTP APIs. They read outcomes from those APIs and
from the streams, over a provisioner connection, as an auditor would."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
import outside_systems as outside
import scenario_data as scenario
from helpers import (
    FAST,
    ServiceProcess,
    envelope_headers,
    eventually,
    patient_token_key,
    subject_messages,
)

from sinew.common.config import Settings
from sinew.common.http import hash_token
from sinew.common.natsconfig import PROVISIONER, consumer_name, inbox_prefix, site_users
from sinew.common.provision import provision
from sinew.common.service import Runtime, serve
from sinew.common.testing.nats_server import NatsServer, free_port
from sinew.contracts import CATALOGUE
from sinew.contracts.envelope import CORRELATION_ID, MSG_ID
from sinew.contracts.receiving import AdvanceShipNotice
from sinew.services import built, definition

SITES = ["north", "south"]
PASSWORD = "scenario-only-password"

# One bearer token per role the services know; the name is what the audit trail records.
PEOPLE = {
    "supply-chain": "sam.contracts",
    "receiving": "rita.receiving",
    "ap": "alex.ap",
    "operator": "olga.sre",
    "admin": "ada.admin",
}


def token(role: str) -> str:
    return f"{role}-scenario-token"


_encode = msgspec.json.Encoder(decimal_format="string").encode


def encoded(message: Any) -> bytes:
    return message if isinstance(message, bytes) else _encode(message)


class Refused(Exception):
    """The server would not take a publish (a permissions violation shows only as a timeout)."""


@dataclass
class RunningService:
    name: str
    site: str
    settings: Settings
    task: asyncio.Task | None = None
    runtime: Runtime | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"


@dataclass
class Published:
    event_id: str
    correlation_id: str
    stream: str
    seq: int
    duplicate: bool


@dataclass
class Hospital:
    workdir: Path
    server: NatsServer | None = None
    services: dict[tuple[str, str], RunningService] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    connections: dict[str, Any] = field(default_factory=dict)
    permission_errors: dict[str, list[Exception]] = field(default_factory=dict)
    http: aiohttp.ClientSession | None = None
    tokens_file: Path | None = None

    # -- lifetime ------------------------------------------------------------------------------

    async def start(self) -> Hospital:
        users = site_users(CATALOGUE, SITES)
        self.server = NatsServer(
            self.workdir / "nats", users=users, passwords={u: PASSWORD for u in users}
        ).start()
        self.tokens_file = self.workdir / "tokens.json"
        self.tokens_file.write_text(
            json.dumps({hash_token(token(r)): {"name": n, "roles": [r]} for r, n in PEOPLE.items()})
        )
        self.http = aiohttp.ClientSession()
        self.names = built()  # once: a service whose code lands mid-run waits for the next run
        provisioner = await self.connect(PROVISIONER)
        await provision(provisioner.jetstream(), CATALOGUE, SITES, self.names, FAST)
        for site in SITES:
            for name in self.names:
                service = RunningService(name, site, self.settings(name, site))
                self.services[(name, site)] = service
        await asyncio.gather(*(self.start_service(n, s) for n, s in self.services))
        for site in SITES:
            await self.load_master_data(site)
        return self

    async def stop(self) -> None:
        await asyncio.gather(
            *(self.stop_service(n, s) for (n, s), svc in self.services.items() if svc.task)
        )
        for nc in self.connections.values():
            await nc.close()
        if self.http:
            await self.http.close()
        if self.server:
            self.server.stop()

    def settings(self, name: str, site: str) -> Settings:
        return Settings(
            service=name,
            site=site,
            nats_url=self.server.url,
            nats_user=f"{name}-{site}",
            nats_password=PASSWORD,
            data_dir=self.workdir / "data",
            http_port=free_port(),
            tokens_file=self.tokens_file,
            nats_monitor_url=self.server.monitor_url,
            patient_token_key_file=patient_token_key(self.workdir / "data", site),
        )

    async def start_service(self, name: str, site: str) -> Runtime:
        service = self.services[(name, site)]
        started = asyncio.Event()
        holder: list[Runtime] = []
        service.task = asyncio.create_task(
            serve(
                definition(name),
                service.settings,
                catalogue=CATALOGUE,
                policy=FAST,
                started=started,
                runtime_ready=holder.append,
                install_signal_handlers=False,
            ),
            name=f"{name}-{site}",
        )
        waiting = asyncio.create_task(started.wait())
        done, _ = await asyncio.wait(
            [service.task, waiting], timeout=30, return_when=asyncio.FIRST_COMPLETED
        )
        if service.task in done:
            waiting.cancel()
            service.task.result()  # a service that could not start says why here
        service.runtime = holder[0]
        return service.runtime

    async def stop_service(self, name: str, site: str) -> None:
        service = self.services[(name, site)]
        if service.task is None:
            return
        service.runtime.stopped.set()
        await asyncio.wait_for(service.task, 30)
        service.task = None

    def crashable(self, name: str, site: str, faults: str = "") -> ServiceProcess:
        """The same service as its own OS process (same database, same NATS user), so a test can
        have it killed at the worst moment."""
        return CredentialedProcess(
            "sinew.cli.main", self.services[(name, site)].settings, ["run", name], faults
        )

    async def alive(self, site: str) -> dict[str, int]:
        """Every service's /readyz status at the site."""
        answers = {}
        for (name, s), service in self.services.items():
            if s == site:
                async with self.http.get(f"{service.url}/readyz") as response:
                    answers[name] = response.status
        return answers

    # -- NATS as the outside systems and the auditor ------------------------------------------

    async def connect(self, user: str):
        if user in self.connections:
            return self.connections[user]
        errors = self.permission_errors.setdefault(user, [])

        async def error_cb(error: Exception) -> None:
            errors.append(error)

        nc = await nats.connect(
            self.server.url,
            user=user,
            password=PASSWORD,
            inbox_prefix=inbox_prefix(user),
            error_cb=error_cb,
            name=user,
        )
        self.connections[user] = nc
        return nc

    async def auditor(self):
        return (await self.connect(PROVISIONER)).jetstream()

    async def send(
        self,
        system: str,
        site: str,
        channel_name: str,
        message: Any,
        *,
        event_id: str | None = None,
        correlation_id: str | None = None,
        subject: str | None = None,
        msg_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Published:
        """Publish as `<system>-<site>` on an ingress channel, with CloudEvents headers."""
        channel = CATALOGUE.channel(channel_name)
        event_id = event_id or str(uuid.uuid4())
        correlation_id = correlation_id or str(uuid.uuid4())
        extra = {CORRELATION_ID: correlation_id, **(headers or {})}
        if msg_id:
            extra[MSG_ID] = msg_id
        js = (await self.connect(f"{system}-{site}")).jetstream()
        try:
            ack = await js.publish(
                subject or channel.subject(site),
                encoded(message),
                headers=envelope_headers(site, channel.ce_type, event_id, **extra),
                timeout=2,
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as error:
            target = subject or channel.subject(site)
            raise Refused(f"{system}-{site} may not publish to {target}: {error!r}") from error
        return Published(event_id, correlation_id, ack.stream, ack.seq, bool(ack.duplicate))

    async def stored(self, subject: str) -> int:
        """How many messages JetStream holds on a subject."""
        js = await self.auditor()
        stream = await js.find_stream_name_by_subject(subject)
        info = await js.stream_info(stream, subjects_filter=subject)
        return sum((info.state.subjects or {}).values())

    async def messages(self, channel_name: str, site: str) -> list:
        """Every message on a canonical channel of the site, oldest first."""
        channel = CATALOGUE.channel(channel_name)
        stream = CATALOGUE.stream_for(channel).name
        return await subject_messages(await self.auditor(), stream, channel.subject(site))

    async def events(self, channel_name: str, site: str, **where: Any) -> list:
        """The decoded events of a channel whose fields equal `where`."""
        message_type = CATALOGUE.channel(channel_name).message
        decoded = [
            msgspec.json.decode(m.data, type=message_type)
            for m in await self.messages(channel_name, site)
        ]
        return [e for e in decoded if all(getattr(e, k) == v for k, v in where.items())]

    async def events_with_headers(self, channel_name: str, site: str, **where: Any) -> list:
        """(headers, event, stored time) of the matching events."""
        message_type = CATALOGUE.channel(channel_name).message
        found = []
        for m in await self.messages(channel_name, site):
            event = msgspec.json.decode(m.data, type=message_type)
            if all(getattr(event, k) == v for k, v in where.items()):
                found.append((m.headers, event, m.metadata.timestamp))
        return found

    async def wait_events(self, channel_name: str, site: str, n: int = 1, **where: Any) -> list:
        async def enough() -> bool:
            return len(await self.events(channel_name, site, **where)) >= n

        await eventually(enough, timeout=30, what=f"{n} {channel_name} at {site} with {where}")
        return await self.events(channel_name, site, **where)

    async def quiet(self, site: str) -> None:
        """Wait until every service of the site has taken everything sent to it and nothing new
        is being published: the moment to assert that something did NOT happen."""
        js = await self.auditor()

        async def snapshot() -> tuple | None:
            positions = []
            for stream in [s.name for s in CATALOGUE.streams]:
                positions.append((await js.stream_info(stream)).state.last_seq)
            for name in self.names:
                consumer = consumer_name(name, site)
                for stream in {CATALOGUE.stream_for(c).name for c in CATALOGUE.consumed_by(name)}:
                    info = await js.consumer_info(stream, consumer)
                    if info.num_pending or info.num_ack_pending:
                        return None
            return tuple(positions)

        async def still() -> bool:
            before = await snapshot()
            if before is None:
                return False
            await asyncio.sleep(0.3)
            return before == await snapshot()

        await eventually(still, timeout=30, what=f"site {site} quiet")

    # -- HTTP as people ------------------------------------------------------------------------

    def url(self, service: str, site: str, path: str) -> str:
        return self.services[(service, site)].url + path

    async def call(
        self,
        method: str,
        service: str,
        site: str,
        path: str,
        *,
        role: str | None = None,
        body: Any = None,
        data: bytes | None = None,
        expect: int | None = 200,
    ) -> Any:
        headers = {"Authorization": f"Bearer {token(role)}"} if role else {}
        if body is not None:
            data = json.dumps(body).encode()
        async with self.http.request(
            method, self.url(service, site, path), data=data, headers=headers
        ) as response:
            text = await response.text()
            answer = json.loads(text) if text else None
            if expect is not None:
                assert response.status == expect, (method, path, response.status, answer)
            return answer

    async def text(self, service: str, site: str, path: str) -> str:
        async with self.http.get(self.url(service, site, path)) as response:
            assert response.status == 200, (path, response.status)
            return await response.text()

    async def get(self, service: str, site: str, path: str, **kw: Any) -> Any:
        return await self.call("GET", service, site, path, **kw)

    async def post(self, service: str, site: str, path: str, body: Any = None, **kw: Any) -> Any:
        return await self.call("POST", service, site, path, body=body, **kw)

    async def found(self, service: str, site: str, path: str, role: str | None = None) -> Any:
        """Poll a GET until it answers 200 (the service has caught up); its body."""
        headers = {"Authorization": f"Bearer {token(role)}"} if role else {}
        answer: list[Any] = []

        async def there() -> bool:
            async with self.http.get(self.url(service, site, path), headers=headers) as response:
                if response.status == 200:
                    answer.append(await response.json())
                    return True
                return False

        await eventually(there, timeout=30, what=f"{service}@{site} GET {path}")
        return answer[-1]

    async def until(self, what: str, read, check, within: float = 30.0) -> Any:
        """Poll `read()` (an awaitable factory) until `check(answer)` holds; the last answer."""
        last: list[Any] = []

        async def holds() -> bool:
            last.append(await read())
            return bool(check(last[-1]))

        try:
            await eventually(holds, timeout=within, what=what)
        except AssertionError as error:
            raise AssertionError(f"{error}; last answer: {last[-1] if last else None}") from None
        return last[-1]

    # -- master data ---------------------------------------------------------------------------

    async def load_master_data(self, site: str) -> None:
        """What the MDM feed sends to items; items then tells every other service."""
        records = scenario.master_data(site)
        for record in records:
            await self.send(
                "mdm", site, "ingress.masterdata.upserted.v1", scenario.as_upsert(record)
            )
        await self.caught_up_with_items(site, len(records))

    async def caught_up_with_items(self, site: str, at_least: int = 1) -> None:
        """Every consumer of the item master at the site has applied everything items said."""
        js = await self.auditor()

        async def applied() -> bool:
            info = await js.stream_info("ITEMS", subjects_filter=f"sinew.items.{site}.*.upserted.*")
            if sum((info.state.subjects or {}).values()) < at_least:
                return False
            for name in self.names:
                if not any(c.domain == "items" for c in CATALOGUE.consumed_by(name)):
                    continue
                info = await js.consumer_info("ITEMS", consumer_name(name, site))
                if info.num_pending or info.num_ack_pending:
                    return False
            return True

        await eventually(applied, timeout=30, what=f"master data applied at {site}")


class CredentialedProcess(ServiceProcess):
    """ServiceProcess, plus the service's own NATS user and password, as `sinew up` passes them."""

    def start(self, faults: str | None = None) -> ServiceProcess:
        credentials = {
            "SINEW_NATS_USER": self.settings.nats_user or "",
            "SINEW_NATS_PASSWORD": self.settings.nats_password or "",
            "SINEW_HTTP_PORT": str(free_port()),
        }
        saved = {k: os.environ.get(k) for k in credentials}
        os.environ.update(credentials)
        try:
            return super().start(faults)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


class Steps:
    """The business steps the scenarios repeat, each through the public interfaces only."""

    def __init__(self, hospital: Hospital, site: str = "north") -> None:
        self.h = hospital
        self.site = site

    async def order(self, item_id: str, quantity: Any, location_id: str = scenario.CATH_LAB) -> str:
        """A person asks for supplies; the policy approves and procurement places the PO. The
        PO number, once receiving and matching both know the order."""
        requisition = await self.h.post(
            "procurement",
            self.site,
            "/v1/requisitions",
            {"location_id": location_id, "lines": [{"item_id": item_id, "quantity": quantity}]},
            role="supply-chain",
            expect=201,
        )
        assert requisition["status"] == "approved", requisition
        (po_number,) = requisition["po_numbers"]
        await self.known_po(po_number)
        return po_number

    async def known_po(self, po_number: str) -> None:
        await self.h.found(
            "receiving", self.site, f"/v1/purchase-orders/{po_number}/receiving-status"
        )
        await self.h.found("matching", self.site, f"/v1/purchase-orders/{po_number}", role="ap")

    async def purchase_order(self, po_number: str) -> dict:
        return await self.h.get("procurement", self.site, f"/v1/purchase-orders/{po_number}")

    async def ship(self, notice: AdvanceShipNotice, *, x12: bool = False) -> Published:
        """The supplier sends its ASN (JSON, or an X12 856); receiving keeps it."""
        if x12:
            sent = await self.h.send(
                "supplier", self.site, "ingress.asn-x12.received.v1", outside.x12_856(notice)
            )
        else:
            sent = await self.h.send("supplier", self.site, "ingress.asn.submitted.v1", notice)
        await self.h.found("receiving", self.site, f"/v1/asns/{notice.asn_number}")
        return sent

    async def receive_asn(self, asn_number: str) -> dict:
        """The receiving clerk receives everything the ASN lists."""
        outcome = await self.h.post(
            "receiving",
            self.site,
            f"/v1/asns/{asn_number}/receive",
            {},
            role="receiving",
            expect=201,
        )
        for order in outcome["orders"]:
            if order["receipt"]:
                await self.matching_has(order["receipt"])
        return outcome

    async def receive(self, po_number: str, *lines: dict, receipt_id: str | None = None) -> dict:
        body: dict[str, Any] = {"po_number": po_number, "lines": list(lines)}
        if receipt_id:
            body["receipt_id"] = receipt_id
        outcome = await self.h.post(
            "receiving", self.site, "/v1/receipts", body, role="receiving", expect=201
        )
        if outcome["receipt"]:
            await self.matching_has(outcome["receipt"])
        return outcome

    async def matching_has(self, receipt: dict) -> None:
        """Receiving tells matching in its own time; a scenario that means "the invoice comes
        after the goods" waits until matching counts on each PO line what receiving counts."""
        po_number = receipt["po_number"]
        status = await self.h.get(
            "receiving", self.site, f"/v1/purchase-orders/{po_number}/receiving-status"
        )
        received = {line["line_number"]: Decimal(line["received_base"]) for line in status["lines"]}

        async def read() -> dict:
            order = await self.h.get(
                "matching", self.site, f"/v1/purchase-orders/{po_number}", role="ap"
            )
            return {p["line_number"]: Decimal(p["received"]) for p in order["positions"]}

        await self.h.until(
            f"matching counts receipt {receipt['receipt_id']}", read, lambda seen: seen == received
        )

    async def on_hand(
        self, item_id: str, location_id: str = scenario.CATH_LAB, lot: str | None = None
    ) -> Decimal:
        """Units on the shelf, over every lot (or one lot), in the item's base unit."""
        path = f"/v1/positions?location_id={location_id}&item_id={item_id}&limit=500"
        if lot:
            path += f"&lot={lot}"
        positions = (await self.h.get("replenishment", self.site, path))["items"]
        return sum((Decimal(p["on_hand"]["value"]) for p in positions), Decimal(0))

    async def invoice(self, number: str, role: str = "ap") -> dict:
        """Matching's view of the invoice: status, match runs, exceptions, payments."""
        listed = await self.h.get("matching", self.site, f"/v1/invoices?number={number}", role=role)
        (found,) = listed["items"]
        return await self.h.get(
            "matching", self.site, f"/v1/invoices/{found['invoice_id']}", role=role
        )

    async def invoice_reaches(self, number: str, status: str) -> dict:
        async def read() -> dict | None:
            listed = await self.h.get(
                "matching", self.site, f"/v1/invoices?number={number}", role="ap"
            )
            return await self.invoice(number) if listed["items"] else None

        return await self.h.until(
            f"invoice {number} {status}", read, lambda i: i is not None and i["status"] == status
        )

    async def match_exceptions(self, **filters: str) -> list[dict]:
        filters.setdefault("status", "all")
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        return (await self.h.get("matching", self.site, f"/v1/exceptions?{query}", role="ap"))[
            "items"
        ]

    async def usages(self, case_id: str) -> list[dict]:
        return (await self.h.get("usage", self.site, f"/v1/usages?case_id={case_id}"))["items"]

    async def usages_reach(self, case_id: str, n: int, status: str = "recorded") -> list[dict]:
        return await self.h.until(
            f"{n} {status} usages in case {case_id}",
            lambda: self.usages(case_id),
            lambda found: len([u for u in found if u["status"] == status]) >= n,
        )
