"""nats-server configuration for a site: JetStream with fsync on every write, and one user per
service and per outside system, each allowed exactly the subjects the catalogue gives it."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from sinew.contracts.catalogue import Catalogue

OPERATOR = "operator"  # the CLI and the dashboard's SRE tooling
PROVISIONER = "provisioner"  # creates streams and consumers at deploy time


def user_name(party: str, site: str) -> str:
    return f"{party}-{site}"


def inbox_prefix(user: str) -> str:
    """Each user gets its own reply inbox, so no one can read another's replies."""
    return f"_INBOX_{user}"


def consumer_name(service: str, site: str) -> str:
    return f"{service}-{site}"


def admin_subject(site: str, service: str) -> str:
    """Prefix of a service's operator endpoints (dead letters), served with nats.micro."""
    return f"sinew.admin.{site}.{service}"


def items_bucket(site: str) -> str:
    """The KV bucket where the items service keeps the site's master data for readers."""
    return f"items_{site}"


def api_subject(site: str, service: str) -> str:
    """Prefix of a service's request/reply lookups (no stream captures sinew.api.>)."""
    return f"sinew.api.{site}.{service}"


def service_permissions(catalogue: Catalogue, service: str, site: str) -> dict:
    consumer = consumer_name(service, site)
    publish = sorted({c.subject(site) for c in catalogue.published_by(service)})
    # Reading one message by sequence (a dead letter from an advisory) only from its own streams.
    own_streams = sorted({catalogue.stream_for(c).name for c in catalogue.consumed_by(service)})
    publish += [
        "$JS.API.INFO",
        "$JS.API.STREAM.INFO.*",
        f"$JS.API.CONSUMER.INFO.*.{consumer}",
        f"$JS.API.CONSUMER.MSG.NEXT.*.{consumer}",
        f"$JS.ACK.*.{consumer}.>",
        *(f"$JS.API.STREAM.MSG.GET.{stream}" for stream in own_streams),
        *(f"$JS.API.DIRECT.GET.{stream}" for stream in own_streams),
        f"sinew.api.{site}.>",
        # Every service may read the item master's KV replica; only items writes it.
        f"$JS.API.DIRECT.GET.KV_{items_bucket(site)}.>",
    ]
    if service == "usage":
        # HL7 ACKs go back to the EHR's own reply inbox after the usage is committed.
        publish += [f"{inbox_prefix(user_name('ehr', site))}.>"]
    if service == "observability":
        # The SRE view: every service's health and every consumer's backlog, read only.
        publish += [
            "$SRV.PING",
            "$SRV.PING.>",
            "$SRV.INFO",
            "$SRV.STATS",
            "$JS.API.STREAM.LIST",
            "$JS.API.STREAM.NAMES",
            "$JS.API.CONSUMER.LIST.*",
            "$JS.API.CONSUMER.NAMES.*",
            "$JS.API.CONSUMER.INFO.*.*",
            f"{admin_subject(site, '*')}.status",
        ]
    if service == "items":
        publish += [f"$KV.{items_bucket(site)}.>", f"$JS.API.STREAM.CREATE.KV_{items_bucket(site)}"]
    subscribe = [
        f"{inbox_prefix(user_name(service, site))}.>",
        f"{admin_subject(site, service)}.>",
        f"{api_subject(site, service)}.>",
        "$SRV.>",
        f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*.{consumer}",
    ]
    return {
        "publish": {"allow": publish},
        "subscribe": {"allow": subscribe},
        "allow_responses": True,
    }


def outside_system_permissions(catalogue: Catalogue, system: str, site: str) -> dict:
    # Any major version of their own channels: a version Sinew does not know yet reaches the
    # consuming service and becomes a dead letter that says so, instead of a silent timeout.
    publish = sorted({c.any_version(site) for c in catalogue.published_by(system)})
    if catalogue.read_by(system):
        consumer = consumer_name(system, site)
        publish += [
            f"$JS.API.CONSUMER.INFO.*.{consumer}",
            f"$JS.API.CONSUMER.MSG.NEXT.*.{consumer}",
            f"$JS.ACK.*.{consumer}.>",
        ]
    subscribe = [f"{inbox_prefix(user_name(system, site))}.>"]
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}}


