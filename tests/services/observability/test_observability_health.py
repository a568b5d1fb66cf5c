"""A stopped service shows within seconds: silent on $SRV.PING, and its backlog growing. A running
one shows its own figures: outbox backlog, duplicates its inbox absorbed, messages it terminated."""

from __future__ import annotations

import aiohttp
import nats
import obs_feed as f
import pytest
from helpers import envelope_headers, eventually, new_site, running, settings_for

from sinew.common.testing.nats_server import free_port
from sinew.contracts import CATALOGUE
from sinew.contracts.envelope import MSG_ID
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


async def test_each_service_shows_its_duplicates_outbox_and_terminated_messages(
    nats_server, tmp_path, fast_poll
):
    site = new_site()
    port = free_port()
    settings = settings_for("observability", site, nats_server, tmp_path, http_port=port)
    replenishment = settings_for("replenishment", site, nats_server, tmp_path / "r")
    async with (
        running(DEFINITION, settings, CATALOGUE),
        running(REPLENISHMENT, replenishment, CATALOGUE),
        aiohttp.ClientSession() as http,
    ):
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        feed = f.Feed(js, site)
        usage = f.usage(site, "CASE-9", "S9")
        channel = "usage.procedure-usage.recorded.v1"
        event_id = await feed.emit(channel, usage, correlation="Z")
        # The same event again after JetStream's duplicate window (a new Nats-Msg-Id): only
        # the service's inbox can tell, and it says so.
        headers = envelope_headers(site, CATALOGUE.channel(channel).ce_type, event_id)
        await js.publish(
            CATALOGUE.channel(channel).subject(site),
            f._encoder.encode(usage),
            headers={**headers, MSG_ID: f"{event_id}-resent"},
        )
        await js.publish(CATALOGUE.channel(channel).subject(site), b"{not json", headers={
            **envelope_headers(site, CATALOGUE.channel(channel).ce_type)
        })  # fmt: skip
        await nc.close()

        async def technical() -> dict:
            async with http.get(f"http://127.0.0.1:{port}/v1/technical") as response:
                return await response.json()

        async def figures() -> bool:
            t = await technical()
            shown = [s for s in t["services"] if s["service"] == "replenishment"]
            terminated = [
                a
                for a in t["advisories"]
                if (a["kind"], a["stream"], a["consumer"])
                == ("terminated", "USAGE", f"replenishment-{site}")
            ]
            return (
                bool(shown)
                and shown[0].get("duplicates_suppressed") == 1
                and shown[0].get("open_dead_letters") == 1
                and shown[0].get("outbox_backlog") == 0
                and [a["count"] for a in terminated] == [1]
            )

        await eventually(figures, timeout=10, what="replenishment's own figures")
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            exposition = await response.text()
        assert (
            f'sinew_obs_service_duplicates_suppressed{{service="replenishment",site="{site}"}} 1.0'
            in exposition
        )
        assert (
            "sinew_obs_jetstream_advisories{"
            f'consumer="replenishment-{site}",kind="terminated",site="{site}",stream="USAGE"}} 1.0'
        ) in exposition
