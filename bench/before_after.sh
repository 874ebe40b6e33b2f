#!/usr/bin/env bash
# Run the benchmarks on two checkouts back to back, bench by bench (before, then after), so a
# refactor's figures can be compared on the same machine under the same load (issue 16).
#
#   bench/before_after.sh <before-checkout> <after-checkout> <output-dir>
#
# Both use this checkout's .venv (linked into each checkout: some benches start gunicorn from
# the checkout's .venv). Sizes are the pages' smaller ones, so the pair takes about 20 minutes;
# each bench's output goes to <output-dir>/<bench>.<before|after>.txt. ONLY="evidence webhooks"
# runs those benches alone. The webhook bench needs wrk (apt-get install wrk).
set -euo pipefail
before=$(cd "$1" && pwd); after=$(cd "$2" && pwd); out=$(mkdir -p "$3" && cd "$3" && pwd)
venv=$(cd "$(dirname "$0")/.." && pwd)/.venv
py=$venv/bin/python
for dir in "$before" "$after"; do [ -e "$dir/.venv" ] || ln -s "$venv" "$dir/.venv"; done
secret=before-after-bench-secret-key-of-more-than-fifty-characters-0123456789
psql -h 127.0.0.1 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='janitor_bench5'" \
  | grep -q 1 || psql -h 127.0.0.1 -U postgres -qc 'CREATE DATABASE janitor_bench5'

run() {  # run <name> <label> <checkout> <script> <args...>
  local name=$1 label=$2 dir=$3 script=$4; shift 4
  echo "== $name ($label) $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/summary.txt"
  (cd "$dir" && DJANGO_DEBUG=false DJANGO_SECRET_KEY=$secret \
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/janitor_bench5 REDIS_URL=redis://127.0.0.1:6379/12 \
    "$py" "$script" "$@") >"$out/$name.$label.txt" 2>&1 || echo "   exit $?" | tee -a "$out/summary.txt"
}

both() {  # both <name> <before script> <after script> <args for before> -- <args for after>
  local name=$1 bscript=$2 ascript=$3; shift 3
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  local bargs=() aargs=() side=b
  for a in "$@"; do
    if [ "$a" = "--" ]; then side=a; continue; fi
    if [ $side = b ]; then bargs+=("$a"); else aargs+=("$a"); fi
  done
  run "$name" before "$before" "$bscript" "${bargs[@]}"
  run "$name" after "$after" "$ascript" "${aargs[@]}"
}

audit_before=bench/reconciliation.py; [ -f "$before/bench/audit.py" ] && audit_before=bench/audit.py
both reconciliation "$audit_before" bench/reconciliation.py --sizes 100000 -- --sizes 100000
both review_queue bench/review_queue.py bench/review_queue.py --flags 100000 --requests 60 -- --flags 100000 --requests 60
both revocation bench/revocation.py bench/revocation.py \
  --members 500 --sessions 5000 --runs 10 --requests 0 -- --members 500 --sessions 5000 --runs 10 --requests 0
both evidence bench/evidence.py bench/evidence.py \
  --accounts 10000 --rows 1000000 --samples 500 --pdf-runs 3 --batches 20 -- \
  --skip-load --accounts 10000 --rows 1000000 --samples 500 --pdf-runs 3 --batches 20
both search bench/search.py bench/search.py --accounts 100000 --queries 200 -- --accounts 100000 --queries 200 --reuse
both webhooks bench/webhooks.py bench/webhooks.py \
  --broker redis --duration 15 --connections 16 --skip-burst -- --broker redis --duration 15 --connections 16 --skip-burst
echo "done $(date -u +%H:%M:%S)" | tee -a "$out/summary.txt"
