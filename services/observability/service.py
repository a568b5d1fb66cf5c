"""The observability service: records every canonical event of its site (its envelope and the
business keys it names, never patient data), and from that record alone the business KPIs, the
technical health and the timeline of any transaction; polls JetStream backlogs and $SRV.PING.

In: every canonical channel (items, procurement, receiving, usage, matching, replenishment and
every service's dead-letter events). Out: nothing on streams; HTTP /v1/kpis, /v1/technical,
/v1/timeline, /metrics and the dashboard at /; NATS sinew.api.<site>.observability.timeline.
"""

from sinew.common.service import ServiceDefinition

from .api import ENDPOINTS, routes
from .handlers import HANDLERS, PARSERS
from .live import poll
from .store import MIGRATIONS

DEFINITION = ServiceDefinition(
    name="observability",
    description="Metrics, backlogs, dead letters, timelines and the dashboard",
    handlers=HANDLERS,
    parsers=PARSERS,
    migrations=MIGRATIONS,
    routes=routes,
    endpoints=ENDPOINTS,
    tasks=[poll],
)
