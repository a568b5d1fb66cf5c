"""The replenishment service: stock on hand per location, item and lot, and one replenishment
signal per location and item whose stock fell to its reorder point.

In: item and location master data (items.item|location.upserted.v1), goods received
(receiving.goods.received.v1), procedure usage recorded and voided
(usage.procedure-usage.recorded|voided.v1), warehouse counts and adjustments
(ingress.inventory.counted.v1).
Out: replenishment.inventory.adjusted.v1 and replenishment.signal.raised|updated|closed.v1.
"""

from sinew.common.service import ServiceDefinition

from .api import ENDPOINTS, routes
from .handlers import HANDLERS
from .store import MIGRATIONS

DEFINITION = ServiceDefinition(
    name="replenishment",
    description="Stock on hand per location and item, par levels and replenishment signals",
    handlers=HANDLERS,
    migrations=MIGRATIONS,
    routes=routes,
    endpoints=ENDPOINTS,
)
