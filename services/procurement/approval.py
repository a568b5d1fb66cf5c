"""The approval policy is data, not code: a versioned JSON file in policy/ says which requisitions
a person must approve and which roles may. This module reads it and applies it; every decision
names the policy version it came from."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import msgspec

from sinew.contracts.common import Amount, Code, CurrencyCode, Text
from sinew.contracts.procurement import ApprovalReason, RequisitionOrigin

POLICY_DIR = Path(__file__).parent / "policy"
POLICY_FILE = re.compile(r"^approval-policy\.v(\d+)\.json$")
DEFAULT_BANDS = "default"
Role = str


class Band(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Requisitions up to this estimated total (inclusive; none: no limit) need one of these
    roles to approve them; no roles: the policy approves them itself."""

    up_to: Amount | None = None
    approver_roles: tuple[Role, ...] = ()


class Rule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    requires_approval: bool
    approver_roles: tuple[Role, ...] = ()


class ApprovalPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: Code
    description: Text = ""
    currency: CurrencyCode = "USD"
    # Bands by cost centre id; "default" for every cost centre not named.
    amount_bands: dict[Code, tuple[Band, ...]]
    non_formulary: Rule
    off_contract: Rule
    urgent: Rule
    # Requisitions for what was already consumed (bill-only implants): no amount, formulary or
    # contract approval can change that, so only an unpriced line stops them.
    consumed_origins: tuple[RequisitionOrigin, ...] = ("bill_only",)

    def __post_init__(self) -> None:
        if DEFAULT_BANDS not in self.amount_bands:
            raise ValueError(f'amount_bands needs a "{DEFAULT_BANDS}" entry')
        for cost_centre, bands in self.amount_bands.items():
            limits = [band.up_to for band in bands]
            if not bands or limits[-1] is not None or None in limits[:-1]:
                raise ValueError(
                    f"amount_bands.{cost_centre}: bands must end with one open band (no up_to)"
                )
            if limits[:-1] != sorted(limits[:-1]):
                raise ValueError(f"amount_bands.{cost_centre}: up_to must increase")
        for name in ("non_formulary", "off_contract", "urgent"):
            rule: Rule = getattr(self, name)
            if rule.requires_approval and not rule.approver_roles:
                raise ValueError(f"{name}: requires approval but names no approver role")

    def band(self, cost_centre_id: str, amount: Decimal) -> Band:
        bands = self.amount_bands.get(cost_centre_id, self.amount_bands[DEFAULT_BANDS])
        return next(b for b in bands if b.up_to is None or amount <= b.up_to)


def load(path: Path | None = None) -> ApprovalPolicy:
    """The policy in force: SINEW_APPROVAL_POLICY names a file, else the highest version in
    policy/. A policy that does not parse stops the service at start, not at the first order."""
    chosen = path or (Path(p) if (p := os.environ.get("SINEW_APPROVAL_POLICY")) else None)
    if chosen is None:
        files = POLICY_DIR.iterdir() if POLICY_DIR.is_dir() else []
        versions = sorted((int(m[1]), f) for f in files if (m := POLICY_FILE.match(f.name)))
        if not versions:
            raise SystemExit(
                f"no approval-policy.vN.json in {POLICY_DIR}; set SINEW_APPROVAL_POLICY to one"
            )
        chosen = versions[-1][1]
    try:
        return msgspec.json.decode(chosen.read_bytes(), type=ApprovalPolicy)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as error:
        raise SystemExit(f"approval policy {chosen} is not valid: {error}") from None


@dataclass(frozen=True)
class LineFacts:
    non_formulary: bool
    off_contract: bool
    priced: bool


@dataclass(frozen=True)
class Decision:
    policy_version: str
    # Each reason a person must approve, with the roles that may approve for it.
    needs: dict[ApprovalReason, tuple[Role, ...]] = field(default_factory=dict)
    urgent: bool = False

    @property
    def reasons(self) -> tuple[ApprovalReason, ...]:
        return tuple(self.needs)

    @property
    def automatic(self) -> bool:
        return not self.needs

    @property
    def by(self) -> str:
        return f"policy {self.policy_version}"

    def missing(self, roles: Iterable[Role]) -> dict[ApprovalReason, tuple[Role, ...]]:
        """The reasons these roles may not approve; one approver must cover every reason."""
        held = set(roles)
        if "admin" in held:
            return {}
        return {reason: need for reason, need in self.needs.items() if not held & set(need)}


def decide(
    policy: ApprovalPolicy,
    *,
    origin: RequisitionOrigin,
    cost_centre_id: str,
    estimated_total: Decimal,
    lines: Iterable[LineFacts],
    urgent: bool,
) -> Decision:
    lines = list(lines)
    needs: dict[ApprovalReason, tuple[Role, ...]] = {}
    if origin not in policy.consumed_origins:
        band = policy.band(cost_centre_id, estimated_total)
        if band.approver_roles:
            needs["amount"] = band.approver_roles
        if policy.non_formulary.requires_approval and any(line.non_formulary for line in lines):
            needs["non_formulary"] = policy.non_formulary.approver_roles
        if policy.off_contract.requires_approval and any(line.off_contract for line in lines):
            needs["off_contract"] = policy.off_contract.approver_roles
        if urgent and policy.urgent.requires_approval:
            needs["urgent"] = policy.urgent.approver_roles
    if not all(line.priced for line in lines):
        # Nobody can order a line without a price: whoever prices off-contract lines must.
        needs["off_contract"] = policy.off_contract.approver_roles or ("supply-chain",)
    return Decision(policy.version, needs, urgent)
