"""The one base of the errors services raise for people to read, and the HTTP status each kind
means: views answer `error.status` instead of choosing a number per exception class."""

from enum import StrEnum


class ErrorKind(StrEnum):
    INVALID = "invalid"  # the input cannot be used (a malformed body, a bad field): 400
    REFUSED = "refused"  # a well-formed request the rules refuse (say why): 422
    FORBIDDEN = "forbidden"  # the role may not do this: 403
    CONFLICT = "conflict"  # the state moved on (already decided, already running): 409
    TOO_LARGE = "too_large"  # over a size limit: 413


STATUS_FOR_KIND = {
    ErrorKind.INVALID: 400,
    ErrorKind.REFUSED: 422,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_LARGE: 413,
}


class JanitorError(ValueError):
    """A service's refusal, its message fit to show to the person or product that asked."""

    kind: ErrorKind = ErrorKind.REFUSED

    @property
    def status(self) -> int:
        return STATUS_FOR_KIND[self.kind]
