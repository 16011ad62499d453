#!/usr/bin/env python3
"""The Python client's side of Benchmarks/scripts/clients.sh: search latency one call at a time,
and throughput of one pipeline of many searches, as one JSON line.
    client_bench.py PORT [USER] [SEQUENTIAL] [CONCURRENT]"""
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
from contextstore import Client  # noqa: E402

port = int(sys.argv[1])
user = sys.argv[2] if len(sys.argv) > 2 else "bench"
sequential = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
concurrent = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
rng = random.Random(42)


def query():
    vector = [rng.uniform(-1, 1) for _ in range(384)]
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector]


with Client(port=port) as client:
    for _ in range(200):  # warm-up, untimed
        client.search(user, vector=query(), k=10)
    latencies = []
    for _ in range(sequential):
        vector = query()
        started = time.perf_counter()
        client.search(user, vector=vector, k=10)
        latencies.append((time.perf_counter() - started) * 1e6)
    latencies.sort()
    vectors = [query() for _ in range(concurrent)]
    started = time.perf_counter()
    with client.pipeline() as batch:
        pending = [batch.search(user, vector=vector, k=10) for vector in vectors]
    for p in pending:
        p.result()
    seconds = time.perf_counter() - started
print(json.dumps({"client": "python", "p50_us": latencies[len(latencies) // 2],
                  "p99_us": latencies[len(latencies) * 99 // 100], "pipelined_per_s": concurrent / seconds}))
