"""Streams and durable consumers, declared from the catalogue and created at deploy time.

Services never let the client auto-create a consumer (it would keep a stale configuration): the
site provisions them, and a service only binds to what is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from sinew.contracts.catalogue import Catalogue

from .natsconfig import consumer_name

DAY = 24 * 3600

# JetStream announces a message it gave up redelivering only as a core NATS advisory; kept in a
# stream, a service that was down at that moment still learns of it and dead-letters the message.
ADVISORIES = "ADVISORIES"
MAX_DELIVERIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
TERMINATED = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED"


@dataclass(frozen=True)
class DeliveryPolicy:
    """How a mailbox redelivers. Backoff applies to ack timeouts (a service that died mid-batch);
    handler failures are nak'ed with the runtime's own delay."""

    max_deliver: int = 6
    backoff: list[float] = field(default_factory=lambda: [5.0, 15.0, 30.0, 60.0, 120.0])
    max_ack_pending: int = 2000
    nak_delays: list[float] = field(default_factory=lambda: [1.0, 5.0, 15.0, 30.0, 60.0])

    def nak_delay(self, deliveries: int) -> float:
        return self.nak_delays[min(deliveries, len(self.nak_delays)) - 1]


def stream_configs(catalogue: Catalogue, replicas: int = 1) -> list[StreamConfig]:
    advisories = StreamConfig(
        name=ADVISORIES,
        description="Messages JetStream stopped redelivering, and messages services terminated",
        subjects=[f"{MAX_DELIVERIES}.>", f"{TERMINATED}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=30 * DAY,
        num_replicas=replicas,
    )
    return [
        advisories,
        *[
            StreamConfig(
                name=stream.name,
                description=stream.description,
                subjects=catalogue.stream_subjects(stream),
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                discard=DiscardPolicy.OLD,
                max_age=stream.max_age_days * DAY,
                duplicate_window=stream.duplicate_window_seconds,
                num_replicas=replicas,
                allow_direct=True,
            )
            for stream in catalogue.streams
        ],
    ]


def mailbox_filters(catalogue: Catalogue, party: str, site: str) -> dict[str, list[str]]:
    """Per stream, the subjects a mailbox takes: a service's consumed channels, or the channels an
    outside system reads. A service takes ingress at every major version, so that a version it
    does not know is dead-lettered, not left unread."""
    channels = catalogue.consumed_by(party) or catalogue.read_by(party)
    filters: dict[str, set[str]] = {}
    for channel in channels:
        subject = channel.any_version(site) if channel.is_ingress else channel.subject(site)
        filters.setdefault(catalogue.stream_for(channel).name, set()).add(subject)
    return {stream: sorted(subjects) for stream, subjects in filters.items()}


def advisory_filters(catalogue: Catalogue, service: str, site: str) -> list[str]:
    """The max-deliveries advisories of a service's own mailboxes."""
    name = consumer_name(service, site)
    return [
        f"{MAX_DELIVERIES}.{stream}.{name}" for stream in mailbox_filters(catalogue, service, site)
    ]


def consumer_configs(
    catalogue: Catalogue, party: str, site: str, policy: DeliveryPolicy | None = None
) -> dict[str, ConsumerConfig]:
    policy = policy or DeliveryPolicy()
    name = consumer_name(party, site)
    return {
        stream: ConsumerConfig(
            durable_name=name,
            name=name,
            description=f"{party} mailbox at {site}",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            max_deliver=policy.max_deliver,
            backoff=policy.backoff,
            max_ack_pending=policy.max_ack_pending,
            filter_subjects=subjects,
            metadata={"party": party, "site": site},
        )
        for stream, subjects in mailbox_filters(catalogue, party, site).items()
    }


async def provision(
    js: JetStreamContext,
    catalogue: Catalogue,
    sites: list[str],
    services: list[str] | None = None,
    policy: DeliveryPolicy | None = None,
) -> None:
    """Create or update every stream, then the consumers of every service (and of every outside
    system that reads a channel) at every site."""
    for config in stream_configs(catalogue):
        try:
            await js.stream_info(config.name)
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)
    for site in sites:
        for party in services if services is not None else readers_and_services(catalogue):
            for stream, config in consumer_configs(catalogue, party, site, policy).items():
                await js.add_consumer(stream, config)
            if party in catalogue.services and catalogue.consumed_by(party):
                await js.add_consumer(ADVISORIES, advisory_consumer(catalogue, party, site))


def advisory_consumer(catalogue: Catalogue, service: str, site: str) -> ConsumerConfig:
    name = consumer_name(service, site)
    return ConsumerConfig(
        durable_name=name,
        name=name,
        description=f"messages {service} at {site} never acknowledged",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        max_deliver=20,
        filter_subjects=advisory_filters(catalogue, service, site),
    )


def readers_and_services(catalogue: Catalogue) -> list[str]:
    return list(catalogue.services) + [s for s in catalogue.outside_systems if catalogue.read_by(s)]
