"""Money and quantities are finite decimals: "NaN" or "Infinity" from a sender is a contract
error with its path, whatever format the message came in."""

from __future__ import annotations

import msgspec
import pytest

from sinew.contracts.common import require_finite
from sinew.contracts.matching import InvoiceSubmission


def invoice(unit_price: str, quantity: str = "2", note: str = "information only") -> bytes:
    return msgspec.json.encode(
        {
            "site": "north",
            "supplier_id": "MEDSUP",
            "invoice_number": "INV-1",
            "invoice_date": "2024-03-01",
            "lines": [
                {
                    "line_number": 1,
                    "quantity": {"value": quantity, "uom": "EA"},
                    "unit_price": unit_price,
                    "extended_amount": "2400.00",
                    "description": note,
                }
            ],
            "subtotal": "2400.00",
            "total": "2400.00",
        }
    )


def check(data: bytes) -> None:
    require_finite(data, msgspec.json.decode(data, type=InvoiceSubmission))


@pytest.mark.parametrize("spelling", ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf"])
def test_a_price_that_is_not_a_finite_number_is_refused_with_its_path(spelling):
    with pytest.raises(msgspec.ValidationError) as refused:
        check(invoice(unit_price=spelling))
    assert "Expected a finite decimal" in str(refused.value)
    assert "at `$.lines[0].unit_price`" in str(refused.value)


def test_a_quantity_inside_a_line_is_found_too():
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.lines\[0\]\.quantity\.value`"):
        check(invoice(unit_price="1200.00", quantity="Infinity"))


def test_words_that_merely_contain_nan_or_inf_pass():
    check(invoice(unit_price="1200.00", note="financial information, infusion pump"))
