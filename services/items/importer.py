"""Bulk import of a site's master data (`sinew import FILE`): read a JSON-lines or CSV file into
MDM upserts, reject the rows that fail their contract or the item master's own rules, and publish
the rest to the MDM ingress subject exactly as the MDM feed would.

Reading is pure (no NATS, no files held open); `send` and `run_import` do the publishing.

JSON lines: one MasterDataUpsert per line, with its "kind". CSV: one kind per file (--kind),
a header row naming the fields; lists are written as
    packs            BX=10;CA=100@10812345000013     unit=base units[@GTIN]
    supplier_parts   MEDSUP:MS-GW-035@BX;OTHER:123   supplier:part[@unit]
    prices           GUIDEWIRE-035@BX=450.00|5=430.00;STENT-DES-3x18@EA=1200.00
                     item@unit=price[|from quantity=price...]
    par_levels       STENT-DES-3x18=4/2              item=par/reorder point
Blank cells leave a field at its default; booleans are true/false, yes/no, y/n or 1/0. In
both formats a missing site is the one being loaded and a missing version is 1.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import msgspec

from sinew.contracts import CATALOGUE
from sinew.contracts.envelope import Envelope, new_event_id, utc_now
from sinew.contracts.items import MasterDataUpsert

from .domain import KINDS, identity_of, record_problems

CHANNEL = CATALOGUE.channel("ingress.masterdata.upserted.v1")
_encoder = msgspec.json.Encoder(decimal_format="string")
_TRUE, _FALSE = {"true", "yes", "y", "1"}, {"false", "no", "n", "0"}


class ImportFileError(ValueError):
    """The file as a whole cannot be read (an unknown kind or column): nothing is sent."""


@dataclass(frozen=True)
class ImportRow:
    line: int
    record: Any | None = None  # a MasterDataUpsert
    problem: str | None = None


# -- reading ------------------------------------------------------------------------------------


def _checked(line: int, fields: Any, site: str, *, strict: bool = True) -> ImportRow:
    if not isinstance(fields, dict):
        return ImportRow(line, problem="not a JSON object")
    fields.setdefault("site", site)
    fields.setdefault("version", 1)
    if fields["site"] != site:
        return ImportRow(line, problem=f"site {fields['site']!r} is not the site loaded ({site})")
    try:
        record = msgspec.convert(fields, MasterDataUpsert, strict=strict)
    except msgspec.ValidationError as error:
        return ImportRow(line, problem=str(error))
    problems = record_problems(record)
    if problems:
        return ImportRow(line, record, problem="; ".join(problems))
    return ImportRow(line, record)


def read_json_lines(lines: Iterable[str], site: str) -> Iterator[ImportRow]:
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            fields = json.loads(text)
        except ValueError as error:
            yield ImportRow(number, problem=f"malformed JSON: {error}")
            continue
        yield _checked(number, fields, site)


def _split(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(";") if part.strip()]


def _packs(cell: str) -> list[dict]:
    packs = []
    for part in _split(cell):
        pack, _, gtin = part.partition("@")
        uom, equals, units = pack.partition("=")
        if not equals:
            raise ValueError(f"{part!r} is not unit=base units[@GTIN]")
        packs.append({"uom": uom, "base_units": units, **({"gtin": gtin} if gtin else {})})
    return packs


def _supplier_parts(cell: str) -> list[dict]:
    parts = []
    for part in _split(cell):
        named, _, uom = part.partition("@")
        supplier, colon, number = named.partition(":")
        if not colon:
            raise ValueError(f"{part!r} is not supplier:part[@unit]")
        parts.append(
            {"supplier_id": supplier, "part_number": number, **({"uom": uom} if uom else {})}
        )
    return parts


def _prices(cell: str) -> list[dict]:
    prices = []
    for part in _split(cell):
        head, *tiers = part.split("|")
        priced, equals, unit_price = head.partition("=")
        item_id, at, uom = priced.rpartition("@")
        if not (equals and at):
            raise ValueError(f"{part!r} is not item@unit=price[|from quantity=price...]")
        tier_list = []
        for tier in tiers:
            minimum, tier_equals, tier_price = tier.partition("=")
            if not tier_equals:
                raise ValueError(f"tier {tier!r} of {item_id} is not quantity=price")
            tier_list.append({"min_quantity": minimum, "unit_price": tier_price})
        prices.append(
            {"item_id": item_id, "uom": uom, "unit_price": unit_price, "tiers": tier_list}
        )
    return prices


def _par_levels(cell: str) -> list[dict]:
    levels = []
    for part in _split(cell):
        item_id, equals, levels_text = part.rpartition("=")
        par, slash, reorder = levels_text.partition("/")
        if not (equals and slash):
            raise ValueError(f"{part!r} is not item=par/reorder point")
        levels.append({"item_id": item_id, "par_level": par, "reorder_point": reorder})
    return levels


LIST_COLUMNS = {
    "packs": _packs,
    "supplier_parts": _supplier_parts,
    "prices": _prices,
    "par_levels": _par_levels,
}


def read_csv(lines: Iterable[str], kind: str, site: str) -> Iterator[ImportRow]:
    if kind not in KINDS:
        raise ImportFileError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
    fields = {f.name: f for f in msgspec.structs.fields(KINDS[kind].upsert)}
    reader = csv.reader(lines)
    header = [name.strip() for name in next(reader, [])]
    unknown = [name for name in header if name not in fields and name != "kind"]
    if unknown or not header:
        raise ImportFileError(
            f"columns {unknown or '(none)'} are not fields of {kind}; "
            f"its fields are {', '.join(fields)}"
        )
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        line = reader.line_num
        if len(cells) != len(header):
            yield ImportRow(line, problem=f"{len(cells)} cells for {len(header)} columns")
            continue
        values: dict[str, Any] = {"kind": kind}
        try:
            for name, cell in zip(header, cells, strict=True):
                cell = cell.strip()
                if not cell or name == "kind":
                    continue
                if name in LIST_COLUMNS:
                    values[name] = LIST_COLUMNS[name](cell)
                elif fields[name].type is bool and cell.lower() in _TRUE | _FALSE:
                    values[name] = cell.lower() in _TRUE
                else:
                    values[name] = cell
        except ValueError as error:
            yield ImportRow(line, problem=f"column {name}: {error}")
            continue
        if "kind" in header and cells[header.index("kind")].strip() not in ("", kind):
            yield ImportRow(line, problem=f"kind {cells[header.index('kind')]!r} in a {kind} file")
            continue
        # Every cell is text: let msgspec read numbers and dates out of it.
        yield _checked(line, values, site, strict=False)


def read_records(path: Path, *, site: str, kind: str | None = None) -> list[ImportRow]:
    lines = path.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    if path.suffix.lower() == ".csv":
        if kind is None:
            raise ImportFileError("a CSV file holds one kind of record: say which with --kind")
        return list(read_csv(lines, kind, site))
    return list(read_json_lines(lines, site))


# -- publishing, as the MDM feed does -----------------------------------------------------------


def message_id(site: str, file: str, row: ImportRow, payload: bytes) -> str:
    """The same file, line and content always give the same id, so a re-run is recognised as
    one (by JetStream within its window, by the items service's inbox after); a line edited
    since is a new message."""
    name = f"sinew-import:{site}:{file}:{row.line}:{payload.decode()}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def source_of(site: str, source: str) -> str:
    """The ce-source: the items service publishes what an import sent with source "import"."""
    return f"/mdm/{site}/import" if source == "import" else f"/mdm/{site}"


@dataclass
class ImportReport:
    sent: int = 0
    already_sent: int = 0  # dropped by JetStream as duplicates: a re-run of the same file
    rejected: list[ImportRow] = field(default_factory=list)


class Progress:
    """A progress bar on stderr (one line redrawn on a terminal, a line per tenth otherwise)."""

    def __init__(self, total: int, stream: TextIO, width: int = 30) -> None:
        self.total, self.stream, self.width = max(total, 1), stream, width
        self.done = 0
        self.interactive = stream.isatty()
        self._shown = -1

    def advance(self, n: int = 1) -> None:
        self.done += n
        tenth = self.done * 10 // self.total
        if not self.interactive and tenth == self._shown:
            return
        self._shown = tenth
        filled = self.width * self.done // self.total
        bar = "#" * filled + "-" * (self.width - filled)
        end = "\r" if self.interactive else "\n"
        self.stream.write(f"[{bar}] {self.done}/{self.total} rows{end}")
        self.stream.flush()

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")


async def send(
    js,
    rows: list[ImportRow],
    *,
    site: str,
    file: str,
    source: str = "import",
    progress: Progress | None = None,
    window: int = 256,
) -> ImportReport:
    report = ImportReport()
    subject = CHANNEL.subject(site)
    correlation_id = new_event_id()  # one import run, one business transaction
    in_flight: deque[asyncio.Future] = deque()

    async def confirm() -> None:
        ack = await asyncio.wait_for(in_flight.popleft(), timeout=30)
        if ack.duplicate:
            report.already_sent += 1
        else:
            report.sent += 1
        if progress:
            progress.advance()

    for row in rows:
        if row.problem is not None:
            report.rejected.append(row)
            if progress:
                progress.advance()
            continue
        payload = _encoder.encode(row.record)
        envelope = Envelope(
            id=message_id(site, file, row, payload),
            source=source_of(site, source),
            type=CHANNEL.ce_type,
            time=utc_now(),
            site=site,
            correlation_id=correlation_id,
            subject=identity_of(row.record),
        )
        in_flight.append(await js.publish_async(subject, payload, headers=envelope.headers()))
        if len(in_flight) >= window:
            await confirm()
    while in_flight:
        await confirm()
    return report


async def run_import(
    path: Path,
    *,
    site: str,
    nats_url: str,
    data: Path,
    kind: str | None = None,
    source: str = "import",
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """The `sinew import` command: 0 when every row was sent, 1 when some were rejected."""
    import nats

    try:
        file, rows = await asyncio.to_thread(_load, path, site, kind)
    except (ImportFileError, OSError, UnicodeDecodeError) as error:
        err.write(f"cannot import {path}: {error}\n")
        return 2
    user, password = _mdm_credentials(site, data)
    nc = await nats.connect(
        nats_url,
        user=user,
        password=password,
        name=f"sinew-import-{site}",
        inbox_prefix=f"_INBOX_{user}" if user else "_INBOX",
        connect_timeout=5,
        max_reconnect_attempts=2,
    )
    progress = Progress(len(rows), err)
    try:
        report = await send(
            nc.jetstream(),
            rows,
            site=site,
            file=file,
            source=source,
            progress=progress,
        )
    finally:
        progress.close()
        await nc.close()
    out.write(
        f"{path}: {report.sent} sent, {report.already_sent} already sent, "
        f"{len(report.rejected)} rejected\n"
    )
    for row in report.rejected:
        out.write(f"  line {row.line}: {row.problem}\n")
    if report.sent:
        out.write(
            "the items service checks each record against what it holds; a record it rejects "
            "becomes a dead letter (sinew dlq list --service items)\n"
        )
    return 1 if report.rejected else 0


def _load(path: Path, site: str, kind: str | None) -> tuple[str, list[ImportRow]]:
    return str(path.resolve()), read_records(path, site=site, kind=kind)


def _mdm_credentials(site: str, data: Path) -> tuple[str | None, str | None]:
    """Publish as the site's MDM user: from SINEW_NATS_USER/PASSWORD, or the site's secrets."""
    if os.environ.get("SINEW_NATS_USER"):
        return os.environ["SINEW_NATS_USER"], os.environ.get("SINEW_NATS_PASSWORD")
    credentials = data / "secrets" / "nats-credentials.json"
    user = f"mdm-{site}"
    if credentials.exists() and (password := json.loads(credentials.read_text()).get(user)):
        return user, password
    return None, None
