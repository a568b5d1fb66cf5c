"""Receiving: advance ship notices, dock scans and goods receipts against purchase order lines.

In: master data (items' canonical events), purchase orders from procurement, ASNs (JSON and X12
856) and dock scans from outside systems. Out: ASN received, goods received, and receiving
exceptions raised and resolved. See docs/services/receiving.md.
"""

from __future__ import annotations

from sinew.common.service import ServiceDefinition

from . import commands
from .api import routes
from .handlers import HANDLERS, read_856
from .store import MIGRATIONS

DEFINITION = ServiceDefinition(
    name="receiving",
    description="Advance ship notices and goods receipts against purchase order lines",
    handlers=HANDLERS,
    migrations=MIGRATIONS,
    parsers={"ingress.asn-x12.received.v1": read_856},
    routes=routes,
    commands={
        "receive": commands.receive,
        "receive_asn": commands.receive_asn,
        "resolve_exception": commands.resolve_exception,
    },
)
