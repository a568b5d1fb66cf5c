"""The interchange envelope (ISA/GS/ST ... SE/GE/IEA): reading it strictly, writing it.

Sinew reads exactly one transaction set per document: one ISA, one GS, one ST/SE. Its channels
carry one business document per message, so a second set would have to be split first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from .errors import X12Error
from .segments import Cursor, Segment, count, parse_date, parse_time, text

ISA_LENGTH = 106
# ISA01 ... ISA16 are fixed width; the element separator sits between them.
ISA_WIDTHS = (2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1)
VERSION = "00501"
ENVELOPE = frozenset({"ISA", "GS", "ST", "SE", "GE", "IEA"})
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{1,2}")

# The functional group (GS01) each transaction set travels in.
FUNCTIONAL_GROUPS = {"850": "PO", "855": "PR", "856": "SH", "810": "IN"}
NAMES = {
    "850": "purchase order",
    "855": "purchase order acknowledgment",
    "856": "ship notice",
    "810": "invoice",
}


@dataclass(frozen=True, slots=True)
class Delimiters:
    element: str
    component: str
    repetition: str
    segment: str


@dataclass(frozen=True, slots=True)
class Transaction:
    """One transaction set and what its envelope says about it."""

    sender_id: str  # ISA06 without its padding
    receiver_id: str
    created_at: datetime  # GS04 and GS05, read as UTC
    header: Segment  # ST
    body: tuple[Segment, ...]
    trailer: Segment  # SE

    def cursor(self, known: frozenset[str]) -> Cursor:
        return Cursor(self.body, self.trailer, known)


def read_transaction(data: bytes, transaction_set: str) -> Transaction:
    try:
        document = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise X12Error(
            f"the document is not UTF-8 text: byte {data[error.start]:#04x} at offset {error.start}"
        ) from None
    isa, delimiters = _read_isa(document)
    segments = [isa, *_split(document[ISA_LENGTH:], delimiters)]
    return _check_envelope(segments, transaction_set)


def _read_isa(document: str) -> tuple[Segment, Delimiters]:
    def fail(message: str, position: int | None = None) -> X12Error:
        element = f"ISA{position:02d}" if position is not None else None
        return X12Error(message, segment_index=1, segment_id="ISA", element=element)

    if not document.startswith("ISA"):
        raise fail(f"an interchange starts with ISA, found {document[:3]!r}")
    if len(document) < ISA_LENGTH:
        raise fail(
            f"the ISA is cut short: it is {ISA_LENGTH} characters wide, the document ends "
            f"after {len(document)}"
        )
    separator = document[3]
    values: list[str] = []
    start = 4
    for position, width in enumerate(ISA_WIDTHS, start=1):
        end = start + width
        if position < len(ISA_WIDTHS) and document[end] != separator:
            found = document[start:].split(separator, 1)[0]
            raise fail(
                f"ISA{position:02d} must be {width} characters wide (the ISA is fixed width, "
                f"{ISA_LENGTH} characters), found {found!r}",
                position,
            )
        values.append(document[start:end])
        start = end + 1
    isa_text = document[:ISA_LENGTH]
    if not isa_text.isascii():
        raise fail("the ISA must be plain ASCII")
    delimiters = Delimiters(
        element=separator,
        component=values[15],
        repetition=values[10],
        segment=document[ISA_LENGTH - 1],
    )
    chosen = [delimiters.element, delimiters.component, delimiters.repetition, delimiters.segment]
    if len(set(chosen)) != 4 or any(c.isalnum() or c == " " for c in chosen):
        raise fail(
            "the element separator, ISA11 repetition separator, ISA16 sub-element separator "
            f"and segment terminator must be four different non-alphanumeric characters, found "
            f"{''.join(chosen)!r}"
        )
    isa = Segment(1, "ISA", tuple(values))
    if values[11] != VERSION:
        raise isa.error(f"ISA12 must be {VERSION} (X12 005010), found {values[11]!r}", 12)
    if not values[12].isdigit():
        raise isa.error(f"ISA13 must be a 9-digit control number, found {values[12]!r}", 13)
    if values[13] not in ("0", "1"):
        raise isa.error(f"ISA14 must be 0 or 1, found {values[13]!r}", 14)
    if values[14] not in ("P", "T"):
        raise isa.error(f"ISA15 must be P (production) or T (test), found {values[14]!r}", 15)
    if not values[8].isdigit() or len(values[8]) != 6:
        raise isa.error(f"ISA09 must be a date YYMMDD, found {values[8]!r}", 9)
    parse_date("20" + values[8], isa, 9)
    parse_time(values[9], isa, 10)
    return isa, delimiters


def _split(rest: str, delimiters: Delimiters) -> list[Segment]:
    pieces = rest.split(delimiters.segment)
    segments = []
    for number, piece in enumerate(pieces, start=2):
        # Line breaks and spaces after a terminator are layout, not data.
        piece = piece.lstrip()
        if delimiters.segment == "\n":
            piece = piece.rstrip("\r")
        last = number == len(pieces) + 1
        if not piece:
            if last:
                break
            raise X12Error(
                "an empty segment: two segment terminators with nothing between them",
                segment_index=number,
                segment_id="",
            )
        if last:
            raise X12Error(
                f"the document ends inside a segment: {piece.rstrip()[:20]!r} has no segment "
                f"terminator {delimiters.segment!r}",
                segment_index=number,
                segment_id=piece.split(delimiters.element, 1)[0].rstrip()[:3],
            )
        segment_id, *elements = piece.split(delimiters.element)
        if not _SEGMENT_ID.fullmatch(segment_id):
            raise X12Error(
                f"{segment_id!r} is not a segment id (two or three capitals and digits)",
                segment_index=number,
                segment_id=segment_id[:3],
            )
        segments.append(Segment(number, segment_id, tuple(elements)))
    return segments


def _check_envelope(segments: list[Segment], transaction_set: str) -> Transaction:
    isa = segments[0]
    walk = iter(segments[1:])

    def expect(segment_id: str, after: Segment) -> Segment:
        found = next(walk, None)
        if found is None:
            raise after.error(
                f"the document ends after {after.id}: expected {segment_id}, found nothing"
            )
        if found.id != segment_id:
            raise found.error(f"expected {segment_id} after {after.id}, found {found.id}")
        return found

    gs = expect("GS", isa)
    count(gs, 6, required=True)
    for position in (2, 3):
        text(gs, position, required=True)
    gs_date = _day(gs, 4)
    gs_time = parse_time(text(gs, 5, required=True) or "", gs, 5)
    if gs.get(7) != "X":
        raise gs.error(f"GS07 must be X (ASC X12), found {gs.get(7)!r}", 7)
    if not gs.get(8).startswith(VERSION):
        raise gs.error(f"GS08 must be 005010, found {gs.get(8)!r}", 8)

    st = expect("ST", gs)
    found_set = st.get(1)
    if found_set != transaction_set:
        found_name = NAMES.get(found_set, "a transaction set Sinew does not read")
        raise st.error(
            f"ST01 must be {transaction_set} ({NAMES[transaction_set]}), found "
            f"{found_set!r} ({found_name})",
            1,
        )
    st_control = st.get(2)
    if not 4 <= len(st_control) <= 9:
        raise st.error(
            f"ST02 must be a control number of 4 to 9 characters, found {st_control!r}", 2
        )
    group = FUNCTIONAL_GROUPS[transaction_set]
    if gs.get(1) != group:
        raise gs.error(
            f"GS01 must be {group}: an {transaction_set} travels in a {group} functional group, "
            f"found {gs.get(1)!r}",
            1,
        )

    body: list[Segment] = []
    for segment in walk:
        if segment.id == "SE":
            se = segment
            break
        if segment.id in ENVELOPE:
            raise segment.error(
                f"expected SE to close the transaction set opened by segment {st.index} (ST) "
                f"before {segment.id}, found {segment.id}"
            )
        body.append(segment)
    else:
        last = body[-1] if body else st
        raise last.error("the document ends before SE: expected SE, found nothing")

    _match(se, 2, st, 2)
    stated = count(se, 1, required=True)
    actual = se.index - st.index + 1
    if stated != actual:
        raise se.error(f"SE01 says {stated} segments, the transaction set has {actual}", 1)

    found = next(walk, None)
    if found is not None and found.id == "ST":
        raise found.error(
            "a second transaction set: sinew.x12 reads exactly one ST/SE per document, "
            "send each transaction set in its own interchange"
        )
    if found is None or found.id != "GE":
        raise (found or se).error(f"expected GE after SE, found {found.id if found else 'nothing'}")
    ge = found
    if count(ge, 1, required=True) != 1:
        raise ge.error(f"GE01 says {ge.get(1)} transaction sets, the functional group has 1", 1)
    _match(ge, 2, gs, 6)

    found = next(walk, None)
    if found is not None and found.id == "GS":
        raise found.error(
            "a second functional group: sinew.x12 reads exactly one transaction set per "
            "document, send each in its own interchange"
        )
    if found is None or found.id != "IEA":
        raise (found or ge).error(
            f"expected IEA after GE, found {found.id if found else 'nothing'}"
        )
    iea = found
    if count(iea, 1, required=True) != 1:
        raise iea.error(f"IEA01 says {iea.get(1)} functional groups, the interchange has 1", 1)
    _match(iea, 2, isa, 13)
    extra = next(walk, None)
    if extra is not None:
        raise extra.error(f"expected nothing after IEA, found {extra.id}")

    return Transaction(
        sender_id=isa.get(6).strip(),
        receiver_id=isa.get(8).strip(),
        created_at=datetime.combine(gs_date, gs_time, tzinfo=UTC),
        header=st,
        body=tuple(body),
        trailer=se,
    )


def _day(segment: Segment, position: int) -> date:
    return parse_date(text(segment, position, required=True) or "", segment, position)


def _match(trailer: Segment, position: int, header: Segment, header_position: int) -> None:
    closing, opening = trailer.get(position), header.get(header_position)
    if closing != opening:
        raise trailer.error(
            f"{trailer.name(position)} says control number {closing!r}, "
            f"{header.name(header_position)} says {opening!r}: they must match",
            position,
        )


# Writing


class Cents(Decimal):
    """An amount to write as N2: "1200.00" is written 120000."""


@dataclass(frozen=True, slots=True)
class Clock:
    """The time of day of an aware datetime, written HHMMSS in UTC."""

    at: datetime


Element = str | int | Decimal | date | Clock | None


class Writer:
    """Collects a transaction set's segments, formatting each element by its type, and wraps
    them in an envelope. Errors name the segment as the reader would count it."""

    def __init__(self, transaction_set: str) -> None:
        self.transaction_set = transaction_set
        self.segments: list[tuple[str, list[str]]] = []

    @property
    def next_index(self) -> int:
        return 3 + len(self.segments) + 1  # ISA, GS and ST come first

    def add(self, segment_id: str, *elements: Element) -> None:
        index = self.next_index
        formatted = [
            _format(value, segment_id, position, index)
            for position, value in enumerate(elements, start=1)
        ]
        while formatted and not formatted[-1]:
            formatted.pop()  # X12 drops trailing empty elements
        self.segments.append((segment_id, formatted))

    def interchange(
        self, *, sender_id: str, receiver_id: str, control_number: int, created_at: datetime
    ) -> bytes:
        for name, value in (("sender_id", sender_id), ("receiver_id", receiver_id)):
            if not value or len(value) > 15 or not value.isascii() or not value.isprintable():
                raise ValueError(f"{name} must be 1 to 15 printable ASCII characters: {value!r}")
        if not 1 <= control_number <= 999_999_999:
            raise ValueError(f"control_number must be 1 to 999999999, found {control_number}")
        if created_at.tzinfo is None:
            raise ValueError("created_at must be an aware datetime")
        created = created_at.astimezone(UTC)
        group = FUNCTIONAL_GROUPS[self.transaction_set]
        st_control = f"{control_number:04d}"
        isa_control = f"{control_number:09d}"
        # ISA11 and ISA16 are delimiters themselves: filled in once the delimiters are chosen
        header = [
            ("ISA", ["00", " " * 10, "00", " " * 10, "ZZ", sender_id.ljust(15), "ZZ",
                     receiver_id.ljust(15), created.strftime("%y%m%d"), created.strftime("%H%M"),
                     "", VERSION, isa_control, "0", "P", ""]),
            ("GS", [group, sender_id, receiver_id, created.strftime("%Y%m%d"),
                    created.strftime("%H%M"), str(control_number), "X", "005010"]),
            ("ST", [self.transaction_set, st_control]),
        ]  # fmt: skip
        trailer = [
            ("SE", [str(len(self.segments) + 2), st_control]),
            ("GE", ["1", str(control_number)]),
            ("IEA", ["1", isa_control]),
        ]
        segments = header + self.segments + trailer
        for index, (segment_id, elements) in enumerate(segments, start=1):
            for position, value in enumerate(elements, start=1):
                if any(ord(c) < 32 or ord(c) == 127 for c in value):
                    raise X12Error(
                        f"{segment_id}{position:02d} holds a control character, which X12 "
                        f"cannot carry: {value!r}",
                        segment_index=index,
                        segment_id=segment_id,
                        element=f"{segment_id}{position:02d}",
                    )
        delimiters = _choose_delimiters(segments)
        lines = []
        isa = segments[0][1]
        isa[10], isa[15] = delimiters.repetition, delimiters.component
        for segment_id, elements in segments:
            lines.append(delimiters.element.join([segment_id, *elements]) + delimiters.segment)
        return ("\n".join(lines) + "\n").encode("utf-8")


# Each delimiter comes from its own pool, first choice first; a document whose data holds one
# (a description with "*" in it) gets the next choice, so no data ever needs escaping.
_POOLS = {
    "element": "*|!`",
    "component": ":>\\",
    "repetition": "^{",
    "segment": "~'}",
}


def _choose_delimiters(segments: list[tuple[str, list[str]]]) -> Delimiters:
    used = {c for _, elements in segments for value in elements for c in value}
    chosen = {}
    for role, pool in _POOLS.items():
        free = [c for c in pool if c not in used]
        if not free:
            raise X12Error(
                f"the data uses every character Sinew can choose as the {role} delimiter "
                f"({pool}), so it cannot be written as X12"
            )
        chosen[role] = free[0]
    return Delimiters(**chosen)


def _format(value: Element, segment_id: str, position: int, index: int) -> str:
    def fail(message: str) -> X12Error:
        name = f"{segment_id}{position:02d}"
        return X12Error(
            f"{name} {message}", segment_index=index, segment_id=segment_id, element=name
        )

    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError("a flag is not an X12 element")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise fail(f"cannot carry {value}")
        if isinstance(value, Cents):
            scaled = value.scaleb(2)
            if scaled != scaled.to_integral_value():
                raise fail(f"is an amount in cents (N2); {value} has more than two decimals")
            return str(int(scaled))
        return format(value, "f")
    if isinstance(value, Clock):
        if value.at.tzinfo is None:
            raise fail("needs an aware time")
        return value.at.astimezone(UTC).strftime("%H%M%S")
    if isinstance(value, datetime):
        raise TypeError("write a datetime as its date and a Clock")
    if isinstance(value, date):
        return f"{value.year:04d}{value.month:02d}{value.day:02d}"
    raise TypeError(f"cannot write {value!r} as an X12 element")


def write_moment(writer: Writer, qualifier: str, at: datetime) -> None:
    """DTM with date, time and time code UT; X12 carries whole seconds."""
    if at.tzinfo is None:
        raise ValueError(f"DTM*{qualifier} needs an aware time, found {at!r}")
    utc = at.astimezone(UTC)
    writer.add("DTM", qualifier, utc.date(), Clock(utc), "UT")
