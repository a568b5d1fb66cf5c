"""What the items service tests share: a running service and ways to talk to it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import msgspec
import nats
from helpers import new_site, publish, settings_for, subject_messages

from sinew.common.config import Settings
from sinew.common.http import hash_token
from sinew.common.service import Runtime
from sinew.common.testing.nats_server import free_port
from sinew.contracts import CATALOGUE

INGRESS = CATALOGUE.channel("ingress.masterdata.upserted.v1")
encode = msgspec.json.Encoder(decimal_format="string").encode

ANALYST = {"Authorization": "Bearer analyst-token"}
CLERK = {"Authorization": "Bearer clerk-token"}


def write_tokens(path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                hash_token("analyst-token"): {"name": "ana", "roles": ["supply-chain"]},
                hash_token("clerk-token"): {"name": "rui", "roles": ["receiving"]},
            }
        )
    )
    return path


def items_settings(nats_server, tmp_path: Path, site: str | None = None) -> Settings:
    return settings_for(
        "items",
        site or new_site(),
        nats_server,
        tmp_path,
        http_port=free_port(),
        tokens_file=write_tokens(tmp_path / "tokens.json"),
    )


@dataclass
class Items:
    """A running items service and what a test talks to it with."""

    runtime: Runtime
    settings: Settings
    nc: nats.NATS
    js: object
    http: aiohttp.ClientSession

    @property
    def site(self) -> str:
        return self.settings.site

    async def send(self, *records, event_id: str | None = None, source: str | None = None):
        """Publish MDM upserts on the ingress subject, as the MDM feed does."""
        extra = {"ce-source": source} if source else {}
        for record in records:
            await publish(
                self.js,
                INGRESS.subject(self.site),
                encode(record),
                site=self.site,
                event_id=event_id,
                type_=INGRESS.ce_type,
                **extra,
            )

    async def send_raw(self, payload: bytes, event_id: str | None = None):
        await publish(
            self.js, INGRESS.subject(self.site), payload, site=self.site, event_id=event_id
        )

    async def events(self, channel: str = "items.item.upserted.v1") -> list:
        published = CATALOGUE.channel(channel)
        messages = await subject_messages(self.js, "ITEMS", published.subject(self.site))
        return [msgspec.json.decode(m.data, type=published.message) for m in messages]

    async def get(self, path: str, **params) -> tuple[int, dict]:
        async with self.http.get(path, params=params) as response:
            return response.status, await response.json()

    async def put(self, path: str, body, headers=ANALYST) -> tuple[int, dict]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.http.put(path, data=data, headers=headers) as response:
            return response.status, await response.json()
