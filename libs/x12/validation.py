"""Checks every document type shares: line numbers, hash totals, and the contract itself."""

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from .errors import X12Error
from .segments import Segment

S = TypeVar("S", bound=msgspec.Struct)


def distinct_lines(lines: Sequence[tuple[Any, Segment]]) -> None:
    seen: set[int] = set()
    for line, segment in lines:
        if line.line_number in seen:
            raise segment.error(
                f"{segment.name(1)} says line {line.line_number}, which an earlier "
                f"{segment.id} already numbers",
                1,
            )
        seen.add(line.line_number)


def hash_total(quantities: Iterable[Decimal]) -> Decimal:
    return sum(quantities, Decimal(0))


def checked(document: S) -> S:
    """The Struct as msgspec would decode it, so a parsed document meets the contract exactly
    as a JSON one does (site pattern, lengths ...). Elements are checked where they are read;
    this catches what only the contract knows."""
    try:
        msgspec.json.decode(msgspec.json.encode(document), type=type(document))
    except msgspec.ValidationError as error:
        raise X12Error(
            f"the document does not make a valid {type(document).__name__}: {error}"
        ) from None
    return document
