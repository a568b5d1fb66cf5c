"""Matching an invoice to its purchase order and to what arrived against it: a pure function of
plain data, with no I/O. Every comparison it makes is written down as a MatchCheck with the
numbers and the tolerance, so an analyst reads the reason, not a code.

Three-way for stock: PO line, the cumulative quantity received on it, the invoice line. Two-way for
bill-only: PO line and the recorded usage that stands in for the receipt. Quantities are compared
in the ordered item's base unit of measure, prices per base unit, and both cumulatively across
every receipt and every invoice on a PO line, so splitting a receipt or an invoice, or stating it
in boxes rather than eaches, never changes the decision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from sinew.contracts.common import Quantity
from sinew.contracts.items import Contract, Item, Substitution
from sinew.contracts.matching import (
    InvoiceLine,
    InvoiceSubmission,
    MatchCheck,
    MatchedLine,
    MatchExceptionType,
)
from sinew.contracts.procurement import PurchaseOrder, PurchaseOrderLine
from sinew.masterdata import rules

from .policies import Tolerance, Tolerances

CENT = Decimal("0.01")
SHOWN_PRICE = Decimal("0.0001")
TEXT_LIMIT = 1000  # contracts' Text

# The order exceptions are listed in: the invoice itself, then its PO, then line by line.
PROBLEM_ORDER: tuple[MatchExceptionType, ...] = (
    "TOTALS_MISMATCH",
    "NO_PO",
    "UNKNOWN_ITEM",
    "SUBSTITUTION_NOT_APPROVED",
    "PRICE_VARIANCE",
    "AWAITING_RECEIPT",
    "QUANTITY_VARIANCE",
)


# -- duplicate detection ------------------------------------------------------------------------

_LEADING_ZEROS = re.compile(r"(?<![0-9])0+(?=[0-9])")
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015]+")


def invoice_key(invoice_number: str) -> str:
    """The invoice number as a duplicate is recognised: case, spaces, dashes and the leading zeros
    of each number in it do not count ("inv-000123" and "INV 123" are the same invoice)."""
    return _SEPARATORS.sub("", _LEADING_ZEROS.sub("", invoice_number.upper()))


# -- what the matcher is given ------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What stands for delivery against a PO line: a goods receipt line, or, for a bill-only
    order, the usage of the implant in a case."""

    po_line_number: int
    item_id: str
    quantity: Quantity
    reference: str  # receipt id or usage id
    kind: Literal["receipt", "usage"] = "receipt"


@dataclass(frozen=True)
class MatchFacts:
    invoice: InvoiceSubmission
    order: PurchaseOrder | None
    order_cancelled: bool = False
    # The item each invoice line names (by item id, supplier part or GTIN), when the master knows it.
    invoice_items: Mapping[int, Item] = field(default_factory=dict)
    # Every item on the PO and every item delivered against it.
    items: Mapping[str, Item] = field(default_factory=dict)
    contracts: Mapping[str, Sequence[Contract]] = field(default_factory=dict)  # by item id
    substitutions: Mapping[str, Sequence[Substitution]] = field(default_factory=dict)  # by item
    deliveries: Sequence[Delivery] = ()
    # Already claimed on each PO line by earlier invoices, in the ordered item's base units.
    invoiced_before: Mapping[int, Decimal] = field(default_factory=dict)


# -- what it decides ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    type: MatchExceptionType
    amount_at_stake: Decimal
    checks: tuple[MatchCheck, ...]
    invoice_lines: tuple[int, ...] = ()
    item_id: str | None = None
    contract_number: str | None = None

    @property
    def invoice_line_number(self) -> int | None:
        return self.invoice_lines[0] if len(self.invoice_lines) == 1 else None

    @property
    def explanation(self) -> str:
        return clip(" ".join(c.explanation for c in self.checks))


@dataclass(frozen=True)
class Allocation:
    """How much of a PO line an invoice line claims, in the ordered item's base units."""

    invoice_line_number: int
    po_line_number: int
    quantity: Decimal
    amount: Decimal


@dataclass(frozen=True)
class MatchDecision:
    match_type: Literal["three_way", "two_way"]
    checks: tuple[MatchCheck, ...]
    problems: tuple[Problem, ...]
    lines: tuple[MatchedLine, ...]
    allocations: tuple[Allocation, ...]

    @property
    def matched(self) -> bool:
        return not self.problems

    def problem(self, type_: str) -> Problem | None:
        return next((p for p in self.problems if p.type == type_), None)


