#!/usr/bin/env python3
"""Recall of compact flat rows (`serve --flat-storage float16|int8`) against float32, over TCP.

Starts one server per storage on loopback (the float32 one is the reference), loads the same
data into each, sends the same searches, and reports recall@k = |compact top k ∩ float32 exact
top k| / k, and each server's search p50:
- WordNet: the first --rows glosses' vectors into one user; the dataset's queries, and as many
  random Gaussian queries (unlike the data: the case that broke sign-bit codes); k 10 and 100.
- LoCoMo: the dev conversations' turns, embedded by each server's model (`"{speaker}: {text}"`,
  as `contextstore bench` indexes them), one user per conversation; each question's text
  searched in vector mode, k 10.

    Benchmarks/scripts/compact_recall.py [--rows 100000] [--queries 1000] [--skip-locomo]
"""
import argparse, base64, json, os, subprocess, sys, tempfile, time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from loopback import Connection  # noqa: E402

STORAGES = ["float32", "float16", "int8"]


def start(binary, folder, storage, port, model):
    command = [binary, "serve", "--db", f"{folder}/{storage}.db", "--port", str(port), "--result-cache-bytes", "0",
               "--flat-storage", storage, "--http-port", "none", "--log-level", "error"]
    command += ["--dim", "384", "--metric", "dot", "--model", "none"] if model is None else []
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        if process.poll() is not None:
            raise SystemExit(f"the {storage} server exited (is port {port} taken?)")
        try:
            return process, Connection(port)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the {storage} server did not start")


def ids(answer):
    return [hit["id"] for hit in answer["hits"]]


def compare(connections, requests, k, label):
    """Each compact storage's recall@k against the float32 server's exact answers, and p50s
    (after a first pass on every server, so that each has embedded the query texts once)."""
    truth = [ids(connections["float32"].call(dict(request, k=k, exact=True))) for request in requests]
    for storage in STORAGES[1:]:
        for request in requests:
            connections[storage].call(dict(request, k=k))
    row = [label, str(k)]
    for storage in STORAGES:
        found, times = 0, []
        for request, expected in zip(requests, truth):
            started = time.perf_counter()
            answer = connections[storage].call(dict(request, k=k))
            times.append(time.perf_counter() - started)
            found += len(set(ids(answer)) & set(expected))
        recall = found / sum(len(t) for t in truth)
        row += [f"{recall:.4f}", f"{np.percentile(times, 50) * 1000:.2f}"]
    print("| " + " | ".join(row) + " |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=".build/release/contextstore")
    parser.add_argument("--data", default="../shared/datasets")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--port", type=int, default=7480)
    parser.add_argument("--skip-locomo", action="store_true")
    args = parser.parse_args()
    header = "| data | k | " + " | ".join(f"{s} recall | {s} p50 ms" for s in STORAGES) + " |"
    print(header + "\n|" + "---|" * (2 + 2 * len(STORAGES)))
    with tempfile.TemporaryDirectory() as folder:
        servers = {s: start(args.binary, folder, s, args.port + i, None) for i, s in enumerate(STORAGES)}
        connections = {s: server[1] for s, server in servers.items()}
        wordnet = args.data + "/wordnet-minilm"
        base = np.load(wordnet + "/base.f16.npy")[: args.rows].astype(np.float32)
        for start_row in range(0, len(base), 1000):
            items = [{"id": str(i), "user": "wordnet", "text": "", "vector": base64.b64encode(base[i].tobytes()).decode()}
                     for i in range(start_row, min(len(base), start_row + 1000))]
            for connection in connections.values():
                connection.call({"op": "add_batch", "items": items})
        queries = np.load(wordnet + "/queries.f16.npy")[: args.queries].astype(np.float32)
        random = np.random.default_rng(20261206).standard_normal((args.queries, 384)).astype(np.float32)
        random /= np.linalg.norm(random, axis=1, keepdims=True)
        for label, vectors in [(f"WordNet {len(base):,}, its queries", queries), (f"WordNet {len(base):,}, random queries", random)]:
            requests = [{"op": "search", "user": "wordnet", "vector": base64.b64encode(v.tobytes()).decode()} for v in vectors]
            for k in (10, 100):
                compare(connections, requests, k, label)
        for process, _ in servers.values():
            process.terminate()
            process.wait()
    if args.skip_locomo:
        return
    with tempfile.TemporaryDirectory() as folder:
        servers = {s: start(args.binary, folder, s, args.port + 10 + i, "default") for i, s in enumerate(STORAGES)}
        connections = {s: server[1] for s, server in servers.items()}
        locomo = args.data + "/locomo-dev"
        turns = [json.loads(line) for line in open(locomo + "/turns.jsonl")]
        for start_row in range(0, len(turns), 64):
            items = [{"id": t["id"], "user": t["conv"], "text": f'{t["speaker"]}: {t["text"]}'}
                     for t in turns[start_row:start_row + 64]]
            for connection in connections.values():
                connection.call({"op": "add_batch", "items": items})
        questions = [json.loads(line) for line in open(locomo + "/questions.jsonl")]
        requests = [{"op": "search", "user": q["conv"], "query": q["text"], "mode": "vector"} for q in questions]
        compare(connections, requests, 10, f"LoCoMo dev, {len(questions)} questions")
        for process, _ in servers.values():
            process.terminate()
            process.wait()


main()
