"""Multi-site: each facility's NATS is a leaf node with a JetStream domain of its own, and a
three-node hub cluster (domain `hub`) sources every site's streams for network-wide reporting.

A site never depends on the hub: its services publish to and consume from its own JetStream.
The hub pulls each site stream through the site's domain API (`$JS.<site>.API`) into a stream of
its own (`NORTH_MATCHING`), resuming after an outage from the last sequence it took, so nothing is
lost or doubled. Core NATS traffic would otherwise flow across the leaf connection wherever
there is interest (another site's stream on `sinew.usage.>`, a subscriber at the hub on a
service's reply inbox), so the site's remote keeps its events, its users' replies and its
patient data from crossing, and refuses any request of the hub that would change its streams.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nats.js.api import (
    DiscardPolicy,
    ExternalStream,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
)

from sinew.contracts.catalogue import ROOT, Catalogue, Stream

from .natsconfig import inbox_prefix, server_config
from .provision import DAY

HUB_DOMAIN = "hub"
HUB_CLUSTER = "sinew-hub"
HUB_NODES = 3
HUB_REPLICAS = 3
ROUTE_USER = "route"
# Not the site's names: a site never sends its own users' reply inboxes across the leaf.
HUB_OPERATOR = "hub-operator"
HUB_PROVISIONER = "hub-provisioner"

# Subjects that never cross a leaf connection as plain messages: canonical events reach the hub
# only through its sourced streams (a stream at the hub or at another site that captured them
# too would hold them twice, or hold another site's events); service discovery, the item
# master's KV replica and JetStream advisories belong to the site.
SITE_LOCAL = [f"{ROOT}.>", "$KV.>", "$SRV.>", "$JS.EVENT.>"]

# What the hub may not ask of a site's JetStream: it reads streams, it never changes them, nor
# takes messages from the services' mailboxes.
_SITE_API_DENIED = [
    "STREAM.CREATE.>",
    "STREAM.UPDATE.>",
    "STREAM.DELETE.>",
    "STREAM.PURGE.>",
    "STREAM.MSG.DELETE.>",
    "STREAM.SNAPSHOT.>",
    "STREAM.RESTORE.>",
    "STREAM.PEER.REMOVE.>",
    "STREAM.LEADER.STEPDOWN.>",
    "CONSUMER.DURABLE.CREATE.>",
    "CONSUMER.DELETE.>",
    "CONSUMER.MSG.NEXT.>",
    "CONSUMER.PAUSE.>",
    "CONSUMER.UNPIN.>",
    "CONSUMER.LEADER.STEPDOWN.>",
    "ACCOUNT.PURGE.>",
    "SERVER.>",
    "$KV.>",
    "$OBJ.>",
]


def site_api(site: str) -> str:
    """The prefix under which a site's JetStream answers from across its leaf connection."""
    return f"$JS.{site}.API"


def leaf_user(site: str) -> str:
    return f"leaf-{site}"


def hub_stream_name(site: str, stream: str) -> str:
    return f"{site.upper()}_{stream}"


def sourced_streams(catalogue: Catalogue) -> list[Stream]:
    """The site streams the hub keeps a copy of. A stream holding patient identifiers (the EHR's
    raw documents) stays at its site: identifiers never leave the usage service. Raw documents
    of the other outside systems (INGRESS: invoices, ASNs, acknowledgements, payments, master
    data) are sourced, so the network keeps an audit copy of what each supplier and the AP
    system actually sent, beside the canonical events made of it. ADVISORIES (not in the
    catalogue) stays too: it is JetStream's bookkeeping of the site's own mailboxes."""
    return [stream for stream in catalogue.streams if not stream.phi]


def check_domains(sites: Iterable[str]) -> list[str]:
    sites = list(sites)
    if len(set(sites)) != len(sites):
        raise ValueError(f"site codes must be distinct: {sites}")
    if HUB_DOMAIN in sites:
        raise ValueError(f"{HUB_DOMAIN!r} is the hub's JetStream domain, not a site code")
    return sites


