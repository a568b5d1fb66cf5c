"""Properties of the pure matcher (hypothesis): stating quantities in boxes or eaches, and
splitting receipts or invoices, never changes the decision; within tolerance always matches,
outside never does."""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise
from typing import NamedTuple

from hypothesis import given, settings
from hypothesis import strategies as st
from matching_facts import (
    ITEM,
    SCENARIO_TOLERANCES,
    contract,
    facts,
    invoice,
    item,
    order,
    received,
)

from sinew.services.matching.domain import match
from sinew.services.matching.policies import Tolerance, Tolerances

settings.register_profile("matching", max_examples=150, deadline=None)
settings.load_profile("matching")

PACKS = st.sampled_from([1, 2, 5, 10, 12, 100])
PRICES = st.integers(min_value=1, max_value=500_000).map(lambda c: Decimal(c) / 100)


def decision(f, tolerances=SCENARIO_TOLERANCES):
    """What the decision is, stripped of its wording: exception types and amounts at stake."""
    outcome = match(f, tolerances)
    return {p.type: p.amount_at_stake for p in outcome.problems}


class Purchase(NamedTuple):
    pack: int
    ordered: int
    receipt: int
    invoiced: int
    po_price: Decimal
    invoice_price: Decimal


@st.composite
def purchases(draw) -> Purchase:
    """A PO line, what was received against it, and an invoice for it, in base units (eaches),
    with a pack size that divides all of them."""
    pack = draw(PACKS)
    ordered = draw(st.integers(1, 30)) * pack
    receipt = draw(st.integers(0, 30)) * pack
    invoiced = draw(st.integers(1, 30)) * pack
    po_price = draw(PRICES)
    invoice_price = draw(st.sampled_from([po_price, po_price + Decimal("0.01")]) | PRICES)
    return Purchase(pack, ordered, receipt, invoiced, po_price, invoice_price)


