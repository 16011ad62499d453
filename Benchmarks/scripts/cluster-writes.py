#!/usr/bin/env python3
"""Writes and searches on a ContextStore cluster next to one ContextStore and to Redis, in one run.

Starts, on this machine: a cluster (scripts/cluster up: pg_auto_failover with a primary and two
synchronous standbys, three nodes), one ContextStore (`serve`, a SQLite file, fsync on commit),
and redis-server with `appendfsync always` (a write on one disk before its answer: the
one-machine reference). Then measures, over loopback, with the same code for each:
  - write latency p50/p99: one client, `add` of a memory with a 384-d vector (Redis: SET of the
    same bytes);
  - write throughput: 16 clients adding at once for 10 s; and with batches: 4 clients sending
    `add_batch` of 100 memories of one user (a conversation's turns) for 10 s (Redis: MSET of
    100 keys), memories per second;
  - search p50 at each host of the user's range and at a node that forwards to one.
Prints one table (markdown). Needs the release build (swift build -c release) and redis-server.

usage: Benchmarks/scripts/cluster-writes.py [--writes N] [--seconds S]
"""

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONTEXTSTORE = os.path.join(ROOT, ".build", "release", "contextstore")
DIMENSION = 384


class Line:
    """One connection speaking line-delimited JSON."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def call(self, request: bytes) -> dict:
        self.sock.sendall(request + b"\n")
        answer = json.loads(self.file.readline())
        if not answer.get("ok"):
            raise RuntimeError(answer)
        return answer


class Resp(Line):
    """One connection speaking Redis's protocol (SET only)."""

    def call(self, request: bytes) -> bytes:
        key, value = request.split(b" ", 1)
        self.sock.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value))
        answer = self.file.readline()
        if not answer.startswith(b"+OK"):
            raise RuntimeError(answer)
        return answer


def vector(rng):
    values = [rng.gauss(0, 1) for _ in range(DIMENSION)]
    return ",".join(f"{v:.6f}" for v in values)


def add_request(rng, user, n):
    return (f'{{"op":"add","user":"{user}","text":"memory {n} of {user}: a sentence of a conversation",'
            f'"vector":[{vector(rng)}]}}').encode()


def range_of(user, count):
    """The user's range, as the cluster computes it: FNV-1a 64 of the id's UTF-8 bytes."""
    value = 0xCBF29CE484222325
    for byte in user.encode():
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value % count


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def latency(connect, port, writes, make):
    rng = random.Random(1)
    requests = [make(rng, n) for n in range(writes)]
    connection = connect(port)
    took = []
    for request in requests:
        began = time.perf_counter()
        connection.call(request)
        took.append(time.perf_counter() - began)
    return percentile(took, 0.5) * 1000, percentile(took, 0.99) * 1000


def throughput(connect, port, seconds, make, clients=16, distinct=200):
    done = [0] * clients
    stop = time.monotonic() + seconds

    def run(number):
        rng = random.Random(100 + number)
        connection = connect(port)
        requests = [make(rng, n) for n in range(distinct)]
        n = 0
        while time.monotonic() < stop:
            connection.call(requests[n % len(requests)])
            n += 1
        done[number] = n

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / seconds


def batch_request(rng, n, size=100):
    """A conversation's turns: 100 memories of one user (a user drawn for each batch)."""
    user = f"user{rng.randrange(64)}"
    items = ",".join(
        f'{{"user":"{user}","text":"memory {n}.{i}: a sentence of a conversation",'
        f'"vector":[{vector(rng)}]}}' for i in range(size))
    return f'{{"op":"add_batch","items":[{items}]}}'.encode()


class RespBatch(Line):
    """One connection speaking Redis's protocol (MSET of a batch)."""

    def call(self, request: bytes) -> bytes:
        pairs = [pair.split(b" ", 1) for pair in request.split(b"\n")]
        parts = [b"MSET"] + [word for pair in pairs for word in pair]
        self.sock.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        answer = self.file.readline()
        if not answer.startswith(b"+OK"):
            raise RuntimeError(answer)
        return answer


def redis_batch(rng, n, size=100):
    return b"\n".join(b"memory:%d.%d %s" % (n, i, vector(rng).encode()) for i in range(size))


