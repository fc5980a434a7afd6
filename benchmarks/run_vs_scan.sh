#!/bin/sh
# Issue 16's table in one session: `logscan scan`, `scan --alerts` and the daemon (default
# config, alerts on) for the three MTAs, both as a burst appended to a followed log and as a
# backlog the daemon starts on; with BEFORE=DIR, each also for the checkout in DIR (e.g.
# `git archive COMMIT | tar -x -C DIR` plus the built C scanner), run right before this one.
#   BEFORE=/tmp/base SIZE=1M sh benchmarks/run_vs_scan.sh
# Results: benchmarks/results/vs-scan-<mta>-<burst|backlog>-<before|after>-<time>.md
set -eu
cd "$(dirname "$0")/.."
PY=.venv/bin/python
SIZE=${SIZE:-1M}
ROUNDS=${ROUNDS:-2}
STAMP=$(date -u +%Y-%m-%dT%H%MZ)
for mta in postfix exim mailenable; do
    [ -f "benchmarks/data/$mta-$SIZE.log" ] || $PY benchmarks/gen_logs.py --mta "$mta" --size "$SIZE"
    for mode in burst backlog; do
        flag=""
        [ "$mode" = backlog ] && flag="--backlog"
        if [ -n "${BEFORE:-}" ]; then
            $PY -m benchmarks.daemon_ingest --mta "$mta" --size "$SIZE" --rounds "$ROUNDS" --no-peers \
                --vs-scan $flag --pythonpath "$BEFORE" \
                --out "benchmarks/results/vs-scan-$mta-$mode-before-$STAMP.md"
        fi
        $PY -m benchmarks.daemon_ingest --mta "$mta" --size "$SIZE" --rounds "$ROUNDS" --no-peers \
            --vs-scan $flag --out "benchmarks/results/vs-scan-$mta-$mode-after-$STAMP.md"
    done
done
