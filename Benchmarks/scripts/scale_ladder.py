#!/usr/bin/env python3
"""The scale ladder: how ContextStore's costs grow from 100K to millions of memories.

At each step N it generates N memories of a realistic shape, then measures, with the release
binary and on loopback only:
  - offline import (`contextstore import --db`) and import over TCP, in rows/s;
  - the database's size on disk;
  - restart: the time from `serve` to "listening", and the resident memory once it listens
    (bytes per memory = RSS / N);
  - per-user search p50/p99 over TCP (result cache off, a different query each time) in the
    vector, keyword and hybrid modes, for a user of about 100 memories, the median user and the
    largest user, next to a `ping`'s round trip;
  - global HNSW (`hnswbench`, one thread) and hnswlib on the same vectors: queries/s at the
    smallest ef whose recall@10 reaches 0.95 (up to --hnsw-max rows: a single-threaded build of
    millions takes longer than the run may).

The data: the WordNet set's 100,000 MiniLM vectors (../shared/datasets/wordnet-minilm), each
used N/100,000 times with Gaussian noise (cosine about 0.95 to its source) and normalized; a
text of 10-60 words (the source's gloss, then words drawn from all glosses); 10,000 users whose
sizes follow Zipf's law (s = 1: the largest holds about a tenth), rows of all users interleaved;
a session per 50 of a user's memories; times one second apart. Queries: the set's 2,000 query
vectors and texts. Seeded: the same N gives the same data.

    Benchmarks/scripts/scale_ladder.py --steps 100000,1000000 --out /tmp/ladder
    Benchmarks/scripts/scale_ladder.py --steps 5000000 --hnsw-max 0 --out /tmp/ladder

Writes ladder.json and ladder.md (one table row per step) in --out, and prints each figure as
it is measured. Needs numpy; hnswlib for its column (skipped with a message when absent).
"""
import argparse, json, os, re, signal, socket, subprocess, sys, time
import numpy as np

DATA = "../shared/datasets/wordnet-minilm"
USERS = 10_000
DIMENSION = 384


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def user_sizes(n):
    """Zipf (s = 1) sizes of USERS users summing to n, largest first, each at least one."""
    assert n >= USERS, f"a step needs at least {USERS} memories"
    weights = 1.0 / np.arange(1, USERS + 1)
    sizes = 1 + np.floor((n - USERS) * weights / weights.sum()).astype(np.int64)
    sizes[0] += n - sizes.sum()
    return sizes


def generate(n, folder):
    """Writes vectors.f16.npy and texts.jsonl for n memories; returns the users' sizes."""
    os.makedirs(folder, exist_ok=True)
    vectors_path, texts_path = f"{folder}/vectors.f16.npy", f"{folder}/texts.jsonl"
    sizes = user_sizes(n)
    if os.path.exists(texts_path) and os.path.exists(vectors_path):
        return sizes
    rng = np.random.default_rng(20261206 + n)
    base = np.load(f"{DATA}/base.f16.npy").astype(np.float32)
    glosses = [json.loads(line)["text"] for line in open(f"{DATA}/base.jsonl")]
    corpus = np.array(" ".join(glosses).split())
    owner = np.repeat(np.arange(USERS), sizes)
    rng.shuffle(owner)
    out = np.lib.format.open_memmap(vectors_path + ".part", mode="w+", dtype=np.float16, shape=(n, DIMENSION))
    seen = np.zeros(USERS, dtype=np.int64)
    start_ms = 1_700_000_000_000
    with open(texts_path + ".part", "w") as texts:
        for chunk in range(0, n, 100_000):
            rows = np.arange(chunk, min(n, chunk + 100_000))
            source = rows % len(base)
            noisy = base[source] + rng.normal(0, 0.017, (len(rows), DIMENSION)).astype(np.float32)
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
            out[rows] = noisy.astype(np.float16)
            lengths = rng.integers(10, 61, len(rows))
            extra = corpus[rng.integers(0, len(corpus), int(lengths.sum()))]
            used = 0
            lines = []
            for i, row in enumerate(rows):
                words = glosses[source[i]].split()[: lengths[i]]
                fill = lengths[i] - len(words)
                words += list(extra[used:used + fill])
                used += fill
                user = int(owner[row])
                lines.append(json.dumps({
                    "id": f"m{row}", "user": f"u{user}", "session": f"s{seen[user] // 50}",
                    "text": " ".join(words), "created_at": start_ms + int(row) * 1000}))
                seen[user] += 1
            texts.write("\n".join(lines) + "\n")
            log(f"  generated {rows[-1] + 1:,} of {n:,}")
    out.flush()
    del out
    os.replace(vectors_path + ".part", vectors_path)
    os.replace(texts_path + ".part", texts_path)
    return sizes


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def serve(binary, db, extra=()):
    """Starts a server on db; returns (process, port, seconds until it listened)."""
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        [binary, "serve", "--db", db, "--port", str(port), "--http-port", "none", "--model", "none",
         "--result-cache-bytes", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        if line.startswith("listening on"):
            return process, port, time.monotonic() - started
    raise RuntimeError(f"the server on {db} did not start")


def stop(process):
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)


