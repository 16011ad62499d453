#!/usr/bin/env bash
# Server throughput and latency over loopback, next to Redis on the same machine and client.
#   Benchmarks/scripts/loopback.sh [seconds]
# Starts a release `contextstore serve` on a temporary database (and redis-server, when
# installed), runs the load generator for ping and search at 1, 4 and 16 connections, with and
# without pipelining, and stops everything. Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-5}
swift build -c release --product contextstore >/dev/null
swift build -c release --package-path Benchmarks --product loadgen >/dev/null
server=.build/release/contextstore
loadgen=Benchmarks/.build/release/loadgen
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

"$server" serve --db "$work/bench.db" --port 0 --http-port 0 --dim 384 --metric dot >"$work/out" 2>"$work/log" &
until grep -q listening "$work/out" 2>/dev/null; do sleep 0.1; done
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$work/out")

"$loadgen" --port "$port" --op search --load 10000 --connections 1 --seconds 1 >/dev/null
for connections in 1 4 16; do
    "$loadgen" --port "$port" --op ping --connections "$connections" --seconds "$seconds"
done
"$loadgen" --port "$port" --op ping --connections 16 --pipeline 32 --seconds "$seconds"
for connections in 1 4 16; do
    "$loadgen" --port "$port" --op search --connections "$connections" --seconds "$seconds"
done
"$loadgen" --port "$port" --op search --connections 4 --pipeline 8 --seconds "$seconds"

if command -v redis-server >/dev/null; then
    redis-server --port 7699 --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
    until redis-cli -p 7699 ping >/dev/null 2>&1; do sleep 0.1; done
    for connections in 1 4 16; do
        "$loadgen" --port 7699 --op redis-ping --request PING --expect +PONG --connections "$connections" --seconds "$seconds"
    done
    if command -v redis-benchmark >/dev/null; then
        redis-benchmark -p 7699 -t ping_inline -c 16 -n $((60000 * seconds)) -q | tr "\r" "\n" | grep "requests per second"
    fi
fi
