"""A stopped service shows within seconds: silent on $SRV.PING, and its backlog growing."""

from __future__ import annotations

import aiohttp
import nats
import obs_feed as f
import pytest
from helpers import eventually, new_site, running, settings_for

from sinew.common.testing.nats_server import free_port
from sinew.contracts import CATALOGUE
from sinew.services.observability import live
from sinew.services.observability.service import DEFINITION
from sinew.services.replenishment.service import DEFINITION as REPLENISHMENT


@pytest.fixture
def fast_poll(monkeypatch):
    monkeypatch.setattr(live, "POLL_SECONDS", 0.3)
    monkeypatch.setattr(live, "PING_SECONDS", 0.2)


async def test_a_stopped_service_goes_silent_and_its_backlog_grows(
    nats_server, tmp_path, fast_poll
):
    site = new_site()
    port = free_port()
    settings = settings_for("observability", site, nats_server, tmp_path, http_port=port)
    async with running(DEFINITION, settings, CATALOGUE), aiohttp.ClientSession() as http:

        async def technical() -> dict:
            async with http.get(f"http://127.0.0.1:{port}/v1/technical") as response:
                return await response.json()

        async def health(service: str) -> bool | None:
            found = [s["up"] for s in (await technical())["services"] if s["service"] == service]
            return found[0] if found else None

        replenishment = settings_for("replenishment", site, nats_server, tmp_path / "r")
        async with running(REPLENISHMENT, replenishment, CATALOGUE):
            await eventually(lambda: _is(health("replenishment"), True), what="replenishment up")
        await eventually(lambda: _is(health("replenishment"), False), timeout=5, what="silent")

        nc = await nats.connect(nats_server.url)
        await f.Feed(nc.jetstream(), site).emit(
            "usage.procedure-usage.recorded.v1", f.usage(site, "CASE-9", "S9"), correlation="Z"
        )
        await nc.close()

        async def waiting() -> bool:
            return any(
                b["consumer"] == f"replenishment-{site}"
                and b["stream"] == "USAGE"
                and b["pending"] == 1
                for b in (await technical())["backlog"]
            )

        await eventually(waiting, timeout=5, what="the stopped service's backlog")


async def _is(value, expected) -> bool:
    return await value is expected
