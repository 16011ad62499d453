#!/usr/bin/env python3
"""How long a ContextStore cluster node takes to catch up a range of 100K memories, from the log
and from the range's snapshot, and how soon another host sees a write; in one run.

For each way, on this machine (scripts/cluster up: pg_auto_failover with a primary and two
synchronous standbys, three nodes):
  - fills one user's range with N memories (384-d vectors, `add_batch` of 1,000) through the
    range's first host;
  - `log`: nodes started with a snapshot only every 10M entries, so a node that lost its disk
    replays the range's whole log; `snapshot`: every 20 entries, so it loads the snapshot (an
    online backup of the first host's SQLite file, index included) and then the log's tail;
  - kills (-9) the range's other host, removes its folder (a lost disk), restarts it and times
    its start until it listens (it serves its ranges caught up by then).
Also, with the nodes' default following (LISTEN/NOTIFY, else every 250 ms): how long after a
write's answer on one host the other host's copy has it (a `get` without `min_seq`, polled).
Prints one table (markdown). Needs the release build (swift build -c release).

usage: Benchmarks/scripts/cluster-catchup.py [--memories N] [--index flat|hnsw]
"""

import argparse
import importlib.util
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
spec = importlib.util.spec_from_file_location("writes", os.path.join(os.path.dirname(__file__), "cluster-writes.py"))
writes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(writes)
Line, vector, range_of, percentile = writes.Line, writes.vector, writes.range_of, writes.percentile
BATCH = 1000


def cluster(env, *arguments):
    done = subprocess.run([os.path.join(ROOT, "scripts", "cluster"), *arguments], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"scripts/cluster {' '.join(arguments)} failed: {done.stderr}")
    return done.stdout


def fill(port, user, memories):
    rng = random.Random(3)
    connection = Line(port)
    began = time.perf_counter()
    for start in range(0, memories, BATCH):
        items = ",".join(
            f'{{"user":"{user}","text":"memory {n} of {user}: a sentence of a conversation","vector":[{vector(rng)}]}}'
            for n in range(start, min(memories, start + BATCH)))
        connection.call(f'{{"op":"add_batch","items":[{items}]}}'.encode())
    return time.perf_counter() - began


def state(port, user):
    answer = Line(port).call(b'{"op":"cluster"}')
    return answer, answer["ranges"][range_of(user, len(answer["ranges"]))]


def wait(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def follow_lag(first, other, user, count=200):
    """Milliseconds from a write's answer on `first` until `other` has it (no min_seq)."""
    rng = random.Random(5)
    writer, reader = Line(first), Line(other)
    took = []
    for n in range(count):
        writer.call(f'{{"op":"add","user":"{user}","id":"lag{n}","text":"lag {n}","vector":[{vector(rng)}]}}'.encode())
        began = time.perf_counter()
        while True:
            reader.sock.sendall(f'{{"op":"get","user":"{user}","id":"lag{n}"}}\n'.encode())
            if b'"ok":true' in reader.file.readline():
                break
        took.append(time.perf_counter() - began)
    return percentile(took, 0.5) * 1000, percentile(took, 0.99) * 1000


def run(way, memories, index, folder):
    env = dict(os.environ, CLUSTER_DIR=os.path.join(folder, way), CLUSTER_PORT="7461", CLUSTER_PG_PORT="6461",
               CLUSTER_START_TIMEOUT="1800")
    every = "10000000" if way == "log" else "20"
    try:
        cluster(env, "up", "--", "--model", "none", "--dim", "384", "--index", index, "--snapshot-every", every)
        user = "alice"
        _, placement = state(7461, user)
        ports = {}
        for line in cluster(env, "status").splitlines():
            parts = line.split()
            if parts[0] == "node":
                ports[parts[1]] = (int(parts[2].rsplit(":", 1)[1]), int(parts[4]))
        first, victim = placement["hosts"][0], placement["hosts"][1]
        filled = fill(ports[first][0], user, memories)
        lag = follow_lag(ports[first][0], ports[victim][0], user) if way == "snapshot" else None
        _, placement = state(ports[first][0], user)
        last = placement["last"]
        wait(lambda: state(ports[victim][0], user)[1].get("applied") == last, 600, "the other host")
        if way == "snapshot":
            wait(lambda: state(ports[first][0], user)[1]["snapshot"] >= last - 20, 600, "the snapshot")
        os.kill(ports[victim][1], 9)
        wait(lambda: not os.path.exists(f"/proc/{ports[victim][1]}"), 30, "the killed node's end")
        shutil.rmtree(os.path.join(folder, way, victim), ignore_errors=True)
        began = time.perf_counter()
        cluster(env, "restart", victim)
        took = time.perf_counter() - began
        _, after = state(ports[victim][0], user)
        assert after.get("applied") == last, after
        return filled, took, after, lag
    finally:
        subprocess.run([os.path.join(ROOT, "scripts", "cluster"), "down"], env=env, capture_output=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--index", default="hnsw", choices=["flat", "hnsw"])
    options = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="contextstore-catchup-bench-")
    os.chmod(folder, 0o755)  # the cluster's folder inside is PostgreSQL's (as root: the postgres user's)
    try:
        rows = [(way, *run(way, options.memories, options.index, folder)) for way in ("log", "snapshot")]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"| a node that lost its disk catches up a range of {options.memories:,} memories ({options.index}) "
          "| restart until listening, s | the fill, memories/s | log entries | snapshot at |")
    print("|---|---:|---:|---:|---:|")
    for way, filled, took, after, _ in rows:
        name = "replaying the whole log" if way == "log" else "from the snapshot, then the log's tail"
        print(f"| {name} | {took:.1f} | {options.memories / filled:,.0f} | {after['last'] - after['truncated']:,} "
              f"| {after['snapshot']:,} |")
    p50, p99 = rows[1][4]
    print()
    print(f"A write answered on one host is on the other host's copy after p50 {p50:.2f} ms, p99 {p99:.2f} ms "
          "(LISTEN/NOTIFY; a `get` without min_seq, polled).")


if __name__ == "__main__":
    sys.exit(main())
