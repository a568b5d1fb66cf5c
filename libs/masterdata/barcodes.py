"""UDI barcodes as scanned: GS1 (parsed with biip) and HIBC (a small strict parser; no
well-kept Python library reads HIBC)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

import biip
from biip.gs1_messages import GS1Message

HIBC_CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-. $/+%"


class BarcodeError(ValueError):
    """The string is not a UDI barcode Sinew can read; the message says where it fails."""


@dataclass(frozen=True)
class ScannedUdi:
    issuer: Literal["GS1", "HIBCC"]
    device_identifier: str  # GTIN-14 for GS1; labeler + product + unit digit for HIBC
    lot: str | None = None
    serial: str | None = None
    expiry: date | None = None

    @property
    def gtin(self) -> str | None:
        return self.device_identifier if self.issuer == "GS1" else None


def gtin14(gtin: str) -> str:
    """GTIN-8, -12 and -13 are GTIN-14 with leading zeros; compare them in that form."""
    return gtin.zfill(14)


def parse_udi(text: str) -> ScannedUdi:
    raw = text.strip()
    if not raw:
        raise BarcodeError("empty barcode")
    if raw.lstrip("*").startswith("+"):
        return parse_hibc(raw)
    return parse_gs1(raw)


def parse_gs1(text: str) -> ScannedUdi:
    if text.startswith("("):  # the human-readable form printed under the barcode
        try:
            message = GS1Message.parse_hri(text)
        except biip.ParseError as error:
            raise BarcodeError(f"GS1: {error}") from None
        return _from_gs1(message)
    result = biip.parse(text)
    message = result.gs1_message
    if message is None:
        if result.gtin is not None:  # a bare GTIN: the device identifier and nothing more
            return ScannedUdi("GS1", gtin14(result.gtin.value))
        raise BarcodeError(f"not a GS1 or HIBC UDI: {result.gs1_message_error or text!r}")
    return _from_gs1(message)


def _from_gs1(message: GS1Message) -> ScannedUdi:
    gtin = message.element_strings.get(ai="01")
    if gtin is None or gtin.gtin is None:
        raise BarcodeError("GS1 barcode without a GTIN (AI 01)")
    lot = message.element_strings.get(ai="10")
    serial = message.element_strings.get(ai="21")
    expiry = message.element_strings.get(ai="17")
    return ScannedUdi(
        "GS1",
        gtin14(gtin.gtin.value),
        lot=lot.value if lot else None,
        serial=serial.value if serial else None,
        expiry=expiry.date if expiry else None,
    )


def _check_character(data: str) -> str:
    try:
        return HIBC_CHARSET[sum(HIBC_CHARSET.index(c) for c in data) % 43]
    except ValueError:
        bad = next(c for c in data if c not in HIBC_CHARSET)
        raise BarcodeError(f"HIBC: character {bad!r} is not allowed") from None


def parse_hibc(text: str) -> ScannedUdi:
    """ANSI/HIBC 2.6: a primary data structure (+LIC PCN U), optionally followed by '/' and the
    secondary (lot, serial, expiry), and one modulo-43 check character over the whole."""
    body = text.strip().strip("*")
    if len(body) < 2 or not body.startswith("+"):
        raise BarcodeError("HIBC: must start with '+'")
    data, check = body[:-1], body[-1]
    if _check_character(data) != check:
        raise BarcodeError(f"HIBC: check character {check!r} should be {_check_character(data)!r}")
    primary, _, secondary = data[1:].partition("/")
    if primary.startswith("$"):
        raise BarcodeError("HIBC: a secondary data structure alone names no device")
    if len(primary) < 6 or not primary[0].isalpha() or not primary[-1].isdigit():
        raise BarcodeError(
            f"HIBC: primary {primary!r} is not LIC (4) + product (1-18) + unit digit"
        )
    if len(primary) > 23:
        raise BarcodeError("HIBC: product code longer than 18 characters")
    lot, serial, expiry = _secondary(secondary) if secondary else (None, None, None)
    return ScannedUdi("HIBCC", primary, lot=lot, serial=serial, expiry=expiry)


def _secondary(secondary: str) -> tuple[str | None, str | None, date | None]:
    if not secondary.startswith("$"):
        raise BarcodeError(f"HIBC: secondary {secondary!r} must start with '$'")
    if secondary.startswith("$$"):
        rest = secondary[2:]
        is_serial = rest.startswith("+")
        rest = rest[1:] if is_serial else rest
        expiry, value = _dated(rest)
    else:
        rest = secondary[1:]
        is_serial = rest.startswith("+")
        value, expiry = (rest[1:] if is_serial else rest), None
    if not value:
        raise BarcodeError("HIBC: secondary without a lot or serial")
    return (None, value, expiry) if is_serial else (value, None, expiry)


def _dated(rest: str) -> tuple[date | None, str]:
    """The expiry formats flagged by the first digit after $$ (none: MMYY)."""
    try:
        flag = rest[0] if rest and rest[0] in "234567" else ""
        if flag == "":
            return _last_day(int("20" + rest[2:4]), int(rest[0:2])), rest[4:]
        if flag == "2":
            return datetime.strptime(rest[1:7], "%m%d%y").date(), rest[7:]
        if flag == "3":
            return datetime.strptime(rest[1:7], "%y%m%d").date(), rest[7:]
        if flag == "4":
            return datetime.strptime(rest[1:7], "%y%m%d").date(), rest[9:]
        if flag == "5":
            return date(2000 + int(rest[1:3]), 1, 1) + timedelta(int(rest[3:6]) - 1), rest[6:]
        if flag == "6":
            return date(2000 + int(rest[1:3]), 1, 1) + timedelta(int(rest[3:6]) - 1), rest[8:]
        return None, rest[1:]  # 7: no date
    except (ValueError, IndexError):
        raise BarcodeError(f"HIBC: expiry in {rest!r} is not a date") from None


def _last_day(year: int, month: int) -> date:
    if not 1 <= month <= 12:
        raise ValueError(month)
    following = date(year + (month == 12), month % 12 + 1, 1)
    return following - timedelta(days=1)
