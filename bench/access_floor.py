"""The access API bench's floors (`bench/access_api.py --floor`): what gunicorn alone, and
Django alone, answer on this machine, served exactly as the access API is (the project's
gunicorn.conf.py, wrk's closed loop of 16 connections, the same requests).

- `bare_application`: a WSGI callable answering an access-shaped JSON body, no Django.
- The URLconf of `bench.access_floor_settings` (janitor.settings with no middleware and these
  URLs): Django's request handling, URL resolution and a JsonResponse, no middleware, no
  database, no token.
Never part of a deployment: only that settings module routes it.
"""

import json

from django.http import JsonResponse
from django.urls import path

BODY = {
    "id": "acct-0000001",
    "kind": "account",
    "account": "acct-0000001",
    "status": "active",
    "is_active": True,
    "grants_access": True,
    "grace_ends_at": None,
    "version": 3,
    "changed_at": "2026-12-06T10:00:00+00:00",
    "can_log_in": True,
}
# Built without Django's settings: the bare floor's workers never configure Django.
_RAW = json.dumps(BODY).encode()


def bare_application(environ, start_response):
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(_RAW))),
            ("ETag", '"a1.3"'),
        ],
    )
    return [_RAW]


def access_floor(request, public_id: str):
    response = JsonResponse(BODY)
    response["ETag"] = '"a1.3"'
    return response


def healthz(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("healthz", healthz),
    path("api/v1/access/<str:public_id>", access_floor),
]
