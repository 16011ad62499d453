#!/usr/bin/env bash
# The three clients against one release server in one run: search p50/p99 one call at a time,
# and searches per second with 1,000 in flight on one connection (pipelined).
#   Benchmarks/scripts/clients.sh [memories]
# The user holds `memories` random 384-d vectors (default 10,000, flat index); queries are random
# and the result cache is off, so every search is computed. Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/../.."
memories=${1:-10000}
swift build -c release --product contextstore >/dev/null
swift build -c release --package-path Benchmarks --product loadgen >/dev/null
swift build -c release --package-path Benchmarks --product clientbench >/dev/null
tsc -p clients/typescript
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

.build/release/contextstore serve --db "$work/bench.db" --port 0 --http-port none --model none --dim 384 \
    --result-cache-bytes 0 >"$work/out" 2>"$work/log" &
until grep -q listening "$work/out" 2>/dev/null; do sleep 0.1; done
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$work/out")
Benchmarks/.build/release/loadgen --port "$port" --op search --load "$memories" --connections 1 --seconds 1 >/dev/null
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), user of $memories memories, k=10"
for round in 1 2; do
    Benchmarks/.build/release/clientbench "$port" bench
    python3 Benchmarks/scripts/client_bench.py "$port" bench
    node Benchmarks/scripts/client_bench.mjs "$port" bench
done
