"""Benchmark: staged revocation of an account whose members hold N Redis sessions in all;
enforcement middleware cost.

Needs PostgreSQL and Redis (a scratch database: it migrates it and writes test users):

    psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE janitor_bench5'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/janitor_bench5 \\
    REDIS_URL=redis://127.0.0.1:6379/5 JANITOR_CACHE_PREFIX=bench5 DJANGO_DEBUG=false \\
    .venv/bin/python bench/revocation.py --sessions 100 --runs 20 --requests 2000

Team accounts (issue 20): an account of 500 members holding 5,000 sessions,

    .venv/bin/python bench/revocation.py --members 500 --sessions 5000 --runs 10 --requests 0
"""

import argparse
import os
import sys
import time
from importlib import import_module
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "janitor.settings")

import django

django.setup()

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.models import Group
from django.contrib.messages.storage.fallback import FallbackStorage
from django.core.management import call_command
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings

from accounts.middleware import AccessEnforcementMiddleware
from accounts.models import Account, RevocationRequest, RevocationStatus, User
from accounts.roles import ROLE_ADMIN, ROLE_SUPPORT
from accounts.services import sessions as session_index
from accounts.services.revocation import revocation_request, revocation_run

BACKEND = "accounts.backends.AccessStatusBackend"
MIDDLEWARE_PATH = "accounts.middleware.AccessEnforcementMiddleware"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(label: str, values: list[float], unit: str = "ms") -> str:
    return (
        f"{label:<44} n={len(values):<5} p50={pct(values, 50):8.3f} {unit}  "
        f"p95={pct(values, 95):8.3f} {unit}  max={max(values):8.3f} {unit}"
    )


def staff(email: str, role: str) -> User:
    user, _ = User.objects.get_or_create(email=email, defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)  # fresh permission cache


def customer_with_sessions(n: int, serial: int, members: int = 1) -> tuple[User, list[str]]:
    """An account of `members` members signed in n times in all, round robin, through
    django.contrib.auth.login (so the index fills). Returns its first member and the keys."""
    stamp = time.time_ns()
    account = Account.objects.create(
        email=f"bench-{stamp}-{serial}@example.com", public_id=f"bench-{stamp}-{serial}"
    )
    User.objects.bulk_create(
        [
            User(
                email=f"bench-{stamp}-{serial}-{k}@example.com",
                public_id=f"bench-{stamp}-{serial}-m{k}",
                account=account,
                password="!",
            )
            for k in range(members)
        ]
    )
    people = list(User.objects.filter(account=account).select_related("account").order_by("pk"))
    store = import_module(settings.SESSION_ENGINE).SessionStore
    keys = []
    factory = RequestFactory()
    for i in range(n):
        request = factory.get("/app/")
        request.session = store()
        login(request, people[i % members], backend=BACKEND)
        request.session.save()
        keys.append(request.session.session_key)
    return people[0], keys


def bench_revocation(sessions: int, runs: int, members: int = 1) -> None:
    requester = staff("bench-support@janitor.test", ROLE_SUPPORT)
    approver = staff("bench-admin@janitor.test", ROLE_ADMIN)
    totals, by_step = [], {}
    for serial in range(runs):
        user, keys = customer_with_sessions(sessions, serial, members)
        revocation = revocation_request(
            account=user.account, requested_by=requester, reason="bench"
        )
        # Approval is excluded from the figure: mark it approved directly.
        RevocationRequest.objects.filter(pk=revocation.pk).update(
            status=RevocationStatus.APPROVED, decided_by=approver
        )
        started = time.perf_counter()
        done = revocation_run(revocation_id=revocation.pk)
        totals.append((time.perf_counter() - started) * 1000)
        assert done.status == RevocationStatus.COMPLETED, done.last_error
        assert done.sessions_removed == sessions, done.sessions_removed
        assert not any(
            session_index._redis().exists(session_index._session_store_key(k)) for k in keys
        )
        for name, info in done.steps.items():
            by_step.setdefault(name, []).append(info["ms"])
    print(
        f"\nStaged revocation of an account of {members} member(s), {sessions} sessions in "
        f"Redis, {runs} runs (approval excluded)"
    )
    print(summary("revocation_run total", totals))
    for name in sorted(by_step):
        print(summary(f"  step {name} (as recorded)", by_step[name]))