def operator_permissions(catalogue: Catalogue) -> dict:
    """Everything an SRE needs, except a way to read patient identifiers."""
    phi_streams = [s for s in catalogue.streams if s.phi]
    deny_publish = [
        subject
        for stream in phi_streams
        for subject in (
            f"$JS.API.CONSUMER.CREATE.{stream.name}",
            f"$JS.API.CONSUMER.CREATE.{stream.name}.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream.name}.>",
            f"$JS.API.STREAM.MSG.GET.{stream.name}",
            f"$JS.API.DIRECT.GET.{stream.name}",
            f"$JS.API.DIRECT.GET.{stream.name}.>",
        )
    ]
    deny_subscribe = [s for stream in phi_streams for s in catalogue.stream_subjects(stream)]
    return {
        "publish": {
            "allow": [
                "$JS.API.>",
                "$SRV.>",
                "sinew.admin.>",
                "sinew.api.>",
                "$JS.ACK.>",
                "$JS.FC.>",
            ],
            "deny": deny_publish,
        },
        "subscribe": {
            "allow": [f"{inbox_prefix(OPERATOR)}.>", "sinew.>", "$JS.EVENT.>"],
            "deny": deny_subscribe,
        },
    }


@dataclass
class Credentials:
    """Passwords of every NATS user of a site, generated on first start and kept in the data
    folder (mode 0600), never in the repository."""

    passwords: dict[str, str]

    @classmethod
    def load_or_create(cls, path: Path, users: list[str]) -> Credentials:
        passwords = json.loads(path.read_text()) if path.exists() else {}
        missing = [u for u in users if u not in passwords]
        for user in missing:
            passwords[user] = secrets.token_urlsafe(24)
        if missing or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600, exist_ok=True)
            path.write_text(json.dumps(passwords, indent=2, sort_keys=True))
        return cls(passwords)


def site_users(catalogue: Catalogue, sites: list[str]) -> dict[str, dict]:
    """Every user of the given sites with its permissions."""
    users: dict[str, dict] = {PROVISIONER: {}, OPERATOR: operator_permissions(catalogue)}
    for site in sites:
        for service in catalogue.services:
            users[user_name(service, site)] = service_permissions(catalogue, service, site)
        for system in catalogue.outside_systems:
            users[user_name(system, site)] = outside_system_permissions(catalogue, system, site)
    return users


def server_config(
    *,
    store_dir: Path,
    host: str,
    port: int,
    monitor_port: int,
    monitor_host: str = "127.0.0.1",
    users: dict[str, dict] | None,
    passwords: dict[str, str] | None = None,
    server_name: str = "sinew",
    sync_always: bool = True,
    max_payload_mb: int = 8,
) -> str:
    """The text of a nats-server configuration file. Without users, the server needs no auth
    (used by tests of the runtime itself)."""
    jetstream = {"store_dir": str(store_dir)}
    if sync_always:
        jetstream["sync_interval"] = "always"
    lines = [
        f"server_name: {json.dumps(server_name)}",
        f"listen: {json.dumps(f'{host}:{port}')}",
        f"http: {json.dumps(f'{monitor_host}:{monitor_port}')}",
        f"max_payload: {max_payload_mb * 1024 * 1024}",
        f"jetstream: {json.dumps(jetstream)}",
    ]
    if users is not None:
        assert passwords is not None
        entries = []
        for user, permissions in users.items():
            entry = {"user": user, "password": passwords[user]}
            if permissions:
                entry["permissions"] = permissions
            entries.append(entry)
        account = {"jetstream": "enabled", "users": entries}
        lines.append(f"accounts: {json.dumps({'SINEW': account}, indent=2)}")
    return "\n".join(lines) + "\n"