def timed(command):
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def latencies(port, lines):
    """Sends each prepared request line alone and times its answer (microseconds)."""
    connection = socket.create_connection(("127.0.0.1", port))
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    answers = connection.makefile("rb")
    times = []
    for line in lines:
        started = time.perf_counter_ns()
        connection.sendall(line)
        answer = answers.readline()
        times.append((time.perf_counter_ns() - started) / 1000)
        if not answer.startswith(b'{"ok":true'):
            raise RuntimeError(answer[:300])
    connection.close()
    return times


def hello(port):
    """The server's hello answer (its CPU, kernels and BLAS, for the report)."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b'{"op":"hello"}\n')
        return json.loads(connection.makefile("rb").readline())


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def per_user_search(port, sizes, queries, texts, count):
    """p50/p99 (ms) per (user class, mode), and a ping's p50."""
    order = np.argsort(-sizes)
    classes = {
        "small": int(np.argmin(np.abs(sizes - 100))),
        "median": int(order[len(order) // 2]),
        "largest": int(order[0]),
    }
    figures = {"ping_p50_ms": percentile(latencies(port, [b'{"op":"ping"}\n'] * count), 50) / 1000}
    for name, user in classes.items():
        figures[f"{name}_user_rows"] = int(sizes[user])
        for mode in ("vector", "keyword", "hybrid"):
            lines = []
            for i in range(count):
                request = {"op": "search", "user": f"u{user}", "k": 10, "mode": mode}
                if mode != "keyword":
                    request["vector"] = [round(float(x), 6) for x in queries[i % len(queries)]]
                if mode != "vector":
                    request["query"] = texts[i % len(texts)]
                lines.append((json.dumps(request) + "\n").encode())
            latencies(port, lines[:50])  # warm-up
            times = latencies(port, lines)
            figures[f"{name}_{mode}_p50_ms"] = percentile(times, 50) / 1000
            figures[f"{name}_{mode}_p99_ms"] = percentile(times, 99) / 1000
    return figures


def ground_truth(vectors_path, rows, queries, k=10):
    """Exact inner-product top k of each query over the first `rows` vectors (chunked)."""
    vectors = np.load(vectors_path, mmap_mode="r")
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, rows, 500_000):
        block = np.asarray(vectors[start:min(rows, start + 500_000)], dtype=np.float32)
        scores = queries @ block.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], 1)
        candidates = np.concatenate([best_rows, top + start], 1)
        keep = np.argsort(-scores, axis=1)[:, :k]
        best_scores = np.take_along_axis(scores, keep, 1)
        best_rows = np.take_along_axis(candidates, keep, 1)
    return best_rows.astype(np.int32)