# -- the matching function ----------------------------------------------------------------------


def match(facts: MatchFacts, tolerances: Tolerances) -> MatchDecision:
    findings = _Findings()
    invoice, order = facts.invoice, facts.order
    _check_totals(invoice, tolerances.totals_rounding, findings)
    lines: list[MatchedLine] = []
    allocations: list[Allocation] = []
    if _check_order(facts, findings):
        assert order is not None
        claimed = dict(facts.invoiced_before)
        for line in invoice.lines:
            matched = _match_line(facts, line, tolerances, claimed, findings)
            if matched:
                lines.append(matched[0])
                allocations.append(matched[1])
    return MatchDecision(
        match_type="two_way" if order is not None and order.bill_only else "three_way",
        checks=tuple(findings.checks),
        problems=findings.problems(),
        lines=tuple(lines),
        allocations=tuple(allocations),
    )


def delivered_by_line(
    order: PurchaseOrder,
    deliveries: Sequence[Delivery],
    items: Mapping[str, Item],
    substitutions: Mapping[str, Sequence[Substitution]],
) -> dict[int, Decimal]:
    """Received (or used, for bill-only) per PO line, in the ordered item's base units; a
    substitute counts through its approved substitution's units."""
    ordered = {line.line_number: line.item_id for line in order.lines}
    totals: dict[int, Decimal] = dict.fromkeys(ordered, Decimal(0))
    for delivery in deliveries:
        ordered_item = ordered.get(delivery.po_line_number)
        if ordered_item is None:
            continue
        totals[delivery.po_line_number] += _in_ordered_units(
            delivery, ordered_item, items, substitutions, order.order_date
        )
    return totals


def _in_ordered_units(
    delivery: Delivery,
    ordered_item: str,
    items: Mapping[str, Item],
    substitutions: Mapping[str, Sequence[Substitution]],
    on: date,
) -> Decimal:
    item = items.get(delivery.item_id)
    try:
        base = rules.to_base(item, delivery.quantity) if item else delivery.quantity.value
    except rules.UnknownUnit:
        base = delivery.quantity.value
    if delivery.item_id == ordered_item:
        return base
    # Receiving already took a substitute against this line; count it as the ordered item.
    approval = rules.approved_substitution(
        substitutions.get(ordered_item, ()), ordered_item, delivery.item_id, on
    )
    return base / approval.substitute_units if approval else base


# -- the checks ---------------------------------------------------------------------------------


class _Findings:
    def __init__(self) -> None:
        self.checks: list[MatchCheck] = []
        self._problems: dict[str, dict] = {}

    def passed(self, rule: str, explanation: str, **numbers) -> None:
        self.checks.append(
            MatchCheck(rule=rule, passed=True, explanation=clip(explanation), **numbers)
        )

    def failed(
        self,
        type_: MatchExceptionType,
        stake: Decimal,
        rule: str,
        explanation: str,
        *,
        line: int | None = None,
        item_id: str | None = None,
        contract_number: str | None = None,
        **numbers,
    ) -> None:
        numbers.setdefault("invoice_line_number", line)
        check = MatchCheck(rule=rule, passed=False, explanation=clip(explanation), **numbers)
        self.checks.append(check)
        found = self._found(type_)
        found["stake"] += stake
        found["checks"].append(check)
        for key, value in (("lines", line), ("items", item_id), ("contracts", contract_number)):
            if value is not None and value not in found[key]:
                found[key].append(value)

    def add_stake(self, type_: MatchExceptionType, stake: Decimal) -> None:
        self._found(type_)["stake"] += stake

    def _found(self, type_: MatchExceptionType) -> dict:
        return self._problems.setdefault(
            type_, {"stake": Decimal(0), "checks": [], "lines": [], "items": [], "contracts": []}
        )

    def problems(self) -> tuple[Problem, ...]:
        return tuple(
            Problem(
                type=type_,
                amount_at_stake=cents(found["stake"]),
                checks=tuple(found["checks"]),
                invoice_lines=tuple(found["lines"]),
                item_id=found["items"][0] if len(found["items"]) == 1 else None,
                contract_number=found["contracts"][0] if len(found["contracts"]) == 1 else None,
            )
            for type_ in PROBLEM_ORDER
            if (found := self._problems.get(type_))
        )