def search_p50(port, user, count=500):
    rng = random.Random(7)
    connection = Line(port)
    took = []
    for _ in range(count):
        request = f'{{"op":"search","user":"{user}","vector":[{vector(rng)}],"k":10}}'.encode()
        began = time.perf_counter()
        connection.call(request)
        took.append(time.perf_counter() - began)
    return statistics.median(took) * 1000


def start(arguments, folder, name):
    out = open(os.path.join(folder, name + ".out"), "w+")
    process = subprocess.Popen(arguments, stdout=out, stderr=open(os.path.join(folder, name + ".log"), "w"))
    for _ in range(600):
        out.seek(0)
        text = out.read()
        if "listening on" in text or "Ready to accept" in text:
            return process
        time.sleep(0.05)
    raise SystemExit(f"{name} did not start")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    options = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="contextstore-cluster-bench-")
    os.chmod(folder, 0o755)  # the cluster's folder inside is PostgreSQL's (as root: the postgres user's)
    env = dict(os.environ, CLUSTER_DIR=os.path.join(folder, "cluster"), CLUSTER_PORT="7451", CLUSTER_PG_PORT="6451")
    processes = []
    try:
        subprocess.run([os.path.join(ROOT, "scripts", "cluster"), "up", "--", "--model", "none", "--dim",
                        str(DIMENSION)], env=env, check=True, capture_output=True)
        single_port, redis_port = free_port(), free_port()
        processes.append(start([CONTEXTSTORE, "serve", "--db", os.path.join(folder, "one.db"), "--port",
                                str(single_port), "--http-port", "0", "--model", "none", "--dim", str(DIMENSION)], folder, "single"))
        processes.append(start(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "yes",
                                "--appendfsync", "always", "--dir", folder, "--logfile", ""], folder, "redis"))
        node = 7451

        def add(user):
            # Throughput's clients write for 64 users (the cluster's ranges take writes in parallel;
            # one user's are in order, one range at a time).
            return lambda rng, n: add_request(rng, user or f"user{rng.randrange(64)}", n)

        def redis_set(rng, n):
            return b"memory:%d %s" % (n, vector(rng).encode())

        rows = []
        for name, connect, port, make, many in [
            ("ContextStore, one node (SQLite, fsync)", Line, single_port, add("alice"), add(None)),
            ("ContextStore cluster (PostgreSQL, primary + 1 of 2 standbys)", Line, node, add("alice"), add(None)),
            ("Redis, appendfsync always", Resp, redis_port, redis_set, redis_set),
        ]:
            p50, p99 = latency(connect, port, options.writes, make)
            rate = throughput(connect, port, options.seconds, many)
            rows.append([name, p50, p99, rate])
        for (name, connect, port), row in zip(
                [("one node", Line, single_port), ("cluster", Line, node), ("redis", RespBatch, redis_port)], rows):
            make = redis_batch if connect is RespBatch else batch_request
            # Built before the clock starts; each batch is sent again (new ids each time).
            batches = throughput(connect, port, options.seconds, make, clients=4, distinct=10)
            row.append(batches * 100)
        print("| writes | p50 ms | p99 ms | 16 clients, writes/s | 4 clients, batches of 100, memories/s |")
        print("|---|---:|---:|---:|---:|")
        for name, p50, p99, rate, batched in rows:
            print(f"| {name} | {p50:.2f} | {p99:.2f} | {rate:,.0f} | {batched:,.0f} |")
        time.sleep(1)  # the other host follows the log
        # Which nodes host alice's range (two of the three), and which forwards it.
        cluster = Line(node).call(b'{"op":"cluster"}')
        hosts = cluster["ranges"][range_of("alice", len(cluster["ranges"]))]["hosts"]
        ports = {n["name"]: int(n["address"].rsplit(":", 1)[1]) for n in cluster["nodes"]}
        forwarding = next(port for name, port in ports.items() if name not in hosts)
        print()
        print("| search, k=10 over the user's memories | p50 ms |")
        print("|---|---:|")
        print(f"| one node | {search_p50(single_port, 'alice'):.3f} |")
        for name in hosts:
            print(f"| cluster, a host of the user's range ({name}) | {search_p50(ports[name], 'alice'):.3f} |")
        print(f"| cluster, a node that forwards to a host | {search_p50(forwarding, 'alice'):.3f} |")
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        subprocess.run([os.path.join(ROOT, "scripts", "cluster"), "down"], env=env, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
