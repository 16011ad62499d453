#!/usr/bin/env bash
# The HTTP API next to the line protocol, in one run on one server: search k=10 over 10,000
# random 384-d vectors of one user, the same 64 query vectors through both front doors, at 1 and
# 4 connections, with the result cache off (every request searches). TCP: the load generator;
# HTTP: wrk (Debian) with keep-alive, POST /v1/users/bench/search. Only 127.0.0.1 is used.
#   Benchmarks/scripts/http-vs-tcp.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
swift build -c release --product contextstore >/dev/null
swift build -c release --package-path Benchmarks --product loadgen >/dev/null
loadgen=Benchmarks/.build/release/loadgen
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
.build/release/contextstore serve --db "$work/bench.db" --port 0 --http-port 0 --dim 384 --metric dot \
    --model none --result-cache-bytes 0 --log-level error >"$work/out" 2>"$work/log" &
until grep -q "^http listening" "$work/out" 2>/dev/null; do sleep 0.1; done
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$work/out")
http=$(sed -n 's/^http listening on .*:\([0-9]*\)$/\1/p' "$work/out")
"$loadgen" --port "$port" --op search --load 10000 --connections 1 --seconds 1 >/dev/null
# wrk's requests: 64 search bodies of random vectors, sent in turn.
python3 - "$work/search.lua" <<'PY'
import random, sys
random.seed(20261205)
bodies = []
for _ in range(64):
    vector = ",".join(f"{random.random():.6f}" for _ in range(384))
    bodies.append('{"k":10,"vector":[%s]}' % vector)
with open(sys.argv[1], "w") as lua:
    lua.write("local bodies = {\n" + ",\n".join('"%s"' % b.replace('"', '\\"') for b in bodies) + "\n}\n")
    lua.write("local i = 0\n")
    lua.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
    lua.write("request = function()\n  i = i % #bodies + 1\n"
              '  return wrk.format(nil, "/v1/users/bench/search", nil, bodies[i])\nend\n')
    lua.write("done = function(summary, latency, requests)\n"
              '  io.write(string.format("rps=%d p50_us=%d p99_us=%d errors=%d\\n", '
              "summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99), "
              "summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))\nend\n")
PY
for connections in 1 4; do
    echo "tcp  c$connections: $("$loadgen" --port "$port" --op search --connections "$connections" --seconds "$seconds")"
    threads=$((connections < 2 ? 1 : 2))
    echo "http c$connections: $(wrk -t"$threads" -c"$connections" -d"${seconds}s" -s "$work/search.lua" \
        "http://127.0.0.1:$http" | tail -1)"
done
