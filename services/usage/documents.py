"""What the HL7 and FHIR parsers hand the handler: the canonical usage lines and voids a document
holds, and, for HL7, what an acknowledgement needs. One document may carry several lines (a
DFT^P03 with several FT1, a Procedure with several devices); they are handled together, in the
one transaction of the message that brought them."""

from __future__ import annotations

from typing import Any

import msgspec

from sinew.common.errors import Invalid
from sinew.common.natsconfig import inbox_prefix, user_name
from sinew.contracts.usage import UsageSourceFormat, UsageSubmitted, UsageVoidSubmitted

# The NATS subject an HL7 sender wants its acknowledgement on. JetStream hands the usage
# service no reply subject of the sender's, so the sender names one in this header.
REPLY_TO = "sinew-reply-to"


class AckRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What an HL7 acknowledgement needs from the original MSH, and where it goes."""

    reply_to: str
    control_id: str = ""
    version: str = ""
    sending_application: str = ""
    sending_facility: str = ""
    message_type: str = ""
    trigger_event: str = ""
    accept_ack: str = ""
    application_ack: str = ""


class ClinicalDocument(msgspec.Struct, frozen=True, kw_only=True):
    site: str
    source_format: UsageSourceFormat
    usages: tuple[UsageSubmitted, ...] = ()
    voids: tuple[UsageVoidSubmitted, ...] = ()
    ack: AckRequest | None = None


def reply_subject(headers: dict[str, str], site: str) -> str | None:
    """The sender's reply subject, if it is one the EHR of this site can read: its own inbox
    prefix. Anything else (another party's inbox, a canonical subject) gets no answer, so the
    header cannot make the usage service publish where it should not."""
    subject = (headers or {}).get(REPLY_TO, "").strip()
    allowed = f"{inbox_prefix(user_name('ehr', site))}."
    if not subject.startswith(allowed) or any(c in subject for c in " *>\t\r\n"):
        return None
    return subject


def usage(fields: dict[str, Any], where: str) -> UsageSubmitted:
    """Validate a line against the canonical contract, as the JSON channel would."""
    try:
        return msgspec.convert(fields, UsageSubmitted)
    except msgspec.ValidationError as error:
        raise Invalid(f"{where}: {error}") from None


def void(fields: dict[str, Any], where: str) -> UsageVoidSubmitted:
    try:
        return msgspec.convert(fields, UsageVoidSubmitted)
    except msgspec.ValidationError as error:
        raise Invalid(f"{where}: {error}") from None
