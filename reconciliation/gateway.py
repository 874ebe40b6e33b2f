"""The one module that talks to Stripe: keyword-only calls in, plain Python values out."""

from __future__ import annotations

import functools
import io
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import stripe
from django.conf import settings
from django.utils import timezone

if TYPE_CHECKING:
    from stripe.params import DisputeUpdateParams, DisputeUpdateParamsEvidence
    from stripe.params.billing_portal import SessionCreateParams

logger = logging.getLogger("janitor.gateway")

# The API version the pinned SDK asks for (and so the shapes its answers come in).
PINNED_API_VERSION: str = stripe.api_version

DEFAULT_TIMEOUT_SECONDS = 20.0
# Backoff between tries of one call: base * 2**try, capped, with jitter (stripe-facts.md).
RETRY_CAP_SECONDS = 5.0
# Error codes of a 429 that a later try can get past: the rate limiter, the concurrency
# limiter (also "rate_limit") and a lock held by another request on the same object.
RETRYABLE_429_CODES = frozenset({"rate_limit", "lock_timeout", None})

# After a 429 the shared request rate is halved (never below this share of
# JANITOR_STRIPE_MAX_RPS) and grows back by this share a second: the whole process slows down
# together, so the retry of a refused request is not refused again.
RATE_FLOOR_SHARE = 0.1
RATE_RECOVERY_PER_SECOND = 0.1

# Stripe accepts these for dispute evidence; it sniffs the type from the upload itself.
EVIDENCE_FILE_EXTENSIONS = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "image/png": ".png"}


