"""Usage's pure rules, without NATS or SQLite: the patient token, reading a line's UDI, what the
item master says about a usage, the bill-only contract, and when HL7 wants an ACK."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import msgspec
import pytest
import scenario_data as scenario
from usage_documents import FUTURE, json_usage

from sinew.contracts.common import Quantity
from sinew.contracts.usage import UsageSubmitted
from sinew.masterdata.barcodes import BarcodeError
from sinew.masterdata.rules import UnknownUnit
from sinew.services.usage.domain import (
    Conflict,
    ack_code_for_dead_letter,
    ack_wanted,
    base_quantity,
    bill_only_source,
    documentation_findings,
    item_keys,
    patient_token_for,
    read_line,
    redact,
)

SITE = "north"


def submitted(**fields) -> UsageSubmitted:
    return msgspec.json.decode(json_usage(SITE, "L-1", **fields), type=UsageSubmitted)


KEY = b"0123456789abcdef" * 4


def line(**fields):
    return read_line(submitted(**fields), patient_token_for(KEY, SITE, "MRN-SYNTH-0001"), "json")


def test_patient_tokens_are_one_per_mrn_and_fit_the_contract():
    tokens = {patient_token_for(KEY, SITE, f"MRN-{n}") for n in range(1000)}
    assert len(tokens) == 1000
    assert all(re.fullmatch(r"pt-[0-9a-f]{32}", t) for t in tokens)
    assert patient_token_for(KEY, SITE, "MRN-7") == patient_token_for(KEY, SITE, "MRN-7")


def test_a_line_carries_the_token_and_never_the_mrn_or_name():
    read = line(item_id=scenario.STENT)
    encoded = msgspec.json.encode(read)
    assert b"MRN-SYNTH" not in encoded and b"ZZTEST" not in encoded
    assert read.patient_token.startswith("pt-")


def test_a_gs1_udi_gives_the_device_lot_serial_and_expiry():
    udi = scenario.gs1_barcode(scenario.STENT_GTIN, lot="L1", serial="S1", expiry=FUTURE)
    read = line(udi=udi)
    assert (read.udi_issuer, read.device_identifier) == ("GS1", scenario.STENT_GTIN)
    assert (read.lot, read.serial, read.expiry) == ("L1", "S1", FUTURE)
    assert read.item_key == f"gtin:{scenario.STENT_GTIN}"


def test_an_hibc_udi_names_the_device_by_its_hibc_identifier():
    udi = scenario.hibc_barcode(scenario.ICD_HIBC_DI, serial="X9", expiry=FUTURE)
    read = line(udi=udi, lot="LOT-7")
    assert read.item_key == f"udi:{scenario.ICD_HIBC_DI}"
    assert (read.lot, read.serial, read.expiry) == ("LOT-7", "X9", FUTURE)


def test_a_udi_that_contradicts_the_lines_fields_is_refused():
    udi = scenario.gs1_barcode(scenario.STENT_GTIN, lot="L1")
    with pytest.raises(Conflict, match="lot L2 disagrees with lot L1 in the UDI"):
        line(udi=udi, lot="L2")
    with pytest.raises(BarcodeError):
        line(udi="not a barcode")


def test_an_item_is_found_by_any_identifier_it_was_named_by():
    keys = item_keys(scenario.guidewire())
    assert {f"id:{scenario.GUIDEWIRE}", f"gtin:{scenario.GUIDEWIRE_BOX_GTIN}"} <= keys
    assert f"udi:{scenario.ICD_HIBC_DI}" in item_keys(scenario.consigned_icd())


def test_documentation_findings_for_implants():
    stent = scenario.stent()
    assert [f.type for f in documentation_findings(stent, line(item_id=scenario.STENT))] == [
        "LOT_REQUIRED",
        "SERIAL_REQUIRED",
    ]
    expired = line(item_id=scenario.STENT, lot="L", serial="S", expiry=date(2024, 4, 30))
    (finding,) = documentation_findings(stent, expired)
    assert finding.type == "EXPIRED_LOT" and "2024-04-30" in finding.explanation
    # Expiring on the day of use is not expired.
    same_day = line(item_id=scenario.STENT, lot="L", serial="S", expiry=date(2024, 5, 1))
    assert documentation_findings(stent, same_day) == []


def test_quantities_convert_through_the_item_master():
    wire = scenario.guidewire()
    assert base_quantity(wire, Quantity(value=Decimal(2), uom="BX")) == Quantity(
        value=Decimal(20), uom="EA"
    )
    with pytest.raises(UnknownUnit):
        base_quantity(wire, Quantity(value=Decimal(1), uom="PK"))


def test_the_bill_only_contract_is_the_suppliers_one_in_force_on_the_day():
    icd = scenario.consigned_icd()
    current = scenario.medsup_contract()
    old = scenario.changed(
        current,
        contract_number="OLD",
        effective_from=date(2020, 1, 1),
        effective_to=date(2023, 12, 31),
    )
    one = Quantity(value=Decimal(1), uom="EA")
    source = bill_only_source(icd, [old, current], date(2024, 5, 1), one)
    assert (source.supplier_id, source.contract_number) == (scenario.MEDSUP, scenario.CONTRACT)
    assert bill_only_source(icd, [old, current], date(2023, 6, 1), one).contract_number == "OLD"
    assert bill_only_source(icd, [], date(2024, 5, 1), one).contract_number is None


@pytest.mark.parametrize(
    ("accept", "application", "code", "wanted"),
    [
        ("", "", "AA", True),  # original mode: always
        ("", "AL", "AE", True),
        ("", "NE", "AE", False),
        ("", "ER", "AA", False),
        ("", "ER", "AR", True),
        ("", "SU", "AA", True),
        ("", "SU", "AE", False),
        ("AL", "", "AA", True),
        ("NE", "", "AA", False),
    ],
)
def test_hl7_ack_follows_msh15_and_msh16(accept, application, code, wanted):
    assert ack_wanted(accept, application, code) is wanted


def test_dead_letter_causes_map_to_reject_or_error():
    assert ack_code_for_dead_letter("malformed") == "AR"
    assert ack_code_for_dead_letter("invalid") == "AE"


def test_redaction_takes_out_whole_values_only():
    text = "The value ZZTEST^PATIENT exceeds; see MRN-1 and MRN-12 and ZZTESTER"
    assert redact(text, {"ZZTEST^PATIENT", "MRN-1"}) == (
        "The value [redacted] exceeds; see [redacted] and MRN-12 and ZZTESTER"
    )
