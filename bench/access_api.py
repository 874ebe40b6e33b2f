"""Access API benchmark at 1,000,000 accounts: gunicorn, PostgreSQL and wrk.

Run from the project root (figures and the exact command: docs/benchmarks/access-api.md):

    .venv/bin/python bench/access_api.py --accounts 1000000

Seeds a scratch database (default janitor_h_access_bench) with one INSERT ... SELECT per table
(generate_series, no Python row loop): N accounts (5 % in grace, 2 % revoked, versions 0-3),
each with one member of its own public id (3 % of them disabled), and --changes rows of the
changes feed. The search's trigram indexes are dropped for the load and rebuilt after it with
their migrations' own code, so the tables look like a live database's. `--reuse` skips seeding.

Then serves the app with gunicorn and the project's gunicorn.conf.py (4 sync workers on 2
cores; only its per-request access log is off, as in bench/gunicorn/webhooks.conf.py, unless
--access-log) and, behind a TLS proxy as in production (X-Forwarded-Proto: https), loads it at
16 connections for --duration seconds, twice:

1. saturated: wrk, each connection sending its next request as soon as the last is answered
   (a closed loop); latency is then about connections / throughput (Little's law);
2. paced: an open loop at a fixed rate (--rate requests/s, at most 16 connections at once, an
   asyncio client: see paced()), below what the machine can serve, so latency is the time
   through gunicorn without a queue of our own making.

Each request asks for a random public id, half accounts and half members; --not-modified of
them (default 25 %) carry the current ETag in If-None-Match and are answered 304. Reports
requests/s and wrk's p50/p95/p99 (microsecond precision), the status mix, then pages through
the changes feed over HTTP (limit 100 and 1,000) and reports the page times. Last, after
gunicorn's graceful stop, checks that the token's use_count (written in batches and at each
worker's exit) covers every request wrk counted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.serving import gunicorn_stop, wait_time_wait  # noqa: E402

SEED_ACCOUNTS = """
INSERT INTO accounts_account (public_id, email, name, created_at, is_active, access_status,
    grace_ends_at, stripe_customer_id, access_version, access_changed_at)
SELECT 'acct-' || lpad(i::text, 7, '0'), 'billing' || i || '@example.test', 'Account ' || i,
    now() - (i %% 1000) * interval '1 day',
    i %% 50 <> 1,
    CASE WHEN i %% 50 = 1 THEN 'revoked' WHEN i %% 20 = 0 THEN 'grace_period'
        ELSE 'active' END,
    CASE WHEN i %% 20 = 0 AND i %% 50 <> 1 THEN now() + (i %% 14) * interval '1 day' END,
    'cus_' || lpad(i::text, 10, '0'),
    i %% 4,
    CASE WHEN i %% 4 > 0 THEN now() - (i %% 90) * interval '1 day' END
FROM generate_series(1, %(n)s) AS i
"""
# One member each, with an id of its own (so half the lookups answer for a member).
SEED_MEMBERS = """
INSERT INTO accounts_user (password, is_superuser, public_id, email, name, is_active, is_staff,
    date_joined, account_id, session_version)
SELECT '', false, 'mem-' || substr(a.public_id, 6), 'member' || a.id || '@example.test',
    a.name, a.id %% 30 <> 0, false, a.created_at, a.id, 0
FROM accounts_account a ORDER BY a.id
"""
# The feed: changes of random accounts, all written by the seeding transaction (so below the
# feed's horizon once it commits), served in id order.
SEED_CHANGES = """
INSERT INTO accounts_accesschange (account_id, version, at, txid, event_type)
SELECT f.first + (i * 7919) %% %(n)s, 1 + i / %(n)s,
    now() - (%(changes)s - i) * interval '1 second', pg_current_xact_id()::text::bigint,
    'access.grace_started'
FROM generate_series(0, %(changes)s - 1) AS i, (SELECT min(id) AS first FROM accounts_account) f
"""
TRIGRAM_MIGRATIONS = ("0008_search_trigram", "0010_team_accounts_fields")

# --warm-workers: a gunicorn hook (appended to the bench's copy of gunicorn.conf.py) that sends
# one request through the app before a new worker accepts any, so the first request of a worker
# (at start and after each max_requests recycling) does not pay for the URLconf's imports and
# the database connection.
WARM_HOOK = """

