"""Multi-site: two facilities as leaf nodes with JetStream domains of their own and a three-node
hub sourcing their streams, on real nats-server processes. What the network relies on: every
event of a site reaches the hub once, a site keeps working while its link is down and the hub
then catches up without doubling anything, the hub survives losing a node, and patient data
never leaves the site."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import eventually, publish

# The observability tests' canonical events, each built from its contract.
sys.path.insert(0, str(Path(__file__).parents[1] / "services" / "observability"))
import obs_feed
from hub_network import Network
from nats.js.api import ExternalStream, StreamConfig, StreamSource

from sinew.cli.hub import init_hub, join_site, network_report, provision_hub, report_lines
from sinew.cli.site import init_site
from sinew.common.provision import provision
from sinew.common.testing.nats_server import nats_server_binary
from sinew.common.topology import (
    HUB_DOMAIN,
    check_domains,
    hub_nodes,
    hub_stream_configs,
    hub_stream_name,
    site_api,
)
from sinew.contracts import CATALOGUE
from sinew.contracts.envelope import CE_ID, MSG_ID

SITES = ["north", "south"]
# A hub stream whose site did not answer retries after 10 s, 20 s, ... up to 2 min (nats-server's
# source backoff), so catching up after an outage is given that long.
CATCH_UP = 150


INVOICE_MATCHED = CATALOGUE.channel("matching.invoice.matched.v1")
USAGE_RECORDED = CATALOGUE.channel("usage.procedure-usage.recorded.v1")
INVOICE_SUBMITTED = CATALOGUE.channel("ingress.invoice.submitted.v1")
HL7_USAGE = CATALOGUE.channel("ingress.usage-hl7.received.v1")


@pytest.fixture(scope="module")
async def network(tmp_path_factory):
    network = Network.written(tmp_path_factory.mktemp("network"), SITES)
    try:
        network.start()
        for site in SITES:
            nc = await network.connect_site(site)
            await provision(nc.jetstream(), CATALOGUE, [site])
            await nc.close()
        hub = await network.connect_hub()
        await provision_hub(hub.jetstream(), CATALOGUE, SITES)
        await hub.close()
        yield network
    finally:
        network.stop()


@pytest.fixture
async def at_site(network):
    connections = {site: await network.connect_site(site) for site in SITES}
    yield {site: nc.jetstream() for site, nc in connections.items()}
    for nc in connections.values():
        await nc.close()


@pytest.fixture
async def hub(network):
    nc = await network.connect_hub()
    yield nc.jetstream()
    await nc.close()


async def publish_events(js, site: str, kind, count: int) -> None:
    for n in range(count):
        await publish(js, kind.subject(site), b'{"n": %d}' % n, site=site, type_=kind.ce_type)


async def stored(js, stream: str) -> list[tuple[str, str, str]]:
    """Every message a stream holds, as (subject, Nats-Msg-Id, ce-id)."""
    info = await js.stream_info(stream)
    rows = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        message = await js.get_msg(stream, seq)
        rows.append((message.subject, message.headers[MSG_ID], message.headers[CE_ID]))
    return rows


async def caught_up(at_site, hub, site: str, stream: str) -> bool:
    held = (await at_site.stream_info(stream)).state.messages
    try:
        return (await hub.stream_info(hub_stream_name(site, stream))).state.messages == held
    except Exception:  # the hub is still electing leaders after a restart
        return False


async def assert_held_once(at_site, hub, site: str, stream: str) -> list:
    """The hub holds exactly the site's messages, each once, by message and by event id."""
    here = await stored(at_site, stream)
    there = await stored(hub, hub_stream_name(site, stream))
    assert sorted(there) == sorted(here)
    assert len({msg_id for _, msg_id, _ in there}) == len(there)
    assert len({ce_id for _, _, ce_id in there}) == len(there)
    return there


