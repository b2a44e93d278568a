"""The single exception type every wire decoder raises on bad input."""


class WireError(ValueError):
    """Input that is not a valid Tandem message; `reason` is a stable short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> "tuple[type[WireError], tuple[str, str]]":
        """Pickle by (reason, detail): a worker process's error reaches its parent intact."""
        return type(self), (self.reason, self.detail)
