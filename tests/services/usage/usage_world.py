"""A usage service on a real nats-server with the scenarios' master data, and what the outside
world does to it: the EHR sending usages and voids in three formats (and waiting for its HL7
ACKs), the item master publishing, a recall coordinator asking over HTTP and NATS."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import msgspec
import nats
import scenario_data as scenario
from helpers import count, eventually, publish, running, settings_for, subject_messages
from usage_documents import Dft

from sinew.common.config import Settings
from sinew.common.http import hash_token
from sinew.common.service import Runtime
from sinew.common.testing.nats_server import free_port
from sinew.contracts import CATALOGUE
from sinew.contracts.items import ContractUpserted, ItemUpserted, LocationUpserted
from sinew.services.usage.service import DEFINITION

JSON_USAGE = CATALOGUE.channel("ingress.usage.recorded.v1")
JSON_VOID = CATALOGUE.channel("ingress.usage.voided.v1")
HL7 = CATALOGUE.channel("ingress.usage-hl7.received.v1")
FHIR = CATALOGUE.channel("ingress.usage-fhir.received.v1")
RECORDED = "usage.procedure-usage.recorded.v1"
VOIDED = "usage.procedure-usage.voided.v1"
RAISED = "usage.exception.raised.v1"
CLEARED = "usage.exception.cleared.v1"
BILL_ONLY = "usage.bill-only.requested.v1"
# The master data usage keeps (suppliers and substitutions it has no use for).
CONSUMED = (ItemUpserted, ContractUpserted, LocationUpserted)
ANALYST = {"Authorization": "Bearer analyst-token"}


def write_tokens(path):
    path.write_text(
        json.dumps({hash_token("analyst-token"): {"name": "ana", "roles": ["supply-chain"]}})
    )
    return path


def usage_settings(nats_server, tmp_path, site: str) -> Settings:
    return settings_for(
        "usage",
        site,
        nats_server,
        tmp_path,
        http_port=free_port(),
        tokens_file=write_tokens(tmp_path / "tokens.json"),
    )


@dataclass
class UsageWorld:
    settings: Settings
    nc: nats.NATS
    js: object
    http: aiohttp.ClientSession
    runtime: Runtime | None = None

    @property
    def site(self) -> str:
        return self.settings.site

    @property
    def db(self):
        return self.settings.database_path

    # -- the item master --------------------------------------------------------------------

    async def master_data(self, records=None) -> None:
        """Publish master data as items would, and wait until the replica holds it, so a test
        that sends a usage next knows the item master has caught up."""
        records = scenario.master_data(self.site) if records is None else records
        kept = [r for r in records if isinstance(r, CONSUMED)]
        before = count(self.db, "md_records")
        await scenario.publish_master_data(self.js, self.site, records)
        await eventually(
            lambda: count(self.db, "md_records") >= before + len(kept),
            what="master data in the usage replica",
        )

    # -- the EHR ----------------------------------------------------------------------------

    async def send(self, channel, payload: bytes, event_id: str | None = None, **headers):
        await publish(
            self.js,
            channel.subject(self.site),
            payload,
            site=self.site,
            event_id=event_id,
            type_=channel.ce_type,
            **headers,
        )

    async def send_json(self, payload: bytes, event_id: str | None = None):
        await self.send(JSON_USAGE, payload, event_id)

    async def send_void(self, payload: bytes, event_id: str | None = None):
        await self.send(JSON_VOID, payload, event_id)

    async def send_hl7(self, message: Dft | bytes, reply_to: str | None = None):
        data = message.encode() if isinstance(message, Dft) else message
        headers = {"sinew-reply-to": reply_to} if reply_to else {}
        await self.send(HL7, data, **headers)

    async def send_fhir(self, payload: bytes):
        await self.send(FHIR, payload)

    @asynccontextmanager
    async def ehr_inbox(self):
        """A reply subject under the EHR user's own inbox prefix, and the ACKs that reach it."""
        subject = f"_INBOX_ehr-{self.site}.{uuid.uuid4().hex}"
        received: list[bytes] = []

        async def keep(message) -> None:
            received.append(message.data)

        subscription = await self.nc.subscribe(subject, cb=keep)
        await self.nc.flush()
        try:
            yield subject, received
        finally:
            await subscription.unsubscribe()

    # -- what usage published ---------------------------------------------------------------

    async def events(self, channel: str) -> list:
        published = CATALOGUE.channel(channel)
        messages = await subject_messages(self.js, "USAGE", published.subject(self.site))
        return [msgspec.json.decode(m.data, type=published.message) for m in messages]

    async def wait_events(self, channel: str, n: int, within: float = 20.0) -> list:
        found: list = []

        async def enough() -> bool:
            found[:] = await self.events(channel)
            return len(found) >= n

        await eventually(enough, timeout=within, what=f"{n} event(s) on {channel}")
        return found

    async def quiet(self, seconds: float = 0.5) -> None:
        """Let anything in flight land, before asserting that something did not happen."""
        await eventually(
            lambda: self.runtime is None or self.runtime.relay.backlog == 0,
            what="outbox drained",
        )
        await asyncio.sleep(seconds)

    # -- HTTP -------------------------------------------------------------------------------

    async def get(self, path: str, **params) -> tuple[int, dict]:
        async with self.http.get(path, params=params) as response:
            return response.status, await response.json()

    async def post(self, path: str, body: dict, headers=ANALYST) -> tuple[int, dict]:
        async with self.http.post(path, json=body, headers=headers) as response:
            return response.status, await response.json()


@asynccontextmanager
async def usage_world(nats_server, tmp_path, site: str):
    settings = usage_settings(nats_server, tmp_path, site)
    nc = await nats.connect(nats_server.url)
    try:
        async with (
            running(DEFINITION, settings, CATALOGUE) as runtime,
            aiohttp.ClientSession(f"http://127.0.0.1:{settings.http_port}") as http,
        ):
            yield UsageWorld(settings, nc, nc.jetstream(), http, runtime)
    finally:
        await nc.close()
