"""The matcher's rules one by one, on in-memory facts, and the policies as data: tolerances with
their per-supplier overrides, routing with amount bands and SLAs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import pytest
from matching_facts import (
    ITEM,
    SCENARIO_TOLERANCES,
    contract,
    facts,
    invoice,
    item,
    order,
    received,
    substitution,
)

from sinew.services.matching import policies
from sinew.services.matching.domain import invoice_key, match


def problems(outcome) -> dict[str, Decimal]:
    return {p.type: p.amount_at_stake for p in outcome.problems}


@pytest.mark.parametrize(
    "a, b",
    [
        ("INV-000123", "inv 123"),
        ("INV-000123", "INV123"),
        ("2024-0012", "2024 12"),
        ("0042", "42"),
        ("inv-0001-a", "INV1A"),
    ],
)
def test_invoice_numbers_are_the_same_once_case_spaces_dashes_and_leading_zeros_go(a, b):
    assert invoice_key(a) == invoice_key(b)


@pytest.mark.parametrize("a, b", [("INV-100", "INV-1"), ("INV-123", "INV-124"), ("A1", "B1")])
def test_different_invoice_numbers_stay_different(a, b):
    assert invoice_key(a) != invoice_key(b)


def test_price_tolerance_is_two_percent_or_25_whichever_smaller_and_suppliers_may_differ():
    loaded = policies.load()
    price = loaded.tolerances.price_for("MEDSUP")
    assert price.allowed(Decimal("1200.00")) == Decimal("24.00")
    assert price.allowed(Decimal("5000.00")) == Decimal("25.00")
    assert price.describe() == "2% or 25.00, whichever is smaller"
    assert loaded.tolerances.price_for("FREIGHTCO").allowed(Decimal("100.00")) == Decimal("5.00")
    assert loaded.tolerances.quantity_for("FREIGHTCO").describe() == "none: exact"


def test_routing_sends_each_type_to_its_queue_and_escalates_large_amounts():
    routing = policies.load().routing
    assert routing.route("PRICE_VARIANCE", Decimal("120.00")) == "supply_chain"
    assert routing.route("PRICE_VARIANCE", Decimal("10000.00")) == "supply_chain_lead"
    assert routing.route("SUBSTITUTION_NOT_APPROVED", Decimal(1)) == "supply_chain"
    assert routing.route("QUANTITY_VARIANCE", Decimal(1)) == "receiving"
    assert routing.route("AWAITING_RECEIPT", Decimal("30000")) == "receiving_lead"
    assert routing.route("NO_PO", Decimal(1)) == "ap"
    assert routing.route("DUPLICATE_INVOICE", Decimal(1)) == "ap"
    raised = datetime(2024, 3, 1, 9, tzinfo=UTC)
    assert routing.sla_due("supply_chain", raised) == raised + timedelta(hours=72)
    assert routing.may_work("receiving", frozenset({"receiving"}))
    assert not routing.may_work("receiving", frozenset({"ap"}))
    assert routing.may_work("receiving", frozenset({"admin"}))


def test_a_policy_that_leaves_an_exception_type_without_a_queue_stops_the_service(tmp_path):
    routing = json.loads((policies.POLICY_DIR / "routing.v1.json").read_text())
    del routing["routes"]["NO_PO"]
    broken = tmp_path / "routing.v2.json"
    broken.write_text(json.dumps(routing))
    with pytest.raises(SystemExit, match="no queue for NO_PO"):
        policies.load(routing=broken)


def test_newest_policy_version_is_the_one_in_force(tmp_path, monkeypatch):
    tolerances = json.loads((policies.POLICY_DIR / "tolerances.v1.json").read_text())
    tolerances.update(version="tolerances-v2", price={"percent": "1"})
    newer = tmp_path / "tolerances.v2.json"
    newer.write_text(json.dumps(tolerances))
    monkeypatch.setenv("SINEW_MATCH_TOLERANCES", str(newer))
    loaded = policies.load()
    assert loaded.tolerances.version == "tolerances-v2"
    assert loaded.version == "tolerances-v2+routing-v1"


def test_an_invoice_that_does_not_add_up_is_a_totals_mismatch():
    wrong = invoice((2, "EA", "10.00"))
    wrong = msgspec.structs.replace(wrong, total=Decimal("25.00"))
    outcome = match(
        facts(wrong, order((ITEM, 2, "EA", "10.00")), received((2, "EA"))), SCENARIO_TOLERANCES
    )
    (problem,) = outcome.problems
    assert problem.type == "TOTALS_MISMATCH" and problem.amount_at_stake == Decimal("5.00")
    assert "is 20.00, but the total says 25.00" in problem.explanation


@pytest.mark.parametrize(
    "the_order, changes, says",
    [
        (None, {}, "PO PO-1 is not known"),
        ("cancelled", {"order_cancelled": True}, "PO PO-1 was cancelled"),
        ("other supplier", {}, "placed with supplier OTHER"),
    ],
)
def test_no_usable_purchase_order_is_no_po_for_the_whole_invoice(the_order, changes, says):
    po = order((ITEM, 2, "EA", "10.00"), supplier_id="OTHER" if the_order else "MEDSUP")
    if the_order != "other supplier":
        po = order((ITEM, 2, "EA", "10.00")) if the_order else None
    outcome = match(facts(invoice((2, "EA", "10.00")), po, **changes), SCENARIO_TOLERANCES)
    (problem,) = outcome.problems
    assert (problem.type, problem.amount_at_stake) == ("NO_PO", Decimal("20.00"))
    assert says in problem.explanation


def test_an_item_or_unit_the_item_master_does_not_know_is_unknown_item():
    outcome = match(
        facts(
            invoice((1, "EA", "10.00", "NOT-IN-MASTER"), (1, "CA", "10.00")),
            order((ITEM, 2, "EA", "10.00")),
            received((2, "EA")),
        ),
        SCENARIO_TOLERANCES,
    )
    (problem,) = outcome.problems
    assert problem.type == "UNKNOWN_ITEM" and problem.amount_at_stake == Decimal("20.00")
    assert "item NOT-IN-MASTER, which the item master does not know" in problem.explanation
    assert "has no unit of measure CA" in problem.explanation


def test_a_price_below_the_po_price_matches_and_says_so():
    outcome = match(
        facts(
            invoice((2, "EA", "9.50")),
            order((ITEM, 2, "EA", "10.00")),
            received((2, "EA")),
            contracts=(contract(Decimal("10.00")),),
        ),
        SCENARIO_TOLERANCES,
    )
    assert outcome.matched
    explained = " ".join(c.explanation for c in outcome.checks)
    assert "PO PO-1 line 1 price is 10.00 per EA: 0.50 under" in explained


def test_the_contract_in_force_on_the_po_date_holds_even_when_the_po_price_is_higher():
    outcome = match(
        facts(
            invoice((2, "EA", "12.00")),
            order((ITEM, 2, "EA", "12.00")),
            received((2, "EA")),
            contracts=(contract(Decimal("10.00")),),
        ),
        SCENARIO_TOLERANCES,
    )
    (problem,) = outcome.problems
    assert (problem.type, problem.amount_at_stake) == ("PRICE_VARIANCE", Decimal("4.00"))
    assert problem.contract_number == "C-1"
    (check,) = problem.checks
    assert check.rule == "price_vs_contract"
    assert (check.expected, check.actual) == (Decimal("10.00"), Decimal("12.00"))


def test_a_substitute_counts_through_its_units_and_is_held_to_its_own_contract_price():
    # Two of the substitute stand for one ordered each, at half the price.
    half = item("GLOVE-M-HALF")
    outcome = match(
        facts(
            invoice((4, "EA", "5.00", "GLOVE-M-HALF", 1)),
            order((ITEM, 2, "EA", "10.00")),
            received((4, "EA"), item_id="GLOVE-M-HALF"),
            items=(item(), half),
            contracts=(contract(Decimal("5.00"), "GLOVE-M-HALF"),),
            substitutions=(substitution(ITEM, "GLOVE-M-HALF", Decimal(2)),),
        ),
        SCENARIO_TOLERANCES,
    )
    assert outcome.matched, problems(outcome)
    (line,) = outcome.lines
    assert line.substitution_id == "SUB-GLOVE-M-HALF" and line.ordered_item_id == ITEM
    (allocation,) = outcome.allocations
    assert allocation.quantity == Decimal(2)


def test_one_item_on_two_po_lines_is_billed_line_by_line():
    outcome = match(
        facts(
            invoice((3, "EA", "10.00"), (2, "EA", "10.00")),
            order((ITEM, 3, "EA", "10.00"), (ITEM, 2, "EA", "10.00")),
            [*received((3, "EA")), *received((2, "EA"), line=2)],
        ),
        SCENARIO_TOLERANCES,
    )
    assert outcome.matched, problems(outcome)
    assert [(a.invoice_line_number, a.po_line_number) for a in outcome.allocations] == [
        (1, 1),
        (2, 2),
    ]


def test_earlier_invoices_count_against_what_was_received():
    outcome = match(
        facts(
            invoice((1, "EA", "10.00")),
            order((ITEM, 3, "EA", "10.00")),
            received((2, "EA")),
            invoiced_before={1: Decimal(2)},
        ),
        SCENARIO_TOLERANCES,
    )
    assert problems(outcome) == {"QUANTITY_VARIANCE": Decimal("10.00")}
    (check,) = [c for c in outcome.checks if not c.passed]
    assert "invoiced on PO line 1: 3 EA (2 on earlier invoices or lines" in check.explanation
