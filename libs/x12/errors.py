"""The one exception sinew.x12 raises for a document it cannot read or write."""


class X12Error(ValueError):
    """A document that breaks X12 or Sinew's profile of it.

    The message says what was expected and what was found, then where: "SE01 says 12 segments,
    the transaction set has 11 (segment 14 (SE))". Segments are counted from the ISA, which is
    segment 1, so an operator can find the place in the original bytes.
    """

    def __init__(
        self,
        message: str,
        *,
        segment_index: int | None = None,
        segment_id: str | None = None,
        element: str | None = None,
    ) -> None:
        self.detail = message
        self.segment_index = segment_index
        self.segment_id = segment_id
        self.element = element
        if segment_index is not None:
            message = f"{message} (segment {segment_index} ({segment_id}))"
        super().__init__(message)
