"""The items service: the item master every other service trusts.

In: master-data upserts from the MDM feed (ingress.masterdata.upserted.v1) and the HTTP API.
Out: the canonical *Upserted events on the ITEMS stream, and the items_<site> KV bucket.
"""

from sinew.common.service import ServiceDefinition

from .api import ENDPOINTS, routes
from .handlers import HANDLERS, upsert_over_api
from .kv import project_to_kv
from .store import MIGRATIONS

DEFINITION = ServiceDefinition(
    name="items",
    description="Item master, suppliers, contracts, substitutions, locations, cost centres",
    handlers=HANDLERS,
    migrations=MIGRATIONS,
    routes=routes,
    endpoints=ENDPOINTS,
    tasks=[project_to_kv],
    commands={"upsert": upsert_over_api},
)
