"""`sinew`: the operators' command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

DESCRIPTION = """\
Sinew links a hospital network's supply chain, accounts payable and clinical operations.
This command starts a site, runs its services, and lets an operator look inside: dead letters,
stream backlogs, the services that answer, and the events as they flow.
"""

EPILOG = """\
Start here:
  sinew up                         start the embedded site (NATS + every service) in ./data
  sinew up --demo                  three hospitals and a simulated day (docs/demo.md)
  sinew up --site north --site south
                                   two sites side by side on one NATS
  sinew dlq list                   dead letters of every service, with the reason
  sinew dlq show ID                one dead letter, with its original bytes and headers
  sinew dlq replay ID              replay it once its cause is fixed
  sinew dlq replay --cause unknown_contract
                                   replay every open dead letter with that cause
  sinew tail USAGE --site north    follow a stream (or a subject) from now
  sinew tail USAGE --since 15m --raw | jq .
                                   ...or from a time or a sequence, as JSON lines
  sinew backlog                    pending and unacknowledged messages per consumer
  sinew services                   services answering $SRV.INFO
  sinew recall L1 --site north     every case, patient token and shelf that has lot L1
                                   (--serial S or --gtin G instead of a lot)
  sinew rebuild matching --site north --replace
                                   rebuild a stopped service's database from stream history
  sinew import items.jsonl --site north
                                   bulk-load master data (JSON lines, or CSV with --kind item)

Deploying:
  sinew init --data ./data --site north --listen 0.0.0.0 --store-dir /data/jetstream
                                   write the NATS config and secrets for compose.yaml
  sinew provision                  create streams and consumers (once per deploy)
  sinew run SERVICE                run one service (settings from SINEW_* variables)
  sinew contracts [--check]        regenerate (or check) JSON Schemas, AsyncAPI, permissions
  sinew hub init|join|provision|status|report
                                   multi-site: sites as leaf nodes, a hub sourcing their streams

