"""A local fake of the Stripe API: the real stripe-python SDK talks HTTP to it on 127.0.0.1.

What it serves is the subset Janitor uses (subscriptions, customers, events, disputes, files),
with Stripe's shapes, list envelopes, errors and parameter checks. State lives in memory
behind one lock; handlers run on the server's threads. The test suite's `stripe_fake` fixture
(tests/fakes/plugin.py) and the demo's sandbox (sandbox/provider.py) both run this one class.
"""

from __future__ import annotations

import bisect
import copy
import fnmatch
import json
import math
import re
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, get_args, get_origin
from urllib.parse import parse_qsl, unquote, urlsplit

from stripe import Subscription as _SdkSubscription

from sandbox.fixtures import stripe_fixture

# What stripe-python 16.1 sends as Stripe-Version; events are rendered in it.
API_VERSION = "2026-10-28.endive"
TEST_API_KEY = "sk_test_fake"
MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_EVIDENCE_FIELD_CHARS = 20_000
MAX_EVIDENCE_TOTAL_CHARS = 150_000
MAX_EVENT_TYPES = 20


def _sdk_literal(annotation: Any) -> frozenset[str]:
    """The values of the Literal in a stripe-python annotation (enums are `Literal[...] | str`)."""
    for arg in get_args(annotation):
        if get_origin(arg) is Literal:
            return frozenset(get_args(arg))
    raise TypeError(f"no Literal in {annotation!r}: has stripe-python changed how it types enums?")


# Stripe's subscription statuses, as the pinned SDK types them (reconciliation.models'
# SubscriptionStatus lists the same; test_contract checks it). Not from the model: this module
# also runs where Django is not set up (the drills import it first, bench serves it alone).
SUBSCRIPTION_STATUSES = _sdk_literal(_SdkSubscription.__annotations__["status"])
ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})
SUBSCRIPTION_LIST_STATUSES = SUBSCRIPTION_STATUSES | {"all", "ended"}
PERIOD_SECONDS = {"day": 86_400, "week": 7 * 86_400, "month": 30 * 86_400, "year": 365 * 86_400}