def _check_totals(invoice: InvoiceSubmission, rounding: Decimal, findings: _Findings) -> None:
    worst = Decimal(0)
    failures = []
    for line in invoice.lines:
        computed = cents(line.quantity.value * line.unit_price)
        off = abs(line.extended_amount - computed)
        if off > rounding:
            worst = max(worst, off)
            failures.append(
                (
                    f"Line {line.line_number}: {num(line.quantity.value)} {line.quantity.uom} x "
                    f"{money(line.unit_price)} is {money(computed)}, but the line says "
                    f"{money(line.extended_amount)}.",
                    line.line_number,
                    computed,
                    line.extended_amount,
                )
            )
    lines_total = sum((line.extended_amount for line in invoice.lines), Decimal(0))
    if abs(invoice.subtotal - lines_total) > rounding:
        worst = max(worst, abs(invoice.subtotal - lines_total))
        failures.append(
            (
                f"The lines add up to {money(lines_total)}, but the subtotal says "
                f"{money(invoice.subtotal)}.",
                None,
                lines_total,
                invoice.subtotal,
            )
        )
    total = invoice.subtotal + invoice.freight + invoice.tax
    if abs(invoice.total - total) > rounding:
        worst = max(worst, abs(invoice.total - total))
        failures.append(
            (
                f"Subtotal {money(invoice.subtotal)} + freight {money(invoice.freight)} + tax "
                f"{money(invoice.tax)} is {money(total)}, but the total says {money(invoice.total)}.",
                None,
                total,
                invoice.total,
            )
        )
    tolerance = f"{money(rounding)} rounding"
    if not failures:
        findings.passed(
            "totals",
            f"The invoice adds up: {len(invoice.lines)} line(s) to subtotal "
            f"{money(invoice.subtotal)}, plus freight and tax to total {money(invoice.total)}.",
            expected=total,
            actual=invoice.total,
            tolerance=tolerance,
        )
        return
    for index, (explanation, line, expected, actual) in enumerate(failures):
        findings.failed(
            "TOTALS_MISMATCH",
            worst if index == 0 else Decimal(0),
            "totals",
            explanation,
            line=line,
            expected=expected,
            actual=actual,
            tolerance=tolerance,
        )


def _check_order(facts: MatchFacts, findings: _Findings) -> bool:
    invoice, order = facts.invoice, facts.order
    stake = invoice.total
    if invoice.po_number is None:
        problem = "The invoice names no purchase order."
    elif order is None:
        problem = (
            f"PO {invoice.po_number} is not known: no approved purchase order has that number "
            "(yet)."
        )
    elif facts.order_cancelled:
        problem = f"PO {order.po_number} was cancelled."
    elif order.supplier_id != invoice.supplier_id:
        problem = (
            f"PO {order.po_number} was placed with supplier {order.supplier_id}, but the invoice "
            f"is from {invoice.supplier_id}."
        )
    elif order.currency != invoice.currency:
        findings.failed(
            "PRICE_VARIANCE",
            stake,
            "currency",
            f"PO {order.po_number} is in {order.currency}, the invoice in {invoice.currency}.",
        )
        return False
    else:
        kind = "Bill-only PO" if order.bill_only else "PO"
        findings.passed(
            "purchase_order",
            f"{kind} {order.po_number} revision {order.revision}, ordered "
            f"{order.order_date.isoformat()} from {order.supplier_id}.",
        )
        return True
    findings.failed("NO_PO", stake, "purchase_order", problem)
    return False