Connection: --nats-url (or SINEW_NATS_URL), as the site's operator user whose password
`sinew up` keeps in DATA/secrets/nats-credentials.json (or SINEW_NATS_USER/SINEW_NATS_PASSWORD).
Docs: README.md and docs/ in the repository.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sinew",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def connection(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--nats-url", default=os.environ.get("SINEW_NATS_URL", "nats://127.0.0.1:4222")
        )
        p.add_argument(
            "--data",
            type=Path,
            default=Path(os.environ.get("SINEW_DATA_DIR", "data")),
            help="the site's data folder, for the operator's NATS password",
        )
        p.add_argument("--site", help="only this site")
        p.add_argument("--service", help="only this service")

    up = commands.add_parser(
        "up",
        help="start the embedded site",
        description="Start nats-server (JetStream, fsync on every write), "
        "provision streams and consumers, and run every service as a "
        "supervised process. All state goes under --data; Ctrl-C stops "
        "everything cleanly and a second `up` resumes.",
    )
    up.add_argument("--data", type=Path, default=Path("data"))
    up.add_argument(
        "--site",
        action="append",
        dest="sites",
        metavar="SITE",
        help="site code (repeat for several sites; default north)",
    )
    up.add_argument("--nats-url", help="use this existing NATS instead of the embedded one")
    up.add_argument(
        "--demo",
        action="store_true",
        help="once the services are ready, play the demo day (first run of a data folder only); "
        "the sites default to north, south and east",
    )
    up.add_argument("--seed", type=int, default=7, help="the demo day's seed")
    up.add_argument("--usages", type=int, default=3000, help="routine usage lines in the demo day")
    up.add_argument(
        "--leaf",
        type=Path,
        metavar="FILE",
        help="run the site's NATS as a leaf node of the hub, with the block `sinew hub init` "
        "wrote for this site (one --site)",
    )
    up.add_argument("--nats-port", type=int, default=4222)
    up.add_argument("--monitor-port", type=int, default=8222)
    up.add_argument(
        "--http-base-port",
        type=int,
        default=8100,
        help="services listen on base+1, base+2, ... (+10 per further site)",
    )

    demo = commands.add_parser(
        "demo",
        help="play the demo day against a site `sinew up` already runs",
        description="Play a simulated day of a hospital network through the ingress subjects, "
        "as each outside system, and over HTTP as the people who act; then print what the "
        "services made of it. docs/demo.md explains the day and the summary.",
    )
    demo.add_argument("--data", type=Path, default=Path("data"))
    demo.add_argument("--site", action="append", dest="sites", metavar="SITE")
    demo.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    demo.add_argument("--http-base-port", type=int, default=8100)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--usages", type=int, default=3000)
    demo.add_argument("--again", action="store_true", help="play even if this data was played")

    init = commands.add_parser(
        "init",
        help="write NATS config and secrets for a site",
        description="Write DATA/nats/nats.conf and DATA/secrets/*: one "
        "NATS user per service and per outside system, API tokens by "
        "role. Existing passwords and tokens are kept.",
    )
    init.add_argument("--data", type=Path, default=Path("data"))
    init.add_argument("--site", action="append", dest="sites", metavar="SITE", required=True)
    init.add_argument("--listen", default="127.0.0.1")
    init.add_argument("--port", type=int, default=4222)
    init.add_argument("--store-dir", type=Path, help="JetStream storage path as the server sees it")
    init.add_argument(
        "--leaf",
        type=Path,
        metavar="FILE",
        help="make the site's NATS a leaf node of the hub (the block `sinew hub init` wrote)",
    )

    run = commands.add_parser(
        "run",
        help="run one service in the foreground",
        description="Run one service. Settings come from SINEW_SITE, "
        "SINEW_NATS_URL, SINEW_NATS_USER, SINEW_NATS_PASSWORD, "
        "SINEW_DATA_DIR, SINEW_HTTP_HOST, SINEW_HTTP_PORT, "
        "SINEW_TOKENS_FILE, SINEW_NATS_MONITOR_URL, SINEW_LOG_LEVEL; usage also needs "
        "SINEW_PATIENT_TOKEN_KEY_FILE.",
    )
    run.add_argument("service")

    prov = commands.add_parser("provision", help="create or update streams and consumers")
    prov.add_argument(
        "--nats-url", default=os.environ.get("SINEW_NATS_URL", "nats://127.0.0.1:4222")
    )
    prov.add_argument(
        "--site",
        action="append",
        dest="sites",
        metavar="SITE",
        default=None,
        help="default: SINEW_SITE or north",
    )

    load = commands.add_parser(
        "import",
        help="bulk-load master data from a JSON-lines or CSV file",
        description="Publish a file of master-data records to the site's MDM ingress subject, as "
        "the MDM feed would: JSON lines (one record per line, with its kind) or CSV (one kind "
        "per file, --kind). Rows that fail their contract are reported and not sent; a re-run "
        "of the same file is deduplicated. Formats: docs/services/items.md.",
    )
    load.add_argument("file", type=Path)
    load.add_argument("--site", default=os.environ.get("SINEW_SITE", "north"))
    load.add_argument(
        "--nats-url", default=os.environ.get("SINEW_NATS_URL", "nats://127.0.0.1:4222")
    )
    load.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("SINEW_DATA_DIR", "data")),
        help="the site's data folder, for the MDM user's NATS password",
    )
    load.add_argument("--kind", help="the kind of record in a CSV file (item, supplier, ...)")
    load.add_argument("--source", choices=["import", "mdm"], default="import")

    contracts = commands.add_parser("contracts", help="generate schemas, AsyncAPI, permissions")
    contracts.add_argument("--check", action="store_true", help="fail if anything is stale")

    dlq = commands.add_parser("dlq", help="dead letters: list, show, replay")
    dlq_verbs = dlq.add_subparsers(dest="verb", metavar="VERB", required=True)
    listing = dlq_verbs.add_parser("list", help="list dead letters with their reasons")
    connection(listing)
    listing.add_argument("--status", default="open", help="open (default), replayed, superseded")
    listing.add_argument(
        "--cause", help="malformed, invalid, unknown_contract, oversized, exhausted"
    )
    listing.add_argument("--reason", help="text the reason contains")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = dlq_verbs.add_parser("show", help="one dead letter with its original bytes and headers")
    connection(show)
    show.add_argument("id")
    replay = dlq_verbs.add_parser("replay", help="replay by id, or in bulk by cause or reason")
    connection(replay)
    replay.add_argument("ids", nargs="*")
    replay.add_argument("--cause")
    replay.add_argument("--reason")
    replay.add_argument("--payload-file", help="replay one dead letter with corrected bytes")
    replay.add_argument("--by", default=os.environ.get("USER", "operator"))

    rebuild = commands.add_parser(
        "rebuild",
        help="rebuild a service's database from stream history",
        description="Fold every message the service consumes, from the first one still in its "
        "streams, into a new empty database, through the same handlers the live service runs. "
        "With --replace (the service must be stopped) the old database is kept beside it as "
        "*.before-rebuild-<time> and the new one takes its place.",
    )
    connection(rebuild)
    rebuild.add_argument("service_name", metavar="SERVICE")
    rebuild.add_argument("--replace", action="store_true")

    tail = commands.add_parser(
        "tail", help="follow a stream or subject from now, a time or a sequence"
    )
    connection(tail)
    tail.add_argument("target", help="stream name (USAGE, MATCHING, ...) or subject")
    start = tail.add_mutually_exclusive_group()
    start.add_argument(
        "--since",
        type=since_time,
        metavar="WHEN",
        help="from a time: 2026-11-24T08:00Z, or a span back from now: 90s, 15m, 2h, 1d",
    )
    start.add_argument("--from-seq", type=int, metavar="N", help="from stream sequence N")
    tail.add_argument("--raw", action="store_true", help="JSON lines for piping")
    tail.add_argument("--count", type=int, help="stop after this many messages")

    recall = commands.add_parser(
        "recall",
        help="who received a lot, serial or product, and what is still on shelves",
        description="Ask the usage service of a site (NATS sinew.api.<site>.usage.recall) for "
        "every case, location, time and patient token that received the lot, serial or GTIN, "
        "with the on-hand units replenishment still holds.",
    )
    connection(recall)
    recall.add_argument("lot", nargs="?", help="the recalled lot")
    recall.add_argument("--serial", help="a recalled serial number")
    recall.add_argument("--gtin", help="a recalled product (GTIN); with a lot, that product's lot")
    recall.add_argument("--json", action="store_true")

    trace = commands.add_parser(
        "trace",
        help="every event of one transaction, across services, in order with timings",
        description="Ask the observability service of a site (NATS "
        "sinew.api.<site>.observability.timeline) for the timeline of a case, lot, serial, PO, "
        "invoice or correlation id.",
    )
    connection(trace)
    trace.add_argument("key", help="case id, lot, serial, PO or invoice number, correlation id")
    trace.add_argument("--json", action="store_true")

    for name, text in [
        ("backlog", "pending and unacknowledged messages per consumer"),
        ("services", "services answering $SRV.INFO"),
    ]:
        p = commands.add_parser(name, help=text)
        connection(p)
        p.add_argument("--json", action="store_true")

    from .hub import add_parser as add_hub_parser

    add_hub_parser(commands)
    return parser


