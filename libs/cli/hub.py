"""`sinew hub`: the hub cluster that sources every site's streams, and the leaf link of a site to
it (docs/deployment.md, "Multi-site: leaf nodes and the hub")."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sinew.common.natsconfig import Credentials, site_users
from sinew.common.topology import (
    HUB_OPERATOR,
    HUB_PROVISIONER,
    ROUTE_USER,
    HubNode,
    check_domains,
    hub_node_config,
    hub_nodes,
    hub_stream_configs,
    hub_stream_name,
    hub_users,
    leaf_remote,
    leaf_user,
    read_leaf_block,
    site_leaf_config,
    sourced_streams,
    with_settings,
)
from sinew.contracts import CATALOGUE
from sinew.contracts.catalogue import Catalogue

NO_PEERS = 10005  # JetStream: no suitable peers for placement (a node has not joined yet)

HUB_HELP = """\
  sinew hub init --data ./hub --sites north,south --hosts hub1,hub2,hub3 --listen 0.0.0.0
                   three hub node configs, the hub's passwords, one leaf block per site
  sinew hub join --data ./data --site north --leaf north.conf
                   make the site's NATS a leaf of the hub (after `sinew init`)
  sinew hub provision --sites north,south
                   create the hub's streams, each sourcing one stream of one site
  sinew hub status --sites north,south
                   per site and stream: messages at the site, at the hub, and the lag
  sinew hub report --sites north,south
                   the network's business figures, site by site, from the hub's streams
"""


@dataclass
class HubLayout:
    data: Path

    def node_config(self, node: str) -> Path:
        return self.data / "nats" / f"{node}.conf"

    def jetstream(self, node: str) -> Path:
        return self.data / "nats" / "jetstream" / node

    @property
    def credentials(self) -> Path:
        return self.data / "secrets" / "hub-credentials.json"

    def leaf_block(self, site: str) -> Path:
        return self.data / "leaf" / f"{site}.conf"


def init_hub(
    data: Path, sites: list[str], nodes: list[HubNode], store_dir: Path | None = None
) -> HubLayout:
    """Write every node's configuration and each site's leaf block. Passwords already generated
    are kept, so adding a site never cuts the others off."""
    layout = HubLayout(data)
    users = [*hub_users(sites), ROUTE_USER]
    passwords = Credentials.load_or_create(layout.credentials, users).passwords
    os.chmod(layout.credentials.parent, 0o700)
    for node in nodes:
        _write_private(
            layout.node_config(node.name),
            hub_node_config(
                node,
                nodes,
                sites=sites,
                passwords=passwords,
                store_dir=(store_dir / node.name) if store_dir else layout.jetstream(node.name),
            ),
        )
    for site in sites:
        remote = leaf_remote(
            CATALOGUE,
            site,
            [node.leaf_url for node in nodes],
            passwords[leaf_user(site)],
            site_users(CATALOGUE, [site]),
        )
        _write_private(layout.leaf_block(site), with_settings("", leafnodes={"remotes": [remote]}))
    return layout


def join_site(data: Path, site: str, leaf_block: Path) -> Path:
    """Make the site's nats.conf (as `sinew init` wrote it) a leaf of the hub."""
    config = data / "nats" / "nats.conf"
    if not config.exists():
        raise SystemExit(f"{config} does not exist: run `sinew init --data {data} --site {site}`")
    remote = read_leaf_block(leaf_block.read_text())
    _write_private(config, site_leaf_config(config.read_text(), site, remote))
    return config


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    os.chmod(path, 0o600)
    path.write_text(text)


async def provision_hub(
    js, catalogue: Catalogue, sites: list[str], patience: float = 60.0
) -> list[str]:
    """Create or update every hub stream. A hub that just started has no JetStream leader for a
    few seconds, then refuses three replicas until every node has joined: both pass, so this
    waits for them (up to `patience` seconds)."""
    from nats.errors import NoRespondersError
    from nats.errors import TimeoutError as NoAnswer
    from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError

    deadline = time.monotonic() + patience
    names = []
    for config in hub_stream_configs(catalogue, sites):
        while True:
            try:
                try:
                    await js.stream_info(config.name)
                    await js.update_stream(config)
                except NotFoundError:
                    await js.add_stream(config)
                break
            except (NoAnswer, NoRespondersError, ServiceUnavailableError, BadRequestError) as error:
                transient = not isinstance(error, BadRequestError) or error.err_code == NO_PEERS
                if not transient or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        names.append(config.name)
    return names