class GatewayError(Exception):
    """A Stripe call failed; `retryable` says whether the same call may succeed later."""

    def __init__(
        self, message: str, *, retryable: bool, status: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.code = code


class GatewayAuthError(GatewayError):
    """Stripe refused the key itself (401) or its permissions (403): no retry can help, and
    no decision should be made on what was read so far."""


class GatewayNotFound(GatewayError):
    """One object does not exist at Stripe (404): a fact about that object, not an outage."""


class WebhookSignatureInvalid(Exception):
    """The body is not provably from Stripe; `reason` is safe to log. `stale` says the
    signature's time was outside the tolerance (a replay or clock skew), not a bad signature."""

    def __init__(self, reason: str, *, stale: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stale = stale


class WebhookPayloadInvalid(Exception):
    """The signature matched but the body is not a Stripe event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- Client ---------------------------------------------------------------------------------


def _client() -> stripe.StripeClient:
    # Settings are read per call so tests (and a changed key) take effect without a restart.
    api_key = settings.STRIPE_API_KEY
    if not api_key:
        raise GatewayError("STRIPE_API_KEY is not set", retryable=False)
    return _client_for(
        api_key=api_key,
        base=(settings.STRIPE_API_BASE or "").rstrip("/"),
        timeout=float(getattr(settings, "STRIPE_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS)),
    )


@lru_cache(maxsize=8)
def _client_for(*, api_key: str, base: str, timeout: float) -> stripe.StripeClient:
    # Uploads go to files.stripe.com by default; a local base must serve both.
    base_addresses: Any = {"api": base, "files": base} if base else None
    # The SDK's own retries are off: it does not retry a plain 429, and two retry loops
    # would multiply. _with_retries below is the one policy for every call.
    return stripe.StripeClient(
        api_key,
        base_addresses=base_addresses,
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


def _should_retry_header(exc: stripe.StripeError) -> bool | None:
    headers = exc.headers or {}
    value = next((v for k, v in headers.items() if k.lower() == "stripe-should-retry"), None)
    if value is None:
        return None
    return str(value).strip().lower() == "true"


def _gateway_error(exc: stripe.StripeError) -> GatewayError:
    status = exc.http_status
    code = exc.code or (exc.error.code if exc.error is not None else None)
    told = _should_retry_header(exc)
    if isinstance(exc, stripe.APIConnectionError):
        # The SDK marks TLS and local configuration failures as not worth retrying.
        retryable = bool(exc.should_retry)
    elif told is not None:
        # Stripe says so itself (e.g. a 409 it will never accept, or a 429 worth another try).
        retryable = told
    elif isinstance(exc, stripe.RateLimitError) or status == 429:
        retryable = code in RETRYABLE_429_CODES
    elif isinstance(exc, stripe.IdempotencyError):
        retryable = False
    else:
        # 409 is lock contention on Stripe's side; no status means an unreadable response.
        retryable = status is None or status >= 500 or status == 409
    message = exc.user_message or type(exc).__name__
    if status in (401, 403):
        what = "rejected" if status == 401 else "lacks a permission this call needs"
        return GatewayAuthError(
            f"Stripe answered {status}: STRIPE_API_KEY is {what}. Stripe said: {message}",
            retryable=False,
            status=status,
            code=code,
        )
    if status == 404:
        return GatewayNotFound(message, retryable=False, status=status, code=code)
    return GatewayError(message, retryable=retryable, status=status, code=code)


def _retry_delay(attempt: int) -> float:
    # "Equal jitter": half the step fixed, half random, so tries spread out but never bunch
    # at zero (many workers hitting one rate limit must not come back together).
    base = float(getattr(settings, "STRIPE_RETRY_BASE_SECONDS", 0.5))
    step: float = min(base * 2**attempt, RETRY_CAP_SECONDS)
    return step / 2 + random.uniform(0, step / 2)


T = TypeVar("T")


class _RequestRate:
    """The one budget of requests a second for every Stripe call this process makes, from any
    thread (the parallel listing's readers, a webhook's lookup, an evidence upload).

    Each try of a call takes the next free slot, 1 / JANITOR_STRIPE_MAX_RPS seconds after the
    previous one: requests are spaced evenly rather than sent in bursts, since Stripe counts
    per second and per endpoint. A 429 pauses every caller until its Retry-After (or the
    backoff) has passed and halves the rate, which then grows back over about ten seconds:
    the limit the server enforces is learnt by the whole process at once, instead of each
    thread being refused in turn.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget pauses and slow-downs (a new process starts like this; tests call it)."""
        with self._lock:
            self._next_free = 0.0
            self._share = 1.0
            self._share_at = time.monotonic()
            # When the latest pause began (a 429), and how many there have been.
            self._paused_at = float("-inf")
            self._pauses = 0

    def acquire(self) -> float:
        """Wait for this process's next request slot; returns when it was taken (monotonic).

        A slot handed out before a pause began is not used: a request that waited for it would
        go out during the pause, fill the server's window again, and have the retried request
        refused a second time. It takes a new slot, after the pause."""
        max_rps = float(getattr(settings, "JANITOR_STRIPE_MAX_RPS", 20))
        while True:
            with self._lock:
                now = time.monotonic()
                self._share = min(
                    1.0, self._share + (now - self._share_at) * RATE_RECOVERY_PER_SECOND
                )
                self._share_at = now
                slot = max(now, self._next_free)
                self._next_free = slot + 1.0 / (max_rps * self._share)
                pauses = self._pauses
            if slot > now:
                time.sleep(slot - now)
            with self._lock:
                if self._pauses == pauses:
                    return time.monotonic()

    def slow_down(self, *, pause: float, sent_at: float | None = None) -> None:
        """A request was refused for its rate: nobody sends before `pause` seconds from now,
        and the rate is halved, once a pause: a request sent before the latest pause began
        was refused by the same crowding, and only extends it."""
        with self._lock:
            now = time.monotonic()
            if sent_at is None or sent_at >= self._paused_at:
                self._share = max(RATE_FLOOR_SHARE, self._share / 2)
                self._share_at = now
                self._paused_at = now
            if now + pause > self._next_free:
                self._next_free = now + pause
                self._pauses += 1  # slots handed out before it are taken again after it


_RATE = _RequestRate()


def request_rate_reset() -> None:
    """Clear the shared request rate's pauses and slow-downs (between tests)."""
    _RATE.reset()


def _retry_after(exc: stripe.StripeError) -> float:
    """Seconds the server asked us to wait (Retry-After), 0 when it did not say."""
    headers = exc.headers or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(str(value))) if value is not None else 0.0
    except ValueError:
        return 0.0  # an HTTP date: Stripe sends seconds; the backoff applies instead


def _with_retries(call: Callable[[], T], *, what: str, retries: int | None = None) -> T:
    """Run one Stripe call, retrying what a later try can fix (429 rate and lock limits,
    5xx, connection failures) with exponential backoff and jitter, up to
    STRIPE_MAX_NETWORK_RETRIES (or `retries`) more tries and STRIPE_RETRY_MAX_WAIT_SECONDS of
    waiting. Every try waits for the process's shared request rate; a 429 slows that rate
    down for every caller (the retry then waits in the same queue as everyone else)."""
    if retries is None:
        retries = int(settings.STRIPE_MAX_NETWORK_RETRIES)
    max_wait = float(getattr(settings, "STRIPE_RETRY_MAX_WAIT_SECONDS", 30.0))
    waited = 0.0
    attempt = 0
    while True:
        sent_at = _RATE.acquire()
        try:
            return call()
        except stripe.StripeError as exc:
            error = _gateway_error(exc)
            delay = max(_retry_delay(attempt), _retry_after(exc))
            if error.status == 429 and error.code != "lock_timeout":
                # The whole process slows down, whether or not this call tries again (a lock
                # timeout is about one object, not the rate: only its own call waits).
                _RATE.slow_down(pause=delay, sent_at=sent_at)
            if not error.retryable or attempt >= retries or waited + delay > max_wait:
                raise error from exc
            logger.warning(
                "Stripe %s failed (%s %s), try %s again in %.2f s",
                what,
                error.status,
                error.code or error,
                attempt + 2,
                delay,
            )
            if error.status != 429 or error.code == "lock_timeout":
                time.sleep(delay)  # a rate 429's pause is the shared rate's: acquire() waits it
            waited += delay
            attempt += 1


def _plain(obj: stripe.StripeObject) -> dict[str, Any]:
    # for_json turns Decimals and datetimes into JSON-safe values, ready for a JSONField.
    return obj.to_dict(recursive=True, for_json=True)


class ListedPage(list[dict[str, Any]]):
    """One page of a listing, and `fetched_at`: when its request was sent. The page shows the
    provider's state as of that moment or later, so a mirror row a webhook changed after it is
    newer than the page. A page may wait a while before it is written (read ahead, or queued
    by a parallel listing): the time it is written would claim it newer than it is."""

    def __init__(self, items: list[dict[str, Any]], fetched_at: datetime) -> None:
        super().__init__(items)
        self.fetched_at = fetched_at


def _pages(path: str, params: dict[str, Any]) -> Iterator[ListedPage]:
    # Lists go through raw_request: the typed v1 services build a StripeObject tree per item
    # only for us to flatten it again, several times slower a page (docs/benchmarks/audit.md);
    # a million-subscription reconciliation run is 10,000 pages.
    client = _client()
    starting_after: str | None = None
    while True:
        page_params = dict(params)
        if starting_after is not None:
            page_params["starting_after"] = starting_after
        sent_at = timezone.now()  # the first try's: a retry's answer is newer still
        response = _with_retries(
            functools.partial(client.raw_request, "get", path, **page_params),
            what=f"listing {path}",
        )
        page = json.loads(response.body)
        items: list[dict[str, Any]] = page["data"]
        yield ListedPage(items, sent_at)
        # An empty page with has_more would loop forever; Stripe never sends one, a proxy might.
        if not page["has_more"] or not items:
            return
        starting_after = items[-1]["id"]


# --- Webhooks -------------------------------------------------------------------------------

# The SDK reports every failure as SignatureVerificationError; its message tells them apart.
_SIGNATURE_REASONS = (
    ("No Stripe-Signature header", "missing Stripe-Signature header"),
    ("No webhook secret", "no webhook secret configured"),
    ("Unable to extract timestamp", "malformed header"),
    ("expected scheme", "no v1 signature in header"),
    ("matching the expected signature", "no signature matched"),
    ("Timestamp outside the tolerance", "timestamp outside tolerance"),
)
# The SDK checks the timestamp only after a signature matched, so a stale verdict from any
# secret means the body is authentic but old: the most specific thing to report.
_REASON_PRIORITY = ("timestamp outside tolerance", "no signature matched")


def _signature_reason(exc: stripe.SignatureVerificationError) -> str:
    message = exc.user_message or ""
    for fragment, reason in _SIGNATURE_REASONS:
        if fragment in message:
            return reason
    return "signature verification failed"


def _signed_at(sig_header: str) -> int:
    """The header's timestamp, read exactly as stripe-python reads it (the first `t=` item,
    each item split at its first two `=`), so `t=<ts>=junk` means <ts> here as it did there."""
    items = [item.split("=", 2) for item in sig_header.split(",")]
    try:
        return int([item[1] for item in items if item[0] == "t"][0])
    except (IndexError, ValueError):
        raise WebhookSignatureInvalid("malformed header") from None


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def webhook_event_verify(
    *, payload: bytes, sig_header: str | None, secrets: list[str], tolerance: int = 300
) -> dict[str, Any]:
    """Return the event in `payload` if any of `secrets` signed it within `tolerance` seconds."""
    if not sig_header:
        raise WebhookSignatureInvalid("missing Stripe-Signature header")
    usable_secrets = [secret for secret in secrets if secret and secret.strip()]
    if not usable_secrets:
        raise WebhookSignatureInvalid("no webhook secret configured")
    try:
        # The SDK decodes before hashing and would raise UnicodeDecodeError, not a verdict.
        payload.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookSignatureInvalid("body is not UTF-8") from None

    reasons: list[str] = []
    for secret in usable_secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, sig_header, secret, tolerance)
            break
        except stripe.SignatureVerificationError as exc:
            reasons.append(_signature_reason(exc))
    else:
        reason = next((r for r in _REASON_PRIORITY if r in reasons), reasons[0])
        raise WebhookSignatureInvalid(reason, stale=reason == "timestamp outside tolerance")
    # The SDK bounds the age only from below. A signed timestamp beyond the same tolerance in
    # the future is clock skew or a signature minted to outlive the replay window: refuse it.
    if tolerance and _signed_at(sig_header) > time.time() + tolerance:
        raise WebhookSignatureInvalid("timestamp in the future", stale=True)

    try:
        # Stripe never sends NaN/Infinity (not JSON); a body nested thousands deep is an attack.
        event = json.loads(payload, parse_constant=_reject_constant)
    except ValueError:
        raise WebhookPayloadInvalid("body is not JSON") from None
    except RecursionError:
        raise WebhookPayloadInvalid("body is nested too deeply") from None
    if not (
        isinstance(event, dict)
        and event.get("object") == "event"
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
    ):
        raise WebhookPayloadInvalid("body is not a Stripe event")
    return event


