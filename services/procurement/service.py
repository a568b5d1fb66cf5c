"""Procurement: requisitions from people, replenishment signals and bill-only implants; their
approval under a versioned policy; purchase orders priced from the contract in force, sent to
suppliers as JSON and X12 850, acknowledged (JSON or X12 855), received and closed."""

from functools import partial

from sinew.common.service import ServiceDefinition
from sinew.masterdata import replica

from . import api, approval, commands, documents, handlers, store

# Loaded once at start: a policy file that does not parse stops the service here.
POLICY = approval.load()

DEFINITION = ServiceDefinition(
    name="procurement",
    description="Requisitions, approvals, purchase orders, supplier acknowledgements",
    handlers=handlers.table(POLICY),
    migrations=[replica.MIGRATION, store.SCHEMA],
    parsers={documents.ACKNOWLEDGEMENT_X12: documents.acknowledgement_from_855},
    routes=lambda runtime: api.routes(runtime, POLICY),
    commands={
        "request_requisition": partial(commands.request_requisition, policy=POLICY),
        "approve": partial(commands.approve, policy=POLICY),
        "reject": commands.reject,
        "cancel": commands.cancel,
        "close": commands.close,
    },
)