EVIDENCE_TEXT_FIELDS = frozenset(
    {
        "access_activity_log",
        "billing_address",
        "cancellation_policy_disclosure",
        "cancellation_rebuttal",
        "customer_email_address",
        "customer_name",
        "customer_purchase_ip",
        "duplicate_charge_explanation",
        "duplicate_charge_id",
        "product_description",
        "refund_policy_disclosure",
        "refund_refusal_explanation",
        "service_date",
        "shipping_address",
        "shipping_carrier",
        "shipping_date",
        "shipping_tracking_number",
        "uncategorized_text",
    }
)
EVIDENCE_FILE_FIELDS = frozenset(
    {
        "cancellation_policy",
        "customer_communication",
        "customer_signature",
        "duplicate_charge_documentation",
        "receipt",
        "refund_policy",
        "service_documentation",
        "shipping_documentation",
        "uncategorized_file",
    }
)
DISPUTE_OPEN_STATUSES = {
    "needs_response": "under_review",
    "warning_needs_response": "warning_under_review",
}
FILE_PURPOSES = frozenset(
    {
        "account_requirement",
        "additional_verification",
        "business_icon",
        "business_logo",
        "customer_signature",
        "dispute_evidence",
        "identity_document",
        "issuing_regulatory_reporting",
        "pci_document",
        "tax_document_user_upload",
        "terminal_reader_splashscreen",
    }
)
EVIDENCE_FILE_TYPES = frozenset({"pdf", "jpg", "png"})
_FILE_MAGIC = ((b"%PDF", "pdf"), (b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"))
_FILE_EXTENSIONS = {"pdf": "pdf", "jpg": "jpg", "jpeg": "jpg", "png": "png"}
_CREATED_OPS = {"gt", "gte", "lt", "lte"}

Params = dict[str, str]  # a query string or form body, nested keys left flat: "evidence[x]"
Files = dict[str, bytes]  # multipart file parts by field name
Json = dict[str, Any]


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def _now() -> int:
    return int(time.time())


class StripeApiError(Exception):
    """Raised inside a handler; becomes Stripe's error envelope with this HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers: dict[str, str] = {}
        self.body: dict[str, Any] = {"error": {"type": type, "message": message}}
        if code:
            self.body["error"]["code"] = code
        if param:
            self.body["error"]["param"] = param


def _missing(kind: str, object_id: str, param: str = "id", status: int = 404) -> StripeApiError:
    return StripeApiError(
        status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


@dataclass
class RecordedRequest:
    """One request as the fake received it; `form` holds parsed body fields, nested keys flat."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]
    files: dict[str, bytes] = field(default_factory=dict)
    status: int | None = None
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class _Fault:
    path_prefix: str
    status: int
    times: int
    after: int
    seen: int = 0
    code: str | None = None
    should_retry: bool | None = None
    # Only requests whose query holds every one of these parameters (None: any value).
    query: dict[str, str | None] | None = None

    def matches(self, path: str, query: dict[str, str]) -> bool:
        if not path.startswith(self.path_prefix):
            return False
        return all(
            name in query and (value is None or query[name] == value)
            for name, value in (self.query or {}).items()
        )


@dataclass
class _Delay:
    path_prefix: str
    seconds: float
    times: int


@dataclass(frozen=True)
class _BulkBlock:
    """Subscriptions `first_number`..`first_number + count - 1`, rendered only when listed."""

    first_ordinal: int
    first_number: int
    count: int
    id_prefix: str
    customer_prefix: str
    status_cycle: tuple[str, ...]
    created_start: int
    current_period_end: int
    price_id: str
    amount: int
    currency: str
    interval: str

    def number_of(self, object_id: str, prefix: str) -> int | None:
        """The block number behind `object_id`, if this block made it."""
        if not object_id.startswith(prefix):
            return None
        digits = object_id[len(prefix) :]
        if not digits.isdigit() or f"{int(digits):07d}" != digits:
            return None
        number = int(digits)
        if self.first_number <= number < self.first_number + self.count:
            return number
        return None


# --- Object shapes --------------------------------------------------------------------------
# Every object starts as a copy of Stripe's own fixture for its resource (sandbox/data/stripe),
# then gets this fake's values: so it carries every key Stripe sends and invents none
# (tests/fakes/test_contract.py holds the fake to that).

LEGACY_API_VERSION = "2025-02-24.acacia"


def _price(*, price_id: str, product: str, amount: int, currency: str, interval: str, created: int):
    price = stripe_fixture("subscription")["items"]["data"][0]["price"]
    price.update(
        id=price_id,
        product=product,
        unit_amount=amount,
        unit_amount_decimal=str(amount),
        currency=currency,
        created=created,
        nickname=None,
    )
    price["recurring"].update(interval=interval, interval_count=1)
    return price


def _plan(price: dict[str, Any]) -> dict[str, Any]:
    """The legacy `plan` Stripe still renders beside a price on subscription items."""
    plan = stripe_fixture("subscription")["items"]["data"][0]["plan"]
    plan.update(
        id=price["id"],
        amount=price["unit_amount"],
        amount_decimal=str(price["unit_amount"]),
        billing_scheme="per_unit",
        created=price["created"],
        currency=price["currency"],
        interval=price["recurring"]["interval"],
        interval_count=1,
        livemode=False,
        metadata={},
        product=price["product"],
        transform_usage=None,
    )
    return plan


def subscription_object(
    *,
    id: str,
    customer: str,
    status: str,
    price_id: str,
    amount: int,
    currency: str,
    interval: str,
    current_period_end: int,
    cancel_at_period_end: bool,
    created: int,
    metadata: dict[str, str],
    legacy_shape: bool,
    ended_at: int | None = None,
    quantity: int = 1,
    price_metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A subscription as Stripe renders it today, or (legacy_shape) as LEGACY_API_VERSION did.
    `quantity` is the item's (seats, on a per-seat price); `price_metadata` the price's."""
    period_start = current_period_end - PERIOD_SECONDS[interval]
    product = f"prod_{price_id.removeprefix('price_')}"
    price = _price(
        price_id=price_id,
        product=product,
        amount=amount,
        currency=currency,
        interval=interval,
        created=created,
    )
    if price_metadata:
        price["metadata"] = dict(price_metadata)
    subscription = stripe_fixture("subscription", LEGACY_API_VERSION if legacy_shape else None)
    item = subscription["items"]["data"][0]
    item.update(
        id=f"si_{id.removeprefix('sub_')}",
        created=created,
        quantity=quantity,
        subscription=id,
        metadata={},
        price=price,
        plan=_plan(price),
        discounts=[],
        tax_rates=[],
        billing_thresholds=None,
    )
    ended = status in ENDED_STATUSES
    subscription.update(
        id=id,
        customer=customer,
        status=status,
        created=created,
        start_date=created,
        billing_cycle_anchor=created,
        currency=currency,
        cancel_at_period_end=cancel_at_period_end,
        cancel_at=current_period_end if cancel_at_period_end else None,
        canceled_at=ended_at if ended else None,
        ended_at=ended_at if ended else None,
        collection_method="charge_automatically",
        latest_invoice=None,
        livemode=False,
        metadata=dict(metadata),
        next_pending_invoice_item_invoice=None,
        pause_collection=None,
        pending_update=None,
        schedule=None,
        test_clock=None,
        trial_start=None,
        trial_end=current_period_end if status == "trialing" else None,
    )
    subscription["items"].update(
        data=[item], has_more=False, url=f"/v1/subscription_items?subscription={id}"
    )
    if legacy_shape:
        subscription.update(
            plan=item["plan"],
            quantity=quantity,
            current_period_start=period_start,
            current_period_end=current_period_end,
        )
    else:
        item.update(current_period_start=period_start, current_period_end=current_period_end)
    return subscription


def subscription_sample(
    id: str,
    *,
    customer: str,
    status: str = "active",
    price_id: str = "price_basic",
    amount: int = 1500,
    currency: str = "usd",
    interval: str = "month",
    current_period_end: int | None = None,
    cancel_at_period_end: bool = False,
    created: int | None = None,
    metadata: dict[str, str] | None = None,
    legacy_shape: bool = False,
    quantity: int = 1,
    price_metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """subscription_object with the fake's defaults: the basic price ($15 a month), created now,
    its period ending an interval from now, ended now if its status is an ended one."""
    now = _now()
    return subscription_object(
        id=id,
        customer=customer,
        status=status,
        price_id=price_id,
        amount=amount,
        currency=currency,
        interval=interval,
        current_period_end=(
            now + PERIOD_SECONDS[interval] if current_period_end is None else current_period_end
        ),
        cancel_at_period_end=cancel_at_period_end,
        created=now if created is None else created,
        metadata=metadata or {},
        legacy_shape=legacy_shape,
        ended_at=now,
        quantity=quantity,
        price_metadata=price_metadata,
    )


def customer_object(
    *, id: str, email: str, name: str, metadata: dict[str, str], created: int
) -> dict[str, Any]:
    customer = stripe_fixture("customer")
    customer.update(
        id=id,
        email=email,
        name=name,
        created=created,
        livemode=False,
        metadata=dict(metadata),
        delinquent=False,
        discount=None,
        invoice_prefix=id.removeprefix("cus_")[:8].upper(),
    )
    return customer


def charge_object(
    *,
    id: str,
    customer: str | None,
    payment_intent: str | None,
    amount: int,
    currency: str,
    created: int,
    disputed: bool = False,
) -> dict[str, Any]:
    charge = stripe_fixture("charge")
    charge.update(
        id=id,
        customer=customer,
        payment_intent=payment_intent,
        amount=amount,
        amount_captured=amount,
        currency=currency,
        created=created,
        captured=True,
        paid=True,
        disputed=disputed,
        status="succeeded",
        description=None,
        metadata={},
        livemode=False,
        receipt_url=None,
    )
    charge["refunds"]["url"] = f"/v1/charges/{id}/refunds"
    return charge


def payment_intent_object(
    *, id: str, customer: str | None, amount: int, currency: str, created: int, latest_charge: str
) -> dict[str, Any]:
    intent = stripe_fixture("payment_intent")
    intent.update(
        id=id,
        customer=customer,
        amount=amount,
        amount_received=amount,
        currency=currency,
        created=created,
        canceled_at=None,
        client_secret=f"{id}_secret_{secrets.token_hex(8)}",
        last_payment_error=None,
        latest_charge=latest_charge,
        next_action=None,
        status="succeeded",
        livemode=False,
    )
    return intent


def invoice_object(
    *,
    id: str,
    customer: str,
    subscription: str | None,
    amount: int,
    currency: str,
    created: int,
    period_start: int,
    period_end: int,
) -> dict[str, Any]:
    """A paid subscription invoice; its one line item carries the service period."""
    invoice = stripe_fixture("invoice")
    line = invoice["lines"]["data"][0]
    line.update(
        id=f"il_{id.removeprefix('in_')}",
        invoice=id,
        amount=amount,
        currency=currency,
        description="1 × subscription",
        period={"start": period_start, "end": period_end},
        subtotal=amount,
    )
    line["parent"] = {
        "type": "subscription_item_details",
        "invoice_item_details": None,
        "subscription_item_details": {
            "invoice_item": None,
            "proration": False,
            "proration_details": {"credited_items": None},
            "subscription": subscription,
            "subscription_item": f"si_{(subscription or '').removeprefix('sub_')}",
        },
    }
    invoice["lines"].update(data=[line], has_more=False, url=f"/v1/invoices/{id}/lines")
    invoice.update(
        id=id,
        customer=customer,
        amount_due=amount,
        amount_paid=amount,
        amount_remaining=0,
        attempt_count=1,
        attempted=True,
        billing_reason="subscription_cycle",
        created=created,
        currency=currency,
        due_date=None,
        effective_at=created,
        from_invoice=None,
        last_finalization_error=None,
        next_payment_attempt=None,
        period_start=period_start,
        period_end=period_end,
        status="paid",
        subtotal=amount,
        total=amount,
        livemode=False,
    )
    invoice["parent"] = {
        "type": "subscription_details",
        "quote_details": None,
        "subscription_details": {"metadata": {}, "subscription": subscription},
    }
    return invoice


def invoice_payment_object(
    *, id: str, invoice: str, payment_intent: str, amount: int, currency: str, created: int
) -> dict[str, Any]:
    payment = stripe_fixture("invoice_payment")
    payment.update(
        id=id,
        invoice=invoice,
        amount_paid=amount,
        amount_requested=amount,
        currency=currency,
        created=created,
        is_default=True,
        livemode=False,
        status="paid",
        payment={"type": "payment_intent", "payment_intent": payment_intent},
        status_transitions={"canceled_at": None, "paid_at": created},
    )
    return payment


def dispute_object(
    *,
    id: str,
    charge: str,
    payment_intent: str | None,
    amount: int,
    currency: str,
    reason: str,
    status: str,
    due_by: int,
    created: int,
    metadata: dict[str, str],
) -> dict[str, Any]:
    """A dispute as Stripe sends it: charge and payment intent by id, no customer anywhere."""
    dispute = stripe_fixture("dispute")
    dispute.update(
        id=id,
        charge=charge,
        payment_intent=payment_intent,
        amount=amount,
        currency=currency,
        reason=reason,
        status=status,
        created=created,
        metadata=dict(metadata),
        is_charge_refundable=False,
        livemode=False,
        balance_transactions=[],
    )
    dispute["evidence"] = {
        **dict.fromkeys(dispute["evidence"]),
        "enhanced_evidence": {},
    }
    dispute["evidence_details"].update(
        due_by=due_by, has_evidence=False, past_due=False, submission_count=0
    )
    return dispute


def file_object(*, id: str, filename: str, purpose: str, size: int, type: str) -> dict[str, Any]:
    uploaded = stripe_fixture("file")
    uploaded.update(
        id=id,
        created=_now(),
        expires_at=None,
        filename=filename,
        purpose=purpose,
        size=size,
        title=None,
        type=type,
        url=f"https://files.stripe.com/v1/files/{id}/contents",
    )
    uploaded["links"] = _list_envelope(f"/v1/file_links?file={id}", [], False)
    return uploaded


def billing_portal_session_object(
    *, id: str, customer: str, return_url: str | None, url: str, configuration: str | None = None
) -> dict[str, Any]:
    session = stripe_fixture("billing_portal.session")
    session.update(
        id=id,
        customer=customer,
        created=_now(),
        flow=None,
        livemode=False,
        locale=None,
        on_behalf_of=None,
        return_url=return_url,
        url=url,
        configuration=configuration or "bpc_janitor_fake",
    )
    return session


def event_object(
    type: str,
    obj: dict[str, Any],
    *,
    id: str | None = None,
    created: int | None = None,
    api_version: str = API_VERSION,
) -> dict[str, Any]:
    """A v1 snapshot event wrapping a copy of `obj`, as webhooks deliver it and /v1/events
    lists it: a later change to the object (the fake's own state) does not rewrite it."""
    event = stripe_fixture("event")
    event.update(
        id=id or _new_id("evt"),
        api_version=api_version,
        created=_now() if created is None else created,
        data={"object": copy.deepcopy(obj)},
        livemode=False,
        pending_webhooks=1,
        request={"id": None, "idempotency_key": None},
        type=type,
    )
    return event


# --- Request parsing ------------------------------------------------------------------------


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """Split a multipart/form-data body exactly, without the email parser's line rewriting."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise StripeApiError(400, "Invalid multipart body: no boundary")
    form: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for chunk in body.split(b"--" + match.group(1).encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        disposition = next(
            (
                line
                for line in head.decode("utf-8", "replace").split("\r\n")
                if line.lower().startswith("content-disposition:")
            ),
            "",
        )
        params = dict(re.findall(r'(\w+)="([^"]*)"', disposition))
        name = params.get("name")
        if name is None:
            continue
        if "filename" in params:
            files[name] = data
            form[name] = params["filename"]
        else:
            form[name] = data.decode("utf-8")
    return form, files


def _param_root(key: str) -> str:
    return key.split("[", 1)[0]


def _check_params(params: dict[str, str], allowed: set[str]) -> None:
    for key in params:
        if _param_root(key) not in allowed:
            raise StripeApiError(400, f"Received unknown parameter: {key}", param=key)


def _int_param(params: dict[str, str], key: str) -> int:
    try:
        return int(params[key])
    except ValueError:
        raise StripeApiError(400, f"Invalid integer: {params[key]}", param=key) from None


def _limit(params: dict[str, str]) -> int:
    if "limit" not in params:
        return 10
    limit = _int_param(params, "limit")
    if not 1 <= limit <= 100:
        raise StripeApiError(
            400, "This value must be between 1 and 100 (inclusive).", param="limit"
        )
    return limit


def _created_bounds(params: dict[str, str]) -> tuple[int | None, int | None]:
    """(lowest, highest) allowed `created`, both inclusive, from created / created[op]."""
    low: int | None = None
    high: int | None = None
    for key in params:
        if _param_root(key) != "created":
            continue
        value = _int_param(params, key)
        op = key[len("created[") : -1] if key != "created" else "eq"
        if op not in _CREATED_OPS | {"eq"}:
            raise StripeApiError(400, f"Received unknown parameter: {key}", param=key)
        if op in {"gt", "gte", "eq"}:
            bound = value + 1 if op == "gt" else value
            low = bound if low is None else max(low, bound)
        if op in {"lt", "lte", "eq"}:
            bound = value - 1 if op == "lt" else value
            high = bound if high is None else min(high, bound)
    return low, high


def _bool_param(params: dict[str, str], key: str, default: bool) -> bool:
    value = params.get(key)
    if value is None:
        return default
    if value not in {"true", "false"}:
        raise StripeApiError(400, f"Invalid boolean: {value}", param=key)
    return value == "true"


class RawJson(str):
    """An answer already rendered as JSON text (a page of bulk subscriptions)."""


def _bulk_customer_object(block: _BulkBlock, id: str) -> dict[str, Any]:
    return customer_object(
        id=id,
        email=f"{id}@example.test",
        name=f"Bench {id}",
        metadata={},
        created=block.created_start,
    )


# Stand-ins rendered into a bulk block's template, then replaced by %-placeholders: a number
# no fixture or block value holds, and a marker no id or email can contain.
_CREATED_MARK = 3_999_999_991
_NUMBER_MARK = "@@N@@"
_PREFIX_MARK = "@@IP@@"


def _bulk_template(block: _BulkBlock, status: str, expanded: bool) -> str:
    """The JSON text of the block's subscriptions with `status`, as a %-format string taking
    n (the 7-digit number), c (created, which is also when an ended one ended) and ip (the
    customer's invoice prefix): rendered once by the same builders as any other subscription."""
    customer_id = f"{block.customer_prefix}{_NUMBER_MARK}"
    sub = subscription_object(
        id=f"{block.id_prefix}{_NUMBER_MARK}",
        customer=customer_id,
        status=status,
        price_id=block.price_id,
        amount=block.amount,
        currency=block.currency,
        interval=block.interval,
        current_period_end=block.current_period_end,
        cancel_at_period_end=False,
        created=_CREATED_MARK,
        metadata={},
        legacy_shape=False,
        ended_at=_CREATED_MARK,
    )
    if expanded:
        customer = _bulk_customer_object(block, customer_id)
        customer["invoice_prefix"] = _PREFIX_MARK
        sub["customer"] = customer
    text = json.dumps(sub).replace("%", "%%")
    return (
        text.replace(_NUMBER_MARK, "%(n)s")
        .replace(_PREFIX_MARK, "%(ip)s")
        .replace(str(_CREATED_MARK), "%(c)d")
    )


def _list_envelope(url: str, data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


# --- Server ---------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # stop() must not wait for a handler parked in delay() or an idle keep-alive connection.
    block_on_close = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Stripe serves it; the bench pages 10k times
    # Headers and body go out as two writes; with Nagle on, each answer waits ~40 ms for an ACK.
    disable_nagle_algorithm = True
    fake: StripeFake

    def setup(self) -> None:
        super().setup()
        self.fake._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._connection_closed(self.connection)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload, extra_headers = self.fake._handle(
            method, self.path, dict(self.headers.items()), body
        )
        data = (payload if isinstance(payload, RawJson) else json.dumps(payload)).encode()
        try:
            self.send_response(status)
            for name, value in extra_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", _new_id("req"))
            self.send_header("Stripe-Version", API_VERSION)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout test); nothing is left to tell it.
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is `StripeFake.requests`


class StripeFake:
    """An in-memory Stripe on a random loopback port. Use as a context manager or start()/stop()."""

    def __init__(self, *, api_key: str | None = None) -> None:
        # None accepts any sk_test_/rk_test_ key; set it to demand one exact key.
        self.api_key = api_key
        self.record_requests = True
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.reset()

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> StripeFake:
        if self._server is not None:
            return self
        handler = type("BoundHandler", (_Handler,), {"fake": self})
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="stripe-fake",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            # Unblocks handler threads parked on idle keep-alive connections.
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> StripeFake:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("StripeFake is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def reset(self) -> None:
        """Forget all objects, faults, delays and recorded requests; the server keeps running."""
        with self._lock:
            # False: lists ignore expand[]=data.customer (a server or proxy that does not
            # expand), so Janitor's one-lookup-per-customer fallback can be tested.
            self.expand_lists = True
            # True: lists answer 500 to any created filter, as localstripe does.
            self.refuse_created_filter = False
            self.requests: list[RecordedRequest] = []
            self.customers: dict[str, dict[str, Any]] = {}
            self.disputes: dict[str, dict[str, Any]] = {}
            self.charges: dict[str, dict[str, Any]] = {}
            self.payment_intents: dict[str, dict[str, Any]] = {}
            self.invoices: dict[str, dict[str, Any]] = {}
            self.invoice_payments: dict[str, dict[str, Any]] = {}
            self.files: dict[str, dict[str, Any]] = {}
            self.file_contents: dict[str, bytes] = {}
            self._faults: list[_Fault] = []
            self._delays: list[_Delay] = []
            # Stripe's latency and limiters (throttle()); none by default.
            self.latency = 0.0
            self.endpoint_rps: float | None = None
            self.max_concurrent: int | None = None
            self.retry_after: int | None = 1
            self._in_flight = 0
            self._admitted: dict[str, deque[float]] = {}
            self.rate_limited = 0  # requests the limiters refused
            self.refused_twice = 0  # of those, refused again when retried
            self._refused_last: set[str] = set()
            self.peak_in_flight = 0  # most requests in progress at once
            # Subscriptions are numbered by ordinal (insertion order) and listed newest first.
            self._subscription_count = 0
            self._single_subscriptions: dict[int, dict[str, Any]] = {}
            self._single_ordinals: dict[str, int] = {}
            self._blocks: list[_BulkBlock] = []
            self._bulk_templates: dict[tuple[int, str, bool], str] = {}
            self._block_starts: list[int] = []
            self._bulk_status: dict[str, tuple[str, int]] = {}
            self._events: list[dict[str, Any]] = []
            self._event_order: list[int] | None = None
            self._event_rank: dict[str, int] = {}

    def _connection_opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _connection_closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    # --- fault injection --------------------------------------------------------------------

    def fail(
        self,
        path_prefix: str,
        status: int = 500,
        times: int = 1,
        after: int = 0,
        *,
        code: str | None = None,
        should_retry: bool | None = None,
        query: dict[str, str | None] | None = None,
    ) -> None:
        """Answer `status` to `times` requests under `path_prefix`, after `after` of them pass;
        with `query`, only to requests whose query holds those parameters (a value of None
        matches any value), e.g. one created range of a parallel listing.

        As Stripe answers it: a 429 carries an error code (rate_limit by default, or
        lock_timeout), a 401 an invalid key message, a 403 a missing permission, a 404
        resource_missing; `should_retry` adds Stripe's Stripe-Should-Retry header.
        """
        with self._lock:
            self._faults.append(
                _Fault(
                    path_prefix,
                    status,
                    times,
                    after,
                    code=code,
                    should_retry=should_retry,
                    query=query,
                )
            )

    def throttle(
        self,
        *,
        latency: float = 0.0,
        endpoint_rps: float | None = None,
        max_concurrent: int | None = None,
        retry_after: int | None = 1,
    ) -> None:
        """Answer like Stripe under load: every admitted request takes `latency` seconds; more
        than `endpoint_rps` requests to one endpoint within a second, or more than
        `max_concurrent` in progress at once, are refused at once with 429 `rate_limit`,
        `Stripe-Should-Retry: true` and (unless None) `Retry-After: <retry_after>` seconds.
        An endpoint is a route (`GET /v1/subscriptions` is one, `GET /v1/subscriptions/{id}`
        another). The defaults (no latency, no limits) are the fake's own."""
        with self._lock:
            self.latency = latency
            self.endpoint_rps = endpoint_rps
            self.max_concurrent = max_concurrent
            self.retry_after = retry_after
            self._admitted = {}

    def _endpoint(self, method: str, path: str) -> str:
        for route_method, pattern, _ in self._ROUTES:
            if route_method == method and pattern.fullmatch(path):
                return f"{method} {pattern.pattern}"
        return f"{method} {path}"

    def _admit(self, method: str, path: str) -> StripeApiError | None:
        """Count the request in, or the 429 the limiters answer instead (lock held)."""
        now = time.monotonic()
        if self.max_concurrent is not None and self._in_flight >= self.max_concurrent:
            return self._rate_limited(retry_after=self.retry_after)
        if self.endpoint_rps is not None:
            window = self._admitted.setdefault(self._endpoint(method, path), deque())
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= self.endpoint_rps:
                free_in = math.ceil(window[0] + 1.0 - now)
                return self._rate_limited(
                    retry_after=None if self.retry_after is None else max(self.retry_after, free_in)
                )
            window.append(now)
        self._in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        return None

    def _rate_limited(self, *, retry_after: int | None) -> StripeApiError:
        self.rate_limited += 1
        error = StripeApiError(
            429,
            "Request rate limit exceeded. Learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.",
            code="rate_limit",
        )
        error.headers["Stripe-Should-Retry"] = "true"
        if retry_after is not None:
            error.headers["Retry-After"] = str(retry_after)
        return error

    def delay(self, path_prefix: str, seconds: float, times: int = 1) -> None:
        """Hold the next `times` requests under `path_prefix` for `seconds` before answering."""
        with self._lock:
            self._delays.append(_Delay(path_prefix, seconds, times))

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path.startswith(path_prefix) and (method is None or r.method == method)
            ]

    # --- test-side state --------------------------------------------------------------------

    def add_customer(
        self,
        id: str | None = None,
        *,
        email: str = "customer@example.test",
        name: str = "Test Customer",
        metadata: dict[str, str] | None = None,
        created: int | None = None,
    ) -> dict[str, Any]:
        customer = customer_object(
            id=id or _new_id("cus"),
            email=email,
            name=name,
            metadata=metadata or {},
            created=_now() if created is None else created,
        )
        with self._lock:
            self.customers[customer["id"]] = customer
        return customer

    def delete_customer(self, id: str) -> None:
        with self._lock:
            self.customers[id] = {"id": id, "object": "customer", "deleted": True}

    def add_subscription(
        self, id: str | None = None, *, customer: str, status: str = "active", **fields: Any
    ) -> dict[str, Any]:
        """Store a subscription (subscription_sample's, with `fields`). Listing order is
        insertion order, newest first."""
        if status not in SUBSCRIPTION_STATUSES:
            raise ValueError(f"unknown subscription status {status!r}")
        subscription = subscription_sample(
            id or _new_id("sub"), customer=customer, status=status, **fields
        )
        with self._lock:
            if self._subscription_ordinal(subscription["id"]) is not None:
                raise ValueError(f"subscription {subscription['id']} already exists")
            ordinal = self._subscription_count
            self._subscription_count += 1
            self._single_subscriptions[ordinal] = subscription
            self._single_ordinals[subscription["id"]] = ordinal
        return subscription

    def add_subscriptions_bulk(
        self,
        n: int,
        *,
        start: int = 0,
        id_prefix: str = "sub_bench_",
        customer_prefix: str = "cus_bench_",
        status_cycle: tuple[str, ...] = ("active", "active", "trialing", "past_due", "canceled"),
        price_id: str = "price_basic",
        amount: int = 1500,
        currency: str = "usd",
        interval: str = "month",
        created_start: int | None = None,
        current_period_end: int | None = None,
    ) -> None:
        """Store n subscriptions in O(1) memory, each rendered only when listed or retrieved.

        Number i in start..start+n-1 has id f"{id_prefix}{i:07d}", customer
        f"{customer_prefix}{i:07d}" (retrievable, email f"{customer id}@example.test"),
        status status_cycle[i % len(status_cycle)] and created created_start + (i - start).
        """
        if not status_cycle or not set(status_cycle) <= SUBSCRIPTION_STATUSES:
            raise ValueError(f"status_cycle must hold subscription statuses: {status_cycle!r}")
        now = _now()
        with self._lock:
            for block in self._blocks:
                same_ids = block.id_prefix == id_prefix or block.customer_prefix == customer_prefix
                overlap = (
                    start < block.first_number + block.count and block.first_number < start + n
                )
                if same_ids and overlap:
                    raise ValueError("bulk ids overlap an earlier add_subscriptions_bulk call")
            block = _BulkBlock(
                first_ordinal=self._subscription_count,
                first_number=start,
                count=n,
                id_prefix=id_prefix,
                customer_prefix=customer_prefix,
                status_cycle=tuple(status_cycle),
                created_start=now - n if created_start is None else created_start,
                current_period_end=(
                    now + PERIOD_SECONDS[interval]
                    if current_period_end is None
                    else current_period_end
                ),
                price_id=price_id,
                amount=amount,
                currency=currency,
                interval=interval,
            )
            self._blocks.append(block)
            self._block_starts.append(block.first_ordinal)
            self._subscription_count += n

    def set_subscription_status(self, id: str, status: str) -> dict[str, Any]:
        if status not in SUBSCRIPTION_STATUSES:
            raise ValueError(f"unknown subscription status {status!r}")
        with self._lock:
            ordinal = self._subscription_ordinal(id)
            if ordinal is None:
                raise KeyError(id)
            single = self._single_subscriptions.get(ordinal)
            if single is None:
                self._bulk_status[id] = (status, _now())
                return self._subscription_at(ordinal)
            single["status"] = status
            ended = status in ENDED_STATUSES
            single["canceled_at"] = single["ended_at"] = _now() if ended else None
            return single

    def subscription(self, id: str) -> dict[str, Any]:
        """The subscription as the API would render it now."""
        with self._lock:
            ordinal = self._subscription_ordinal(id)
            if ordinal is None:
                raise KeyError(id)
            return self._subscription_at(ordinal)

    def add_charge(
        self,
        id: str | None = None,
        *,
        customer: str | None,
        payment_intent: str | None = None,
        amount: int = 1500,
        currency: str = "usd",
        created: int | None = None,
    ) -> dict[str, Any]:
        """Store a charge; a payment intent named here is stored too, if it is new."""
        charge = charge_object(
            id=id or _new_id("ch"),
            customer=customer,
            payment_intent=payment_intent,
            amount=amount,
            currency=currency,
            created=_now() if created is None else created,
        )
        with self._lock:
            self.charges[charge["id"]] = charge
            if payment_intent and payment_intent not in self.payment_intents:
                self.payment_intents[payment_intent] = payment_intent_object(
                    id=payment_intent,
                    customer=customer,
                    amount=amount,
                    currency=currency,
                    created=charge["created"],
                    latest_charge=charge["id"],
                )
        return charge

    def add_paid_invoice(
        self,
        *,
        customer: str,
        subscription: str | None = None,
        amount: int = 1500,
        currency: str = "usd",
        period_start: int,
        period_end: int,
        paid_at: int | None = None,
    ) -> dict[str, Any]:
        """An invoice for one service period, paid by a payment intent and its charge.

        Returns {"invoice", "payment_intent", "charge", "invoice_payment"} as stored: the
        chain Janitor follows from a disputed charge to the period it paid for.
        """
        paid_at = period_start if paid_at is None else paid_at
        token = secrets.token_hex(10)
        invoice = invoice_object(
            id=f"in_{token}",
            customer=customer,
            subscription=subscription,
            amount=amount,
            currency=currency,
            created=paid_at,
            period_start=period_start,
            period_end=period_end,
        )
        charge = self.add_charge(
            f"ch_{token}",
            customer=customer,
            payment_intent=f"pi_{token}",
            amount=amount,
            currency=currency,
            created=paid_at,
        )
        payment = invoice_payment_object(
            id=f"inpay_{token}",
            invoice=invoice["id"],
            payment_intent=f"pi_{token}",
            amount=amount,
            currency=currency,
            created=paid_at,
        )
        with self._lock:
            self.invoices[invoice["id"]] = invoice
            self.invoice_payments[payment["id"]] = payment
            intent = self.payment_intents[f"pi_{token}"]
        return {
            "invoice": invoice,
            "payment_intent": intent,
            "charge": charge,
            "invoice_payment": payment,
        }

    def add_customer_dispute(
        self,
        id: str | None = None,
        *,
        customer: str,
        charged_days_ago: int = 10,
        period_days: int = 30,
        amount: int = 1500,
        **dispute: Any,
    ) -> dict[str, Any]:
        """A dispute on a subscription charge of `customer`, as it happens at Stripe: an
        invoice for `period_days` paid `charged_days_ago`, its payment intent and charge, and
        a dispute naming that charge and payment intent by id (no customer on it)."""
        paid_at = _now() - charged_days_ago * 86_400
        paid = self.add_paid_invoice(
            customer=customer,
            amount=amount,
            period_start=paid_at,
            period_end=paid_at + period_days * 86_400,
            paid_at=paid_at,
        )
        charge = paid["charge"]
        return self.add_dispute(
            id,
            charge=charge["id"],
            payment_intent=charge["payment_intent"],
            amount=amount,
            **dispute,
        )

    def add_event(
        self,
        type: str,
        obj: dict[str, Any],
        created: int | None = None,
        id: str | None = None,
    ) -> dict[str, Any]:
        event = event_object(type, obj, id=id, created=created)
        with self._lock:
            self._events.append(event)
            self._event_order = None
        return event

    def add_dispute(
        self,
        id: str | None = None,
        *,
        charge: str | None = None,
        payment_intent: str | None = None,
        amount: int = 1500,
        currency: str = "usd",
        reason: str = "fraudulent",
        status: str = "needs_response",
        due_by: int | None = None,
        created: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Store a dispute; due_by defaults to a week from now (0 means no response possible).

        Like Stripe's, it names its charge by id and carries no customer: add the charge with
        add_charge (or add_paid_invoice) for the lookup through the charge to find one.
        """
        now = _now()
        dispute = dispute_object(
            id=id or _new_id("dp"),
            charge=charge or _new_id("ch"),
            payment_intent=payment_intent,
            amount=amount,
            currency=currency,
            reason=reason,
            status=status,
            due_by=now + 7 * 86_400 if due_by is None else due_by,
            created=now if created is None else created,
            metadata=metadata or {},
        )
        with self._lock:
            self.disputes[dispute["id"]] = dispute
        return dispute

    # --- subscription storage ---------------------------------------------------------------

    def _subscription_ordinal(self, id: str) -> int | None:
        ordinal = self._single_ordinals.get(id)
        if ordinal is not None:
            return ordinal
        for block in self._blocks:
            number = block.number_of(id, block.id_prefix)
            if number is not None:
                return block.first_ordinal + number - block.first_number
        return None

    def _block_at(self, ordinal: int) -> _BulkBlock:
        return self._blocks[bisect.bisect_right(self._block_starts, ordinal) - 1]

    def _subscription_summary(self, ordinal: int) -> tuple[str, str, int]:
        """(status, customer, created) without rendering the whole object."""
        single = self._single_subscriptions.get(ordinal)
        if single is not None:
            return single["status"], single["customer"], single["created"]
        block = self._block_at(ordinal)
        offset = ordinal - block.first_ordinal
        number = block.first_number + offset
        status = block.status_cycle[number % len(block.status_cycle)]
        if self._bulk_status:
            status = self._bulk_status.get(f"{block.id_prefix}{number:07d}", (status,))[0]
        return status, f"{block.customer_prefix}{number:07d}", block.created_start + offset

    def _subscription_at(self, ordinal: int) -> dict[str, Any]:
        single = self._single_subscriptions.get(ordinal)
        if single is not None:
            return single
        block = self._block_at(ordinal)
        offset = ordinal - block.first_ordinal
        number = block.first_number + offset
        sub_id = f"{block.id_prefix}{number:07d}"
        override = self._bulk_status.get(sub_id)
        status, changed_at = override or (
            block.status_cycle[number % len(block.status_cycle)],
            block.created_start + offset,
        )
        return subscription_object(
            id=sub_id,
            customer=f"{block.customer_prefix}{number:07d}",
            status=status,
            price_id=block.price_id,
            amount=block.amount,
            currency=block.currency,
            interval=block.interval,
            current_period_end=block.current_period_end,
            cancel_at_period_end=False,
            created=block.created_start + offset,
            metadata={},
            legacy_shape=False,
            ended_at=changed_at,
        )

    def _bulk_customer(self, id: str) -> dict[str, Any] | None:
        for block in self._blocks:
            if block.number_of(id, block.customer_prefix) is not None:
                return _bulk_customer_object(block, id)
        return None

    # --- dispatch ---------------------------------------------------------------------------

    _ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
        ("GET", re.compile(r"/v1/subscriptions"), "_list_subscriptions"),
        ("GET", re.compile(r"/v1/subscriptions/([^/]+)"), "_get_subscription"),
        ("GET", re.compile(r"/v1/customers/([^/]+)"), "_get_customer"),
        ("GET", re.compile(r"/v1/events"), "_list_events"),
        ("GET", re.compile(r"/v1/events/([^/]+)"), "_get_event"),
        ("GET", re.compile(r"/v1/disputes/([^/]+)"), "_get_dispute"),
        ("GET", re.compile(r"/v1/charges/([^/]+)"), "_get_charge"),
        ("GET", re.compile(r"/v1/payment_intents/([^/]+)"), "_get_payment_intent"),
        ("GET", re.compile(r"/v1/invoices/([^/]+)"), "_get_invoice"),
        ("GET", re.compile(r"/v1/invoice_payments"), "_list_invoice_payments"),
        ("POST", re.compile(r"/v1/disputes/([^/]+)"), "_update_dispute"),
        ("POST", re.compile(r"/v1/files"), "_create_file"),
        ("GET", re.compile(r"/v1/files/([^/]+)"), "_get_file"),
        ("POST", re.compile(r"/v1/billing_portal/sessions"), "_create_billing_portal_session"),
    )

    def _create_billing_portal_session(self, *, params: Params, files: Files) -> Json:
        """A billing_portal.session from Stripe's fixture: a new one on every call."""
        _check_params(params, {"customer", "return_url", "configuration", "locale"})
        customer = params.get("customer", "")
        if customer not in self.customers and self._bulk_customer(customer) is None:
            raise _missing("customer", customer, param="customer", status=400)
        session_id = _new_id("bps")
        return billing_portal_session_object(
            id=session_id,
            customer=customer,
            return_url=params.get("return_url") or None,
            url=f"{self.base_url}/p/session/{session_id}",
            configuration=params.get("configuration") or None,
        )

    def _handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Json | RawJson, dict[str, str]]:
        url = urlsplit(raw_path)
        path = url.path
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        form: dict[str, str] = {}
        files: dict[str, bytes] = {}
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        body_error: StripeApiError | None = None
        try:
            if content_type.startswith("multipart/form-data"):
                form, files = _parse_multipart(content_type, body)
            elif body:
                form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            body_error = StripeApiError(400, "Invalid request body encoding.")
        except StripeApiError as exc:
            body_error = exc
        record = RecordedRequest(method, path, query, form, headers, files)
        with self._lock:
            if self.record_requests:
                self.requests.append(record)
            refused = self._admit(method, path)
            # The same request again (a GET's path and query; a POST's idempotency key) right
            # after a refusal of it: "refused twice in a row".
            again = raw_path if method == "GET" else headers.get("Idempotency-Key", raw_path)
            if refused is None:
                self._refused_last.discard(again)
            elif again in self._refused_last:
                self.refused_twice += 1
            else:
                self._refused_last.add(again)
            delay = self._take_delay(path) if refused is None else 0.0
        if refused is not None:
            record.status = refused.status
            return refused.status, refused.body, refused.headers
        try:
            return self._answer_admitted(
                method, path, query, form, headers, files, record, delay, body_error
            )
        finally:
            with self._lock:
                self._in_flight = max(0, self._in_flight - 1)  # reset() may have zeroed it

    def _answer_admitted(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        form: dict[str, str],
        headers: dict[str, str],
        files: dict[str, bytes],
        record: RecordedRequest,
        delay: float,
        body_error: StripeApiError | None,
    ) -> tuple[int, Json | RawJson, dict[str, str]]:
        if delay or self.latency:
            self._stopping.wait(delay + self.latency)
        try:
            self._authenticate(headers)
            with self._lock:
                fault = self._take_fault(path, query)
            if fault is not None:
                raise self._fault_error(fault, path)
            if body_error is not None:
                # Never act on a half-read body: a dispute update without submit would submit.
                raise body_error
            status, payload = 200, self._route(method, path, query, form, files)
        except StripeApiError as exc:
            status, payload = exc.status, exc.body
            record.status = status
            return status, payload, exc.headers
        record.status = status
        return status, payload, {}

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        form: dict[str, str],
        files: dict[str, bytes],
    ) -> Json | RawJson:
        for route_method, pattern, handler_name in self._ROUTES:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                handler = getattr(self, handler_name)
                args = [unquote(g) for g in match.groups()]
                with self._lock:
                    return handler(*args, params=query if method == "GET" else form, files=files)
        raise StripeApiError(404, f"Unrecognized request URL ({method}: {path}).")

    def _authenticate(self, headers: dict[str, str]) -> None:
        authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        key = authorization.removeprefix("Bearer ").strip()
        if not authorization.startswith("Bearer ") or not key:
            raise StripeApiError(
                401, "You did not provide an API key. Provide it as a Bearer token."
            )
        valid = key == self.api_key if self.api_key else key.startswith(("sk_test_", "rk_test_"))
        if not valid:
            raise StripeApiError(401, f"Invalid API Key provided: {key[:8]}***")

    def _take_fault(self, path: str, query: dict[str, str]) -> _Fault | None:
        for fault in self._faults:
            if fault.times <= 0 or not fault.matches(path, query):
                continue
            if fault.seen < fault.after:
                fault.seen += 1
                continue
            fault.times -= 1
            return fault
        return None

    def _take_delay(self, path: str) -> float:
        for delay in self._delays:
            if delay.times > 0 and path.startswith(delay.path_prefix):
                delay.times -= 1
                return delay.seconds
        return 0.0

    @staticmethod
    def _fault_error(fault: _Fault, path: str) -> StripeApiError:
        status = fault.status
        if status == 429:
            code = fault.code or "rate_limit"
            message = (
                "This object cannot be accessed right now because another API request or "
                "Stripe process is currently accessing it."
                if code == "lock_timeout"
                else "Request rate limit exceeded. Learn more about rate limits here "
                "https://stripe.com/docs/rate-limits."
            )
            error = StripeApiError(status, message, code=code)
        elif status == 401:
            error = StripeApiError(401, "Invalid API Key provided: sk_test_****fake")
        elif status == 403:
            error = StripeApiError(
                403,
                "The provided key 'rk_test_****fake' does not have the required permissions "
                f"for this endpoint on account 'acct_fake'. Having the 'rak_{path.split('/')[2]}"
                "_read' permission would allow this request to continue.",
                code="secret_key_required" if fault.code is None else fault.code,
            )
        elif status == 404:
            object_id = path.rstrip("/").rsplit("/", 1)[-1]
            error = _missing(path.split("/")[2].rstrip("s"), object_id)
        elif status >= 500:
            error = StripeApiError(status, "Injected failure (StripeFake.fail).", type="api_error")
        else:
            error = StripeApiError(status, "Injected failure (StripeFake.fail).", code=fault.code)
        if fault.should_retry is not None:
            error.headers["Stripe-Should-Retry"] = "true" if fault.should_retry else "false"
        return error

    # --- handlers (called with the lock held) -----------------------------------------------

    def _list_subscriptions(self, *, params: Params, files: Files) -> RawJson:
        _check_params(
            params, {"status", "limit", "starting_after", "created", "customer", "expand"}
        )
        limit = _limit(params)
        status = params.get("status")
        if status is not None and status not in SUBSCRIPTION_LIST_STATUSES:
            raise StripeApiError(
                400,
                f"Invalid status: must be one of {sorted(SUBSCRIPTION_LIST_STATUSES)}",
                param="status",
            )
        if self.refuse_created_filter and any(_param_root(k) == "created" for k in params):
            raise StripeApiError(500, "An internal error occurred.", type="api_error")
        low, high = _created_bounds(params)
        customer = params.get("customer")
        position = self._subscription_count - 1
        if "starting_after" in params:
            cursor = self._subscription_ordinal(params["starting_after"])
            if cursor is None:
                raise _missing("subscription", params["starting_after"], "starting_after", 400)
            position = cursor - 1

        def wanted(sub_status: str) -> bool:
            if status == "all":
                return True
            if status == "ended":
                return sub_status in ENDED_STATUSES
            if status is None:
                return sub_status != "canceled"
            return sub_status == status

        # Walk down from the cursor until one match past the page proves has_more.
        matched: list[int] = []
        while position >= 0 and len(matched) <= limit:
            outside = self._bulk_outside(position, low, high)
            if outside is not None:
                position = outside
                continue
            sub_status, sub_customer, created = self._subscription_summary(position)
            if (
                wanted(sub_status)
                and (customer is None or sub_customer == customer)
                and (low is None or created >= low)
                and (high is None or created <= high)
            ):
                matched.append(position)
            position -= 1
        expand = self._expand(params)
        if expand - {"data.customer"}:
            raise StripeApiError(
                400,
                f"This property cannot be expanded ({sorted(expand - {'data.customer'})[0]}).",
                param="expand",
            )
        expanded = bool(expand) and self.expand_lists
        items = [self._subscription_json(ordinal, expanded) for ordinal in matched[:limit]]
        has_more = "true" if len(matched) > limit else "false"
        return RawJson(
            '{"object": "list", "data": ['
            + ", ".join(items)
            + '], "has_more": '
            + has_more
            + ', "url": "/v1/subscriptions"}'
        )

    def _subscription_json(self, ordinal: int, expanded: bool) -> str:
        """One listed subscription as JSON text. A bulk one is its block's rendered template
        with its number and creation time filled in (the fake serves a page of 100 in about a
        millisecond, so a benchmark of a million measures Janitor, not the fake); any other is
        the rendered object. test_bulk_page_is_the_rendered_objects holds the two equal."""
        single = self._single_subscriptions.get(ordinal)
        block = None if single is not None else self._block_at(ordinal)
        if block is None or (
            self._bulk_status
            and f"{block.id_prefix}{block.first_number + ordinal - block.first_ordinal:07d}"
            in self._bulk_status
        ):
            sub = self._subscription_at(ordinal)
            if expanded:
                sub = {**sub, "customer": self._customer_expanded(sub["customer"])}
            return json.dumps(sub)
        offset = ordinal - block.first_ordinal
        number = block.first_number + offset
        status = block.status_cycle[number % len(block.status_cycle)]
        key = (block.first_ordinal, status, expanded)
        template = self._bulk_templates.get(key)
        if template is None:
            template = self._bulk_templates[key] = _bulk_template(block, status, expanded)
        digits = f"{number:07d}"
        return template % {
            "n": digits,
            "c": block.created_start + offset,
            "ip": f"{block.customer_prefix}{digits}".removeprefix("cus_")[:8].upper(),
        }

    def _bulk_outside(self, position: int, low: int | None, high: int | None) -> int | None:
        """Where the walk goes next when `position` is a bulk subscription created outside
        [low, high]: a block's creation times rise with its ordinals, so the rest of the run
        outside the range is skipped in one step (a created range of a million subscriptions
        costs no walk through the others). None when the position is to be looked at."""
        if (low is None and high is None) or position in self._single_subscriptions:
            return None
        block = self._block_at(position)
        created = block.created_start + position - block.first_ordinal
        if high is not None and created > high:
            return max(block.first_ordinal + high - block.created_start, block.first_ordinal - 1)
        if low is not None and created < low:
            return block.first_ordinal - 1
        return None

    def _customer_expanded(self, id: str) -> dict[str, Any] | str:
        """The customer object for expand[]=data.customer. Stripe always has one (a deleted
        customer expands to its deleted stub); a subscription a test added without its customer
        stays an id here, so such tests keep meaning "a customer Janitor must look up"."""
        return self.customers.get(id) or self._bulk_customer(id) or id

    def _get_subscription(self, id: str, *, params: Params, files: Files) -> Json:
        _check_params(params, {"expand"})
        ordinal = self._subscription_ordinal(id)
        if ordinal is None:
            raise _missing("subscription", id)
        return self._subscription_at(ordinal)

    def _get_customer(self, id: str, *, params: Params, files: Files) -> Json:
        _check_params(params, {"expand"})
        customer = self.customers.get(id) or self._bulk_customer(id)
        if customer is None:
            raise _missing("customer", id)
        return customer

    def _sorted_events(self) -> list[int]:
        if self._event_order is None:
            # Newest first; ties keep the later-added event first, as with real ids.
            self._event_order = sorted(
                range(len(self._events)),
                key=lambda i: (self._events[i]["created"], i),
                reverse=True,
            )
            self._event_rank = {self._events[i]["id"]: r for r, i in enumerate(self._event_order)}
        return self._event_order

    def _list_events(self, *, params: Params, files: Files) -> Json:
        _check_params(
            params,
            {"limit", "starting_after", "created", "type", "types", "delivery_success", "expand"},
        )
        limit = _limit(params)
        low, high = _created_bounds(params)
        types = [v for k, v in params.items() if _param_root(k) == "types"]
        if types and "type" in params:
            raise StripeApiError(400, "You may only specify one of these parameters: type, types.")
        if len(types) > MAX_EVENT_TYPES:
            raise StripeApiError(
                400, f"types may hold at most {MAX_EVENT_TYPES} entries", param="types"
            )
        type_pattern = params.get("type")
        order = self._sorted_events()
        rank = 0
        if "starting_after" in params:
            cursor = self._event_rank.get(params["starting_after"])
            if cursor is None:
                raise _missing("event", params["starting_after"], "starting_after", 400)
            rank = cursor + 1
        matched: list[dict[str, Any]] = []
        for index in order[rank:]:
            event = self._events[index]
            if low is not None and event["created"] < low:
                continue
            if high is not None and event["created"] > high:
                continue
            if types and event["type"] not in types:
                continue
            if type_pattern and not fnmatch.fnmatchcase(event["type"], type_pattern):
                continue
            matched.append(event)
            if len(matched) > limit:
                break
        return _list_envelope("/v1/events", matched[:limit], len(matched) > limit)

    def _get_event(self, id: str, *, params: Params, files: Files) -> Json:
        _check_params(params, {"expand"})
        order = self._sorted_events()
        rank = self._event_rank.get(id)
        if rank is None:
            raise _missing("event", id)
        return self._events[order[rank]]

    def _expand(self, params: Params) -> set[str]:
        return {v for k, v in params.items() if k == "expand" or k.startswith("expand[")}

    def _get_dispute(self, id: str, *, params: Params, files: Files) -> Json:
        _check_params(params, {"expand"})
        dispute = self.disputes.get(id)
        if dispute is None:
            raise _missing("dispute", id)
        expand = self._expand(params)
        unknown = expand - {"charge", "payment_intent"}
        if unknown:
            raise StripeApiError(
                400, f"This property cannot be expanded ({sorted(unknown)[0]}).", param="expand"
            )
        if not expand:
            return dispute
        shown = dict(dispute)
        for name, store in (("charge", self.charges), ("payment_intent", self.payment_intents)):
            if name in expand and shown.get(name):
                found = store.get(shown[name])
                if found is None:
                    raise _missing(name.replace("_", " "), shown[name])
                shown[name] = found
        return shown

    def _get_charge(self, id: str, *, params: Params, files: Files) -> Json:
        _check_params(params, {"expand"})
        charge = self.charges.get(id)
        if charge is None:
            raise _missing("charge", id)
        return charge

    def _get_payment_intent(self, id: str, *, params: Params, files: Files) -> Json:
        _check_params(params, {"expand", "client_secret"})
        intent = self.payment_intents.get(id)
        if intent is None:
            raise _missing("payment_intent", id)
        return intent

    def _get_invoice(self, id: str, *, params: Params, files: Files) -> Json:
        _check_params(params, {"expand"})
        invoice = self.invoices.get(id)
        if invoice is None:
            raise _missing("invoice", id)
        return invoice

    def _list_invoice_payments(self, *, params: Params, files: Files) -> Json:
        _check_params(params, {"invoice", "payment", "status", "limit", "starting_after", "expand"})
        limit = _limit(params)
        invoice = params.get("invoice")
        payment_type = params.get("payment[type]")
        intent = params.get("payment[payment_intent]")
        if intent is not None and payment_type != "payment_intent":
            raise StripeApiError(
                400,
                "payment[type] must be payment_intent with payment[payment_intent].",
                param="payment[type]",
            )
        matched = [
            p
            for p in sorted(self.invoice_payments.values(), key=lambda p: -p["created"])
            if (invoice is None or p["invoice"] == invoice)
            and (intent is None or p["payment"].get("payment_intent") == intent)
            and (params.get("status") is None or p["status"] == params["status"])
        ]
        if "starting_after" in params:
            ids = [p["id"] for p in matched]
            if params["starting_after"] not in ids:
                raise _missing("invoice payment", params["starting_after"], "starting_after", 400)
            matched = matched[ids.index(params["starting_after"]) + 1 :]
        return _list_envelope("/v1/invoice_payments", matched[:limit], len(matched) > limit)

    def _update_dispute(self, id: str, *, params: Params, files: Files) -> Json:
        _check_params(params, {"evidence", "submit", "metadata", "expand"})
        dispute = self.disputes.get(id)
        if dispute is None:
            raise _missing("dispute", id)
        # Stripe's default is submit=true: leaving it out submits the evidence for good.
        submit = _bool_param(params, "submit", default=True)
        evidence: dict[str, str] = {}
        metadata: dict[str, str] = {}
        for key, value in params.items():
            inner = re.fullmatch(r"(evidence|metadata)\[([^\]]+)\]", key)
            if inner is None:
                if _param_root(key) in {"evidence", "metadata"}:
                    raise StripeApiError(400, f"Received unknown parameter: {key}", param=key)
                continue
            kind, name = inner.groups()
            if kind == "metadata":
                metadata[name] = value
            elif name in EVIDENCE_TEXT_FIELDS | EVIDENCE_FILE_FIELDS:
                evidence[name] = value
            else:
                raise StripeApiError(400, f"Received unknown parameter: {key}", param=key)

        details = dispute["evidence_details"]
        if evidence or submit:
            if dispute["status"] not in DISPUTE_OPEN_STATUSES or details["submission_count"] > 0:
                raise StripeApiError(
                    400,
                    "This dispute is already closed or its evidence was already submitted.",
                )
            if details["due_by"] == 0 or details["due_by"] < _now():
                details["past_due"] = details["due_by"] != 0
                raise StripeApiError(400, "The deadline for responding to this dispute has passed.")
        for name, value in evidence.items():
            if name in EVIDENCE_TEXT_FIELDS and len(value) > MAX_EVIDENCE_FIELD_CHARS:
                raise StripeApiError(
                    400,
                    f"evidence[{name}] is longer than {MAX_EVIDENCE_FIELD_CHARS} characters.",
                    param=f"evidence[{name}]",
                )
            if name in EVIDENCE_FILE_FIELDS and value and value not in self.files:
                raise _missing("file upload", value, f"evidence[{name}]", 400)
        merged = {**dispute["evidence"], **{k: v or None for k, v in evidence.items()}}
        text_total = sum(len(v) for k, v in merged.items() if v and k in EVIDENCE_TEXT_FIELDS)
        if text_total > MAX_EVIDENCE_TOTAL_CHARS:
            raise StripeApiError(
                400, f"Evidence is longer than {MAX_EVIDENCE_TOTAL_CHARS} characters in total."
            )

        dispute["evidence"] = merged
        dispute["metadata"].update(metadata)
        details["has_evidence"] = any(
            v is not None for k, v in merged.items() if k != "enhanced_evidence"
        )
        if submit:
            details["submission_count"] += 1
            dispute["status"] = DISPUTE_OPEN_STATUSES[dispute["status"]]
        return dispute

    def _create_file(self, *, params: Params, files: Files) -> Json:
        _check_params(params, {"purpose", "file", "file_link_data", "expand"})
        purpose = params.get("purpose")
        if purpose not in FILE_PURPOSES:
            raise StripeApiError(400, f"Invalid purpose: {purpose}", param="purpose")
        if "file" not in files:
            raise StripeApiError(400, "Missing required param: file.", param="file")
        content = files["file"]
        if len(content) > MAX_FILE_BYTES:
            raise StripeApiError(
                400, f"File is larger than the {MAX_FILE_BYTES} byte limit.", param="file"
            )
        filename = params["file"]
        # Stripe sniffs the content; a name's extension is the fallback for unknown bytes.
        file_type = next((t for magic, t in _FILE_MAGIC if content.startswith(magic)), None)
        if file_type is None:
            file_type = _FILE_EXTENSIONS.get(filename.rsplit(".", 1)[-1].lower())
        if purpose == "dispute_evidence" and file_type not in EVIDENCE_FILE_TYPES:
            raise StripeApiError(
                400, "Dispute evidence must be a PDF, JPEG or PNG file.", param="file"
            )
        uploaded = file_object(
            id=_new_id("file"),
            filename=filename,
            purpose=purpose,
            size=len(content),
            type=file_type or "unknown",
        )
        self.files[uploaded["id"]] = uploaded
        self.file_contents[uploaded["id"]] = content
        return uploaded

    def _get_file(self, id: str, *, params: Params, files: Files) -> Json:
        _check_params(params, {"expand"})
        uploaded = self.files.get(id)
        if uploaded is None:
            raise _missing("file", id)
        return uploaded
