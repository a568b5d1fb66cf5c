"""Sinew's services, one folder each. A service folder holds `service.py` with a module-level
`DEFINITION` (a `ServiceDefinition`): what it consumes, its handlers, its tables and routes."""

from __future__ import annotations

import importlib
import importlib.util

from sinew.contracts.catalogue import SERVICES


def definition(name: str):
    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}; services are: {', '.join(SERVICES)}")
    try:
        module = importlib.import_module(f"sinew.services.{name}.service")
    except ModuleNotFoundError as missing:
        if missing.name and missing.name.startswith(f"sinew.services.{name}"):
            raise SystemExit(f"service {name!r} is not built yet") from None
        raise
    return module.DEFINITION


def built() -> list[str]:
    """The services whose code exists in this checkout, in catalogue order."""
    return [
        name
        for name in SERVICES
        if importlib.util.find_spec(f"sinew.services.{name}")
        and importlib.util.find_spec(f"sinew.services.{name}.service")
    ]