def hnsw_figures(args, folder, n, queries):
    truth_path = f"{folder}/truth.i32.npy"
    np.save(truth_path, ground_truth(f"{folder}/vectors.f16.npy", n, queries[:500]))
    np.save(f"{folder}/queries.f32.npy", queries[:500])
    output = subprocess.run(
        [args.hnswbench, "--base", f"{folder}/vectors.f16.npy", "--queries", f"{folder}/queries.f32.npy",
         "--groundtruth", truth_path, "--ef", "16,32,64,128,256"], check=True, capture_output=True, text=True).stdout
    figures = {}
    for line in output.splitlines():
        found = re.fullmatch(r"(\d+)\t([\d.]+)\t(\d+)", line.strip())
        if found and float(found.group(2)) >= 0.95:
            figures = {"hnsw_ef": int(found.group(1)), "hnsw_recall": float(found.group(2)),
                       "hnsw_qps": float(found.group(3))}
            break
    figures["hnswbench_output"] = output
    try:
        import hnswlib
    except ImportError:
        log("  hnswlib is not installed: its column is left out (pip install hnswlib)")
        return figures
    vectors = np.asarray(np.load(f"{folder}/vectors.f16.npy", mmap_mode="r")[:n], dtype=np.float32)
    index = hnswlib.Index(space="ip", dim=DIMENSION)
    index.init_index(max_elements=n, M=16, ef_construction=200)
    index.set_num_threads(1)
    index.add_items(vectors)
    truth = np.load(truth_path)
    for ef in (16, 32, 64, 128, 256):
        index.set_ef(ef)
        started = time.perf_counter()
        found, _ = index.knn_query(queries[:500], k=10)
        seconds = time.perf_counter() - started
        recall = np.mean([len(set(found[i]) & set(truth[i])) / 10 for i in range(len(truth))])
        if recall >= 0.95:
            figures.update(hnswlib_ef=ef, hnswlib_recall=float(recall), hnswlib_qps=len(truth) / seconds)
            break
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="100000,1000000")
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", default="/tmp/contextstore-ladder", help="generated data and databases")
    parser.add_argument("--binary", default=".build/release/contextstore")
    parser.add_argument("--hnswbench", default="Benchmarks/.build/release/hnswbench",
                        help="cd Benchmarks && swift build -c release --product hnswbench")
    parser.add_argument("--queries", type=int, default=1000, help="searches per user class and mode")
    parser.add_argument("--hnsw-max", type=int, default=1_000_000, help="largest step with the HNSW columns")
    parser.add_argument("--tcp-max", type=int, default=5_000_000, help="largest step imported over TCP too")
    parser.add_argument("--flat-storage", default="float32", choices=["float32", "float16", "int8"],
                        help="how the spaces keep their flat rows in memory (serve --flat-storage)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    queries = np.load(f"{DATA}/queries.f16.npy").astype(np.float32)
    query_texts = [json.loads(line)["text"] for line in open(f"{DATA}/queries.jsonl")]
    machine = {"cores": os.cpu_count(),
               "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}
    report = {"machine": machine, "flat_storage": args.flat_storage, "steps": []}
    log(f"machine: {machine}")
    for n in [int(step) for step in args.steps.split(",")]:
        folder = f"{args.work}/{n}"
        log(f"step {n:,}: generating")
        sizes = generate(n, folder)
        step = {"memories": n, "users": USERS, "largest_user": int(sizes.max())}
        db = f"{folder}/offline.db"
        for path in (db, db + "-wal", db + "-shm"):
            if os.path.exists(path):
                os.remove(path)
        seconds = timed([args.binary, "import", f"{folder}/vectors.f16.npy", "--texts", f"{folder}/texts.jsonl",
                         "--db", db, "--model", "none", "--metric", "cosine", "--flat-storage", args.flat_storage])
        step["import_offline_rows_per_s"] = n / seconds
        log(f"  offline import: {n / seconds:,.0f} rows/s ({seconds:.1f} s)")
        step["file_bytes"] = sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))
        process, port, seconds = serve(args.binary, db)
        step["restart_s"] = seconds
        if "kernels" not in machine:
            answer = hello(port)
            machine.update(cpu=answer["cpu"], kernels=answer["kernels"], blas=answer["blas"])
            log(f"server CPU: {machine['cpu']}; kernels: {machine['kernels']}; BLAS: {machine['blas']}")
        step["rss_bytes"] = rss_bytes(process.pid)
        step["bytes_per_memory"] = step["rss_bytes"] / n
        log(f"  restart {seconds:.2f} s, RSS {step['rss_bytes'] / 2**20:,.0f} MiB, "
            f"{step['bytes_per_memory']:,.0f} B/memory, file {step['file_bytes'] / 2**20:,.0f} MiB")
        try:
            step.update(per_user_search(port, sizes, queries, query_texts, args.queries))
        finally:
            stop(process)
        log("  " + ", ".join(f"{k} {v:.3f}" for k, v in step.items() if k.endswith("_ms")))
        if n <= args.tcp_max:
            served = f"{folder}/served.db"
            for path in (served, served + "-wal", served + "-shm"):
                if os.path.exists(path):
                    os.remove(path)
            process, port, _ = serve(
                args.binary, served, ["--dim", str(DIMENSION), "--metric", "cosine", "--flat-storage", args.flat_storage])
            try:
                seconds = timed([args.binary, "import", f"{folder}/vectors.f16.npy", "--texts",
                                 f"{folder}/texts.jsonl", "--port", str(port)])
            finally:
                stop(process)
            step["import_tcp_rows_per_s"] = n / seconds
            log(f"  TCP import: {n / seconds:,.0f} rows/s ({seconds:.1f} s)")
            os.remove(served)
        if n <= args.hnsw_max:
            log("  HNSW: building (one thread) and sweeping ef")
            step.update(hnsw_figures(args, folder, n, queries))
            log(f"  HNSW at recall >= 0.95: ContextStore ef {step.get('hnsw_ef')} {step.get('hnsw_qps', 0):,.0f} q/s, "
                f"hnswlib ef {step.get('hnswlib_ef')} {step.get('hnswlib_qps', 0):,.0f} q/s")
        report["steps"].append(step)
        json.dump(report, open(f"{args.out}/ladder.json", "w"), indent=1)
    write_markdown(report, f"{args.out}/ladder.md")