async def hub_status(nc, catalogue: Catalogue, sites: list[str]) -> list[dict]:
    """Per site and sourced stream: what the site holds (asked through its domain, across the
    leaf connection) against what the hub holds."""
    from nats.js.errors import NotFoundError

    hub = nc.jetstream(timeout=5)
    rows = []
    for site in sites:
        at_site = nc.jetstream(domain=site, timeout=2)
        reachable = True
        for stream in sourced_streams(catalogue):
            row = {
                "site": site,
                "stream": stream.name,
                "hub_stream": hub_stream_name(site, stream.name),
            }
            try:
                info = await hub.stream_info(row["hub_stream"])
                source = (info.sources or [None])[0]
                row |= {"hub_messages": info.state.messages, "lag": source.lag if source else None}
            except Exception as error:
                row |= {"hub_messages": None, "lag": None, "problem": f"hub: {error!r}"}
            row["site_messages"] = None
            try:
                if reachable:
                    row["site_messages"] = (await at_site.stream_info(stream.name)).state.messages
            except NotFoundError:
                row.setdefault("problem", "not provisioned at the site")
            except Exception:
                reachable = False  # one timeout per site is enough
            if not reachable:
                row.setdefault("problem", "site unreachable (leaf link down?)")
            row["caught_up"] = (
                row["site_messages"] is not None
                and row["lag"] == 0
                and row["hub_messages"] == row["site_messages"]
            )
            rows.append(row)
    return rows


async def network_report(js, sites: list[str], workdir: Path) -> dict[str, dict]:
    """Each site's business figures as its observability service computes them, folded from the
    hub's copy of that site's streams (the observability rebuild, reading NORTH_MATCHING for
    north's MATCHING): the same numbers as the site's dashboard, for every site in one place,
    and nothing here depends on a site being reachable."""
    from datetime import UTC, datetime

    from sinew.common.actor import Wiring
    from sinew.common.rebuild import rebuild
    from sinew.common.store import Store
    from sinew.services.observability import store as figures
    from sinew.services.observability.service import DEFINITION

    now = datetime.now(UTC)
    report = {}
    for site in sites:
        wiring = Wiring(DEFINITION.name, site, CATALOGUE, DEFINITION.handlers, DEFINITION.parsers)
        target = workdir / site / "observability.sqlite"
        await rebuild(
            js,
            wiring,
            target,
            DEFINITION.migrations,
            stream_name=lambda stream, site=site: hub_stream_name(site, stream),
        )
        async with Store(target, DEFINITION.migrations) as store:
            report[site] = await store.run(figures.business_kpis, site, now)
    return report


