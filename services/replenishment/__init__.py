"""The replenishment service."""