async def test_events_published_at_each_site_land_once_in_the_hubs_stream_of_that_site(
    at_site, hub
):
    for site in SITES:
        await publish_events(at_site[site], site, INVOICE_MATCHED, 15)
        await publish_events(at_site[site], site, USAGE_RECORDED, 10)

    for site in SITES:
        for stream in ("MATCHING", "USAGE"):
            await eventually(
                lambda site=site, stream=stream: caught_up(at_site[site], hub, site, stream),
                what=f"hub to hold {site}'s {stream}",
            )
            held = await assert_held_once(at_site[site], hub, site, stream)
            assert len(held) >= (15 if stream == "MATCHING" else 10)
            assert all(f".{site}." in subject for subject, _, _ in held)

    # Each site's own streams hold only its own events: north's events never cross the hub
    # into south's MATCHING, which captures sinew.matching.> too.
    for site, other in (("north", "south"), ("south", "north")):
        assert all(f".{site}." in s for s, _, _ in await stored(at_site[site], "MATCHING"))
        assert not any(f".{other}." in s for s, _, _ in await stored(at_site[site], "USAGE"))


async def test_patient_data_never_leaves_the_site(network, at_site, hub):
    assert all(
        source.name != "CLINICAL_INGRESS"
        for config in hub_stream_configs(CATALOGUE, SITES)
        for source in config.sources
    )

    # Someone at the hub listening for events and for the usage service's reply inbox, where
    # JetStream hands it the EHR's documents.
    listener = await network.connect_hub()
    overheard = []

    async def overhear(message) -> None:
        overheard.append(message.subject)

    for subject in ("sinew.>", "_INBOX_usage-north.>", "_INBOX_ehr-north.>"):
        await listener.subscribe(subject, cb=overhear)
    # Its interest has reached north once a probe published there arrives at the hub.
    probes = await listener.subscribe("probe.hub")
    north = await network.connect_site("north")

    async def probe_arrived() -> bool:
        await north.publish("probe.hub", b"")
        return probes.pending_msgs > 0

    await eventually(probe_arrived, what="the listener's interest to reach north")
    # ...and a stream at the hub made to source the site's raw EHR documents anyway, beside its
    # raw AP invoices.
    await hub.add_stream(
        StreamConfig(
            name="SOURCES_EHR_DOCUMENTS",
            sources=[
                StreamSource(name=name, external=ExternalStream(api=site_api("north")))
                for name in ("CLINICAL_INGRESS", "INGRESS")
            ],
            num_replicas=3,
        )
    )

    ehr = await network.connect_site("north", "ehr-north", inbox_prefix="_INBOX_ehr-north")
    await publish(
        ehr.jetstream(),
        HL7_USAGE.subject("north"),
        b"MSH|^~\\&|EHR|NORTH|||202611241200||DFT^P03|1|P|2.8.2\rPID|1||MRN-0042||DOE^JANE\r",
        site="north",
        type_=HL7_USAGE.ce_type,
    )
    usage = await network.connect_site("north", "usage-north", inbox_prefix="_INBOX_usage-north")
    mailbox = await usage.jetstream().pull_subscribe_bind("usage-north", "CLINICAL_INGRESS")
    (document,) = await mailbox.fetch(1, timeout=10)
    assert b"MRN-0042" in document.data
    await document.ack()

    # Afterwards, raw AP invoices of north do reach the hub, through the same sourced stream...
    ap = await network.connect_site("north", "ap-north", inbox_prefix="_INBOX_ap-north")
    await publish(
        ap.jetstream(),
        INVOICE_SUBMITTED.subject("north"),
        b"{}",
        site="north",
        type_=INVOICE_SUBMITTED.ce_type,
    )
    await eventually(
        lambda: caught_up(at_site["north"], hub, "north", "INGRESS"), what="raw invoices at hub"
    )

    async def invoices_in_the_rogue_stream() -> bool:
        return (await hub.stream_info("SOURCES_EHR_DOCUMENTS")).state.messages >= 1

    await eventually(invoices_in_the_rogue_stream, what="the raw invoice in the rogue stream")
    # ...but not one EHR document did, nor any message overheard across the leaf.
    rogue = await stored(hub, "SOURCES_EHR_DOCUMENTS")
    assert rogue and all(".usage" not in subject for subject, _, _ in rogue)
    assert overheard == []
    for nc in (ehr, usage, ap, north, listener):
        await nc.close()
    await hub.delete_stream("SOURCES_EHR_DOCUMENTS")


