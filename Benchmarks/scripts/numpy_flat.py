"""NumPy's `base @ q` (+ argpartition top-10) on the same shapes as the FlatSearch benchmark.

    python3 Benchmarks/scripts/numpy_flat.py

Prints the median and minimum milliseconds per query for 10,000 and 100,000 rows of dimension
384, with the BLAS NumPy ships (OpenBLAS, all cores). Run it right after `swift package
benchmark --target FlatSearch` in Benchmarks/ to compare on the same machine state.
"""
import time

import numpy as np

rng = np.random.default_rng(1)
for rows in (10_000, 100_000):
    base = rng.random((rows, 384), dtype=np.float32) - 0.5
    queries = rng.random((16, 384), dtype=np.float32) - 0.5
    for query in queries:
        base @ query
    times = []
    for i in range(2000 if rows == 10_000 else 300):
        start = time.perf_counter()
        scores = base @ queries[i % 16]
        np.argpartition(-scores, 10)[:10]
        times.append(time.perf_counter() - start)
    times.sort()
    print(f"numpy {rows} x 384 k=10: p50 {times[len(times) // 2] * 1e3:.3f} ms, min {times[0] * 1e3:.3f} ms")