def _match_line(
    facts: MatchFacts,
    line: InvoiceLine,
    tolerances: Tolerances,
    claimed: dict[int, Decimal],
    findings: _Findings,
) -> tuple[MatchedLine, Allocation] | None:
    order = facts.order
    assert order is not None
    n = line.line_number
    item = facts.invoice_items.get(n)
    if item is None:
        findings.failed(
            "UNKNOWN_ITEM",
            line.extended_amount,
            "item",
            f"Line {n} names {_named(line)}, which the item master does not know.",
            line=n,
            item_id=line.item_id,
        )
        return None
    try:
        invoiced_base = rules.to_base(item, line.quantity)
        price_per_base = line.unit_price / rules.base_units_per(item, line.quantity.uom)
    except rules.UnknownUnit as error:
        findings.failed(
            "UNKNOWN_ITEM", line.extended_amount, "unit_of_measure", f"Line {n}: {error}.", line=n
        )
        return None
    in_base = (
        "" if line.quantity.uom == item.base_uom else f" = {num(invoiced_base)} {item.base_uom}"
    )
    findings.passed(
        "item",
        f"Line {n} is {item.item_id} ({item.description}): {num(line.quantity.value)} "
        f"{line.quantity.uom}{in_base}.",
        invoice_line_number=n,
    )

    po_line, approval = _po_line_for(facts, line, item, claimed)
    if po_line is None or (po_line.item_id != item.item_id and approval is None):
        where = (
            f"PO {order.po_number} line {po_line.line_number} ordered {po_line.item_id}"
            if po_line
            else f"PO {order.po_number} does not order it"
        )
        findings.failed(
            "SUBSTITUTION_NOT_APPROVED",
            line.extended_amount,
            "substitution",
            f"Line {n} invoices {item.item_id}; {where}, and no approved substitution lets "
            f"{item.item_id} stand in for it.",
            line=n,
            item_id=item.item_id,
            po_line_number=po_line.line_number if po_line else None,
        )
        return None
    ordered_item = facts.items.get(po_line.item_id)
    if ordered_item is None:
        findings.failed(
            "UNKNOWN_ITEM",
            line.extended_amount,
            "item",
            f"PO {order.po_number} line {po_line.line_number} orders {po_line.item_id}, which the "
            "item master does not know.",
            line=n,
            item_id=po_line.item_id,
        )
        return None
    units = approval.substitute_units if approval else Decimal(1)
    if approval:
        findings.passed(
            "substitution",
            f"Line {n} invoices {item.item_id} for {po_line.item_id} ordered on PO line "
            f"{po_line.line_number}: approved substitution {approval.substitution_id} under "
            f"contract {approval.contract_number}, {num(units)} {item.base_uom} for each "
            f"{ordered_item.base_uom} ordered.",
            invoice_line_number=n,
            po_line_number=po_line.line_number,
        )
    quantity = invoiced_base / units  # in the ordered item's base units
    try:
        ordered = rules.to_base(ordered_item, po_line.quantity)
        po_price = po_line.unit_price / rules.base_units_per(ordered_item, po_line.quantity.uom)
    except rules.UnknownUnit as error:
        findings.failed(
            "UNKNOWN_ITEM",
            line.extended_amount,
            "unit_of_measure",
            f"PO {order.po_number} line {po_line.line_number}: {error}.",
            line=n,
        )
        return None

    contract = _check_price(
        facts,
        line,
        item,
        po_line,
        approval,
        ordered,
        price_per_base,
        po_price,
        tolerances.price_for(order.supplier_id),
        findings,
    )
    _check_quantity(
        facts,
        line,
        ordered_item,
        po_line,
        quantity,
        ordered,
        price_per_base * units,
        tolerances.quantity_for(order.supplier_id),
        claimed,
        findings,
    )
    claimed[po_line.line_number] = claimed.get(po_line.line_number, Decimal(0)) + quantity
    matched = MatchedLine(
        invoice_line_number=n,
        po_line_number=po_line.line_number,
        item_id=item.item_id,
        base_quantity=Quantity(value=invoiced_base, uom=item.base_uom),
        unit_price=price_per_base,
        po_unit_price=po_price,
        contract_unit_price=contract.unit_price if contract else None,
        contract_number=contract.contract_number if contract else None,
        substitution_id=approval.substitution_id if approval else None,
        ordered_item_id=po_line.item_id if approval else None,
    )
    return matched, Allocation(n, po_line.line_number, quantity, line.extended_amount)


def _named(line: InvoiceLine) -> str:
    names = [
        f"{label} {value}"
        for label, value in (
            ("item", line.item_id),
            ("supplier part", line.supplier_part),
            ("GTIN", line.gtin),
        )
        if value
    ]
    return " / ".join(names) or "no item at all"


def _po_line_for(
    facts: MatchFacts, line: InvoiceLine, item: Item, claimed: Mapping[int, Decimal]
) -> tuple[PurchaseOrderLine | None, Substitution | None]:
    """The PO line an invoice line bills, and the approved substitution when it bills another
    item than the one ordered (None then means the substitution is not approved)."""
    order = facts.order
    assert order is not None
    by_number = {po_line.line_number: po_line for po_line in order.lines}
    if line.po_line_number in by_number:
        po_line = by_number[line.po_line_number]
        if po_line.item_id == item.item_id:
            return po_line, None
        return po_line, _approval(facts, po_line.item_id, item.item_id)
    same_item = [po_line for po_line in order.lines if po_line.item_id == item.item_id]
    if same_item:
        # Split shipments of one item on several PO lines: bill the first with room left.
        for po_line in same_item:
            ordered_item = facts.items.get(po_line.item_id)
            try:
                ordered = rules.to_base(ordered_item, po_line.quantity) if ordered_item else None
            except rules.UnknownUnit:
                ordered = None
            if ordered is None or claimed.get(po_line.line_number, Decimal(0)) < ordered:
                return po_line, None
        return same_item[-1], None
    for po_line in order.lines:
        if approval := _approval(facts, po_line.item_id, item.item_id):
            return po_line, approval
    # A PO of one line billed with another item: that line is what was substituted.
    return (order.lines[0], None) if len(order.lines) == 1 else (None, None)


