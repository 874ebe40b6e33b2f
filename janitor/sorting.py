"""Sortable column headers: one rule for every list page (the Accounts page, the review queue).

A column not sorted on sorts ascending when clicked; the sorted column flips its direction.
The template side is templates/janitor/_sort_header.html.
"""

from collections.abc import Callable, Iterable


def sort_links(
    *, keys: Iterable[str], sort: str, query_string: Callable[..., str]
) -> dict[str, dict[str, str]]:
    """Per column key: the query string that sorts by it (back to page 1) and its current
    direction ("asc", "desc" or "" when the list is not sorted by it). `sort` is the current
    sort, "-key" for descending; `query_string(sort=..., page=...)` keeps the other filters."""
    current = sort.lstrip("-")
    descending = sort.startswith("-")
    links = {}
    for key in keys:
        if key == current:
            target = key if descending else f"-{key}"
            direction = "desc" if descending else "asc"
        else:
            target, direction = key, ""
        links[key] = {"query": query_string(sort=target, page=1), "direction": direction}
    return links