async def test_hub_status_says_when_the_hub_has_caught_up(network, at_site, hub):
    await publish_events(at_site["south"], "south", INVOICE_MATCHED, 3)
    await eventually(lambda: caught_up(at_site["south"], hub, "south", "MATCHING"))

    hub_urls = ",".join(n.url for n in network.hub)
    argv = ["hub", "status", "--sites", "north,south", "--nats-url", hub_urls, "--json"]

    def status() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sinew.cli.main", *argv, "--data", str(network.hub_data)],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("SINEW_NATS_")},
        )

    async def all_caught_up() -> bool:
        done = await asyncio.to_thread(status)
        return done.returncode == 0

    await eventually(all_caught_up, timeout=30, interval=1, what="`sinew hub status` exit 0")
    rows = json.loads((await asyncio.to_thread(status)).stdout)
    assert {(r["site"], r["stream"]) for r in rows} == {
        (site, stream.name)
        for site in SITES
        for stream in CATALOGUE.streams
        if stream.name != "CLINICAL_INGRESS"
    }
    south = next(r for r in rows if (r["site"], r["stream"]) == ("south", "MATCHING"))
    assert south["site_messages"] == south["hub_messages"] >= 3 and south["lag"] == 0

    # With north's link down, the hub says so instead of claiming it caught up.
    network.site_servers["north"].stop()
    try:
        done = await asyncio.to_thread(status)
        assert done.returncode == 1
        north = [r for r in json.loads(done.stdout) if r["site"] == "north"]
        assert north and not any(r["caught_up"] for r in north)
    finally:
        network.site_servers["north"].launch()
        network.site_servers["north"].wait_healthy()


async def test_a_site_keeps_working_while_the_hub_is_down_and_the_hub_catches_up_once(
    network, at_site, hub
):
    before = (await at_site["north"].stream_info("MATCHING")).state.messages
    network.stop_hub()

    # The site's own JetStream takes every event; nothing waits on the hub.
    await publish_events(at_site["north"], "north", INVOICE_MATCHED, 40)
    assert (await at_site["north"].stream_info("MATCHING")).state.messages == before + 40

    network.start_hub()
    await eventually(
        lambda: caught_up(at_site["north"], hub, "north", "MATCHING"),
        timeout=CATCH_UP,
        what="hub to catch up with north after the outage",
    )
    await assert_held_once(at_site["north"], hub, "north", "MATCHING")

    # And it keeps taking new events after the reconnect, still once each.
    await publish_events(at_site["north"], "north", INVOICE_MATCHED, 5)
    await eventually(
        lambda: caught_up(at_site["north"], hub, "north", "MATCHING"), timeout=CATCH_UP
    )
    await assert_held_once(at_site["north"], hub, "north", "MATCHING")


async def test_the_hub_keeps_sourcing_with_one_of_its_three_nodes_lost(network, at_site, hub):
    # The leader of one of south's hub streams is lost. A node that also held south's leaf
    # connection would add the link's own outage (nats-server then takes ~40 s to retry the
    # source; the outage test above covers a lost link), so the leader of another stream is
    # chosen when there is one.
    leaders = {}

    async def every_leader_known() -> bool:
        for name in ("USAGE", "MATCHING", "PROCUREMENT", "RECEIVING", "ITEMS", "INGRESS"):
            try:
                info = await hub.stream_info(hub_stream_name("south", name))
            except Exception:  # still electing after the hub's restart
                return False
            assert info.config.num_replicas == 3
            leaders[name] = info.cluster.leader
        return None not in leaders.values()

    await eventually(every_leader_known, timeout=CATCH_UP, what="a leader for south's streams")
    leaf_node = network.holding_leaf_of("south")
    stream = next((s for s, leader in leaders.items() if leader != leaf_node), "USAGE")
    lost = network.node(leaders[stream])
    lost.stop()
    try:
        kind = next(c for c in CATALOGUE.channels if CATALOGUE.stream_for(c).name == stream)
        await publish_events(at_site["south"], "south", kind, 20)
        await eventually(
            lambda: caught_up(at_site["south"], hub, "south", stream),
            timeout=CATCH_UP,
            what=f"the two remaining hub nodes to take south's {stream}",
        )
        await assert_held_once(at_site["south"], hub, "south", stream)
    finally:
        network.start_hub([lost])


