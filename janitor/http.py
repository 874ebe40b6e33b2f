"""Reading a request body under a size cap: one rule for every endpoint that takes a raw body
(Stripe's webhooks, the activity API)."""

from janitor.errors import ErrorKind, JanitorError


class BodyTooLarge(JanitorError):
    """The body is over the cap (declared or actually sent); the message says the cap."""

    kind = ErrorKind.TOO_LARGE

    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


class ContentLengthInvalid(JanitorError):
    """The Content-Length header is not a number."""

    kind = ErrorKind.INVALID


def body_read_capped(request, limit: int) -> bytes:
    """The body, at most `limit` bytes: refused from the header when it declares more, and
    read with a cap either way (read(), not .body: a lying Content-Length cannot exceed it)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ContentLengthInvalid("invalid Content-Length") from None
    if declared > limit:
        raise BodyTooLarge(limit)
    body = request.read(limit + 1)
    if len(body) > limit:
        raise BodyTooLarge(limit)
    return body
