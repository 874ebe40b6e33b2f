"""Run every fault drill in sequence (each bounded in time) and print their tables and a summary."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = str(HERE.parent / ".venv" / "bin" / "python")
DRILLS = ("worker_sigkill", "redis_restart", "postgres_restart", "provider_failures", "two_workers")
LIMIT_SECONDS = 180


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("drills", nargs="*", help=f"some of {', '.join(DRILLS)} (default: all)")
    parser.add_argument("--log", type=Path, help="also write the drills' whole output here")
    args = parser.parse_args()
    chosen = args.drills or list(DRILLS)
    unknown = set(chosen) - set(DRILLS)
    if unknown:
        parser.error(f"unknown drill(s): {', '.join(sorted(unknown))}")
    results: list[tuple[str, str, float]] = []
    tables: list[str] = []
    log = args.log.open("w") if args.log else None
    started = time.monotonic()
    for name in chosen:
        print(f"=== {name}", flush=True)
        begun = time.monotonic()
        proc = subprocess.Popen(
            [PYTHON, str(HERE / f"{name}.py")],
            cwd=HERE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            output, _ = proc.communicate(timeout=LIMIT_SECONDS)
            verdict = "PASSED" if proc.returncode == 0 else "FAILED"
        except subprocess.TimeoutExpired:
            # SIGTERM first: the drill's exit handler tears its private servers down.
            proc.terminate()
            try:
                output, _ = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
            verdict = f"TIMED OUT (> {LIMIT_SECONDS} s)"
        took = time.monotonic() - begun
        results.append((name, verdict, took))
        if log:
            log.write(f"=== {name}\n{output}\n")
            log.flush()
        table = output[output.find("## ") :] if "## " in output else output[-3000:]
        tables.append(table)
        print(table.rstrip(), flush=True)
        print(f"--- {name}: {verdict} in {took:.0f} s", flush=True)
    total = time.monotonic() - started
    print("\n## Summary\n\n| drill | result | seconds |\n|---|---|---|")
    for name, verdict, took in results:
        print(f"| {name} | {verdict} | {took:.0f} |")
    print(f"\nall drills: {total:.0f} s")
    return 0 if all(verdict == "PASSED" for _, verdict, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
