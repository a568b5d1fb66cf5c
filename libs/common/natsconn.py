"""A NATS connection as every Sinew process opens it: reconnect forever, a short ping interval,
its own reply inbox, and every callback logged."""

from __future__ import annotations

import asyncio
import logging

import nats
from nats.aio.client import Client

from .natsconfig import inbox_prefix

log = logging.getLogger("sinew.nats")


async def connect(
    url: str,
    *,
    name: str,
    user: str | None = None,
    password: str | None = None,
    on_state=None,
    first_attempt_timeout: float = 60.0,
) -> Client:
    def state(connected: bool) -> None:
        if on_state:
            on_state(connected)

    async def error_cb(error: Exception) -> None:
        # A publish denied by permissions shows up only here (and as a publisher's timeout).
        log.error("nats error: %r", error)

    async def disconnected_cb() -> None:
        log.warning("nats disconnected")
        state(False)

    async def reconnected_cb() -> None:
        log.info("nats reconnected to %s", nc.connected_url.netloc if nc.connected_url else "?")
        state(True)

    async def closed_cb() -> None:
        log.info("nats connection closed")
        state(False)

    async def discovered_server_cb() -> None:
        log.info("nats discovered servers %s", nc.discovered_servers)

    options = dict(
        servers=[url],
        name=name,
        user=user,
        password=password,
        inbox_prefix=inbox_prefix(user) if user else "_INBOX",
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1.0,
        ping_interval=5,
        max_outstanding_pings=3,
        connect_timeout=5,
        error_cb=error_cb,
        disconnected_cb=disconnected_cb,
        reconnected_cb=reconnected_cb,
        closed_cb=closed_cb,
        discovered_server_cb=discovered_server_cb,
    )
    # The client reconnects forever once connected, but gives up on a first connect; a service
    # started before its server keeps trying for a while instead.
    deadline = asyncio.get_running_loop().time() + first_attempt_timeout
    while True:
        try:
            nc = await nats.connect(**options)
            state(True)
            return nc
        except Exception as error:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("nats not reachable at %s (%r); retrying", url, error)
            await asyncio.sleep(1.0)
