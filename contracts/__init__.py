"""Sinew's versioned message contracts and the catalogue that places them on subjects."""

from . import items, matching, procurement, receiving, replenishment, usage
from .catalogue import INGRESS, SERVICES, Catalogue, Channel, Stream
from .ops import CommandRecorded, DeadLetterRecorded, DeadLetterReplayed

STREAMS = [
    Stream("INGRESS", INGRESS, "Raw documents from outside systems, kept for audit and replay"),
    Stream(
        "CLINICAL_INGRESS",
        INGRESS,
        "Raw EHR documents; they carry patient identifiers, so "
        "only the usage service may read them",
        publishers=("ehr",),
        phi=True,
    ),
    Stream("ITEMS", "items", "Item master, supplier, contract and location changes"),
    Stream("PROCUREMENT", "procurement", "Requisitions, approvals and purchase orders"),
    Stream("RECEIVING", "receiving", "Advance ship notices and goods receipts"),
    Stream("USAGE", "usage", "Clinical consumption and usage exceptions"),
    Stream("MATCHING", "matching", "Invoices, match results, exceptions and payments"),
    Stream("REPLENISHMENT", "replenishment", "Stock positions and replenishment signals"),
    Stream("OBSERVABILITY", "observability", "Alerts and operational events"),
]


def ops_channels(service: str) -> list[Channel]:
    """Every service reports its dead letters and their replays in its own domain."""
    return [
        Channel(
            service,
            "dead-letter",
            "recorded",
            1,
            DeadLetterRecorded,
            service,
            ("observability",),
            "A message the service could not process, and why",
        ),
        Channel(
            service,
            "dead-letter",
            "replayed",
            1,
            DeadLetterReplayed,
            service,
            ("observability",),
            "An operator replayed a dead letter, with the outcome",
        ),
    ]


# The services that take changes from people over HTTP (replenishment and observability do not).
COMMANDED = ("items", "procurement", "receiving", "usage", "matching")


def command_channel(service: str) -> Channel:
    """A service's own record of the changes people made over its API, read back only by it."""
    return Channel(
        service,
        "command",
        "recorded",
        1,
        CommandRecorded,
        service,
        (service,),
        "A change a person made over the service's HTTP API (read back only by the service,"
        " to rebuild its state)",
    )


CATALOGUE = Catalogue(
    STREAMS,
    [
        *items.CHANNELS,
        *procurement.CHANNELS,
        *receiving.CHANNELS,
        *usage.CHANNELS,
        *matching.CHANNELS,
        *replenishment.CHANNELS,
        *(channel for service in SERVICES for channel in ops_channels(service)),
        *(command_channel(service) for service in COMMANDED),
    ],
)

__all__ = [
    "CATALOGUE",
    "COMMANDED",
    "STREAMS",
    "Catalogue",
    "Channel",
    "Stream",
    "command_channel",
    "ops_channels",
]
