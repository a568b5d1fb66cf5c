"""The items service."""