def hub_stream_configs(
    catalogue: Catalogue, sites: Iterable[str], replicas: int = HUB_REPLICAS
) -> list[StreamConfig]:
    """Per site and per sourced stream, a replicated stream at the hub with no subjects of its
    own: it takes messages only from the site's stream, through the site's domain, and resumes
    from the last sequence it took after the link comes back."""
    return [
        StreamConfig(
            name=hub_stream_name(site, stream.name),
            description=f"{stream.name} of {site}, sourced from its JetStream domain",
            sources=[StreamSource(name=stream.name, external=ExternalStream(api=site_api(site)))],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=stream.max_age_days * DAY,
            num_replicas=replicas,
            allow_direct=True,
            metadata={"site": site, "stream": stream.name},
        )
        for site in check_domains(sites)
        for stream in sourced_streams(catalogue)
    ]


def site_denied_imports(catalogue: Catalogue, site: str) -> list[str]:
    """What the site refuses from the hub: events, and any JetStream request that would change
    its streams, drain a mailbox, or read a stream that holds patient identifiers."""
    api = site_api(site)
    phi = [
        subject
        for stream in catalogue.streams
        if stream.phi
        for subject in (
            f"{api}.CONSUMER.CREATE.{stream.name}",
            f"{api}.CONSUMER.CREATE.{stream.name}.>",
            f"{api}.STREAM.MSG.GET.{stream.name}",
            f"{api}.DIRECT.GET.{stream.name}",
            f"{api}.DIRECT.GET.{stream.name}.>",
        )
    ]
    return [*SITE_LOCAL, *(f"{api}.{verb}" for verb in _SITE_API_DENIED), *phi]


def site_denied_exports(site_users: Iterable[str]) -> list[str]:
    """What the site never sends to the hub: its events as plain messages, and the replies
    JetStream hands its users (a service's pull of the EHR's documents is one)."""
    return [*SITE_LOCAL, *(f"{inbox_prefix(user)}.>" for user in site_users)]


def leaf_remote(
    catalogue: Catalogue,
    site: str,
    hub_leaf_urls: list[str],
    password: str,
    site_users: Iterable[str],
    account: str = "SINEW",
) -> dict:
    """The site's remote to the hub: every hub node's leaf port, as the site's leaf user, bound
    to the site's own account."""
    urls = [url.replace("://", f"://{leaf_user(site)}:{password}@", 1) for url in hub_leaf_urls]
    return {
        "urls": urls,
        "account": account,
        "deny_imports": site_denied_imports(catalogue, site),
        "deny_exports": site_denied_exports(site_users),
    }


def _entries(config: str) -> dict[str, str]:
    """The top-level `key: value` entries of a server_config text; a value may span lines."""
    entries: dict[str, str] = {}
    key = None
    for line in config.rstrip("\n").split("\n"):
        name, colon, _ = line.partition(":")
        if colon and name and name[0] not in " \t}]" and " " not in name:
            key = name
            entries[key] = line
        elif key is not None:
            entries[key] += "\n" + line
    return entries


def with_settings(config: str, **settings: object) -> str:
    """A server_config text with top-level blocks added or replaced."""
    entries = _entries(config)
    for key, value in settings.items():
        entries[key] = f"{key}: {json.dumps(value, indent=2)}"
    return "\n".join(entries.values()) + "\n"


def with_domain(config: str, domain: str) -> str:
    """Keep the jetstream block server_config wrote (store, fsync on every write) and name its
    domain."""
    entry = _entries(config).get("jetstream")
    if entry is None:
        raise ValueError("the configuration has no jetstream block")
    jetstream = json.loads(entry.removeprefix("jetstream:"))
    return with_settings(config, jetstream={**jetstream, "domain": domain})


def read_leaf_block(text: str) -> dict:
    """The remote of a leaf block `sinew hub init` wrote for a site."""
    entry = _entries(text).get("leafnodes")
    if entry is None:
        raise ValueError("not a leaf block: no leafnodes entry")
    (remote,) = json.loads(entry.removeprefix("leafnodes:"))["remotes"]
    return remote


def site_leaf_config(site_config: str, site: str, remote: dict) -> str:
    """A site's server configuration made a leaf node: its own JetStream domain, named after the
    site, and the remote to the hub."""
    check_domains([site])
    return with_settings(with_domain(site_config, site), leafnodes={"remotes": [remote]})