def setting(pack, ordered, receipt, invoiced, po_price, invoice_price, in_boxes=(False,) * 3):
    po_in_boxes, receipt_in_boxes, invoice_in_boxes = in_boxes

    def stated(quantity, price, boxed):
        return (quantity // pack, "BX", price * pack) if boxed else (quantity, "EA", price)

    po_quantity, po_uom, po_unit_price = stated(ordered, po_price, po_in_boxes)
    inv_quantity, inv_uom, inv_unit_price = stated(invoiced, invoice_price, invoice_in_boxes)
    receipts = (
        received((receipt // pack, "BX") if receipt_in_boxes else (receipt, "EA"))
        if receipt
        else []
    )
    return facts(
        invoice((inv_quantity, inv_uom, inv_unit_price)),
        order((ITEM, po_quantity, po_uom, po_unit_price)),
        receipts,
        items=(item(pack=pack),),
        contracts=(contract(po_price),),
    )


@given(purchases(), st.tuples(st.booleans(), st.booleans(), st.booleans()))
def test_stating_quantities_in_boxes_or_eaches_never_changes_the_decision(purchase, boxed):
    assert decision(setting(*purchase, in_boxes=boxed)) == decision(setting(*purchase))


def partition(draw, total: int, pack: int) -> list[int]:
    """Split a quantity into parts (each a whole number of packs when pack > 1)."""
    units = total // pack
    cuts = sorted(draw(st.lists(st.integers(0, units), max_size=4)))
    bounds = [0, *cuts, units]
    return [(b - a) * pack for a, b in pairwise(bounds) if b > a]


@given(purchases(), st.data())
def test_splitting_a_receipt_never_changes_the_decision(purchase, data):
    pack = purchase.pack
    whole = setting(*purchase)
    parts = partition(data.draw, purchase.receipt, pack)
    boxed = data.draw(st.lists(st.booleans(), min_size=len(parts), max_size=len(parts)))
    split = facts(
        whole.invoice,
        whole.order,
        received(
            *[
                (part // pack, "BX") if in_boxes else (part, "EA")
                for part, in_boxes in zip(parts, boxed, strict=True)
            ]
        ),
        items=tuple(whole.items.values()),
        contracts=tuple(whole.contracts[ITEM]),
    )
    assert decision(split) == decision(whole)


@given(purchases(), st.data())
def test_splitting_an_invoice_line_never_changes_the_decision(purchase, data):
    pack = purchase.pack
    whole = setting(*purchase)
    parts = partition(data.draw, purchase.invoiced, pack)
    split = facts(
        invoice(*[(part, "EA", purchase.invoice_price) for part in parts]),
        whole.order,
        whole.deliveries,
        items=tuple(whole.items.values()),
        contracts=tuple(whole.contracts[ITEM]),
    )
    assert decision(split) == decision(whole)


@given(purchases(), st.data())
def test_splitting_into_several_invoices_claims_the_same_in_total(purchase, data):
    """Invoiced in parts, one invoice after another: every part matches when the whole does, and
    otherwise the parts put the same amount at stake, for the same reasons, as the whole."""
    pack = purchase.pack
    whole = setting(*purchase)
    expected = decision(whole)
    claimed = Decimal(0)
    stakes: dict[str, Decimal] = {}
    for n, part in enumerate(partition(data.draw, purchase.invoiced, pack)):
        one = facts(
            invoice((part, "EA", purchase.invoice_price), number=f"INV-{n}"),
            whole.order,
            whole.deliveries,
            items=tuple(whole.items.values()),
            contracts=tuple(whole.contracts[ITEM]),
            invoiced_before={1: claimed},
        )
        for type_, stake in decision(one).items():
            stakes[type_] = stakes.get(type_, Decimal(0)) + stake
        claimed += part
    if not expected:
        assert stakes == {}
    else:
        assert set(stakes) == set(expected)
        for type_, stake in expected.items():
            assert stakes[type_] == stake


TOLERANCES = st.builds(
    lambda percent, absolute: Tolerance(
        percent=None if percent is None else Decimal(percent) / 10,
        absolute=None if absolute is None else Decimal(absolute) / 100,
    ),
    st.none() | st.integers(0, 100),
    st.none() | st.integers(0, 10_000),
)


@given(PRICES, st.integers(-100_000, 100_000), TOLERANCES, st.integers(1, 20))
def test_a_price_within_tolerance_always_matches_and_outside_never(
    expected, cents_over, tolerance, quantity
):
    price = expected + Decimal(cents_over) / 100
    if price <= 0:
        price = Decimal("0.01")
    tolerances = Tolerances(version="t", price=tolerance, quantity=Tolerance())
    outcome = match(
        facts(
            invoice((quantity, "EA", price)),
            order((ITEM, quantity, "EA", expected)),
            received((quantity, "EA")),
            contracts=(contract(expected),),
        ),
        tolerances,
    )
    within = price - expected <= tolerance.allowed(expected)
    assert outcome.matched == within
    if not within:
        (problem,) = outcome.problems
        assert problem.type == "PRICE_VARIANCE"
        assert problem.amount_at_stake == ((price - expected) * quantity).quantize(Decimal("0.01"))


@given(st.integers(1, 500), st.integers(1, 500), TOLERANCES)
def test_a_quantity_within_tolerance_always_matches_and_outside_never(receipt, invoiced, tolerance):
    tolerances = Tolerances(version="t", price=Tolerance(), quantity=tolerance)
    outcome = match(
        facts(
            invoice((invoiced, "EA", "10.00")),
            order((ITEM, 1000, "EA", "10.00")),
            received((receipt, "EA")),
            contracts=(contract(Decimal("10.00")),),
        ),
        tolerances,
    )
    within = invoiced - receipt <= tolerance.allowed(Decimal(receipt))
    assert outcome.matched == within
    if not within:
        assert [p.type for p in outcome.problems] == ["QUANTITY_VARIANCE"]