def since_time(text: str) -> datetime:
    span = re.fullmatch(r"(\d+)([smhd])", text)
    if span:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[span.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(span.group(1))})
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a time nor a span like 15m"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if getattr(args, "payload_file", None):
        args.payload = Path(args.payload_file).read_bytes()
    elif args.command == "dlq":
        args.payload = None
    try:
        asyncio.run(dispatch(args))
    except KeyboardInterrupt:
        pass


async def dispatch(args: argparse.Namespace) -> None:
    if args.command == "up":
        from .site import EmbeddedSite

        default_sites = ["north", "south", "east"] if args.demo else ["north"]
        site = EmbeddedSite(
            args.data,
            args.sites or default_sites,
            nats_url=args.nats_url,
            nats_port=args.nats_port,
            monitor_port=args.monitor_port,
            http_base_port=args.http_base_port,
            leaf=args.leaf,
        )
        if args.demo:
            from .demo import up_with_demo

            await up_with_demo(site, seed=args.seed, usages=args.usages)
        else:
            await site.run()
    elif args.command == "demo":
        from .demo import demo_against
        from .site import EmbeddedSite

        site = EmbeddedSite(
            args.data,
            args.sites or ["north", "south", "east"],
            nats_url=args.nats_url,
            http_base_port=args.http_base_port,
        )
        await demo_against(site, seed=args.seed, usages=args.usages, again=args.again)
    elif args.command == "init":
        from .site import init_site

        layout = init_site(
            args.data,
            args.sites,
            listen=args.listen,
            port=args.port,
            store_dir=args.store_dir,
            leaf=args.leaf,
        )
        print(f"wrote {layout.nats_config} and {layout.secrets}/")
    elif args.command == "run":
        await run_service(args.service)
    elif args.command == "provision":
        await provision_site(args.nats_url, args.sites)
    elif args.command == "contracts":
        contracts(args.check)
    elif args.command == "hub":
        from .hub import run as run_hub

        await run_hub(args)
    elif args.command == "import":
        from sinew.services.items.importer import run_import

        code = await run_import(
            args.file,
            site=args.site,
            nats_url=args.nats_url,
            data=args.data,
            kind=args.kind,
            source=args.source,
        )
        if code:
            raise SystemExit(code)
    else:
        await operate(args)


