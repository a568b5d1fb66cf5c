"""UDI barcodes as scanners deliver them: GS1 in its raw and printed forms, and HIBC."""

from __future__ import annotations

from datetime import date

import pytest

from sinew.masterdata.barcodes import BarcodeError, _check_character, gtin14, parse_udi

GS = "\x1d"


def hibc(data: str) -> str:
    return data + _check_character(data)


def test_gs1_raw_with_symbology_identifier_and_group_separators():
    udi = parse_udi(f"]d201095060001343521728122510LOT-1{GS}21SER-9")
    assert (udi.issuer, udi.gtin, udi.lot, udi.serial, udi.expiry) == (
        "GS1",
        "09506000134352",
        "LOT-1",
        "SER-9",
        date(2028, 12, 25),
    )


def test_gs1_human_readable_form():
    udi = parse_udi("(01)09506000134352(17)281225(10)L1(21)S1")
    assert (udi.lot, udi.serial, udi.expiry) == ("L1", "S1", date(2028, 12, 25))


def test_gs1_errors_say_what_is_wrong():
    with pytest.raises(BarcodeError):
        parse_udi("(01)09506000134353(10)L1")  # wrong GTIN check digit
    with pytest.raises(BarcodeError, match="without a GTIN"):
        parse_udi("(10)L1(21)S1")


def test_hibc_primary_alone():
    udi = parse_udi("+A123BJC5D6E71G")
    assert (udi.issuer, udi.device_identifier, udi.gtin) == ("HIBCC", "A123BJC5D6E71", None)


def test_hibc_with_expiry_and_lot_and_with_serial():
    lot = parse_udi(hibc("+A99912345/$$3281231LOT1234"))
    assert (lot.device_identifier, lot.lot, lot.serial, lot.expiry) == (
        "A99912345",
        "LOT1234",
        None,
        date(2028, 12, 31),
    )
    month_end = parse_udi(hibc("+A99912345/$$0228LOT9"))
    assert month_end.expiry == date(2028, 2, 29)
    serial = parse_udi(hibc("+A999123451/$+SER9"))
    assert (serial.serial, serial.lot) == ("SER9", None)


def test_hibc_rejects_a_wrong_check_character_and_bad_structures():
    with pytest.raises(BarcodeError, match="check character"):
        parse_udi("+A123BJC5D6E71H")
    with pytest.raises(BarcodeError, match="names no device"):
        parse_udi(hibc("+$$3281231LOT1"))
    with pytest.raises(BarcodeError, match="not a date"):
        parse_udi(hibc("+A99912345/$$3281399LOT1"))


def test_gtins_compare_as_gtin_14():
    assert gtin14("9506000134352") == "09506000134352"
