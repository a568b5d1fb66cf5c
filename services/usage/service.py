"""Usage: what clinicians consumed, from the EHR, and the lot/serial traceability index.

In: procedure usage and voids from the EHR as canonical JSON, HL7 v2 DFT^P03 and FHIR R4
(Procedure, SupplyDelivery), on the CLINICAL_INGRESS stream only this service reads; items,
contracts and locations from the item master. Out: procedure usage recorded and voided, usage
exceptions raised and cleared, bill-only requests, and HL7 ACKs to the sender's inbox. Patient
identifiers stay here: every event carries a patient token instead, keyed with the site's secret
(config.py), so the service refuses to start without it. See docs/services/usage.md.
"""

from __future__ import annotations

from sinew.common.service import ServiceDefinition

from .acks import send_hl7_acks
from .api import ENDPOINTS, routes
from .config import configure
from .fhir import read_fhir
from .handlers import HANDLERS, dismiss
from .hl7 import read_dft_p03
from .store import MIGRATIONS

DEFINITION = ServiceDefinition(
    name="usage",
    description="Clinical consumption and the lot/serial traceability index",
    handlers=HANDLERS,
    migrations=MIGRATIONS,
    parsers={
        "ingress.usage-hl7.received.v1": read_dft_p03,
        "ingress.usage-fhir.received.v1": read_fhir,
    },
    routes=routes,
    endpoints=ENDPOINTS,
    tasks=[send_hl7_acks],
    configure=configure,
    commands={"dismiss": dismiss},
)
