#!/usr/bin/env bash
# A/B of two release builds of contextstore, alternating in one run:
#   Benchmarks/scripts/ab-commands.sh OLD_BINARY NEW_BINARY
# ping (1 and 16 connections), flat search over 10,000 vectors (1 and 4), and
# an import of the WordNet set offline and over TCP, two rounds.
set -u
LG=${LG:-Benchmarks/.build/release/loadgen}
D=${D:-../shared/datasets/wordnet-minilm}
run() { # label binary
  local L=$1 B=$2 P=$((7600 + RANDOM % 300)) DB=/tmp/ab-$L.db
  rm -f $DB* /tmp/imp-$L.db*
  $B serve --db $DB --dim 384 --metric dot --model none --port $P > /tmp/srv-$L.log 2>&1 &
  local S=$!; sleep 2
  for c in 1 16; do echo "$L ping c$c: $($LG --port $P --op ping --connections $c --seconds 5 | tr '\n' ' ')"; done
  echo "$L search c1: $($LG --port $P --op search --connections 1 --seconds 5 --load 10000 | tr '\n' ' ')"
  echo "$L search c4: $($LG --port $P --op search --connections 4 --seconds 5 | tr '\n' ' ')"
  kill $S; wait $S
  local t0=$(date +%s.%N)
  $B import $D/base.f16.npy --texts $D/base.jsonl --user wordnet --db /tmp/imp-$L.db --model none --metric dot > /tmp/imp-$L.log 2>&1
  local t1=$(date +%s.%N); echo "$L import offline: $(tail -1 /tmp/imp-$L.log) wall $(echo "$t1-$t0"|bc)"
  rm -f $DB*
  $B serve --db $DB --dim 384 --metric dot --model none --port $P > /tmp/srv-$L.log 2>&1 &
  S=$!; sleep 2
  t0=$(date +%s.%N)
  $B import $D/base.f16.npy --texts $D/base.jsonl --user wordnet --port $P > /tmp/imptcp-$L.log 2>&1
  t1=$(date +%s.%N); echo "$L import tcp: $(tail -1 /tmp/imptcp-$L.log) wall $(echo "$t1-$t0"|bc)"
  kill $S; wait $S
}
for r in 1 2; do
  run old "$1"
  run new "$2"
done