# --- Subscriptions and customers ------------------------------------------------------------


def _created_filter(*, gte: int | None, lt: int | None, lte: int | None) -> dict[str, int]:
    bounds = {"gte": gte, "lt": lt, "lte": lte}
    return {op: value for op, value in bounds.items() if value is not None}


def subscription_pages(
    *,
    status: str = "all",
    limit: int = 100,
    created_gte: int | None = None,
    created_lt: int | None = None,
    expand_customer: bool = False,
) -> Iterator[ListedPage]:
    """Yield subscriptions one page at a time; a failure mid-way raises GatewayError.

    `created_gte` and `created_lt` bound the subscriptions' creation time (unix seconds), the
    lower inclusive and the upper exclusive, so adjacent ranges never share one. With
    expand_customer, each subscription's `customer` is the customer object (email, metadata)
    instead of its id: linking accounts then costs no call per customer.
    """
    params: dict[str, Any] = {"status": status, "limit": limit}
    created = _created_filter(gte=created_gte, lt=created_lt, lte=None)
    if created:
        params["created"] = created
    if expand_customer:
        params["expand"] = ["data.customer"]
    return _pages("/v1/subscriptions", params)


def subscription_newest_created(
    *, created_gte: int | None = None, created_lte: int | None = None, retries: int | None = None
) -> int | None:
    """The creation time of the newest subscription (any status) within the bounds, None when
    there is none: one request of one item. `retries` overrides STRIPE_MAX_NETWORK_RETRIES (a
    probe whose failure has a fallback need not wait through every retry)."""
    params: dict[str, Any] = {"status": "all", "limit": 1}
    created = _created_filter(gte=created_gte, lt=None, lte=created_lte)
    if created:
        params["created"] = created
    client = _client()
    response = _with_retries(
        functools.partial(client.raw_request, "get", "/v1/subscriptions", **params),
        what="probing /v1/subscriptions",
        retries=retries,
    )
    items: list[dict[str, Any]] = json.loads(response.body)["data"]
    return int(items[0]["created"]) if items else None


