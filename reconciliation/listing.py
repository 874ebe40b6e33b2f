"""Reading every provider subscription for a reconciliation run: the first pages one after
another, then, for a long listing, several `created` ranges at once.

Stripe answers one page of 100 subscriptions in a few hundred milliseconds, so a sequential
listing of a million subscriptions waits on 10,000 round trips one after another. Reading K
disjoint ranges of creation time concurrently keeps K requests in flight; the gateway's one
request rate for the whole process (JANITOR_STRIPE_MAX_RPS) decides how fast they really go,
so the concurrency only has to be enough to use that rate, never more.

Only the gateway talks to Stripe: this module calls it, from threads (the SDK's requests are
blocking, and each thread gets its own HTTP session from it). The threads touch no database;
the caller consumes the pages in its own thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.conf import settings

from reconciliation import gateway

logger = logging.getLogger("janitor.gateway")

# Ranges read at once (one thread each). Enough requests in flight to use the default rate
# (20 a second) while a page takes up to 400 ms (8 / 20 s); a slower server leaves the rate
# partly unused (at a second a page, 8 requests a second), a faster one leaves threads waiting
# on the rate. More threads would mostly wait, and each range ends on a partial page. Ranges are
# split evenly, so all of them are busy until near the end.
LISTING_RANGES = 8
# A listing that ends within this many pages is read as it always was, one page after another
# (the same requests as before, so small accounts see no difference):
# planning ranges costs requests of its own (a first night bisects for the oldest subscription)
# and would not pay off. Past it, the pages already read are not read again (by id).
SEQUENTIAL_PAGES = 10
# A first night bisects for the oldest creation time only until it is known to this share of
# the whole span: the bottom range has no lower bound, so precision only balances the ranges.
OLDEST_PRECISION = 1 / 64
PAGE_SIZE = 100
# Pages a sequential listing reads ahead of the mirror writes (see _ReadAhead).
READ_AHEAD = 2

Page = gateway.ListedPage


@dataclass(frozen=True)
class CreatedRange:
    """Subscriptions created at `gte` or later and before `lt` (unix seconds); None is no bound."""

    gte: int | None
    lt: int | None


def created_ranges(boundaries: Iterable[int]) -> list[CreatedRange]:
    """Ranges split at `boundaries` that together cover every creation time exactly once: the
    bottom one has no lower bound and the top one no upper bound (a subscription newer than
    the plan, or older than the oldest seen, still falls in one)."""
    edges = sorted(set(boundaries))
    lows: list[int | None] = [None, *edges]
    highs: list[int | None] = [*edges, None]
    return [CreatedRange(gte=low, lt=high) for low, high in zip(lows, highs, strict=True)]


def boundaries_even(*, oldest: int, newest: int, ranges: int) -> list[int]:
    """Split [oldest, newest] into `ranges` spans of equal time (fewer when it is too short)."""
    span = newest + 1 - oldest
    return sorted({oldest + span * i // ranges for i in range(1, ranges)} - {oldest})


def _oldest_created(*, newest: int, known: int) -> int:
    """About the oldest creation time, probing with one-item requests: `created[lte]=t` lists
    the newest subscription created at t or before, so nothing listed means the oldest is after
    t. Steps back from `known` (a creation time already seen) in doubling strides, then bisects.
    Used on a first night, when the mirror cannot tell how creation times spread."""
    high = known  # a subscription was created at `high`; the oldest is at or before it
    stride = max(1, newest - known)
    while True:
        candidate = high - stride
        if candidate < 0:
            low = 0
            break
        found = gateway.subscription_newest_created(created_lte=candidate)
        if found is None:
            low = candidate + 1
            break
        high, stride = found, stride * 2
    while high - low > max(1, int((newest - high) * OLDEST_PRECISION)):
        middle = (low + high) // 2
        found = gateway.subscription_newest_created(created_lte=middle)
        if found is None:
            low = middle + 1
        else:
            high = found
    return high


def _read_ranges(
    ranges: list[CreatedRange], *, expand_customer: bool, already_read: set[str], page_size: int
) -> Iterator[Page]:
    """Read every range in its own thread and yield their pages as they come, in any order.

    The queue holds at most two pages per range, so a slow consumer (the mirror writes) holds
    the readers back instead of the pages piling up in memory. The first range to fail stops
    the others and its GatewayError is raised here, as a sequential listing's would be.
    """
    pages: queue.Queue[Page | Exception | None] = queue.Queue(maxsize=2 * len(ranges))
    stop = threading.Event()

    def put(item: Page | Exception | None) -> bool:
        while not stop.is_set():
            try:
                pages.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read(created: CreatedRange) -> None:
        try:
            for page in gateway.subscription_pages(
                status="all",
                limit=page_size,
                created_gte=created.gte,
                created_lt=created.lt,
                expand_customer=expand_customer,
            ):
                if not put(page):
                    return
            put(None)
        except Exception as exc:  # a GatewayError, or a bug: the consumer raises it either way
            put(exc)

    threads = [
        threading.Thread(target=read, args=(created,), name=f"janitor-listing-{n}", daemon=True)
        for n, created in enumerate(ranges)
    ]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            item = pages.get()
            if item is None:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                fresh = [sub for sub in item if sub["id"] not in already_read]
                if fresh:
                    yield gateway.ListedPage(fresh, item.fetched_at)
    finally:
        # Also when the consumer stops early: no reader outlives the listing (each finishes the
        # request it is in, then sees the stop).
        stop.set()
        for thread in threads:
            thread.join()


class _ReadAhead:
    """Pages of one listing read in a thread, up to READ_AHEAD pages ahead of the consumer.

    A sequential listing cannot ask for a page before it has the one before (the cursor is its
    last id), but it need not wait for the consumer either: while the mirror writes one page,
    the next is already on its way. A GatewayError (or any failure) comes out of the iterator
    where its page would have.
    """

    def __init__(self, pages: Iterator[Page]) -> None:
        self._pages = pages
        self._queue: queue.Queue[Page | Exception | None] = queue.Queue(maxsize=READ_AHEAD)
        # stop: finish the request under way and hand its page over; abandon: hand nothing over.
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._thread = threading.Thread(target=self._read, name="janitor-listing", daemon=True)
        self._thread.start()

    def _put(self, item: Page | Exception | None) -> None:
        while not self._abandon.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _read(self) -> None:
        try:
            for page in self._pages:
                self._put(page)
                if self._stop.is_set() or self._abandon.is_set():
                    return
            self._put(None)
        except Exception as exc:  # a GatewayError, or a bug: the consumer raises it either way
            self._put(exc)

    def __iter__(self) -> Iterator[Page]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def stop(self) -> list[Page]:
        """Stop reading ahead and return the pages read but not yet consumed (none is lost).

        Called where the listing splits into ranges, which read again every subscription not
        in a page handed over: a page read ahead that failed is left to them (a lasting
        failure fails a range), and the pages read before it are still handed over."""
        self._stop.set()
        left: list[Page] = []
        while self._thread.is_alive() or not self._queue.empty():
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(item, Exception):
                logger.warning("a page read ahead failed; the ranges read it again: %s", item)
                continue
            if item is not None:
                left.append(item)
        return left

    def abandon(self) -> None:
        """Stop without handing anything over (the consumer stopped or failed)."""
        self._abandon.set()
        self._thread.join()


class SubscriptionListing:
    """Every provider subscription (any status), once each, as an iterator of pages.

    Pages are read one after another, newest first, as before, until one more than
    SEQUENTIAL_PAGES has been read (proving the listing longer). It is then split into ranges
    of creation time, read at once: at `mirror_boundaries` (quantiles of the mirrored
    subscriptions' creation times, so each range holds about as many; read before the listing
    writes the mirror), or on a first night, when the mirror holds none, into LISTING_RANGES
    spans of equal time between the oldest creation time (probed at the provider) and the
    newest. A server that refuses the `created` filter (localstripe answers 500) gets the rest
    of the sequential listing instead.

    `how` says which was done, once iteration has started; a failure raises GatewayError from
    the iterator, whichever range it hit.
    """

    def __init__(
        self,
        *,
        mirror_boundaries: list[int],
        expand_customer: bool = True,
        ranges: int = LISTING_RANGES,
        sequential_pages: int = SEQUENTIAL_PAGES,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.mirror_boundaries = mirror_boundaries
        self.expand_customer = expand_customer
        self.ranges = ranges
        self.sequential_pages = sequential_pages
        self.page_size = page_size
        self.how = ""

    def __iter__(self) -> Iterator[Page]:
        return self._pages()

    def _pages(self) -> Iterator[Page]:
        sequential = _ReadAhead(
            gateway.subscription_pages(
                status="all", limit=self.page_size, expand_customer=self.expand_customer
            )
        )
        try:
            yield from self._pages_from(sequential)
        finally:
            sequential.abandon()  # a no-op once it has ended or was stopped

    def _pages_from(self, sequential: _ReadAhead) -> Iterator[Page]:
        already_read: set[str] = set()
        created: list[int] = []
        pages_read = 0
        for page in sequential:
            yield page
            pages_read += 1
            already_read.update(sub["id"] for sub in page)
            created.extend(int(sub["created"]) for sub in page)
            if pages_read > self.sequential_pages:
                break
        else:
            self.how = f"sequential: {pages_read} page(s), too few to split"
            return
        newest = max(created)
        if not self._created_filter_works(newest=newest):
            self.how = "sequential: the provider refused the created filter"
            logger.warning("Listing subscriptions sequentially: the provider refused `created`.")
            yield from sequential
            return
        # The pages read ahead meanwhile are handed over too; the ranges skip what they hold.
        for page in sequential.stop():
            yield page
            already_read.update(sub["id"] for sub in page)
        boundaries = self.mirror_boundaries
        source = "from the mirror"
        if not boundaries:
            oldest = _oldest_created(newest=newest, known=min(created))
            boundaries = boundaries_even(oldest=oldest, newest=newest, ranges=self.ranges)
            source = "probed (the mirror holds none)"
        ranges = created_ranges(boundaries)
        self.how = f"parallel: {len(ranges)} created ranges {source}"
        yield from _read_ranges(
            ranges,
            expand_customer=self.expand_customer,
            already_read=already_read,
            page_size=self.page_size,
        )

    @staticmethod
    def _created_filter_works(*, newest: int) -> bool:
        """Whether the provider takes a `created` filter: a probe with one (retried once at
        most: a refusal has a fallback). A failed probe is a refusal only if the server then
        answers the same probe without the filter, and refuses the filter once more: a 429 or
        a 503 twice in a row is an outage, not a refusal, and would have turned a parallel
        listing of hours into a sequential one (an outage fails the listing, as it would have
        a page later). A refused key is not a refused filter: that still fails the listing."""
        retries = min(1, int(settings.STRIPE_MAX_NETWORK_RETRIES))

        def refusal() -> gateway.GatewayError | None:
            try:
                gateway.subscription_newest_created(created_lte=newest, retries=retries)
            except gateway.GatewayAuthError:
                raise
            except gateway.GatewayError as exc:
                return exc
            return None

        first = refusal()
        if first is None:
            return True
        # The provider answers at all? (Raises, failing the listing, when it does not.)
        gateway.subscription_newest_created(created_lte=None)
        again = refusal()
        if again is None:
            return True
        logger.warning(
            "The provider refused a created filter twice (%s, then %s) while answering without "
            "it: %s",
            first.status,
            again.status,
            again,
        )
        return False