async def run_service(name: str) -> None:
    from sinew.common import logs
    from sinew.common.config import Settings
    from sinew.common.service import serve
    from sinew.services import definition

    settings = Settings.from_env(name)
    logs.configure(settings.log_level, service=name, site=settings.site)
    await serve(definition(name), settings)


async def provision_site(url: str, sites: list[str] | None) -> None:
    import nats

    from sinew.common.provision import provision
    from sinew.contracts import CATALOGUE

    sites = sites or [os.environ.get("SINEW_SITE", "north")]
    nc = await nats.connect(
        url, user=os.environ.get("SINEW_NATS_USER"), password=os.environ.get("SINEW_NATS_PASSWORD")
    )
    await provision(nc.jetstream(), CATALOGUE, sites)
    await nc.close()
    print(f"provisioned streams and consumers for {', '.join(sites)}")


def contracts(check: bool) -> None:
    from sinew.contracts import generate

    if check:
        problems = generate.incompatible(generate.rendered()) + generate.stale(generate.rendered())
        if problems:
            raise SystemExit("contracts are stale or incompatible:\n  " + "\n  ".join(problems))
        print("contracts are up to date")
        return
    changed = generate.write()
    print(f"{len(changed)} file(s) written" + (": " + ", ".join(changed) if changed else ""))


async def operate(args: argparse.Namespace) -> None:
    from . import operate as op

    nc = await op.connect_operator(
        args.nats_url,
        args.data,
        os.environ.get("SINEW_NATS_USER"),
        os.environ.get("SINEW_NATS_PASSWORD"),
    )
    try:
        if args.command == "dlq" and args.verb == "list":
            await op.dlq_list(
                nc, args.site, args.service, args.status or None, args.cause, args.reason, args.json
            )
        elif args.command == "dlq" and args.verb == "show":
            await op.dlq_show(nc, args.site, args.service, args.id)
        elif args.command == "dlq" and args.verb == "replay":
            await op.dlq_replay(
                nc,
                args.site,
                args.service,
                args.ids,
                args.cause,
                args.reason,
                args.payload,
                args.by,
            )
        elif args.command == "rebuild":
            await op.rebuild_service(
                nc, args.service_name, args.site or "north", args.data, args.replace
            )
        elif args.command == "tail":
            await op.tail(
                nc, args.target, args.site, args.raw, args.count, args.since, args.from_seq
            )
        elif args.command == "backlog":
            await op.backlog(nc, args.json)
        elif args.command == "services":
            await op.services(nc, args.json)
        elif args.command == "trace":
            site = args.site or os.environ.get("SINEW_SITE", "north")
            await op.trace(nc, site, args.key, args.json)
        elif args.command == "recall":
            site = args.site or os.environ.get("SINEW_SITE", "north")
            query = {"lot": args.lot, "serial": args.serial, "gtin": args.gtin}
            await op.recall(nc, site, query, args.json)
    finally:
        await nc.close()


if __name__ == "__main__":
    sys.exit(main())
