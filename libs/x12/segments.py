"""Reading segments: typed elements with precise errors, and a cursor that walks loops in order.

Element positions are 1-based as X12 names them: ``segment.get(2)`` of a PO1 is PO102.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import TypeVar

from .errors import X12Error

T = TypeVar("T")

_REAL = re.compile(r"-?(\d+(\.\d*)?|\.\d+)")  # X12 R: explicit decimal point, no exponent
_WHOLE = re.compile(r"-?\d+")  # X12 Nn: implied decimal point
_DIGITS = re.compile(r"\d+")
_UOM = re.compile(r"[A-Z0-9]{1,8}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_GTIN = re.compile(r"\d{8}|\d{12,14}")
CODE_LIMIT = 64  # contracts' Code, Lot and Serial
TEXT_LIMIT = 1000  # contracts' Text

# DTM04 time codes with a fixed offset. ET, CT, MT and PT say "local time" without saying
# whether daylight saving applies, so a document using them cannot be placed on the time line.
TIME_CODES = {
    "UT": 0,
    "GM": 0,
    "ES": -5,
    "ED": -4,
    "CS": -6,
    "CD": -5,
    "MS": -7,
    "MD": -6,
    "PS": -8,
    "PD": -7,
}


@dataclass(frozen=True, slots=True)
class Segment:
    index: int  # ordinal position in the interchange; the ISA is 1
    id: str
    elements: tuple[str, ...]

    def get(self, position: int) -> str:
        return self.elements[position - 1] if position <= len(self.elements) else ""

    def name(self, position: int) -> str:
        return f"{self.id}{position:02d}"

    def error(self, message: str, position: int | None = None) -> X12Error:
        return X12Error(
            message,
            segment_index=self.index,
            segment_id=self.id,
            element=self.name(position) if position is not None else None,
        )


# Typed elements. Each returns None for an empty optional element and raises X12Error naming
# the element for a missing required one or a value of the wrong form.


def text(segment: Segment, position: int, *, required: bool = False) -> str | None:
    value = segment.get(position)
    if value:
        if len(value) > TEXT_LIMIT:
            raise segment.error(
                f"{segment.name(position)} holds {len(value)} characters, at most "
                f"{TEXT_LIMIT} fit Sinew's contracts",
                position,
            )
        return value
    if required:
        raise segment.error(f"{segment.name(position)} is required, found nothing", position)
    return None


def code(segment: Segment, position: int, *, required: bool = False) -> str | None:
    value = text(segment, position, required=required)
    if value is not None and (len(value) > CODE_LIMIT or value[0].isspace()):
        raise segment.error(
            f"{segment.name(position)} must be an identifier of 1 to {CODE_LIMIT} characters "
            f"not starting with a space, found {value!r}",
            position,
        )
    return value


def real(segment: Segment, position: int, *, required: bool = False) -> Decimal | None:
    value = text(segment, position, required=required)
    if value is None:
        return None
    if not _REAL.fullmatch(value):
        raise segment.error(f"{segment.name(position)} must be a number, found {value!r}", position)
    return Decimal(value)


def cents(segment: Segment, position: int, *, required: bool = False) -> Decimal | None:
    """An N2 amount: digits with two implied decimal places, "120000" is 1200.00."""
    value = text(segment, position, required=required)
    if value is None:
        return None
    if not _WHOLE.fullmatch(value):
        raise segment.error(
            f"{segment.name(position)} must be an amount in cents (N2, digits only), "
            f"found {value!r}",
            position,
        )
    return Decimal(value).scaleb(-2)


def count(segment: Segment, position: int, *, required: bool = False) -> int | None:
    value = text(segment, position, required=required)
    if value is None:
        return None
    if not _DIGITS.fullmatch(value):
        raise segment.error(
            f"{segment.name(position)} must be a whole number, found {value!r}", position
        )
    return int(value)


def line_number(segment: Segment, position: int, *, required: bool = False) -> int | None:
    number = count(segment, position, required=required)
    if number is not None and number < 1:
        raise segment.error(
            f"{segment.name(position)} must be a line number from 1, found {number}", position
        )
    return number


def day(segment: Segment, position: int, *, required: bool = False) -> date | None:
    value = text(segment, position, required=required)
    if value is None:
        return None
    return parse_date(value, segment, position)


def parse_date(value: str, segment: Segment, position: int) -> date:
    try:
        if len(value) != 8 or not value.isdigit():
            raise ValueError
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise segment.error(
            f"{segment.name(position)} must be a date CCYYMMDD, found {value!r}", position
        ) from None


def clock(segment: Segment, position: int, *, required: bool = False) -> time | None:
    value = text(segment, position, required=required)
    if value is None:
        return None
    return parse_time(value, segment, position)


def parse_time(value: str, segment: Segment, position: int) -> time:
    # HHMM, HHMMSS or HHMMSS with decimal seconds; Sinew keeps whole seconds
    try:
        if len(value) not in (4, 6, 7, 8) or not value.isdigit():
            raise ValueError
        seconds = int(value[4:6]) if len(value) >= 6 else 0
        return time(int(value[:2]), int(value[2:4]), seconds)
    except ValueError:
        raise segment.error(
            f"{segment.name(position)} must be a time HHMM or HHMMSS, found {value!r}", position
        ) from None


def one_of(
    segment: Segment, position: int, meanings: Mapping[str, T], *, required: bool = False
) -> T | None:
    value = text(segment, position, required=required)
    if value is None:
        return None
    if value not in meanings:
        allowed = ", ".join(meanings)
        raise segment.error(
            f"{segment.name(position)} must be one of {allowed}, found {value!r}", position
        )
    return meanings[value]


def unit(segment: Segment, position: int) -> str:
    value = text(segment, position, required=True)
    assert value is not None
    if not _UOM.fullmatch(value):
        raise segment.error(
            f"{segment.name(position)} must be a unit of measure code such as EA or BX, "
            f"found {value!r}",
            position,
        )
    return value


def currency(segment: Segment, position: int) -> str:
    value = text(segment, position, required=True)
    assert value is not None
    if not _CURRENCY.fullmatch(value):
        raise segment.error(
            f"{segment.name(position)} must be an ISO 4217 currency code, found {value!r}",
            position,
        )
    return value


def moment(segment: Segment, date_at: int, time_at: int, zone_at: int | None) -> datetime:
    """A date, time and time code (DTM02-04, BSN03-04) as an aware UTC time. No time is
    midnight; no time code is UTC."""
    on = day(segment, date_at, required=True)
    assert on is not None
    at = clock(segment, time_at) or time(0, 0)
    hours = 0
    if zone_at is not None:
        hours = one_of(segment, zone_at, TIME_CODES) or 0
    local = datetime.combine(on, at, tzinfo=timezone(timedelta(hours=hours)))
    return local.astimezone(UTC)


# Product/service id pairs (PO106/PO107, LIN02/LIN03, IT106/IT107, ACK07/ACK08 ...): the
# qualifier says what the id is. Sinew reads the roles below and passes over other qualifiers.
ID_ROLES = {
    "IN": "item",  # buyer's item number: Sinew's item_id
    "BP": "item",  # buyer's part number
    "VN": "part",  # vendor's item number
    "VC": "part",  # vendor's catalog number
    "VP": "part",  # vendor's part number
    "UK": "gtin",  # GTIN-14
    "EN": "gtin",  # GTIN-13
    "UP": "gtin",  # GTIN-12
    "PL": "po_line",  # purchaser's order line number
    "LT": "lot",
    "SN": "serial",
}


@dataclass(frozen=True, slots=True)
class ProductIds:
    segment: Segment
    positions: dict[str, int]  # role -> position of the id element

    def code(self, role: str) -> str | None:
        position = self.positions.get(role)
        return None if position is None else code(self.segment, position, required=True)

    def gtin(self) -> str | None:
        position = self.positions.get("gtin")
        if position is None:
            return None
        value = self.segment.get(position)
        if not _GTIN.fullmatch(value):
            raise self.segment.error(
                f"{self.segment.name(position)} must be a GTIN of 8, 12, 13 or 14 digits, "
                f"found {value!r}",
                position,
            )
        return value

    def line_number(self, role: str) -> int | None:
        position = self.positions.get(role)
        return None if position is None else line_number(self.segment, position, required=True)


def product_ids(segment: Segment, first: int) -> ProductIds:
    positions: dict[str, int] = {}
    last = len(segment.elements)
    for at in range(first, last + 1, 2):
        qualifier, value = segment.get(at), segment.get(at + 1)
        if not qualifier and not value:
            continue
        if not qualifier or not value:
            missing, given = (at, at + 1) if not qualifier else (at + 1, at)
            raise segment.error(
                f"{segment.name(given)} needs {segment.name(missing)}: product ids come in "
                "qualifier and id pairs",
                missing,
            )
        role = ID_ROLES.get(qualifier)
        if role is None:
            continue
        if role in positions and segment.get(positions[role]) != value:
            raise segment.error(
                f"{segment.name(at)} names a second {qualifier} ({value!r}); "
                f"{segment.name(positions[role] - 1)} already gave {segment.get(positions[role])!r}",
                at,
            )
        positions.setdefault(role, at + 1)
    return ProductIds(segment, positions)


class Cursor:
    """Walks the segments between ST and SE. Segments the document type does not read (N3, PER,
    TD1 ...) are passed over; the ones it reads must come in the order X12 gives them."""

    def __init__(self, segments: Iterable[Segment], trailer: Segment, known: frozenset[str]):
        self._segments = [segment for segment in segments if segment.id in known]
        self._trailer = trailer
        self._at = 0
        # Why the last loop ended early, told when what follows fits nowhere else either.
        self._misplaced: tuple[Segment, str] | None = None

    def peek(self) -> Segment:
        return self._segments[self._at] if self._at < len(self._segments) else self._trailer

    def at(self, *ids: str) -> bool:
        return self.peek().id in ids

    def take(self, segment_id: str, where: str) -> Segment:
        found = self.peek()
        if found.id != segment_id:
            raise found.error(f"expected {segment_id} {where}, found {found.id}{self._why(found)}")
        self._at += 1
        return found

    def optional(self, segment_id: str) -> Segment | None:
        return self.take(segment_id, "") if self.at(segment_id) else None

    def group(self, loop: str, order: tuple[tuple[str, int | None], ...]) -> Group:
        """The segments of one loop's body, in X12's order. A segment that would go back in
        that order ends the loop, as it may belong to the level around it; if it fits there
        neither, the error says both. Repeating more than X12 allows is an error."""
        ids = [segment_id for segment_id, _ in order]
        limits = dict(order)
        found: dict[str, list[Segment]] = {}
        latest = -1
        while self.peek().id in limits:
            segment = self.peek()
            place = ids.index(segment.id)
            if place < latest:
                why = f"{segment.id} cannot come after {ids[latest]} in the {loop}"
                self._misplaced = (segment, why)
                break
            limit = limits[segment.id]
            if limit is not None and len(found.get(segment.id, ())) >= limit:
                raise segment.error(
                    f"the {loop} holds at most {limit} {segment.id}, found one more"
                )
            found.setdefault(segment.id, []).append(segment)
            latest = place
            self._at += 1
        return Group(found)

    def finish(self, after: str) -> None:
        found = self.peek()
        if found is not self._trailer:
            raise found.error(f"expected SE after {after}, found {found.id}{self._why(found)}")

    def _why(self, found: Segment) -> str:
        if self._misplaced is not None and self._misplaced[0] is found:
            return f"; {self._misplaced[1]}"
        return ""


@dataclass(frozen=True, slots=True)
class Group:
    segments: dict[str, list[Segment]]

    def all(self, segment_id: str, qualifier: str | None = None) -> list[Segment]:
        found = self.segments.get(segment_id, [])
        return [s for s in found if qualifier is None or s.get(1) == qualifier]

    def one(self, segment_id: str, qualifier: str | None = None) -> Segment | None:
        """At most one such segment (with that first element); a second one is an error,
        because Sinew would have to choose between them."""
        found = self.all(segment_id, qualifier)
        if len(found) > 1:
            what = f"{segment_id}*{qualifier}" if qualifier else segment_id
            raise found[1].error(f"expected one {what}, found a second")
        return found[0] if found else None

    def reference(self, qualifier: str) -> str | None:
        ref = self.one("REF", qualifier)
        return None if ref is None else code(ref, 2, required=True)

    def labelled(self, label: str) -> str | None:
        """REF*ZZ (mutually defined) with REF03 naming what REF02 is: Sinew's references that
        X12 has no qualifier for, such as the surgical case of a bill-only order."""
        found = [ref for ref in self.all("REF", "ZZ") if ref.get(3) == label]
        if len(found) > 1:
            raise found[1].error(f"expected one REF*ZZ labelled {label}, found a second")
        return code(found[0], 2, required=True) if found else None

    def date(self, qualifier: str) -> date | None:
        dtm = self.one("DTM", qualifier)
        return None if dtm is None else day(dtm, 2, required=True)

    def moment(self, qualifier: str) -> datetime | None:
        dtm = self.one("DTM", qualifier)
        return None if dtm is None else moment(dtm, 2, 3, 4)


def parties(cursor: Cursor, loop_body: tuple[tuple[str, int | None], ...]) -> dict[str, Segment]:
    """The N1 loops at this point, by entity code (SU supplier, ST ship to ...)."""
    found: dict[str, Segment] = {}
    while cursor.at("N1"):
        n1 = cursor.take("N1", "")
        cursor.group("N1 loop", loop_body)
        entity = text(n1, 1, required=True)
        assert entity is not None
        if entity in found:
            raise n1.error(f"expected one N1*{entity}, found a second")
        found[entity] = n1
    return found


def party_id(n1: Segment | None) -> str | None:
    """N104 when N103 is 92, "assigned by buyer": Sinew's own id for the party, which is what
    Sinew writes and what a supplier echoes back. Other qualifiers (DUNS, GLN) are not
    Sinew ids."""
    if n1 is None or n1.get(3) != "92":
        return None
    return code(n1, 4, required=True)