def write_markdown(report, path):
    def cell(step, key, scale=1.0, digits=0):
        return "—" if key not in step else f"{step[key] * scale:,.{digits}f}"
    machine = report["machine"]
    lines = [f"CPU: {machine.get('cpu', '—')}, {machine['cores']} cores, {machine['memory_gib']} GiB; "
             f"kernels: {machine.get('kernels', '—')}; BLAS: {machine.get('blas', '—')}; "
             f"flat rows: {report.get('flat_storage', 'float32')}", "",
             "| memories | import offline rows/s | import TCP rows/s | file MiB | RSS MiB | bytes/memory | restart s |"
             " ping ms | small user vector/keyword/hybrid p50 ms | median user | largest user (rows) | largest p99 ms |"
             " HNSW q/s at recall 0.95 (ef) | hnswlib q/s (ef) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---|---|"]
    for step in report["steps"]:
        def trio(name):
            return "/".join(cell(step, f"{name}_{mode}_p50_ms", digits=3) for mode in ("vector", "keyword", "hybrid"))
        lines.append(
            f"| {step['memories']:,} | {cell(step, 'import_offline_rows_per_s')} | {cell(step, 'import_tcp_rows_per_s')} |"
            f" {cell(step, 'file_bytes', 2**-20)} | {cell(step, 'rss_bytes', 2**-20)} | {cell(step, 'bytes_per_memory')} |"
            f" {cell(step, 'restart_s', digits=2)} | {cell(step, 'ping_p50_ms', digits=3)} | {trio('small')} |"
            f" {trio('median')} | {trio('largest')} ({step['largest_user']:,}) |"
            f" {'/'.join(cell(step, f'largest_{m}_p99_ms', digits=3) for m in ('vector', 'keyword', 'hybrid'))} |"
            f" {cell(step, 'hnsw_qps')} ({step.get('hnsw_ef', '—')}) | {cell(step, 'hnswlib_qps')} ({step.get('hnswlib_ef', '—')}) |")
    open(path, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
