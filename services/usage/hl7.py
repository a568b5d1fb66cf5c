"""HL7 v2 DFT^P03 in, HL7 ACK out, both through hl7apy.

Each FT1 is one usage line (or, as a credit, a void); the PRT segments of its financial group
carry the device: PRT-10 the whole UDI as scanned, PRT-16 the device identifier, PRT-18 expiry,
PRT-19 lot, PRT-20 serial (the device fields of PRT arrived in HL7 2.8.2, the version read here).

Where each canonical field comes from:
  source_usage_id  FT1-2 transaction id (a credit names the charge it reverses by the same id)
  case_id          PV1-19 visit number, else FT1-23 filler order number
  used_at          FT1-4 transaction date (DTM; without an offset it is taken as UTC)
  charge or void   FT1-6 transaction type: CG charge; CD credit or CR reversal void the line
  quantity, unit   FT1-10 quantity (default 1); FT1-43.2 unit (default EA)
  location_id      FT1-16 point of care, else PV1-3
  physician_id     FT1-20 performed by, else FT1-21 ordered by
  procedure        FT1-25 procedure code and its text
  item             PRT-10 UDI, else PRT-16 GTIN, else FT1-34 item number (the item master id)
  patient          PID-3 first identifier (the MRN); PID-5 name. Neither leaves the service.

Validation is hl7apy's, strict, against the version in MSH-12. Every validator message is
redacted of the values of the patient segments before it becomes a dead-letter reason, because
the reason is logged and published and some of hl7apy's messages quote the offending value.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.exceptions import HL7apyException, InvalidEncodingChars, ParserError
from hl7apy.parser import parse_message, parse_segment
from hl7apy.utils import get_date_info, get_datetime_info

from sinew.common.errors import Invalid

from .documents import AckRequest, ClinicalDocument, reply_subject, usage, void
from .domain import GTIN, redact

VERSIONS = ("2.8.2",)  # PRT-16..22 (device identifier, expiry, lot, serial) arrive in 2.8.2
ACK_VERSION = "2.8.2"
CHARGE = {"CG"}
CREDIT = {"CD", "CR"}
# Segments whose every value is patient-identifying: the patient, next of kin, guarantor,
# insurance.
PATIENT_SEGMENTS = {"PID", "PD1", "NK1", "GT1", "IN1", "IN2", "IN3", "ACC"}


def read_dft_p03(data: bytes, headers: dict[str, str], site: str) -> ClinicalDocument:
    text = normalise(data)
    patient_values = patient_identifiers(text)

    def refuse(reason: str, cause: str) -> Invalid:
        return Invalid(redact(reason, patient_values), cause)

    msh = read_msh(text)
    if msh is None:
        raise refuse("HL7 message unreadable: it does not start with a readable MSH", "malformed")
    version = first(msh.msh_12)
    if version not in VERSIONS:
        raise refuse(
            f"HL7 version {version or '(none)'} is not read for usage; send {', '.join(VERSIONS)}",
            "malformed",
        )
    kind = f"{value(msh.msh_9.msg_1)}^{value(msh.msh_9.msg_2)}"
    if kind != "DFT^P03":
        raise refuse(f"HL7 message type {kind} is not a usage; send DFT^P03", "malformed")
    try:
        message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    except (ParserError, InvalidEncodingChars) as error:
        raise refuse(f"HL7 message unreadable: {error}", "malformed") from None
    except (HL7apyException, ValueError) as error:
        raise refuse(f"HL7 {version} validation failed: {error}", "invalid") from None
    try:
        message.validate()
    except (HL7apyException, ValueError) as error:
        raise refuse(f"HL7 {version} validation failed: {error}", "invalid") from None
    try:
        return _document(message, headers, site)
    except Invalid as problem:
        raise refuse(problem.reason, problem.cause) from None


def normalise(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # HL7 v2 feeds are often 8859-1
    # Segments end in CR; files and test tools often carry LF or CRLF.
    segments = [s for s in re.split(r"\r\n|\r|\n", text.strip().lstrip("\x0b").rstrip("\x1c"))]
    return "\r".join(s for s in segments if s.strip())


def patient_identifiers(text: str) -> set[str]:
    """Every value (field, component, subcomponent, repetition) of the patient segments."""
    if len(text) < 8 or not text.startswith("MSH"):
        return set()
    field_sep, encoding = text[3], text[4:8]
    values: set[str] = set()
    for segment in text.split("\r"):
        fields = segment.split(field_sep)
        if fields[0] not in PATIENT_SEGMENTS:
            continue
        for field in fields[1:]:
            values.add(field)
            for piece in re.split("|".join(re.escape(c) for c in encoding if c), field):
                values.add(piece)
    return {v for v in values if v.strip()}


def value(element) -> str:
    """The text of a field or component, '' when absent."""
    if element is None:
        return ""
    try:
        text = element.to_er7()
    except (HL7apyException, AttributeError, IndexError):
        return ""
    return text.strip()


def first(element) -> str:
    """The first component of a field, '' when absent."""
    text = value(element)
    return text.split("^", 1)[0].split("&", 1)[0]


def when(text: str, where: str) -> datetime:
    try:
        moment, _, offset, _ = get_datetime_info(text)
    except ValueError:
        raise Invalid(f"{where}: {text!r} is not an HL7 date and time") from None
    if not offset:
        return moment.replace(tzinfo=UTC)
    sign = 1 if offset[0] == "+" else -1
    delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
    return (moment - sign * delta).replace(tzinfo=UTC)


def day(text: str, where: str) -> date:
    try:
        return get_date_info(text[:8])[0].date()
    except ValueError:
        raise Invalid(f"{where}: {text!r} is not an HL7 date") from None


def _document(message: Message, headers: dict[str, str], site: str) -> ClinicalDocument:
    pid, pv1 = message.pid, _segment(message, "PV1")
    mrn = first(pid.pid_3)
    if not mrn:
        raise Invalid("PID-3: the patient identifier (MRN) is required")
    patient_name = value(pid.pid_5)[:1000] or None
    usages, voids = [], []
    for n, group in enumerate(message.children.get("DFT_P03_FINANCIAL"), start=1):
        ft1 = group.ft1
        where = f"FT1 #{n}"
        transaction_type = first(ft1.ft1_6).upper()
        source_usage_id = value(ft1.ft1_2)
        if not source_usage_id:
            raise Invalid(f"{where} FT1-2: the transaction id is required to void it later")
        case_id = (first(pv1.pv1_19) if pv1 else "") or first(ft1.ft1_23)
        if not case_id:
            raise Invalid(f"{where}: no case (PV1-19 visit number or FT1-23 filler order number)")
        used_at = when(first(ft1.ft1_4), f"{where} FT1-4")
        if transaction_type in CREDIT:
            voids.append(
                void(
                    {
                        "site": site,
                        "source_usage_id": source_usage_id,
                        "case_id": case_id,
                        "voided_at": used_at,
                        "reason": f"HL7 FT1 {transaction_type} {value(message.msh.msh_10)}",
                    },
                    where,
                )
            )
            continue
        if transaction_type not in CHARGE:
            raise Invalid(
                f"{where} FT1-6: transaction type {transaction_type or '(empty)'} is neither a "
                "charge (CG) nor a credit or reversal (CD, CR)"
            )
        fields = _line(message, group, site, where, case_id, used_at, mrn)
        usages.append(usage({**fields, "patient_name": patient_name}, where))
    if not usages and not voids:
        raise Invalid("DFT^P03 without FT1 lines")
    return ClinicalDocument(
        site=site,
        source_format="hl7v2",
        usages=tuple(usages),
        voids=tuple(voids),
        ack=ack_request(message.msh, headers, site),
    )


def _line(message, group, site, where, case_id, used_at, mrn) -> dict:
    ft1, pv1 = group.ft1, _segment(message, "PV1")
    try:
        quantity = Decimal(value(ft1.ft1_10) or "1")
    except InvalidOperation:
        raise Invalid(f"{where} FT1-10: the quantity is not a number") from None
    if quantity <= 0:
        raise Invalid(f"{where} FT1-10: a charge needs a quantity above 0; void with a credit")
    unit = first(ft1.ft1_43.cq_2) if value(ft1.ft1_43) else ""
    fields = {
        "site": site,
        "source_usage_id": value(ft1.ft1_2),
        "case_id": case_id,
        "procedure_code": first(ft1.ft1_25),
        "procedure_name": _component(ft1.ft1_25, 2) or None,
        "physician_id": first(ft1.ft1_20) or first(ft1.ft1_21),
        "location_id": first(ft1.ft1_16) or (first(pv1.pv1_3) if pv1 else ""),
        "mrn": mrn,
        "quantity": {"value": quantity, "uom": unit or "EA"},
        "used_at": used_at,
        "item_id": first(ft1.ft1_34) or None,
    }
    for name, segment in (("procedure_code", "FT1-25"), ("physician_id", "FT1-20")):
        if not fields[name]:
            raise Invalid(f"{where} {segment}: required for a usage")
    if not fields["location_id"]:
        raise Invalid(f"{where}: no location (FT1-16 or PV1-3)")
    device = next((p for p in group.children.get("PRT") if _is_device(p)), None)
    if device is not None:
        fields |= _device(device, where)
    if not (fields["item_id"] or fields.get("udi") or fields.get("gtin")):
        raise Invalid(f"{where}: no item (a PRT with the UDI or GTIN, or FT1-34 item number)")
    return fields


def _device(prt, where: str) -> dict:
    fields: dict = {}
    udi = first(prt.prt_10)
    identifier = first(prt.prt_16)
    if udi:
        fields["udi"] = udi
    elif identifier and GTIN.match(identifier):
        fields["gtin"] = identifier
    elif identifier:
        fields["udi"] = identifier  # an HIBC device identifier reads as a UDI without lot
    if value(prt.prt_18):
        fields["expiry"] = day(value(prt.prt_18), f"{where} PRT-18")
    if value(prt.prt_19):
        fields["lot"] = value(prt.prt_19)
    if value(prt.prt_20):
        fields["serial"] = value(prt.prt_20)
    return fields


def _is_device(prt) -> bool:
    return any(value(f) for f in (prt.prt_10, prt.prt_16, prt.prt_19, prt.prt_20))


def _segment(message, name: str):
    """A segment at the top of the message or in its visit group (PV1 moved up in 2.8.2)."""
    for child in message.children:
        if child.name == name:
            return child
        if child.name == "DFT_P03_VISIT":
            found = next((c for c in child.children if c.name == name), None)
            if found is not None:
                return found
    return None


def _component(field, n: int) -> str:
    parts = value(field).split("^")
    return parts[n - 1] if len(parts) >= n else ""


# -- acknowledgements -------------------------------------------------------------------------


def ack_request(msh, headers: dict[str, str], site: str) -> AckRequest | None:
    reply_to = reply_subject(headers, site)
    if reply_to is None:
        return None
    return AckRequest(
        reply_to=reply_to,
        control_id=value(msh.msh_10),
        version=first(msh.msh_12),
        sending_application=first(msh.msh_3),
        sending_facility=first(msh.msh_4),
        message_type=value(msh.msh_9.msg_1),
        trigger_event=value(msh.msh_9.msg_2),
        accept_ack=value(msh.msh_15),
        application_ack=value(msh.msh_16),
    )


def read_msh(text: str):
    """The MSH alone, read tolerantly: enough to answer a message that does not parse whole."""
    try:
        msh = parse_segment(text.split("\r", 1)[0], validation_level=VALIDATION_LEVEL.TOLERANT)
    except (HL7apyException, ValueError, IndexError, AttributeError):
        return None
    return msh if msh.name == "MSH" else None


def ack_request_from_raw(data: bytes, headers: dict[str, str], site: str) -> AckRequest | None:
    """The same from a dead letter, from its MSH alone; without a readable MSH the ACK names no
    control id."""
    reply_to = reply_subject(headers, site)
    if reply_to is None:
        return None
    msh = read_msh(normalise(data))
    try:
        return ack_request(msh, headers, site) if msh is not None else AckRequest(reply_to=reply_to)
    except (HL7apyException, ValueError, IndexError, AttributeError):
        return AckRequest(reply_to=reply_to)


def build_ack(
    request: AckRequest, code: str, text: str, *, site: str, control_id: str, at: datetime
) -> bytes:
    """An ACK (MSA-1 AA/AE/AR, MSA-2 the original MSH-10) with an ERR segment on error."""
    version = request.version if request.version in VERSIONS else ACK_VERSION
    ack = Message("ACK", version=version, validation_level=VALIDATION_LEVEL.TOLERANT)
    ack.msh.msh_3 = "SINEW"
    ack.msh.msh_4 = site
    if request.sending_application:
        ack.msh.msh_5 = request.sending_application
    if request.sending_facility:
        ack.msh.msh_6 = request.sending_facility
    ack.msh.msh_7 = at.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")
    ack.msh.msh_9 = f"ACK^{request.trigger_event or 'P03'}^ACK"
    ack.msh.msh_10 = control_id
    ack.msh.msh_11 = "P"
    ack.msh.msh_12 = version
    ack.msa.msa_1 = code
    if request.control_id:
        ack.msa.msa_2 = request.control_id
    if code != "AA":
        # HL7 table 0357: 200 unsupported message, 207 application error; the text says why.
        ack.err.err_3 = (
            "200^Unsupported message type^HL70357"
            if code == "AR"
            else ("207^Application internal error^HL70357")
        )
        ack.err.err_4 = "E"
        # hl7apy escapes the delimiters a validator's message may contain.
        ack.err.err_8 = " ".join(text.split())[:900]
    return ack.to_er7().encode()
