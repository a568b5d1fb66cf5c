"""The failure classes a handler can signal, and how the runtime treats each."""


class Invalid(Exception):
    """The message can never be processed as sent: it becomes a dead letter and is terminated."""

    def __init__(self, reason: str, cause: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause


class Transient(Exception):
    """Worth trying again later (a dependency is down): nak with backoff, up to max_deliver.

    Any exception a handler does not expect is treated the same way, so a bug in a handler
    delays a message and finally dead-letters it, but never loses it."""
