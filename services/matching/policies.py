"""Tolerances and exception routing are data, not code: versioned JSON files in policy/. This
module reads them and answers the two questions the matcher and the queues ask: how far may this
number stray, and who owns this exception until when. Every decision names the version."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import get_args

import msgspec

from sinew.contracts.common import Amount, Code, Text
from sinew.contracts.matching import MatchExceptionType, QueueName

POLICY_DIR = Path(__file__).parent / "policy"
Role = str


class Tolerance(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A cap on how far a number may exceed what was expected. With both a percent and an
    absolute amount, whichever is smaller applies; with neither, nothing may exceed."""

    percent: Amount | None = None
    absolute: Amount | None = None

    def __post_init__(self) -> None:
        for value in (self.percent, self.absolute):
            if value is not None and not (value.is_finite() and value >= 0):
                raise ValueError("tolerances must be finite and not negative")

    def allowed(self, expected: Decimal) -> Decimal:
        caps = []
        if self.percent is not None:
            caps.append(abs(expected) * self.percent / 100)
        if self.absolute is not None:
            caps.append(self.absolute)
        return min(caps, default=Decimal(0))

    def describe(self) -> str:
        if self.allowed(Decimal(1)) == 0 and self.allowed(Decimal(10**9)) == 0:
            return "none: exact"
        if self.percent is not None and self.absolute is not None:
            return f"{self.percent}% or {self.absolute}, whichever is smaller"
        if self.percent is not None:
            return f"{self.percent}%"
        return str(self.absolute)


class SupplierTolerances(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    price: Tolerance | None = None
    quantity: Tolerance | None = None


class Tolerances(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: Code
    description: Text = ""
    # Per base unit of measure, so a price in boxes and one in eaches are held to the same cap.
    price: Tolerance
    # In base units, on the cumulative quantity invoiced against a PO line.
    quantity: Tolerance
    # What an invoice's own arithmetic (quantity x price, lines to subtotal, to total) may be off.
    totals_rounding: Amount = Decimal("0.01")
    suppliers: dict[Code, SupplierTolerances] = {}

    def price_for(self, supplier_id: str) -> Tolerance:
        override = self.suppliers.get(supplier_id)
        return override.price if override and override.price else self.price

    def quantity_for(self, supplier_id: str) -> Tolerance:
        override = self.suppliers.get(supplier_id)
        return override.quantity if override and override.quantity else self.quantity


class Escalation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    at_least: Amount
    queue: QueueName


class Queue(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    description: Text = ""
    roles: tuple[Role, ...]
    sla_hours: int
    escalations: tuple[Escalation, ...] = ()


class Routing(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: Code
    description: Text = ""
    routes: dict[MatchExceptionType, QueueName]
    queues: dict[QueueName, Queue]

    def __post_init__(self) -> None:
        unrouted = set(get_args(MatchExceptionType)) - set(self.routes)
        if unrouted:
            raise ValueError(f"routes: no queue for {', '.join(sorted(unrouted))}")
        named = set(self.routes.values()) | {
            e.queue for q in self.queues.values() for e in q.escalations
        }
        undefined = named - set(self.queues)
        if undefined:
            raise ValueError(f"queues: {', '.join(sorted(undefined))} routed to but not defined")
        for name, queue in self.queues.items():
            if not queue.roles or queue.sla_hours <= 0:
                raise ValueError(f"queues.{name}: needs roles and a positive sla_hours")

    def route(self, type_: str, amount_at_stake: Decimal) -> str:
        """The owner queue: the type's queue, escalated by the largest amount band reached."""
        queue = self.routes[type_]
        bands = [e for e in self.queues[queue].escalations if amount_at_stake >= e.at_least]
        return max(bands, key=lambda e: e.at_least).queue if bands else queue

    def sla_due(self, queue: str, raised_at: datetime) -> datetime:
        return raised_at + timedelta(hours=self.queues[queue].sla_hours)

    def may_work(self, queue: str, roles: frozenset[str]) -> bool:
        return "admin" in roles or bool(roles & set(self.queues[queue].roles))


@dataclass(frozen=True)
class Policies:
    tolerances: Tolerances
    routing: Routing

    @property
    def version(self) -> str:
        return f"{self.tolerances.version}+{self.routing.version}"


def _newest(kind: str) -> Path:
    pattern = re.compile(rf"^{kind}\.v(\d+)\.json$")
    versions = sorted((int(m[1]), f) for f in POLICY_DIR.iterdir() if (m := pattern.match(f.name)))
    if not versions:
        raise SystemExit(f"no {kind} policy in {POLICY_DIR}")
    return versions[-1][1]


def load(tolerances: Path | None = None, routing: Path | None = None) -> Policies:
    """The policies in force: SINEW_MATCH_TOLERANCES / SINEW_MATCH_ROUTING name files, else the
    highest version of each in policy/. A policy that does not parse stops the service at start."""
    env = os.environ
    tolerances = tolerances or Path(env.get("SINEW_MATCH_TOLERANCES") or _newest("tolerances"))
    routing = routing or Path(env.get("SINEW_MATCH_ROUTING") or _newest("routing"))
    try:
        return Policies(
            msgspec.json.decode(tolerances.read_bytes(), type=Tolerances),
            msgspec.json.decode(routing.read_bytes(), type=Routing),
        )
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise SystemExit(f"matching policy does not parse: {error}") from None
