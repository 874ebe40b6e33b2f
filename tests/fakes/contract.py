"""The shape contract: does an object a fake serves look like Stripe's fixture for it?"""

from __future__ import annotations

from typing import Any

# Free-form hashes: any keys, any string values.
FREE_FORM = frozenset({"metadata"})
# Keys whose value is another resource checked on its own (an event's object).
CHECKED_ELSEWHERE = frozenset({"data.object"})


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _expandable_pair(served: Any, fixture: Any) -> bool:
    """An expandable field: Stripe sends an id, or the object when asked to expand it."""
    if isinstance(served, dict) and isinstance(fixture, str):
        return isinstance(served.get("id"), str)
    if isinstance(served, str) and isinstance(fixture, dict):
        return "id" in fixture
    return False


def contract_violations(
    served: dict[str, Any], fixture: dict[str, Any], *, path: str = "", top: bool = True
) -> list[str]:
    """What in `served` breaks the contract with Stripe's `fixture` (empty: it holds).

    Every key of the fixture must be there with a compatible JSON type (null is allowed either
    way: most Stripe fields are nullable, and a null in the fixture says nothing of the type);
    an expandable field may be its id or the object; nested objects and the first element of
    arrays of objects are checked the same way. At the top level, a key the fixture lacks is
    an invented field.
    """
    problems: list[str] = []
    for key, expected in fixture.items():
        where = f"{path}.{key}" if path else key
        if key not in served:
            problems.append(f"missing {where}")
            continue
        actual = served[key]
        if where in CHECKED_ELSEWHERE or key in FREE_FORM:
            continue
        if actual is None or expected is None or _expandable_pair(actual, expected):
            continue
        if _json_type(actual) != _json_type(expected):
            problems.append(f"{where} is {_json_type(actual)}, Stripe sends {_json_type(expected)}")
            continue
        if isinstance(expected, dict):
            problems += contract_violations(actual, expected, path=where, top=False)
        elif isinstance(expected, list) and expected and isinstance(expected[0], dict):
            for index, element in enumerate(actual):
                if isinstance(element, dict):
                    problems += contract_violations(
                        element, expected[0], path=f"{where}[{index}]", top=False
                    )
    if top:
        problems += [f"invented {key}" for key in served if key not in fixture]
    return problems


def list_envelope_violations(served: dict[str, Any]) -> list[str]:
    """Stripe's list envelope: object "list", data (array), has_more (bool), url (string)."""
    problems = []
    if served.get("object") != "list":
        problems.append(f"object is {served.get('object')!r}, not 'list'")
    for key, kind in (("data", list), ("has_more", bool), ("url", str)):
        if not isinstance(served.get(key), kind):
            problems.append(f"{key} missing or not {kind.__name__}")
    return problems
