"""hnswlib 0.8 on the same data and settings as `hnswbench`, for a side-by-side table.

    pip install hnswlib==0.8.0
    python3 Benchmarks/scripts/hnswlib_bench.py [rows] [ef,ef,...] [repeats]

Inner product, M=16, efConstruction=200, one thread; prints build time, inserts/s, resident
memory added, then recall@10 and queries/s for each ef (the best of `repeats` sweeps): one
knn_query call per query (as a server answers them), and one call for all queries (batch,
which spares Python's per-call cost).
"""
import resource
import sys
import time

import hnswlib
import numpy as np

D = "../shared/datasets/wordnet-minilm/"
rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
efs = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "10,16,32,64,128,256").split(",")]
repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 1
base = np.load(D + "base.f16.npy").astype(np.float32)[:rows]
queries = np.load(D + "queries.f16.npy").astype(np.float32)
if rows == 100_000:
    truth = np.load(D + "groundtruth.i32.npy")[:, :10]
else:
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :10]


def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


before = resident()
index = hnswlib.Index(space="ip", dim=base.shape[1])
index.init_index(max_elements=rows, M=16, ef_construction=200, random_seed=42)
index.set_num_threads(1)
start = time.perf_counter()
index.add_items(base, np.arange(rows), num_threads=1)
build = time.perf_counter() - start
added = resident() - before
print(f"build: {rows} vectors in {build:.1f} s = {int(rows / build)} inserts/s, resident +{added // 1_000_000} MB ({added // rows} bytes/vector, vectors included)")
print("ef\trecall@10\tqueries/s\tbatch queries/s")
best = {ef: [0, 0, 0] for ef in efs}
for _ in range(repeats):
    for ef in efs:
        index.set_ef(ef)
        start = time.perf_counter()
        labels = [index.knn_query(q, k=10, num_threads=1)[0][0] for q in queries]
        elapsed = time.perf_counter() - start
        found = sum(len(set(l) & set(t)) for l, t in zip(labels, truth))
        start = time.perf_counter()
        index.knn_query(queries, k=10, num_threads=1)
        batch = time.perf_counter() - start
        row = best[ef]
        row[0] = found / (10 * len(queries))
        row[1] = max(row[1], int(len(queries) / elapsed))
        row[2] = max(row[2], int(len(queries) / batch))
for ef in efs:
    print(f"{ef}\t{best[ef][0]:.4f}\t{best[ef][1]}\t{best[ef][2]}")