def _approval(facts: MatchFacts, ordered_item: str, invoiced_item: str) -> Substitution | None:
    # Approved by the time the PO was placed or by the time the substitute was invoiced: suppliers
    # often offer the substitute after the order, when the ordered item is backordered.
    order = facts.order
    assert order is not None
    candidates = facts.substitutions.get(ordered_item, ())
    return rules.approved_substitution(
        candidates, ordered_item, invoiced_item, order.order_date
    ) or rules.approved_substitution(
        candidates, ordered_item, invoiced_item, facts.invoice.invoice_date
    )


def _check_price(
    facts: MatchFacts,
    line: InvoiceLine,
    item: Item,
    po_line: PurchaseOrderLine,
    approval: Substitution | None,
    ordered: Decimal,
    price: Decimal,
    po_price: Decimal,
    tolerance: Tolerance,
    findings: _Findings,
) -> rules.PriceQuote | None:
    """Price per base unit against the PO price and the contract price in force on the PO date.
    A substitute is held to its own contract price, as its approval says."""
    order = facts.order
    assert order is not None
    n = line.line_number
    units = approval.substitute_units if approval else Decimal(1)
    quantity = rules.to_base(item, line.quantity)
    quote = rules.contract_price(
        item,
        facts.contracts.get(item.item_id, ()),
        order.supplier_id,
        order.order_date,
        Quantity(value=ordered * units, uom=item.base_uom),
    )
    expectations: list[tuple[str, Decimal, str]] = []
    if not approval or quote is None:
        expectations.append(
            (
                "price_vs_po",
                po_price / units,
                f"PO {order.po_number} line {po_line.line_number} price",
            )
        )
    if quote is not None:
        expectations.append(
            (
                "price_vs_contract",
                quote.unit_price,
                f"the contract {quote.contract_number} price in force on "
                f"{order.order_date.isoformat()}",
            )
        )
    else:
        findings.passed(
            "price_vs_contract",
            f"Line {n}: no contract covers {item.item_id} from {order.supplier_id} on "
            f"{order.order_date.isoformat()}; held to the PO price only.",
            invoice_line_number=n,
            po_line_number=po_line.line_number,
        )
    uom = item.base_uom
    compared = [
        (rule, expected, source, price - expected) for rule, expected, source in expectations
    ]
    overcharged = [
        expected for _, expected, _, over in compared if over > tolerance.allowed(expected)
    ]
    stake_left = quantity * (price - min(overcharged)) if overcharged else Decimal(0)
    for rule, expected, source, over in compared:
        allowed = tolerance.allowed(expected)
        numbers = dict(
            po_line_number=po_line.line_number,
            expected=shown(expected),
            actual=shown(price),
            tolerance=tolerance.describe(),
        )
        said = (
            f"Line {n}: invoiced {money(price)} per {uom}; {source} is {money(expected)} per {uom}"
        )
        if over <= allowed:
            if over == 0:
                how = "the same"
            elif over < 0:
                how = f"{money(-over)} under"
            else:
                how = f"{money(over)} over, within the tolerance of {money(allowed)}"
            findings.passed(rule, f"{said}: {how}.", invoice_line_number=n, **numbers)
            continue
        # The line's stake is the overcharge against the lowest price the hospital is owed,
        # counted once however many prices it exceeds.
        findings.failed(
            "PRICE_VARIANCE",
            stake_left,
            rule,
            f"{said}: {money(over)} over, above the tolerance of {money(allowed)} "
            f"({tolerance.describe()}); {num(quantity)} {uom} x {money(over)} = "
            f"{money(cents(quantity * over))} at stake.",
            line=n,
            item_id=item.item_id,
            contract_number=quote.contract_number if quote else po_line.contract_number,
            **numbers,
        )
        stake_left = Decimal(0)
    return quote


