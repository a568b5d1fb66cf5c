"""The matching service: supplier invoices against purchase orders, receipts and usage.

In: master data (items.*.upserted), purchase orders (procurement.purchase-order.*), goods receipts
(receiving.goods.received), procedure usage (usage.procedure-usage.*), invoices from the AP system
(ingress.invoice.submitted) and suppliers' X12 810s (ingress.invoice-x12.received), payments from
the ERP (ingress.payment.released).
Out: matching.invoice.submitted|matched|approved, matching.exception.raised|resolved|reassigned,
matching.payment.released, on the MATCHING stream; the analysts' HTTP API.
"""

from functools import partial

from sinew.common.service import ServiceDefinition

from . import policies
from .api import reassign_command, resolve_command, routes
from .handlers import PARSERS, build
from .store import MIGRATIONS

POLICIES = policies.load()

DEFINITION = ServiceDefinition(
    name="matching",
    description="Supplier invoices, matching, exception queues and payment status",
    handlers=build(POLICIES),
    migrations=MIGRATIONS,
    parsers=PARSERS,
    routes=lambda runtime: routes(runtime, POLICIES),
    commands={
        "resolve": partial(resolve_command, policies=POLICIES),
        "reassign": partial(reassign_command, policies=POLICIES),
    },
)
