"""Observability records every canonical event and answers, over HTTP and NATS, the figures a
materials manager, an AP analyst and an SRE rely on."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import timedelta
from pathlib import Path

import aiohttp
import nats
import obs_feed as f
import pytest
import scenario_data
from helpers import count, eventually, new_site, query, running, settings_for

from sinew.common.testing.nats_server import free_port
from sinew.contracts import CATALOGUE
from sinew.services.observability import live
from sinew.services.observability.service import DEFINITION


async def publish_day(feed: f.Feed, site: str) -> int:
    """A small day; returns how many events it published."""
    e = feed.emit
    # The cardiology implant: usage of serial S1 → bill-only request → PO → invoice → match → paid.
    used = await e(
        "usage.procedure-usage.recorded.v1", f.usage(site, "CASE-1", "S1"), correlation="A"
    )
    asked = await e(
        "usage.bill-only.requested.v1",
        f.bill_only_requested(site, "CASE-1", "S1", 30),
        correlation="A",
        caused_by=used,
        seconds=30,
    )
    await e(
        "procurement.purchase-order.approved.v1",
        f.po_approved(site, "PO-BO-1", "18500.00", 120, case_id="CASE-1", serial="S1"),
        correlation="A",
        caused_by=asked,
        seconds=120,
    )
    submitted = await e(
        "matching.invoice.submitted.v1",
        f.invoice_submitted(site, "INV-BO", "PO-BO-1", "18500.00", 600),
        correlation="B",
        seconds=600,
    )
    await e(
        "matching.invoice.matched.v1",
        f.invoice_matched(site, "INV-BO", "PO-BO-1", "18500.00", True, 601),
        correlation="B",
        caused_by=submitted,
        seconds=601,
    )
    await e(
        "matching.payment.released.v1",
        f.payment(site, "PAY-1", "INV-BO", "18500.00", 3600),
        correlation="C",
        seconds=3600,
    )
    # Two more invoices: one matched first time, one only after a price variance (leakage).
    await e(
        "matching.invoice.submitted.v1",
        f.invoice_submitted(site, "INV-1", "PO-1", "1200.00"),
        correlation="D",
    )
    await e(
        "matching.invoice.matched.v1",
        f.invoice_matched(site, "INV-1", "PO-1", "1200.00", True),
        correlation="D",
    )
    await e(
        "matching.invoice.submitted.v1",
        f.invoice_submitted(site, "INV-3", "PO-3", "1500.00"),
        correlation="E",
    )
    raised = f.match_exception(
        site, "MX-1", "PRICE_VARIANCE", "supply_chain", "INV-3", "300.00", f.at(10), "PO-3"
    )
    await e("matching.exception.raised.v1", raised, correlation="E")
    await e(
        "matching.exception.resolved.v1",
        f.match_resolved(site, "MX-1", "PRICE_VARIANCE", "INV-3", 20),
        correlation="E",
    )
    await e(
        "matching.invoice.matched.v1",
        f.invoice_matched(site, "INV-3", "PO-3", "1500.00", False, 21),
        correlation="E",
    )
    # An invoice waiting for its receipt, four days now, and an unknown item in usage.
    await e(
        "matching.invoice.submitted.v1",
        f.invoice_submitted(site, "INV-4", "PO-4", "500.00"),
        correlation="F",
    )
    waiting = f.match_exception(
        site,
        "MX-2",
        "AWAITING_RECEIPT",
        "receiving",
        "INV-4",
        "500.00",
        f.T0 - timedelta(days=4),
        "PO-4",
    )
    await e("matching.exception.raised.v1", waiting, correlation="F")
    await e("usage.exception.raised.v1", f.usage_exception(site, "UX-1", 5), correlation="G")
    # Received and not invoiced: 3 guidewires at 100.00 on PO-R1.
    await e(
        "procurement.purchase-order.approved.v1",
        f.po_approved(site, "PO-R1", "100.00", 0, quantity=5),
        correlation="H",
    )
    await e(
        "receiving.goods.received.v1",
        f.goods_received(site, "R-1", "PO-R1", 3, 50),
        correlation="H",
        seconds=50,
    )
    # Stock: one signal still open, one closed.
    await e(
        "replenishment.signal.raised.v1",
        f.signal_raised(site, "SIG-1", "GUIDEWIRE-035", 3, 60),
        correlation="I",
    )
    await e(
        "replenishment.signal.raised.v1",
        f.signal_raised(site, "SIG-2", "STENT-DES-3x18", 2, 60),
        correlation="J",
    )
    await e(
        "replenishment.signal.closed.v1",
        f.signal_closed(site, "SIG-2", "STENT-DES-3x18", 90),
        correlation="J",
    )
    # Dead letters: two malformed HL7 at usage, one invalid at matching that was replayed.
    await e(
        "usage.dead-letter.recorded.v1",
        f.dead_letter(site, "usage", "DL-1", "malformed", "MSH missing"),
        correlation="K",
    )
    await e(
        "usage.dead-letter.recorded.v1",
        f.dead_letter(site, "usage", "DL-2", "malformed", "MSH missing"),
        correlation="L",
    )
    await e(
        "matching.dead-letter.recorded.v1",
        f.dead_letter(site, "matching", "DL-3", "invalid", "total missing"),
        correlation="M",
    )
    await e(
        "matching.dead-letter.replayed.v1",
        f.dead_letter_replayed(site, "matching", "DL-3"),
        correlation="M",
    )
    return 24


@pytest.fixture
def fast_poll(monkeypatch):
    monkeypatch.setattr(live, "POLL_SECONDS", 0.3)
    monkeypatch.setattr(live, "PING_SECONDS", 0.2)


async def test_a_day_gives_the_figures_the_dashboard_shows(nats_server, tmp_path, fast_poll):
    site = new_site()
    port = free_port()
    settings = settings_for("observability", site, nats_server, tmp_path, http_port=port)
    base = f"http://127.0.0.1:{port}"
    async with running(DEFINITION, settings, CATALOGUE) as runtime:
        nc = await nats.connect(nats_server.url)
        await scenario_data.publish_master_data(nc.jetstream(), site)
        published = len(scenario_data.master_data(site))
        published += await publish_day(f.Feed(nc.jetstream(), site), site)
        db = settings.database_path
        await eventually(lambda: count(db, "obs_events") == published, what="every event recorded")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/v1/kpis", params={"site": site}) as response:
                assert response.status == 200
                kpis = await response.json()
            async with http.get(f"{base}/v1/kpis", params={"site": "elsewhere"}) as response:
                assert response.status == 404

            # 3 invoices matched, INV-3 only after an exception: 2/3 first pass.
            assert kpis["invoices_matched"] == 3
            assert kpis["invoices_first_pass"] == 2
            assert kpis["first_pass_match_rate"] == pytest.approx(2 / 3, abs=1e-4)
            open_ = kpis["open_exceptions"]
            assert open_["count"] == 2
            assert open_["amount"] == "500.00"
            assert open_["by_queue"]["receiving"]["ages"]["3_to_7_days"] == 1
            assert open_["by_queue"]["supply_chain"]["ages"]["under_1_day"] == 1
            assert set(open_["by_type"]) == {"AWAITING_RECEIPT", "UNKNOWN_ITEM"}
            assert kpis["invoices_awaiting_receipt"] == {"count": 1, "amount": "500.00"}
            assert kpis["unknown_items_open"] == 1
            assert kpis["contract_leakage"] == {"exceptions": 1, "amount": "300.00"}
            assert kpis["received_not_invoiced"]["amount"] == "300.00"
            assert kpis["received_not_invoiced"]["purchase_orders"] == 1
            bill_only = kpis["usage_to_bill_only_po"]
            assert bill_only["ordered"] == 1 and bill_only["seconds"]["p50"] == 90.0
            assert kpis["below_par"]["open_signals"] == 1
            below_par = kpis["below_par"]["items"][0]
            assert below_par["item_id"] == "GUIDEWIRE-035"
            assert below_par["item_name"] == scenario_data.guidewire(site).description
            assert below_par["location_name"] == scenario_data.cath_lab(site).name
            dead = kpis["dead_letters"]
            assert dead["by_service"] == {"usage": {"malformed": 2}}
            assert dead["by_cause"] == {"malformed": 2}
            assert (dead["open"], dead["recorded"]) == (2, 3)

            # The cardiology implant's serial leads through every service, in order.
            async with http.get(f"{base}/v1/timeline", params={"key": "S1"}) as response:
                assert response.status == 200
                timeline = await response.json()
            contracts = [event["contract"] for event in timeline["events"]]
            assert contracts == [
                "usage.procedure-usage.recorded.v1",
                "usage.bill-only.requested.v1",
                "procurement.purchase-order.approved.v1",
                "matching.invoice.submitted.v1",
                "matching.invoice.matched.v1",
                "matching.payment.released.v1",
            ]
            assert [e["since_start_seconds"] for e in timeline["events"]][:3] == [0, 30, 120]
            async with http.get(f"{base}/v1/timeline", params={"key": f.PATIENT_TOKEN}) as response:
                assert response.status == 404, "patient tokens are never an index key"
            assert query(db, "SELECT count(*) FROM obs_keys WHERE value=?", (f.PATIENT_TOKEN,)) == [
                (0,)
            ]

            # The same timeline over NATS, as `sinew trace` asks for it.
            reply = await nc.request(
                f"sinew.api.{site}.observability.timeline", json.dumps({"key": "PO-BO-1"}).encode()
            )
            assert len(json.loads(reply.data)["events"]) == 6

            async def technical_ready():
                async with http.get(f"{base}/v1/technical") as response:
                    body = await response.json()
                up = {s["service"] for s in body["services"] if s["up"]}
                drained = all(b["pending"] == b["ack_pending"] == 0 for b in body["backlog"])
                return body if body["backlog"] and drained and "observability" in up else None

            ready: list[dict] = []

            async def polled() -> bool:
                ready[:] = [body] if (body := await technical_ready()) else []
                return bool(ready)

            await eventually(polled, what="backlog polled and $SRV.PING answered")
            technical = ready[0]
            consumers = {(b["stream"], b["consumer"]) for b in technical["backlog"]}
            assert ("MATCHING", f"observability-{site}") in consumers
            assert all(b["pending"] == 0 for b in technical["backlog"])
            assert technical["events_recorded"] == published
            assert technical["latency_seconds"]["hop"]["usage"]["count"] == 1
            assert technical["latency_seconds"]["hop"]["procurement"]["p50"] == 90.0
            assert technical["feeds"]["ehr"]["age_seconds"] > 7000
            assert technical["dead_letter_reasons"][0]["reason"] == "MSH missing"

            async def metrics() -> str:
                async with http.get(f"{base}/metrics") as response:
                    return await response.text()

            await eventually(
                lambda: _has(metrics(), "sinew_obs_open_replenishment_signals"), what="gauges"
            )
            text = await metrics()
            assert re.search(rf'sinew_obs_first_pass_match_ratio{{site="{site}"}} 0\.666', text)
            assert f'sinew_obs_contract_leakage_amount{{site="{site}"}} 300.0' in text
            assert (
                f'sinew_obs_open_dead_letters{{service="usage",site="{site}",type="malformed"}} 2.0'
                in text
            )
            assert f'queue="receiving",site="{site}"}} 1.0' in text  # ageing over 3 days
            assert "sinew_obs_consumer_pending" in text and "sinew_obs_service_up" in text
            rules = (Path(__file__).parents[3] / "docs/alerts/sinew-rules.yml").read_text()
            for name in set(re.findall(r"sinew_obs_[a-z_0-9]+", rules)):
                assert f"# TYPE {name} " in text, f"alert rule on a metric nobody exposes: {name}"
        assert runtime.ready
        await nc.close()


async def _has(text, name: str) -> bool:
    return name in await text


async def test_the_dashboard_is_served_whole_from_the_service(nats_server, tmp_path, fast_poll):
    site = new_site()
    port = free_port()
    settings = settings_for("observability", site, nats_server, tmp_path, http_port=port)
    async with running(DEFINITION, settings, CATALOGUE), aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{port}"
        async with http.get(f"{base}/") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/html")
            html = await response.text()
        assert "Business" in html and "Technical" in html
        linked = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert set(linked) == {"/static/style.css", "/static/app.js"}
        assert "//" not in "".join(linked), "no CDN or external URL"
        for path, kind in [("/static/app.js", "javascript"), ("/static/style.css", "css")]:
            async with http.get(f"{base}{path}") as response:
                assert response.status == 200
                assert kind in response.headers["Content-Type"]
                body = await response.text()
                assert "http://" not in body and "https://" not in body
        async with http.get(f"{base}/static/../service.py") as response:
            assert response.status == 404


async def test_sinew_trace_prints_the_timeline(nats_server, tmp_path, fast_poll):
    site = new_site()
    settings = settings_for("observability", site, nats_server, tmp_path)
    async with running(DEFINITION, settings, CATALOGUE):
        nc = await nats.connect(nats_server.url)
        published = await publish_day(f.Feed(nc.jetstream(), site), site)
        await nc.close()
        db = settings.database_path
        await eventually(lambda: count(db, "obs_events") == published, what="recorded")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sinew.cli.main",
            "trace",
            "S1",
            "--site",
            site,
            "--nats-url",
            nats_server.url,
            "--data",
            str(tmp_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        shown = [line for line in lines if "procurement.purchase-order.approved" in line]
        assert shown and "PO-BO-1" in shown[0]
        order = [
            next(i for i, line in enumerate(lines) if name in line)
            for name in ("procedure-usage.recorded", "bill-only.requested", "payment.released")
        ]
        assert order == sorted(order)
