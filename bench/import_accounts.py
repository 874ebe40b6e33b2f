"""Benchmark: `manage.py import_accounts` of a realistic export, end to end, as its own process:
wall time and the process's peak RSS (from /usr/bin/time -v), at each size, on PostgreSQL and on
SQLite, into a freshly migrated database each time; then the same file again (nothing changes).

Goals (issue 19): 1,000,000 rows on PostgreSQL in <= 120 s and <= 400 MB; on SQLite they must
import; memory must not grow with the file (100k and 1M side by side).

    DJANGO_DEBUG=false DJANGO_SECRET_KEY=<50+ characters> \\
    .venv/bin/python bench/import_accounts.py --sizes 100000 1000000 \\
        --postgres postgres://postgres@127.0.0.1:5432/janitor_bench_import --sqlite

The PostgreSQL database named is dropped and created again for every run (a scratch database:
never point it at one you keep). The export: one row per member; about 1 in 8 rows belong to a
team (account_id, account_name) of 2 to 12 members, the rest are one-person accounts; 8 % are
inactive, 70 % of accounts have a Stripe customer id; names with accents and apostrophes,
some quoted fields.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
FIRST = ["Ada", "Ben", "Chloé", "Dmitri", "Eóin", "Fatima", "Grace", "Hiro", "Inès", "Jürgen"]
LAST = ["Lovelace", "O'Brien", "Núñez", "Smith, Jr.", "Zhang", "Müller", "Okafor", "Dubois"]
HEADER = [
    "public_id",
    "email",
    "name",
    "is_active",
    "stripe_customer_id",
    "account_id",
    "account_name",
]


def _ascii(name: str) -> str:
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()


def export_write(path: Path, rows: int, seed: int = 19) -> None:
    """A product's export of `rows` members, streamed to `path`."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        n = 0
        team = 0
        while n < rows:
            active = "true" if rng.random() > 0.08 else "false"
            if rng.random() < 0.02:  # a team: ~1 row in 8 overall
                team += 1
                size = min(rng.randint(2, 12), rows - n)
                customer = f"cus_T{team:09d}" if rng.random() < 0.9 else ""
                for k in range(size):
                    first, last = rng.choice(FIRST), rng.choice(LAST)
                    writer.writerow(
                        [
                            f"user-{n:08d}",
                            f"{_ascii(first)}.{n}@team{team}.example.com",
                            f"{first} {last}",
                            active,
                            customer if k == 0 else "",
                            f"team-{team:07d}",
                            f"Team {team} GmbH" if k == 0 else "",
                        ]
                    )
                    n += 1
                continue
            first, last = rng.choice(FIRST), rng.choice(LAST)
            writer.writerow(
                [
                    f"user-{n:08d}",
                    f"{_ascii(first)}.{n}@example.com",
                    f"{first} {last}",
                    active,
                    f"cus_{n:010d}" if rng.random() < 0.7 else "",
                    "",
                    "",
                ]
            )
            n += 1


def _env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url
    env.setdefault("DJANGO_DEBUG", "false")
    env.setdefault("DJANGO_SECRET_KEY", "bench-import-" + "x" * 50)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _fresh_database(database_url: str) -> None:
    """Drop and create the scratch database, then migrate it (not timed)."""
    parsed = urlparse(database_url)
    if parsed.scheme.startswith("postgres"):
        name = parsed.path.lstrip("/")
        admin = ["psql", "-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 5432)]
        admin += ["-U", parsed.username or "postgres", "-d", "postgres", "-q", "-c"]
        subprocess.run([*admin, f'DROP DATABASE IF EXISTS "{name}"'], check=True)
        subprocess.run([*admin, f'CREATE DATABASE "{name}"'], check=True)
    else:
        path = Path(database_url[len("sqlite:///") :])
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"],
        cwd=ROOT,
        env=_env(database_url),
        check=True,
    )


def _timed_import(database_url: str, path: Path) -> dict:
    """import_accounts as its own process under /usr/bin/time -v: wall seconds, peak RSS."""
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, "manage.py", "import_accounts", str(path)],
        cwd=ROOT,
        env=_env(database_url),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    cpu = sum(
        float(m.group(1))
        for m in re.finditer(r"(?:User|System) time \(seconds\): ([\d.]+)", done.stderr)
    )
    summary = [line for line in done.stdout.splitlines() if line.startswith("Imported")]
    return {
        "ok": done.returncode == 0,
        "wall": wall,
        "cpu": cpu,
        "rss_mb": int(rss.group(1)) / 1024 if rss else float("nan"),
        "summary": summary[-1] if summary else done.stderr.strip().splitlines()[-3:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--postgres", default="", help="a scratch database URL (dropped!)")
    parser.add_argument("--sqlite", action="store_true", help="also on a scratch SQLite file")
    parser.add_argument("--no-rerun", action="store_true", help="skip the second import")
    parser.add_argument("--workdir", default="", help="where the exports go (default: a tmp dir)")
    args = parser.parse_args()
    targets = []
    if args.postgres:
        targets.append(("PostgreSQL", args.postgres))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-import-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.sqlite:
        targets.append(("SQLite", f"sqlite:///{workdir / 'bench-import.sqlite3'}"))
    if not targets:
        parser.error("name --postgres URL and/or --sqlite")
    print(f"load before: {os.getloadavg()[0]:.2f}")
    results = []
    for size in args.sizes:
        path = workdir / f"export-{size}.csv"
        if not path.exists():
            started = time.perf_counter()
            export_write(path, size)
            print(
                f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) in "
                f"{time.perf_counter() - started:.1f} s"
            )
        for label, url in targets:
            _fresh_database(url)
            load = os.getloadavg()[0]
            first = _timed_import(url, path)
            print(f"{label} {size:,} rows: {first}", flush=True)
            results.append((label, size, "first import", first, load))
            if not args.no_rerun:
                load = os.getloadavg()[0]
                again = _timed_import(url, path)
                print(f"{label} {size:,} rows, again: {again}", flush=True)
                results.append((label, size, "same file again", again, load))
    print()
    print(
        "| database | rows | run | ok | wall | import's CPU (user+sys) | peak RSS "
        "| load (1 min) before | summary |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, size, run, r, load in results:
        print(
            f"| {label} | {size:,} | {run} | {'yes' if r['ok'] else 'NO'} | {r['wall']:.1f} s "
            f"| {r['cpu']:.1f} s "
            f"| {r['rss_mb']:.0f} MB | {load:.1f} | {r['summary']} |"
        )


if __name__ == "__main__":
    main()
