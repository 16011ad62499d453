#!/usr/bin/env python3
"""The Python client's throughput and latency next to the README's plain-socket snippet, in
one run, alternating: adds/s with add_batch (256 items, vectors as Python lists of floats),
searches/s pipelined (the sync client's pipeline, the async client's gather, and plain lines
written all at once), and the p50/p99 of one search at a time. Vectors and texts: the WordNet
glosses of ../shared/datasets/wordnet-minilm (384 dimensions). The server keeps no answers
(`--result-cache-bytes 0`): every measurement asks the same queries, and each must be searched.

    contextstore serve --model none --dim 384 --db /tmp/pybench.db --port 7640 --http-port none --result-cache-bytes 0 &
    scripts/python-client-bench.py --port 7640 [--rows 20000] [--queries 2000] [--rounds 2]
"""
import argparse
import asyncio
import gc
import json
import socket
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients" / "python"))
from contextstore import AsyncClient, Client  # noqa: E402


class Snippet:
    """The README's plain socket: json.dumps a request, read a line back."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lines = self.sock.makefile("rw", encoding="utf-8", newline="\n")

    def call(self, **request):
        self.lines.write(json.dumps(request) + "\n")
        self.lines.flush()
        return json.loads(self.lines.readline())

    def pipelined(self, requests):
        self.lines.write("".join(json.dumps(r) + "\n" for r in requests))
        self.lines.flush()
        return [json.loads(self.lines.readline()) for _ in requests]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", default="../shared/datasets/wordnet-minilm")
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    base = np.load(args.data + "/base.f16.npy")[: args.rows].astype(np.float32)
    texts = [json.loads(line)["text"] for _, line in zip(range(args.rows), open(args.data + "/base.jsonl"))]
    vectors = [row.tolist() for row in base]
    queries = [row.tolist() for row in np.load(args.data + "/queries.f16.npy")[: args.queries].astype(np.float32)]
    # The data is millions of Python floats: kept out of the garbage collector's passes, which
    # would otherwise walk them all whenever a measurement allocates (as they would in any
    # program holding them).
    gc.freeze()
    client = Client(port=args.port)
    snippet = Snippet(args.port)
    results = {}

    def record(name, value):
        results.setdefault(name, []).append(value)

    for round_ in range(args.rounds):
        for who in ("client", "snippet"):
            user = f"pybench-{who}-{round_}"
            began = time.perf_counter()
            for start in range(0, args.rows, 256):
                items = [{"id": str(i), "user": user, "text": texts[i], "vector": vectors[i]}
                         for i in range(start, min(args.rows, start + 256))]
                if who == "client":
                    client.add_batch(items)
                else:
                    assert snippet.call(op="add_batch", items=items)["ok"]
            record(f"add_batch, rows/s ({who})", args.rows / (time.perf_counter() - began))

        user = f"pybench-client-{round_}"
        for q in queries[:50]:  # warm-up: the user's first searches build its scan's compact copies
            client.search(user, vector=q, k=10)
        began = time.perf_counter()
        with client.pipeline() as batch:
            pending = [batch.search(user, vector=q, k=10) for q in queries]
        assert all(len(p.result()) == 10 for p in pending)
        record("searches/s pipelined (client, sync pipeline)", len(queries) / (time.perf_counter() - began))

        async def gathered():
            async with AsyncClient(port=args.port) as aclient:
                began = time.perf_counter()
                hits = await asyncio.gather(*(aclient.search(user, vector=q, k=10) for q in queries))
                assert all(len(h) == 10 for h in hits)
                return len(queries) / (time.perf_counter() - began)

        record("searches/s pipelined (client, async gather)", asyncio.run(gathered()))
        began = time.perf_counter()
        answers = snippet.pipelined([{"op": "search", "user": user, "vector": q, "k": 10} for q in queries])
        assert all(len(a["hits"]) == 10 for a in answers)
        record("searches/s pipelined (snippet, all lines written then read)", len(queries) / (time.perf_counter() - began))

        for who in ("client", "snippet"):
            samples = []
            for q in queries[:1000]:
                began = time.perf_counter_ns()
                if who == "client":
                    client.search(user, vector=q, k=10)
                else:
                    snippet.call(op="search", user=user, vector=q, k=10)
                samples.append(time.perf_counter_ns() - began)
            record(f"one search p50 ms ({who})", float(np.percentile(samples, 50)) / 1e6)
            record(f"one search p99 ms ({who})", float(np.percentile(samples, 99)) / 1e6)

    print(f"| figure ({args.rows} rows, {args.queries} queries, k = 10) | " +
          " | ".join(f"round {r + 1}" for r in range(args.rounds)) + " |")
    print("|---|" + "---|" * args.rounds)
    for name, values in results.items():
        cells = " | ".join(f"{v:,.3f}" if "ms" in name else f"{v:,.0f}" for v in values)
        print(f"| {name} | {cells} |")


main()