def subscription_retrieve(*, provider_id: str) -> dict[str, Any]:
    client = _client()
    return _plain(
        _with_retries(
            lambda: client.v1.subscriptions.retrieve(provider_id), what=f"retrieve {provider_id}"
        )
    )


def customer_retrieve(*, customer_id: str) -> dict[str, Any]:
    client = _client()
    return _plain(
        _with_retries(
            lambda: client.v1.customers.retrieve(customer_id), what=f"retrieve {customer_id}"
        )
    )


# --- Events ---------------------------------------------------------------------------------


def event_pages(
    *, created_gte: int | None = None, types: list[str] | None = None, limit: int = 100
) -> Iterator[ListedPage]:
    """Yield events newest first, one page at a time (Stripe keeps them for 30 days)."""
    params: dict[str, Any] = {"limit": limit}
    if created_gte is not None:
        params["created"] = {"gte": created_gte}
    if types:
        params["types"] = list(types)
    return _pages("/v1/events", params)


def event_retrieve(*, event_id: str) -> dict[str, Any]:
    client = _client()
    return _plain(
        _with_retries(lambda: client.v1.events.retrieve(event_id), what=f"retrieve {event_id}")
    )


# --- Disputes and files ---------------------------------------------------------------------


def dispute_retrieve(*, dispute_id: str, expand_charge: bool = False) -> dict[str, Any]:
    """A dispute; with expand_charge its `charge` is the charge object, not its id."""
    client = _client()
    params: Any = {"expand": ["charge"]} if expand_charge else None
    return _plain(
        _with_retries(
            lambda: client.v1.disputes.retrieve(dispute_id, params=params),
            what=f"retrieve {dispute_id}",
        )
    )