def report_lines(report: dict[str, dict]) -> list[str]:
    rows = [
        ("invoices matched first time", lambda k: _rate(k["first_pass_match_rate"])),
        ("invoices matched", lambda k: k["invoices_matched"]),
        ("open exceptions", lambda k: k["open_exceptions"]["count"]),
        ("  money at stake", lambda k: k["open_exceptions"]["amount"]),
        ("invoices awaiting receipt", lambda k: k["invoices_awaiting_receipt"]["count"]),
        ("received, not invoiced", lambda k: k["received_not_invoiced"]["amount"]),
        ("contract leakage", lambda k: k["contract_leakage"]["amount"]),
        ("unknown items open", lambda k: k["unknown_items_open"]),
        ("items below par", lambda k: k["below_par"]["open_signals"]),
    ]
    sites = list(report)
    lines = [f"{'':30}" + "".join(f"{site:>14}" for site in sites)]
    for label, figure in rows:
        lines.append(f"{label:30}" + "".join(f"{figure(report[s])!s:>14}" for s in sites))
    return lines


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def sites_list(text: str) -> list[str]:
    sites = [s.strip() for s in text.split(",") if s.strip()]
    try:
        return check_domains(sites)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_parser(commands) -> None:
    hub = commands.add_parser(
        "hub",
        help="multi-site: the hub cluster and the leaf link of each site",
        description="Each site's NATS is a leaf node with a JetStream domain of its own; a "
        "three-node hub sources every site's streams (all but the EHR's raw documents) into "
        "streams of its own, SITE_STREAM.",
        epilog=HUB_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = hub.add_subparsers(dest="verb", metavar="VERB", required=True)

    init = verbs.add_parser("init", help="write the hub nodes' configs and the sites' leaf blocks")
    init.add_argument("--data", type=Path, default=Path("hub"))
    init.add_argument("--sites", type=sites_list, required=True, help="north,south,...")
    init.add_argument(
        "--hosts",
        type=lambda text: text.split(","),
        default=["127.0.0.1"],
        help="the three nodes' hosts as sites reach them (one host: three nodes on it)",
    )
    init.add_argument("--listen", default="127.0.0.1", help="interface the nodes listen on")
    init.add_argument("--port", type=int, default=4222, help="client port")
    init.add_argument("--cluster-port", type=int, default=6222)
    init.add_argument("--leaf-port", type=int, default=7422)
    init.add_argument("--monitor-port", type=int, default=8222)
    init.add_argument("--store-dir", type=Path, help="JetStream storage path as the nodes see it")

    join = verbs.add_parser("join", help="make a site's NATS a leaf node of the hub")
    join.add_argument("--data", type=Path, default=Path("data"), help="the site's data folder")
    join.add_argument("--site", required=True)
    join.add_argument("--leaf", type=Path, required=True, help="the site's block from hub init")

    for name, text in [
        ("provision", "create or update the hub's sourced streams"),
        ("status", "has the hub caught up with every site?"),
        ("report", "the network's business figures, site by site, from the hub's streams"),
    ]:
        p = verbs.add_parser(name, help=text)
        p.add_argument(
            "--nats-url",
            default=os.environ.get("SINEW_HUB_URL", "nats://127.0.0.1:4222"),
            help="one hub node, or several separated by commas",
        )
        p.add_argument("--data", type=Path, default=Path("hub"), help="the hub's data folder")
        p.add_argument("--sites", type=sites_list, required=True)
        if name in ("status", "report"):
            p.add_argument("--json", action="store_true")


async def run(args: argparse.Namespace) -> None:
    if args.verb == "init":
        nodes = hub_nodes(
            args.hosts,
            listen=args.listen,
            client_port=args.port,
            cluster_port=args.cluster_port,
            leaf_port=args.leaf_port,
            monitor_port=args.monitor_port,
        )
        layout = init_hub(args.data, args.sites, nodes, args.store_dir)
        for node in nodes:
            print(f"wrote {layout.node_config(node.name)}")
        for site in args.sites:
            print(f"wrote {layout.leaf_block(site)} (copy it to {site}; it holds a password)")
    elif args.verb == "join":
        config = join_site(args.data, args.site, args.leaf)
        print(f"{config} is now a leaf of the hub, in JetStream domain {args.site}")
    else:
        await _against_hub(args)


async def _against_hub(args: argparse.Namespace) -> None:
    from .operate import connect_as

    nc = await connect_as(
        args.nats_url.split(","),
        HubLayout(args.data).credentials,
        HUB_PROVISIONER if args.verb == "provision" else HUB_OPERATOR,
        os.environ.get("SINEW_NATS_USER"),
        os.environ.get("SINEW_NATS_PASSWORD"),
    )
    try:
        if args.verb == "provision":
            names = await provision_hub(nc.jetstream(), CATALOGUE, args.sites)
            print(f"provisioned {len(names)} hub streams: {', '.join(names)}")
            return
        if args.verb == "report":
            with tempfile.TemporaryDirectory(prefix="sinew-hub-report-") as workdir:
                report = await network_report(nc.jetstream(), args.sites, Path(workdir))
            print(json.dumps(report, indent=2) if args.json else "\n".join(report_lines(report)))
            return
        rows = await hub_status(nc, CATALOGUE, args.sites)
    finally:
        await nc.close()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'SITE':<10} {'STREAM':<17} {'AT SITE':>8} {'AT HUB':>8} {'LAG':>6}  STATE")
        for r in rows:
            state = "caught up" if r["caught_up"] else r.get("problem", "catching up")
            print(
                f"{r['site']:<10} {r['stream']:<17} {_n(r['site_messages']):>8} "
                f"{_n(r['hub_messages']):>8} {_n(r['lag']):>6}  {state}"
            )
    if not all(r["caught_up"] for r in rows):
        raise SystemExit(1)


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)
