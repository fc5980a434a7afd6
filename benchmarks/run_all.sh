#!/bin/sh
# Every benchmark in docs/benchmarks.md, one after the other (never in parallel: they would
# share the 2 CPUs). Results land in benchmarks/results/. About 35 minutes on a 2-CPU VM.
#   sh benchmarks/run_all.sh [BIG]      BIG = size of the rss_flat comparison file (default 5M)
set -eu
cd "$(dirname "$0")/.."
PY=.venv/bin/python
BIG=${1:-5M}
$PY benchmarks/gen_logs.py                          # skips files that exist
$PY benchmarks/gen_logs.py --mta postfix --size "$BIG"
[ -x benchmarks/data/peers/usr/sbin/eximstats ] || command -v eximstats >/dev/null || sh benchmarks/get_eximstats.sh
date -u
$PY -m benchmarks.daemon_ingest --rounds 2
$PY -m benchmarks.daemon_ingest --rounds 1 --no-peers --poll-interval 0.5
date -u
$PY -m benchmarks.scan_vs_peers --rounds 3
date -u
$PY -m benchmarks.rss_flat --big "$BIG" --rounds 2
date -u
SIZE=1M sh benchmarks/run_vs_scan.sh                # issue 16: daemon and scan --alerts as shares of scan
date -u