def post_worker_init(worker):
    import io
    import sys

    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": "/healthz", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "HTTP_X_FORWARDED_PROTO": "https", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
    }
    response = worker.wsgi(environ, lambda status, headers, exc_info=None: None)
    b"".join(response)
    response.close()
"""

LUA = r"""
-- Random public ids from the file (id TAB etag-or-empty); every request carries the token and
-- the proxy's X-Forwarded-Proto; an id with an ETag sends it in If-None-Match.
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  token = args[1]
  ids, tags = {}, {}
  for line in io.lines(args[2]) do
    local tab = line:find("\t", 1, true)
    ids[#ids + 1] = line:sub(1, tab - 1)
    tags[#tags + 1] = line:sub(tab + 1)
  end
  math.randomseed(os.time() + id * 7919)
  ok, not_modified, other = 0, 0, 0
end
function request()
  local n = math.random(#ids)
  local headers = {["Authorization"] = "Bearer " .. token, ["X-Forwarded-Proto"] = "https"}
  if tags[n] ~= "" then headers["If-None-Match"] = tags[n] end
  return wrk.format("GET", "/api/v1/access/" .. ids[n], headers)
end
function response(status, headers, body)
  if status == 200 then ok = ok + 1
  elseif status == 304 then not_modified = not_modified + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local s200, s304, sother = 0, 0, 0
  for _, thread in ipairs(threads) do
    s200 = s200 + thread:get("ok")
    s304 = s304 + thread:get("not_modified")
    sother = sother + thread:get("other")
  end
  io.write(string.format(
    "JANITOR requests=%d p50_us=%d p95_us=%d p99_us=%d max_us=%d s200=%d s304=%d other=%d\n",
    summary.requests, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, s200, s304, sother))
end
"""


def _admin_sql(sql: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(sql)


def _trigram_indexes(action: str) -> None:
    from importlib import import_module

    from django.db import connection

    with connection.schema_editor() as editor:
        for name in TRIGRAM_MIGRATIONS:
            getattr(import_module(f"accounts.migrations.{name}"), action)(None, editor)


def seed(args) -> None:
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    _trigram_indexes("trigram_indexes_drop")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(SEED_ACCOUNTS, {"n": args.accounts})
        cursor.execute(SEED_MEMBERS, {})
        cursor.execute(SEED_CHANGES, {"n": args.accounts, "changes": args.changes})
    seeded = time.perf_counter() - started
    started = time.perf_counter()
    _trigram_indexes("trigram_indexes")
    indexed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(
        f"seeded {args.accounts:,} accounts, {args.accounts:,} members and {args.changes:,} "
        f"changes in {seeded:.1f} s; trigram indexes rebuilt in {indexed:.1f} s"
    )


def id_file(path: Path, args) -> dict:
    """Random subjects with, for --not-modified of them, their current ETag (built by the
    selector's own AccessAnswer, read in bulk here)."""
    from django.db import connection

    from accounts.selectors.access_api import AccessAnswer

    rng = random.Random(args.seed)
    picks = [rng.randrange(1, args.accounts + 1) for _ in range(args.ids)]
    kinds = {"account": 0, "member": 0, "with_etag": 0}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.id, a.public_id, a.access_version, u.public_id, u.is_active "
            "FROM accounts_account a JOIN accounts_user u ON u.account_id = a.id "
            "WHERE a.public_id = ANY(%s)",
            [[f"acct-{n:07d}" for n in set(picks)]],
        )
        rows = {row[1]: row for row in cursor.fetchall()}
    with path.open("w") as out:
        for n in picks:
            pk, account_id, version, member_id, member_active = rows[f"acct-{n:07d}"]
            kind = "member" if rng.random() < 0.5 else "account"
            answer = AccessAnswer(
                id=member_id if kind == "member" else account_id,
                kind=kind,
                account_pk=pk,
                account=account_id,
                status="",
                is_active=True,
                grace_ends_at=None,
                version=version,
                changed_at=None,
                member_is_active=member_active if kind == "member" else None,
            )
            etag = answer.etag if rng.random() < args.not_modified else ""
            kinds[kind] += 1
            kinds["with_etag"] += bool(etag)
            out.write(f"{answer.id}\t{etag}\n")
    return kinds


def wrk(base: str, token: str, ids: Path, *, connections: int, seconds: int, threads: int = 1):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA)
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                base,
                "--",
                token,
                str(ids),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    match = re.search(
        r"JANITOR requests=(\d+) p50_us=(\d+) p95_us=(\d+) p99_us=(\d+) max_us=(\d+) "
        r"s200=(\d+) s304=(\d+) other=(\d+)",
        out,
    )
    if not match:
        sys.exit(f"unexpected wrk output:\n{out}")
    requests, p50, p95, p99, pmax, s200, s304, other = map(int, match.groups())
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "requests": requests,
        "rps": float(rate.group(1)) if rate else 0.0,
        "p50_ms": p50 / 1000,
        "p95_ms": p95 / 1000,
        "p99_ms": p99 / 1000,
        "max_ms": pmax / 1000,
        "s200": s200,
        "s304": s304,
        "other": other,
        "errors": errors.group(0) if errors else "no socket errors",
    }


def feed_pages(base: str, token: str, limit: int, pages: int) -> list[float]:
    """Page through the feed from the start over HTTP; milliseconds per page."""
    times = []
    cursor = ""
    for _ in range(pages):
        url = f"{base}/api/v1/access?limit={limit}" + (f"&changed_since={cursor}" if cursor else "")
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {token}", "X-Forwarded-Proto": "https"}
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        times.append((time.perf_counter() - started) * 1000)
        assert len(body["changes"]) == limit, f"a short page: {len(body['changes'])}"
        cursor = body["next_cursor"]
    return times


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int, *, children: bool = False) -> float:
    """CPU seconds of `pid` (and of its reaped children), from /proc; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime are fields 14-17 (1-based); after the name, 12-15 (1-based).
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def server_cpu(master: int, database: str) -> tuple[float, dict[int, float]]:
    """CPU seconds used so far by gunicorn (the master, its live workers and those it reaped)
    and by each live PostgreSQL backend of `database`."""
    workers = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    web = _proc_cpu(master, children=True) + sum(_proc_cpu(pid) for pid in workers)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        )
        backends = {pid: _proc_cpu(pid) for (pid,) in cursor.fetchall()}
    connection.close()
    return web, backends


def cpu_per_request(before, after, requests: int) -> str:
    """gunicorn's and PostgreSQL's CPU milliseconds per request between two server_cpu()
    readings (backends that ended in between, when a worker was recycled, are not counted)."""
    web = (after[0] - before[0]) * 1000 / requests
    db = sum(cpu - before[1].get(pid, 0.0) for pid, cpu in after[1].items()) * 1000 / requests
    return f"CPU per request: gunicorn {web:.2f} ms, PostgreSQL >= {db:.2f} ms"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def paced(port: int, token: str, ids: Path, *, rate: int, seconds: int, connections: int):
    """An open loop: requests start on a fixed schedule (`rate` per second), each on its own
    connection as gunicorn's sync workers answer, at most `connections` at once. Latency runs
    from the scheduled start, so a request that waited for a free connection counts that wait
    (no coordinated omission). Python's asyncio is the client: it adds its own time, a few
    tenths of a millisecond, to every figure. (wrk's delay() cannot pace a sync server: wrk
    reconnects first and waits after, so each worker sits blocked on an idle connection.)"""
    import asyncio
    from collections import Counter

    lines = [line.rstrip("\n").split("\t") for line in ids.open()]
    rng = random.Random(7)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()

    async def one(public_id: str, etag: str, scheduled: float, gate: asyncio.Semaphore) -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head = (
                f"GET /api/v1/access/{public_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {token}\r\nX-Forwarded-Proto: https\r\n"
                + (f"If-None-Match: {etag}\r\n" if etag else "")
                + "Connection: close\r\n\r\n"
            )
            writer.write(head.encode())
            data = await reader.read()  # the sync worker closes after its answer
            latencies.append((time.perf_counter() - scheduled) * 1000)
            statuses[data[9:12].decode()] += 1
            writer.close()

    async def run() -> float:
        gate = asyncio.Semaphore(connections)
        tasks = []
        start = time.perf_counter()
        n = 0
        while True:
            due = start + n / rate
            if due - start >= seconds:
                break
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            public_id, etag = lines[rng.randrange(len(lines))]
            tasks.append(asyncio.create_task(one(public_id, etag, due, gate)))
            n += 1
        await asyncio.gather(*tasks)
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": _pct(latencies, 50),
        "p95_ms": _pct(latencies, 95),
        "p99_ms": _pct(latencies, 99),
        "max_ms": max(latencies),
        "s200": statuses["200"],
        "s304": statuses["304"],
        "other": sum(statuses.values()) - statuses["200"] - statuses["304"],
        "errors": "no socket errors",
    }


def in_process(token: str, ids: Path, count: int) -> list[float]:
    """The server's own time: `count` requests through the WSGI application in this process
    (every middleware, the view, the database round trips; no gunicorn, no network, no queue),
    milliseconds each, after a warm-up."""
    import io

    from janitor.wsgi import application

    lines = [line.rstrip("\n").split("\t") for line in ids.open()][: count + 200]
    status = {}

    def start_response(value, headers, exc_info=None):
        status["value"] = value

    times = []
    for n, (public_id, etag) in enumerate(lines):
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": f"/api/v1/access/{public_id}",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_AUTHORIZATION": f"Bearer {token}",
            "HTTP_X_FORWARDED_PROTO": "https",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
        }
        if etag:
            environ["HTTP_IF_NONE_MATCH"] = etag
        started = time.perf_counter()
        response = application(environ, start_response)
        b"".join(response)
        response.close()
        elapsed = (time.perf_counter() - started) * 1000
        if not status["value"].startswith(("200", "304")):
            sys.exit(f"in-process request for {public_id} answered {status['value']}")
        if n >= 200:
            times.append(elapsed)
    return times


_TCP_COUNTERS = (
    "ActiveOpens",
    "AttemptFails",
    "RetransSegs",
    "TCPSynRetrans",
    "ListenOverflows",
    "ListenDrops",
    "TCPTimeouts",
)


def tcp_counters() -> dict[str, int]:
    """The machine's TCP counters (/proc/net/snmp and netstat): what a run's connections met."""
    values: dict[str, int] = {}
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        lines = Path(path).read_text().splitlines()
        for head, row in zip(lines[::2], lines[1::2], strict=False):
            values.update(zip(head.split()[1:], map(int, row.split()[1:]), strict=False))
    return {name: values.get(name, 0) for name in _TCP_COUNTERS}


def _log_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open() as log:
        return sum(1 for _ in log)


def _log_tail(path: Path, skip: int) -> list[str]:
    with path.open() as log:
        return log.readlines()[skip:]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{url} did not come up")


FLOORS = (
    # label, WSGI application, settings module (None: Django is never configured)
    ("floor: bare WSGI, no Django", "bench.access_floor:bare_application", None),
    (
        "floor: Django, no middleware, no database",
        "janitor.wsgi",
        "bench.access_floor_settings",
    ),
)


def floors(args, conf: Path, env: dict, raw: str, ids: Path, work: Path) -> None:
    """--floor: the same saturated run against what serves the same requests with less: a bare
    WSGI callable, then Django with no middleware and no database (bench/access_floor.py),
    under the same gunicorn settings, each on a port of its own (no TIME_WAIT shared)."""
    python = sys.executable
    for n, (label, app, settings_module) in enumerate(FLOORS, start=1):
        port = args.port + n
        floor_conf = work / f"floor-{n}.conf.py"
        text = conf.read_text() + f"\nbind = '127.0.0.1:{port}'\n"
        if settings_module is None:
            text += "del post_worker_init  # it warms Django, which this app never loads\n"
        floor_conf.write_text(text)
        floor_env = {**env, "DJANGO_SETTINGS_MODULE": settings_module or "janitor.settings"}
        server = subprocess.Popen(
            [str(Path(python).parent / "gunicorn"), app, "-c", str(floor_conf)],
            cwd=ROOT,
            env=floor_env,
            start_new_session=True,
            stdout=(work / f"floor-{n}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{base}/healthz")
            wrk(base, raw, ids, connections=args.connections, seconds=3)
            waited = wait_time_wait(port)
            if waited:
                print(f"# waited {waited} s for the warm-up's connections to leave TIME_WAIT")
            r = wrk(
                base,
                raw,
                ids,
                connections=args.connections,
                seconds=args.duration,
                threads=args.wrk_threads,
            )
            print(
                f"{label}: {args.connections} connections, {args.duration} s: "
                f"{r['rps']:.0f} requests/s; p50 {r['p50_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms, "
                f"p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.1f} ms; other than 200: "
                f"{r['s304'] + r['other']}; {r['errors']}; load {os.getloadavg()[0]:.2f}"
            )
        finally:
            gunicorn_stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/janitor_h_access_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument("--reuse", action="store_true", help="keep the seeded database")
    parser.add_argument("--port", type=int, default=8769)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--wrk-threads", type=int, default=1, help="one epoll loop suffices")
    parser.add_argument("--rate", type=int, default=300, help="paced run: requests/s in all")
    parser.add_argument("--ids", type=int, default=200_000, help="random ids wrk picks from")
    parser.add_argument("--not-modified", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--access-log", action="store_true", help="keep gunicorn's access log")
    parser.add_argument(
        "--warm-workers",
        action="store_true",
        help="add a post_worker_init hook that sends one request before a worker accepts any",
    )
    parser.add_argument(
        "--server-times",
        action="store_true",
        help="log each request's time in gunicorn (%%(D)s) and report its percentiles per run",
    )
    parser.add_argument("--skip-saturated", action="store_true")
    parser.add_argument("--skip-paced", action="store_true")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="first, the same saturated run against a bare WSGI app and against Django with no "
        "middleware and no database (bench/access_floor.py): what bounds the closed loop",
    )
    parser.add_argument(
        "--in-process", type=int, default=5000, help="requests timed in-process (0: none)"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")

    name = urlparse(args.database_url).path.lstrip("/")
    if not args.reuse:
        _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _admin_sql(f'CREATE DATABASE "{name}"')
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "janitor.settings",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "JANITOR_CACHE_PREFIX": "h_access_bench",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "JANITOR_BEHIND_TLS_PROXY": "true",
        "JANITOR_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    warnings.filterwarnings("ignore", message="No directory at")  # no collectstatic here
    import django

    django.setup()
    from django.db import connection

    from accounts.models import ApiScope, ApiToken
    from accounts.services.tokens import api_token_create, api_token_uses_flush

    if not args.reuse:
        seed(args)
    else:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)  # a database seeded before the latest migrations
    ApiToken.objects.filter(name="bench").update(revoked_at=django.utils.timezone.now())
    token, raw = api_token_create(name="bench", created_by=None, scopes=[ApiScope.ACCESS_READ])
    work = Path(tempfile.mkdtemp(prefix="bench-access-"))
    ids = work / "ids.tsv"
    mix = id_file(ids, args)
    connection.close()
    load = os.getloadavg()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM accounts_account")
        accounts = cursor.fetchone()[0]
    connection.close()
    print(
        f"# machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, PostgreSQL {pg}; load {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}\n# {accounts:,} accounts; ids: {mix['account']:,} accounts, "
        f"{mix['member']:,} members, {mix['with_etag']:,} with If-None-Match"
    )

    in_process_uses = 0
    if args.in_process:
        times = in_process(raw, ids, args.in_process)
        in_process_uses = len(times) + 200
        api_token_uses_flush()  # this process's counted uses, before the servers' are compared
        connection.close()
        print(
            f"in-process  {len(times)} requests one at a time (no gunicorn, no network): p50 "
            f"{statistics.median(times):.2f} ms, p95 {_pct(times, 95):.2f} ms, p99 "
            f"{_pct(times, 99):.2f} ms; load {os.getloadavg()[0]:.2f}"
        )
    conf = work / "gunicorn.conf.py"
    conf.write_text(
        (ROOT / "gunicorn.conf.py").read_text()
        + f"\nbind = '127.0.0.1:{args.port}'\n"
        + (
            f"accesslog = {str(work / 'access.log')!r}\naccess_log_format = '%(D)s %(s)s'\n"
            if args.server_times
            else ""
            if args.access_log
            else "accesslog = None\n"
        )
        + "loglevel = 'warning'\n"
        + (WARM_HOOK if args.warm_workers else "")
    )
    python = sys.executable
    if args.floor:
        floors(args, conf, env, raw, ids, work)
    gunicorn = subprocess.Popen(
        [str(Path(python).parent / "gunicorn"), "janitor.wsgi", "-c", str(conf)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=(work / "gunicorn.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{args.port}"
    counted = 0
    try:
        wait_http(f"{base}/healthz")
        # Warm every worker (imports, connections, the token cache) before measuring.
        counted += wrk(base, raw, ids, connections=args.connections, seconds=3)["requests"]
        runs = []
        if not args.skip_saturated:
            runs.append("saturated")
        if not args.skip_paced:
            runs.append("paced")
        for label in runs:
            waited = wait_time_wait(args.port)
            if waited:
                print(f"# waited {waited} s for the last run's connections to leave TIME_WAIT")
            before = server_cpu(gunicorn.pid, name)
            logged = _log_lines(work / "access.log")
            tcp_before = tcp_counters()
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            own = resource.getrusage(resource.RUSAGE_SELF)
            if label == "saturated":
                r = wrk(
                    base,
                    raw,
                    ids,
                    connections=args.connections,
                    seconds=args.duration,
                    threads=args.wrk_threads,
                )
            else:
                label = f"paced {args.rate}/s"
                r = paced(
                    args.port,
                    raw,
                    ids,
                    rate=args.rate,
                    seconds=args.duration,
                    connections=args.connections,
                )
            counted += r["requests"]
            after = server_cpu(gunicorn.pid, name)
            reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
            mine = resource.getrusage(resource.RUSAGE_SELF)
            client_cpu = (
                (
                    reaped.ru_utime
                    + reaped.ru_stime
                    - children.ru_utime
                    - children.ru_stime
                    + mine.ru_utime
                    + mine.ru_stime
                    - own.ru_utime
                    - own.ru_stime
                )
                * 1000
                / r["requests"]
            )
            print(
                f"{label:12} {args.connections} connections, {args.duration} s: "
                f"{r['rps']:.0f} requests/s; p50 {r['p50_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms, "
                f"p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.1f} ms; 200: {r['s200']}, "
                f"304: {r['s304']}, other: {r['other']}; {r['errors']}; "
                f"load {os.getloadavg()[0]:.2f}\n    "
                f"{cpu_per_request(before, after, r['requests'])}, client {client_cpu:.2f} ms"
            )
            tcp = {k: v - tcp_before[k] for k, v in tcp_counters().items()}
            print(
                "    TCP on the machine (every process's): "
                + ", ".join(f"{k} {v}" for k, v in tcp.items())
            )
            if args.server_times:
                time.sleep(1)  # the last answers' lines are written
                served = [
                    int(line.split()[0]) / 1000
                    for line in _log_tail(work / "access.log", logged)
                    if line.strip()
                ]
                print(
                    f"    gunicorn's own time (%(D)s: request read to response written, no "
                    f"accept queue) over {len(served)} requests: p50 {_pct(served, 50):.2f} ms, "
                    f"p95 {_pct(served, 95):.2f} ms, p99 {_pct(served, 99):.2f} ms, max "
                    f"{max(served):.1f} ms"
                )
        for limit, pages in ((100, 50), (1000, 50)):
            times = feed_pages(base, raw, limit, pages)
            counted += pages
            print(
                f"feed limit={limit}: {pages} pages from the start, p50 "
                f"{statistics.median(times):.1f} ms, p95 {_pct(times, 95):.1f} ms, max "
                f"{max(times):.1f} ms per page"
            )
    finally:
        gunicorn_stop(gunicorn)  # graceful: each worker writes its uses at exit
    token.refresh_from_db()
    print(
        f"token use_count after gunicorn's graceful stop: {token.use_count:,} "
        f"(wrk and the feed counted {counted:,} answered requests, warm-up included, and "
        f"{in_process_uses:,} were made in-process; "
        f"last_used_at {token.last_used_at:%H:%M:%S})"
    )


if __name__ == "__main__":
    main()
