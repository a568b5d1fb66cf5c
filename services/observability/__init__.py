"""Observability: every canonical event recorded and indexed by business key, business and
technical health per site, the timeline of one transaction, and the dashboard."""
