from __future__ import annotations

import aiohttp
import nats
import pytest
from helpers import running
from items_support import Items, items_settings

from sinew.contracts import CATALOGUE
from sinew.services.items.service import DEFINITION


@pytest.fixture
async def items(nats_server, tmp_path):
    settings = items_settings(nats_server, tmp_path)
    nc = await nats.connect(nats_server.url)
    async with (
        running(DEFINITION, settings, CATALOGUE) as runtime,
        aiohttp.ClientSession(f"http://127.0.0.1:{settings.http_port}") as http,
    ):
        yield Items(runtime, settings, nc, nc.jetstream(), http)
    await nc.close()