def bench_middleware(requests: int) -> None:
    user, keys = customer_with_sessions(1, 0)
    factory = RequestFactory()
    mw = AccessEnforcementMiddleware(lambda request: HttpResponse("ok"))

    # 1. In isolation: the work the middleware adds for a signed-in user whose user object the
    #    view loads anyway (AuthenticationMiddleware resolves it once per request).
    respond = mw.get_response
    isolated, baseline = [], []
    for i in range(requests * 2):
        request = factory.get("/app/")
        request.user = user
        request.session = {}
        call, into = (mw, isolated) if i % 2 else (respond, baseline)
        started = time.perf_counter_ns()
        call(request)
        into.append((time.perf_counter_ns() - started) / 1000)
    print(f"\nEnforcement middleware, {requests} requests each")
    print(summary("isolated: middleware + a trivial view", isolated, unit="us"))
    print(summary("isolated: the trivial view alone", baseline, unit="us"))
    print(
        f"{'isolated: added (p50 / p95 difference)':<44} "
        f"p50={pct(isolated, 50) - pct(baseline, 50):+8.3f} us  "
        f"p95={pct(isolated, 95) - pct(baseline, 95):+8.3f} us"
    )

    # 2. The rare path: a stale cookie from a revoked session (tombstone + user lookup).
    store = import_module(settings.SESSION_ENGINE).SessionStore
    revoked, revoked_keys = customer_with_sessions(1, 1)
    session_index.sessions_revoke_account(account=revoked.account)
    stale = []
    for _ in range(min(requests, 500)):
        request = factory.get("/app/")
        request.COOKIES[settings.SESSION_COOKIE_NAME] = revoked_keys[0]
        request.session = store(revoked_keys[0])
        request.session.load()
        request.user = _anonymous()
        request._messages = FallbackStorage(request)
        started = time.perf_counter_ns()
        mw(request)
        stale.append((time.perf_counter_ns() - started) / 1000)
    print(summary("stale cookie of a revoked session (rare)", stale, unit="us"))

    # 3. End to end through the whole stack, GET /app/, with and without the middleware,
    #    interleaved so drift hits both equally.
    # Plain static storage: the manifest one needs collectstatic, beside the point here.
    plain_static = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=plain_static):
        _end_to_end(user, requests)


def _end_to_end(user: User, requests: int) -> None:
    without = [m for m in settings.MIDDLEWARE if m != MIDDLEWARE_PATH]
    timings = {"with": [], "without": []}
    clients = {}
    for label, stack in (("with", settings.MIDDLEWARE), ("without", without)):
        with override_settings(MIDDLEWARE=stack):
            client = Client()
            client.force_login(user)
            client.get("/app/", secure=True)
            clients[label] = (client, stack)
    for i in range(requests):
        for label in ("with", "without") if i % 2 else ("without", "with"):
            # The handler built its middleware chain on the first request: no override needed.
            client, _ = clients[label]
            started = time.perf_counter()
            response = client.get("/app/", secure=True)
            timings[label].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.status_code
    print(summary("GET /app/ end to end, with middleware", timings["with"]))
    print(summary("GET /app/ end to end, without middleware", timings["without"]))
    print(
        f"{'added (p50 / p95 difference)':<44} "
        f"p50={pct(timings['with'], 50) - pct(timings['without'], 50):+8.3f} ms  "
        f"p95={pct(timings['with'], 95) - pct(timings['without'], 95):+8.3f} ms"
    )


def _anonymous():
    from django.contrib.auth.models import AnonymousUser

    return AnonymousUser()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--members", type=int, default=1, help="members of the account")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql") or not settings.REDIS_URL:
        sys.exit(
            "Run with DATABASE_URL=postgres://... and REDIS_URL=redis://... (see the docstring)."
        )
    call_command("migrate", verbosity=0)
    print(
        f"PostgreSQL {settings.DATABASES['default']['NAME']}, Redis {settings.REDIS_URL}, "
        f"prefix {settings.CACHE_KEY_PREFIX!r}, session engine {settings.SESSION_ENGINE}, "
        f"DEBUG={settings.DEBUG}"
    )
    try:
        bench_revocation(args.sessions, args.runs, args.members)
        if args.requests:
            bench_middleware(args.requests)
    finally:
        client = session_index._redis()
        keys = list(client.scan_iter(f"{settings.CACHE_KEY_PREFIX}:*", count=1000))
        if keys:
            client.delete(*keys)


if __name__ == "__main__":
    main()
