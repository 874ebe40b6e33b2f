"""Reads of the subscription mirror for planning provider calls."""

from __future__ import annotations

from django.db.models import Max, Min

from reconciliation.models import Subscription

# Rows sampled for the quantiles: each boundary is then within a few percent of the true
# quantile, and the ids stay under SQLite's oldest limit of 999 query parameters.
CREATED_SAMPLE_ROWS = 500


def subscription_created_boundaries(ranges: int) -> list[int]:
    """Creation times (unix seconds) that split the mirrored subscriptions into `ranges` parts
    of about equal size, ascending; [] when the mirror holds too few to tell.

    Read from a sample of rows spread evenly over the primary key (the provider's `created`
    is in each row's `raw`), not from every row: a million rows' JSON would take seconds to
    read, and the ranges only need to be roughly even for the parallel listing to keep all
    its readers busy until near the end.
    """
    bounds = Subscription.objects.aggregate(low=Min("pk"), high=Max("pk"))
    low, high = bounds["low"], bounds["high"]
    if low is None or high is None:
        return []
    step = -(-(high - low + 1) // CREATED_SAMPLE_ROWS)  # rounded up: at most that many ids
    sample = Subscription.objects.filter(pk__in=range(low, high + 1, step)).values_list(
        "raw__created", flat=True
    )
    created = sorted(int(value) for value in sample if isinstance(value, int | float))
    if len(created) < ranges:
        return []
    return sorted({created[len(created) * n // ranges] for n in range(1, ranges)})
