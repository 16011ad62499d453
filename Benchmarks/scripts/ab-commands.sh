#!/usr/bin/env bash
# A/B of two release builds of contextstore, alternating in one run (from the repository root):
#   Benchmarks/scripts/ab-commands.sh OLD_BINARY NEW_BINARY
# ping (1 and 16 connections), flat search over 10,000 vectors (1 and 4), and an import of the
# WordNet set offline and over TCP, two rounds. Each server takes a free port (--port 0) and is
# used once it prints the port it listens on.
set -u
LG=${LG:-Benchmarks/.build/release/loadgen}
D=${D:-../shared/datasets/wordnet-minilm}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# start BINARY LABEL: serves an empty space; sets SERVER (pid) and PORT.
start() {
  rm -f "$WORK/$2".db*
  "$1" serve --db "$WORK/$2.db" --dim 384 --metric dot --model none --port 0 --http-port 0 > "$WORK/$2.out" 2>&1 &
  SERVER=$!
  PORT=""
  for _ in $(seq 600); do
    PORT=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$WORK/$2.out")
    [ -n "$PORT" ] && return
    sleep 0.1
  done
  echo "$2: the server did not start: $(cat "$WORK/$2.out")" >&2
  exit 1
}

run() { # LABEL BINARY
  local L=$1 B=$2
  start "$B" "$L"
  for c in 1 16; do echo "$L ping c$c: $($LG --port "$PORT" --op ping --connections $c --seconds 5 | tr '\n' ' ')"; done
  echo "$L search c1: $($LG --port "$PORT" --op search --connections 1 --seconds 5 --load 10000 | tr '\n' ' ')"
  echo "$L search c4: $($LG --port "$PORT" --op search --connections 4 --seconds 5 | tr '\n' ' ')"
  kill $SERVER; wait $SERVER
  rm -f "$WORK/import-$L".db*
  echo "$L import offline: $("$B" import $D/base.f16.npy --texts $D/base.jsonl --user wordnet \
    --db "$WORK/import-$L.db" --model none --metric dot 2>&1 | tail -1)"
  start "$B" "$L"
  echo "$L import tcp: $("$B" import $D/base.f16.npy --texts $D/base.jsonl --user wordnet --port "$PORT" 2>&1 | tail -1)"
  kill $SERVER; wait $SERVER
}

for _ in 1 2; do
  run old "$1"
  run new "$2"
done