def _check_quantity(
    facts: MatchFacts,
    line: InvoiceLine,
    ordered_item: Item,
    po_line: PurchaseOrderLine,
    quantity: Decimal,
    ordered: Decimal,
    price: Decimal,
    tolerance: Tolerance,
    claimed: Mapping[int, Decimal],
    findings: _Findings,
) -> None:
    """Cumulative: what every invoice so far claims on the PO line, against what was ordered and
    what was received (or, for bill-only, used)."""
    order = facts.order
    assert order is not None
    n, po_n, uom = line.line_number, po_line.line_number, ordered_item.base_uom
    before = claimed.get(po_n, Decimal(0))
    invoiced = before + quantity
    delivered = delivered_by_line(order, facts.deliveries, facts.items, facts.substitutions)[po_n]
    references = sorted({d.reference for d in facts.deliveries if d.po_line_number == po_n})
    bill_only = order.bill_only or po_line.bill_only_usage is not None
    so_far = f"invoiced on PO line {po_n}: {num(invoiced)} {uom}"
    if before:
        so_far += f" ({num(before)} on earlier invoices or lines, {num(quantity)} on this one)"
    tolerance_text = tolerance.describe()
    stakes: list[Decimal] = []

    allowed = tolerance.allowed(ordered)
    numbers = dict(
        invoice_line_number=n,
        po_line_number=po_n,
        expected=ordered,
        actual=invoiced,
        tolerance=tolerance_text,
    )
    if invoiced - ordered <= allowed:
        findings.passed(
            "quantity_vs_order", f"Line {n}: {so_far}; ordered {num(ordered)} {uom}.", **numbers
        )
    else:
        excess = min(quantity, invoiced - ordered)
        stakes.append(excess * price)
        findings.failed(
            "QUANTITY_VARIANCE",
            Decimal(0),
            "quantity_vs_order",
            f"Line {n}: {so_far}, but PO {order.po_number} ordered {num(ordered)} {uom}: "
            f"{num(invoiced - ordered)} {uom} more than ordered (tolerance {tolerance_text}).",
            line=n,
            item_id=po_line.item_id,
            **numbers,
        )

    what = "used in cases (bill-only)" if bill_only else "received"
    rule = "quantity_vs_usage" if bill_only else "quantity_vs_receipt"
    evidence = f" ({', '.join(references)})" if references else ""
    allowed = tolerance.allowed(delivered)
    numbers = dict(numbers, expected=delivered)
    if invoiced - delivered <= allowed:
        findings.passed(
            rule, f"Line {n}: {so_far}; {what} {num(delivered)} {uom}{evidence}.", **numbers
        )
    else:
        short = min(quantity, invoiced - delivered)
        stake = short * price
        if delivered == 0:
            nothing = "no usage recorded" if bill_only else "nothing received"
            findings.failed(
                "AWAITING_RECEIPT",
                stake,
                rule,
                f"Line {n}: {so_far}, {nothing} yet on PO {order.po_number} line {po_n}: waiting "
                f"for it; {num(short)} {uom} x {money(price)} = {money(cents(stake))} held.",
                line=n,
                item_id=po_line.item_id,
                **numbers,
            )
        else:
            stakes.append(stake)
            findings.failed(
                "QUANTITY_VARIANCE",
                Decimal(0),
                rule,
                f"Line {n}: {so_far}, but only {num(delivered)} {uom} {what}{evidence}: "
                f"{num(invoiced - delivered)} {uom} not {what.split(' ')[0]} (tolerance "
                f"{tolerance_text}); {num(short)} {uom} x {money(price)} = "
                f"{money(cents(stake))} at stake.",
                line=n,
                item_id=po_line.item_id,
                **numbers,
            )
    if stakes:
        # Over the order and short of receipt are one shortfall, not two.
        findings.add_stake("QUANTITY_VARIANCE", max(stakes))


# -- numbers as people read them ----------------------------------------------------------------


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, ROUND_HALF_UP)


def shown(price: Decimal) -> Decimal:
    """A unit price as it is shown: to the cent when it is whole cents, else to 1/100 cent."""
    return price.quantize(CENT) if price == price.quantize(CENT) else price.quantize(SHOWN_PRICE)


def money(amount: Decimal) -> str:
    return f"{shown(amount):,}"


def num(quantity: Decimal) -> str:
    normal = quantity.normalize()
    return f"{normal:f}" if normal == normal.to_integral() else f"{quantity:f}"


def clip(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"
