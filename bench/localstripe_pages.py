"""What localstripe costs a page, for each way Janitor could learn the customers' emails.

Run against a localstripe already seeded (e.g. by ../shared/peer-djstripe/seed.py):

    .venv/bin/python bench/localstripe_pages.py --port 8431

Pages through, with plain HTTP (no SDK, so the figure is the server's and the socket's):
subscriptions (limit 100, status=all), the same with expand[]=data.customer (what Janitor
reads), and customers (limit 100). Prints pages, seconds and bytes of the first item for each.
localstripe computes every customer's `subscriptions` list by scanning all subscriptions, so a
customer costs the same whether it comes expanded in a subscription page or in a customer page.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request

LISTINGS = (
    ("subscriptions", "/v1/subscriptions?limit=100&status=all"),
    (
        "subscriptions, customer expanded",
        "/v1/subscriptions?limit=100&status=all&expand[]=data.customer",
    ),
    ("customers", "/v1/customers?limit=100"),
)


def listing(base: str, key: str, path: str) -> tuple[int, float, int]:
    pages, seconds, after, first = 0, 0.0, None, 0
    while True:
        url = base + path + (f"&starting_after={after}" if after else "")
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
        started = time.perf_counter()
        with urllib.request.urlopen(request) as response:
            page = json.loads(response.read())
        seconds += time.perf_counter() - started
        pages += 1
        if page["data"] and not first:
            first = len(json.dumps(page["data"][0]))
        if not page["has_more"] or not page["data"]:
            return pages, seconds, first
        after = page["data"][-1]["id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--key", default="sk_test_peerbench0000000000000000000000")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    for round_ in range(1, args.rounds + 1):
        for name, path in LISTINGS:
            pages, seconds, first = listing(base, args.key, path)
            print(
                f"round {round_}: {name:34} {pages:3} pages {seconds:6.2f} s "
                f"({seconds / pages * 1000:6.1f} ms a page; an item {first:,} bytes)"
            )


if __name__ == "__main__":
    main()
