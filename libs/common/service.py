"""Bootstrap of one service: every resource opened and closed in one visible place.

A service module declares a `ServiceDefinition` (what it handles, its tables, its HTTP routes);
`serve` wires it to NATS, SQLite and HTTP, and the same wiring runs in tests.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import signal
import urllib.request
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import EndpointConfig

from sinew.contracts import CATALOGUE
from sinew.contracts.catalogue import Catalogue
from sinew.contracts.envelope import Envelope, new_event_id, utc_now
from sinew.contracts.ops import CommandRecorded

from . import deadletters
from .actor import (
    ExhaustedMailbox,
    Handler,
    Mailbox,
    Parser,
    Wiring,
    inbox_key,
    record_inbox,
)
from .commands import Command, encode_arguments, keep_record, replay_handler
from .config import Settings
from .http import (
    PRINCIPAL,
    Tokens,
    create_app,
    error_response,
    json_response,
    page,
    paged,
    requires,
)
from .metrics import RuntimeMetrics
from .natsconfig import admin_subject, api_subject, consumer_name
from .natsconn import connect
from .outbox import OutboxRelay
from .provision import ADVISORIES, DeliveryPolicy, mailbox_filters
from .retention import keep_pruning
from .store import Store

log = logging.getLogger("sinew.service")


@dataclass
class ServiceDefinition:
    name: str
    description: str
    handlers: dict[type, Handler]
    migrations: list[str] = field(default_factory=list)
    parsers: dict[str, Parser] = field(default_factory=dict)
    routes: Callable[[Runtime], list[web.RouteDef]] | None = None
    # Request/reply endpoints on NATS, served with nats.micro under sinew.api.<site>.<service>.<name>:
    # name -> async handler(runtime, request) that answers with request.respond(...).
    endpoints: dict[str, Callable[[Runtime, Request], Awaitable[None]]] = field(
        default_factory=dict
    )
    # Background loops (a KV projector, a scheduler): started once the service is bound,
    # cancelled on stop, each given the Runtime.
    tasks: list[Callable[[Runtime], Awaitable[None]]] = field(default_factory=list)
    # What the handlers need from the settings beyond the site (usage's patient-token key):
    # made once per runtime, and by `sinew rebuild`, and handed to every handler as ctx.config.
    # It raises SystemExit to refuse to start without it.
    configure: Callable[[Settings], Any] = lambda settings: None
    # Changes people make over HTTP, by name (see commands.py): run with Runtime.command, kept
    # in the service's own stream, and run again by a rebuild.
    commands: dict[str, Command] = field(default_factory=dict)
    version: str = "0.1.0"

    def __post_init__(self) -> None:
        if self.commands:
            self.handlers = {**self.handlers, CommandRecorded: replay_handler(self.commands)}


class Runtime:
    """A running service: its store, connection, mailboxes and relay."""

    def __init__(
        self,
        definition: ServiceDefinition,
        settings: Settings,
        catalogue: Catalogue,
        policy: DeliveryPolicy,
    ) -> None:
        self.definition = definition
        self.settings = settings
        self.site = settings.site
        self.metrics = RuntimeMetrics(definition.name, settings.site)
        self.wiring = Wiring(
            definition.name,
            settings.site,
            catalogue,
            definition.handlers,
            definition.parsers,
            policy,
            config=definition.configure(settings),
        )
        self.store = Store(settings.database_path, definition.migrations)
        self.mailboxes: list[Mailbox] = []
        self.relay: OutboxRelay | None = None
        self.nc = None
        self.ready = False
        self.stopped = asyncio.Event()

    async def command(
        self,
        name: str,
        *args: Any,
        correlation_id: str | None = None,
        about: str | None = None,
    ) -> Any:
        """Run the named command, fn(context, *args), in one transaction like a handler: for
        changes that arrive over HTTP. Its events, and the record of the command itself, go out
        through the outbox."""
        fn = self.definition.commands[name]
        channel = self.wiring.catalogue.channel(f"{self.definition.name}.command.recorded.v1")
        command_id = new_event_id()
        envelope = Envelope(
            id=command_id,
            source=f"/sinew/{self.site}/{self.definition.name}",
            type=channel.ce_type,
            time=utc_now(),
            site=self.site,
            correlation_id=correlation_id or command_id,
            subject=about,
        )
        recorded = CommandRecorded(
            command_id=command_id,
            site=self.site,
            service=self.definition.name,
            command=name,
            arguments=encode_arguments(args),
            recorded_at=envelope.time,
        )
        # The key the record will have when it comes back through the mailbox: seen already.
        key = inbox_key(channel.family, command_id)

        def transaction(conn):
            context = self.wiring.context(conn, envelope, "", key)
            result = fn(context, *args)
            keep_record(context, recorded)
            context.flush()
            stream = self.wiring.catalogue.stream_for(channel).name
            record_inbox(conn, key, stream, 0, channel.subject(self.site), "applied")
            return result

        result = await self.store.transact(transaction)
        if self.relay:
            self.relay.wake()
        return result

    async def replay(
        self,
        ids: list[str] | None,
        cause: str | None,
        reason: str | None,
        replayed_by: str,
        payload: bytes | None = None,
    ) -> list[dict]:
        def transaction(conn):
            targets = ids or deadletters.matching_ids(conn, cause=cause, reason=reason)
            return deadletters.replay_dead_letters(conn, self.wiring, targets, replayed_by, payload)

        results = await self.store.transact(transaction)
        if self.relay:
            self.relay.wake()
        return results

    async def status(self) -> dict:
        def read(conn):
            counters = dict(conn.execute("SELECT name, value FROM sinew_counters").fetchall())
            return {
                "open_dead_letters": conn.execute(
                    "SELECT count(*) FROM sinew_dead_letters WHERE status='open'"
                ).fetchone()[0],
                "outbox_backlog": conn.execute(
                    "SELECT count(*) FROM sinew_outbox WHERE published_at IS NULL"
                ).fetchone()[0],
                "messages_handled": counters.get("messages_handled", 0),
                "duplicates_suppressed": counters.get("duplicates_suppressed", 0),
            }

        return {
            "service": self.definition.name,
            "site": self.site,
            "ready": self.ready,
            **await self.store.run(read),
        }


async def serve(
    definition: ServiceDefinition,
    settings: Settings,
    *,
    catalogue: Catalogue = CATALOGUE,
    policy: DeliveryPolicy | None = None,
    started: asyncio.Event | None = None,
    runtime_ready: Callable | None = None,
    install_signal_handlers: bool = True,
) -> None:
    """Run a service until SIGTERM/SIGINT (or until `Runtime.stopped` is set)."""
    runtime = Runtime(definition, settings, catalogue, policy or DeliveryPolicy())
    if runtime_ready:
        runtime_ready(runtime)
    if settings.require_sync_always:
        check_sync_always(settings.nats_monitor_url)
    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runtime.stopped.set)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(runtime.store)
        http = await _start_http(runtime, settings)
        stack.push_async_callback(http.cleanup)
        m = runtime.metrics
        runtime.nc = nc = await connect(
            settings.nats_url,
            name=f"{definition.name}-{settings.site}",
            user=settings.nats_user,
            password=settings.nats_password,
            on_state=lambda up: m.labels(m.nats_connected).set(1 if up else 0),
        )
        stack.push_async_callback(_drain, nc)
        js = nc.jetstream()
        runtime.relay = relay = OutboxRelay(runtime.store, js, runtime.metrics)
        relay_task = asyncio.create_task(relay.run(), name="outbox-relay")
        micro = await _register_micro(runtime)
        stack.push_async_callback(micro.stop)
        runtime.mailboxes = await _bind_mailboxes(runtime, js)
        tasks = [
            asyncio.create_task(mb.run(), name=f"mailbox-{mb.stream}") for mb in runtime.mailboxes
        ]
        background = [
            asyncio.create_task(task(runtime), name=getattr(task, "__name__", "task"))
            for task in [keep_pruning, *definition.tasks]
        ]
        runtime.ready = True
        log.info(
            "%s at %s ready; http on port %s",
            definition.name,
            settings.site,
            http.addresses[0][1] if http.addresses else "?",
        )
        if started:
            started.set()
        await runtime.stopped.wait()

        # Graceful stop: take no more messages, finish the batch in hand, flush the outbox.
        runtime.ready = False
        for mailbox in runtime.mailboxes:
            mailbox.stopping.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for mailbox in runtime.mailboxes:
            # Messages fetched but not handled are simply redelivered to the next start.
            await mailbox.subscription.unsubscribe()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        relay.stop()
        await relay_task
        try:
            await relay.flush()
        except Exception as error:  # the rows stay in the outbox and go out on the next start
            log.warning("outbox not fully flushed on stop: %r", error)
        log.info("%s at %s stopped", definition.name, settings.site)


async def _drain(nc) -> None:
    try:
        await nc.drain()
    except Exception as error:
        log.warning("drain: %r", error)


def check_sync_always(monitor_url: str | None) -> None:
    """Refuse clinical and financial data on a server that acks before fsync (BRIEF pitfalls)."""
    if not monitor_url:
        log.warning("no NATS monitoring URL: cannot check that JetStream syncs every write")
        return
    with urllib.request.urlopen(f"{monitor_url}/varz", timeout=5) as response:
        varz = json.load(response)
    if not varz.get("jetstream", {}).get("config", {}).get("sync_always"):
        raise SystemExit(
            "nats-server at this site does not sync every write (set jetstream sync_interval: "
            "always); refusing to start. SINEW_REQUIRE_SYNC_ALWAYS=0 overrides, for tests only."
        )


async def _bind_mailboxes(runtime: Runtime, js) -> list[Mailbox]:
    """Bind to the consumers provisioned for this service; wait for any not yet provisioned."""
    name = consumer_name(runtime.definition.name, runtime.site)
    mailboxes = []
    streams = list(mailbox_filters(runtime.wiring.catalogue, runtime.definition.name, runtime.site))
    for stream in [*streams, ADVISORIES] if streams else []:
        while True:
            try:
                await js.consumer_info(stream, name)
                break
            except Exception as error:
                log.warning(
                    "consumer %s on %s not available (%r); is the site provisioned?",
                    name,
                    stream,
                    error,
                )
                await asyncio.sleep(2.0)
    for stream in streams:
        subscription = await js.pull_subscribe_bind(durable=name, stream=stream)
        mailboxes.append(
            Mailbox(
                runtime.wiring,
                runtime.store,
                subscription,
                stream,
                runtime.metrics,
                runtime.relay.wake,
            )
        )
    if mailboxes:
        advisories = await js.pull_subscribe_bind(durable=name, stream=ADVISORIES)
        mailboxes.append(
            ExhaustedMailbox(
                runtime.wiring, runtime.store, advisories, js, runtime.metrics, runtime.relay.wake
            )
        )
    return mailboxes


async def _register_micro(runtime: Runtime):
    """`$SRV.PING/INFO/STATS` discovery, and the operator endpoints for dead letters."""
    definition = runtime.definition
    service = await add_service(
        runtime.nc,
        name=definition.name,
        version=definition.version,
        description=definition.description,
        metadata={"site": runtime.site},
    )
    group = service.add_group(name=admin_subject(runtime.site, definition.name))

    async def respond(request: Request, body: Any) -> None:
        await request.respond(msgspec.json.encode(body))

    async def dlq_list(request: Request) -> None:
        query = json.loads(request.data or b"{}")
        items, total = await runtime.store.run(
            lambda conn: deadletters.list_dead_letters(
                conn,
                status=query.get("status", "open"),
                cause=query.get("cause"),
                reason=query.get("reason"),
                limit=int(query.get("limit", 100)),
                offset=int(query.get("offset", 0)),
            )
        )
        await respond(request, {"items": items, "total": total})

    async def dlq_show(request: Request) -> None:
        query = json.loads(request.data or b"{}")
        shown = await runtime.store.run(deadletters.show_dead_letter, query.get("id", ""))
        if shown is None:
            await request.respond_error("404", "no such dead letter")
            return
        await respond(request, shown)

    async def dlq_replay(request: Request) -> None:
        query = json.loads(request.data or b"{}")
        payload = base64.b64decode(query["payload_base64"]) if query.get("payload_base64") else None
        results = await runtime.replay(
            query.get("ids"),
            query.get("cause"),
            query.get("reason"),
            query.get("by", "operator"),
            payload,
        )
        await respond(request, {"results": results})

    async def status(request: Request) -> None:
        await respond(request, await runtime.status())

    service_group = service.add_group(name=api_subject(runtime.site, definition.name))
    for name, endpoint in definition.endpoints.items():
        await service_group.add_endpoint(
            EndpointConfig(
                name=name.replace(".", "-"),
                subject=name,
                handler=functools.partial(endpoint, runtime),
            )
        )
    for name, handler in [
        ("dlq.list", dlq_list),
        ("dlq.show", dlq_show),
        ("dlq.replay", dlq_replay),
        ("status", status),
    ]:
        await group.add_endpoint(
            EndpointConfig(name=name.replace(".", "-"), subject=name, handler=handler)
        )
    return service


async def _start_http(runtime: Runtime, settings: Settings) -> web.AppRunner:
    app = create_app(Tokens.load(settings.tokens_file))

    async def healthz(_: web.Request) -> web.Response:
        return json_response({"status": "ok", "service": runtime.definition.name})

    async def readyz(_: web.Request) -> web.Response:
        connected = bool(runtime.nc and runtime.nc.is_connected)
        body = {
            "ready": runtime.ready and connected,
            "nats_connected": connected,
            "mailboxes": [mb.stream for mb in runtime.mailboxes],
            "outbox_backlog": runtime.relay.backlog if runtime.relay else None,
        }
        return json_response(body, 200 if body["ready"] else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=runtime.metrics.exposition(), content_type="text/plain", charset="utf-8"
        )

    async def list_dead_letters(request: web.Request) -> web.Response:
        limit, offset = page(request)
        q = request.query
        items, total = await runtime.store.run(
            lambda conn: deadletters.list_dead_letters(
                conn,
                status=q.get("status", "open") or None,
                cause=q.get("cause"),
                reason=q.get("reason"),
                limit=limit,
                offset=offset,
            )
        )
        return paged(items, total, limit, offset)

    async def show_dead_letter(request: web.Request) -> web.Response:
        shown = await runtime.store.run(deadletters.show_dead_letter, request.match_info["id"])
        if shown is None:
            return error_response(404, "not_found", "no such dead letter")
        return json_response(shown)

    @requires("operator")
    async def replay_one(request: web.Request) -> web.Response:
        body = await request.read()
        results = await runtime.replay(
            [request.match_info["id"]], None, None, request[PRINCIPAL].name, body or None
        )
        return json_response({"results": results})

    @requires("operator")
    async def replay_bulk(request: web.Request) -> web.Response:
        q = request.query
        if not (q.get("cause") or q.get("reason")):
            return error_response(400, "filter_required", "bulk replay needs cause= or reason=")
        results = await runtime.replay(
            None, q.get("cause"), q.get("reason"), request[PRINCIPAL].name
        )
        return json_response({"results": results})

    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", metrics),
            web.get("/v1/dead-letters", list_dead_letters),
            web.get("/v1/dead-letters/{id}", show_dead_letter),
            web.post("/v1/dead-letters/{id}/replay", replay_one),
            web.post("/v1/dead-letters/replay", replay_bulk),
        ]
    )
    if runtime.definition.routes:
        app.add_routes(runtime.definition.routes(runtime))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    return runner