def charge_retrieve(*, charge_id: str) -> dict[str, Any]:
    client = _client()
    return _plain(
        _with_retries(lambda: client.v1.charges.retrieve(charge_id), what=f"retrieve {charge_id}")
    )


def invoice_payments_for_payment_intent(*, payment_intent_id: str) -> list[dict[str, Any]]:
    """The invoice payments a payment intent made (a charge names no invoice since 2025-03-31:
    this list is the way from a charge's payment intent to what it paid for)."""
    params = {"payment": {"type": "payment_intent", "payment_intent": payment_intent_id}}
    return [
        item for page in _pages("/v1/invoice_payments", {**params, "limit": 100}) for item in page
    ]


def invoice_retrieve(*, invoice_id: str) -> dict[str, Any]:
    client = _client()
    return _plain(
        _with_retries(
            lambda: client.v1.invoices.retrieve(invoice_id), what=f"retrieve {invoice_id}"
        )
    )


def dispute_evidence_update(
    *, dispute_id: str, evidence: dict[str, str], submit: bool
) -> dict[str, Any]:
    """Stage (submit=False) or finally submit evidence; Stripe submits if `submit` is left out."""
    # The keys are Stripe's evidence fields: the callers send no others.
    params: DisputeUpdateParams = {
        "evidence": cast("DisputeUpdateParamsEvidence", dict(evidence)),
        "submit": submit,
    }
    client = _client()
    # One key for every try of this update: a retried POST Stripe already applied is not
    # applied twice (the SDK adds keys only when its own retries are on, and they are off).
    options: Any = {"idempotency_key": f"janitor-evidence-{uuid.uuid4()}"}
    return _plain(
        _with_retries(
            lambda: client.v1.disputes.update(dispute_id, params=params, options=options),
            what=f"update {dispute_id}",
        )
    )


def billing_portal_session_create(*, customer_id: str, return_url: str) -> str:
    """A Stripe-hosted page where the customer updates their payment method; returns its URL."""
    params: SessionCreateParams = {"customer": customer_id, "return_url": return_url}
    client = _client()
    # A fresh session per click: retrying a POST that Stripe applied only makes another one.
    session = _plain(
        _with_retries(
            lambda: client.v1.billing_portal.sessions.create(params=params),
            what=f"billing portal session for {customer_id}",
        )
    )
    return str(session.get("url") or "")


def file_upload(
    *,
    content: bytes,
    filename: str,
    purpose: str = "dispute_evidence",
    mime_type: str = "application/pdf",
) -> str:
    """Upload `content` and return the Stripe File id."""
    extension = EVIDENCE_FILE_EXTENSIONS.get(mime_type)
    if extension is None:
        raise ValueError(f"Stripe does not accept {mime_type!r} as evidence")
    # The SDK labels every part application/octet-stream, so the name is what carries the type.
    if "." not in filename.rsplit("/", 1)[-1]:
        filename += extension
    client = _client()
    options: Any = {"idempotency_key": f"janitor-file-{uuid.uuid4()}"}

    def upload() -> stripe.File:
        stream = io.BytesIO(content)  # a fresh stream per try: a failed one was read
        stream.name = filename  # the SDK sends this as the part's filename
        return client.v1.files.create(params={"purpose": purpose, "file": stream}, options=options)

    return _with_retries(upload, what="file upload").id
