"""The receiving service."""