def test_every_jetstream_domain_is_distinct():
    with pytest.raises(ValueError):
        check_domains(["north", HUB_DOMAIN])
    with pytest.raises(ValueError):
        check_domains(["north", "north"])


def test_written_configurations_are_valid_for_nats_server(tmp_path):
    def sinew(*args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "sinew.cli.main", *args], check=True, capture_output=True
        )

    sinew("hub", "init", "--data", str(tmp_path / "hub"), "--sites", "north,south")
    sinew("init", "--data", str(tmp_path / "north"), "--site", "north")
    leaf = tmp_path / "hub" / "leaf" / "north.conf"
    sinew("hub", "join", "--data", str(tmp_path / "north"), "--site", "north", "--leaf", str(leaf))
    configs = [*(tmp_path / "hub" / "nats").glob("hub-*.conf"), tmp_path / "north/nats/nats.conf"]
    assert len(configs) == 4
    for config in configs:
        checked = subprocess.run(
            [nats_server_binary(), "-t", "-c", str(config)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stderr
        assert '"sync_interval": "always"' in config.read_text()
    assert '"domain": "north"' in (tmp_path / "north/nats/nats.conf").read_text()


def test_init_with_the_leaf_block_writes_what_init_then_join_writes(tmp_path):
    """`sinew up --leaf` and `sinew init --leaf` make the site a leaf in one step."""
    hub = init_hub(tmp_path / "hub", ["north"], hub_nodes(["127.0.0.1"], listen="127.0.0.1"))
    leaf = hub.leaf_block("north")
    joined = init_site(tmp_path / "site", ["north"], port=4300, monitor_port=8300)
    expected = join_site(tmp_path / "site", "north", leaf).read_text()
    at_once = init_site(tmp_path / "site", ["north"], port=4300, monitor_port=8300, leaf=leaf)
    assert at_once.nats_config == joined.nats_config
    assert at_once.nats_config.read_text() == expected
    with pytest.raises(SystemExit, match="one site"):
        init_site(tmp_path / "two", ["north", "south"], leaf=leaf)


async def test_the_hub_reports_each_sites_business_figures_from_its_own_streams(
    network, at_site, hub, tmp_path
):
    # A price variance at north only: north's figures show it, south's do not.
    await obs_feed.Feed(at_site["north"], "north").emit(
        "matching.exception.raised.v1",
        obs_feed.match_exception(
            "north", "MX-HUB-1", "PRICE_VARIANCE", "supply_chain", "INV-HUB-1", "120.00",
            obs_feed.at(0),
        ),
        correlation="HUB-1",
    )  # fmt: skip
    await eventually(
        lambda: caught_up(at_site["north"], hub, "north", "MATCHING"), what="the hub has it"
    )
    report = await network_report(hub, SITES, tmp_path)
    assert report["north"]["contract_leakage"]["amount"] == "120.00"
    assert report["north"]["open_exceptions"]["by_type"]["PRICE_VARIANCE"]["count"] == 1
    assert report["south"]["contract_leakage"]["amount"] == "0.00"
    printed = "\n".join(report_lines(report))
    assert "contract leakage" in printed and "120.00" in printed
    # The operator's command, as the hub's read-only operator user.
    command = [sys.executable, "-m", "sinew.cli.main", "hub", "report", "--json"]
    command += ["--nats-url", ",".join(n.url for n in network.hub)]
    command += ["--data", str(network.hub_data), "--sites", ",".join(SITES)]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["north"]["contract_leakage"]["amount"] == "120.00"