@dataclass(frozen=True)
class HubNode:
    name: str
    host: str
    client_port: int = 4222
    cluster_port: int = 6222
    leaf_port: int = 7422
    monitor_port: int = 8222
    listen: str = "0.0.0.0"

    @property
    def client_url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"

    @property
    def route_url(self) -> str:
        return f"nats-route://{self.host}:{self.cluster_port}"

    @property
    def leaf_url(self) -> str:
        return f"nats-leaf://{self.host}:{self.leaf_port}"


def hub_nodes(hosts: list[str], listen: str = "0.0.0.0", **base_ports: int) -> list[HubNode]:
    """Three nodes on the given hosts. Nodes that share a host get consecutive ports from the
    base ports, so a whole hub can be tried on one machine."""
    if len(hosts) == 1:
        hosts = hosts * HUB_NODES
    if len(hosts) != HUB_NODES:
        raise ValueError(f"a hub has {HUB_NODES} nodes: give one host or {HUB_NODES}")
    ports = {"client_port": 4222, "cluster_port": 6222, "leaf_port": 7422, "monitor_port": 8222}
    ports |= base_ports
    nodes = []
    for index, host in enumerate(hosts):
        offset = hosts[:index].count(host)
        nodes.append(
            HubNode(
                f"hub-{index + 1}",
                host,
                listen=listen,
                **{key: port + offset for key, port in ports.items()},
            )
        )
    return nodes


def hub_users(sites: Iterable[str]) -> dict[str, dict]:
    """The hub's users: the provisioner, a read-only operator, and one leaf user per site, which
    may carry no event either way (a site left without its deny lists still cannot push events
    into the hub or receive another site's)."""
    leaf_permissions = {"publish": {"deny": SITE_LOCAL}, "subscribe": {"deny": SITE_LOCAL}}
    operator = {
        "publish": {
            "allow": [
                "$JS.API.INFO",
                "$JS.API.STREAM.INFO.*",
                "$JS.API.STREAM.NAMES",
                "$JS.API.STREAM.LIST",
                "$JS.API.STREAM.MSG.GET.*",
                "$JS.API.DIRECT.GET.>",
                "$JS.API.CONSUMER.CREATE.>",
                "$JS.API.CONSUMER.INFO.>",
                "$JS.API.CONSUMER.DELETE.>",
                "$JS.API.CONSUMER.MSG.NEXT.>",
                "$JS.*.API.STREAM.INFO.*",
                "$JS.ACK.>",
                "$JS.FC.>",
            ]
        },
        "subscribe": {"allow": [f"{inbox_prefix(HUB_OPERATOR)}.>"]},
        "allow_responses": True,
    }
    users: dict[str, dict] = {HUB_PROVISIONER: {}, HUB_OPERATOR: operator}
    for site in check_domains(sites):
        users[leaf_user(site)] = leaf_permissions
    return users


def hub_node_config(
    node: HubNode,
    nodes: list[HubNode],
    *,
    sites: Iterable[str],
    passwords: dict[str, str],
    store_dir: Path,
    sync_always: bool = True,
) -> str:
    """One hub node: the same server_config a site gets (fsync on every write: the hub holds
    every site's financial history), in domain `hub`, routed to the other two nodes, with a leaf
    port the sites connect to."""
    base = server_config(
        store_dir=store_dir,
        host=node.listen,
        port=node.client_port,
        monitor_port=node.monitor_port,
        monitor_host=node.listen,
        users=hub_users(sites),
        passwords=passwords,
        server_name=node.name,
        sync_always=sync_always,
    )
    route_auth = f"{ROUTE_USER}:{passwords[ROUTE_USER]}@"
    return with_settings(
        with_domain(base, HUB_DOMAIN),
        cluster={
            "name": HUB_CLUSTER,
            "listen": f"{node.listen}:{node.cluster_port}",
            "authorization": {"user": ROUTE_USER, "password": passwords[ROUTE_USER]},
            "routes": [
                other.route_url.replace("://", f"://{route_auth}", 1)
                for other in nodes
                if other != node
            ],
        },
        leafnodes={"listen": f"{node.listen}:{node.leaf_port}"},
    )
