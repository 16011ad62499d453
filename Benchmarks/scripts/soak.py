#!/usr/bin/env python3
"""Soak: mixed load on a release server for a while, its RSS sampled, then kill -9 and a check
that every acknowledged write is in the file.

    python3 Benchmarks/scripts/soak.py [--seconds 600] [--binary .build/release/contextstore]

Load, all on 127.0.0.1: writers (add, add_batch, delete, forget, each on its own users, so each
keeps an exact model of what it was told is stored), searchers, a client that sends searches with
20 MB answers and never reads them, and clients that send half a line and hang up. Prints RSS
every 30 s, the figures after warm-up (the first fifth of the run) and the verification; exits 1
when an acknowledged write is missing or `check` finds a problem.
"""
import argparse
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

DIM = 16


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Connection:
    def __init__(self, port, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")

    def call(self, request):
        self.sock.sendall((json.dumps(request) + "\n").encode())
        line = self.file.readline()
        if not line:
            raise ConnectionError("closed")
        return json.loads(line)

    def close(self):
        self.file.close()
        self.sock.close()


def vector(rng):
    return [rng.uniform(-1, 1) for _ in range(DIM)]


class Writer(threading.Thread):
    """Adds, deletes and forgets on its own users; `model` is what the server acknowledged."""

    def __init__(self, number, port, stop):
        super().__init__(daemon=True)
        self.number, self.port, self.stop = number, port, stop
        self.model = {}  # id -> user
        self.ops = 0
        self.error = None

    def run(self):
        rng = random.Random(self.number)
        users = [f"w{self.number}-u{i}" for i in range(8)]
        connection = Connection(self.port)
        sequence = 0
        try:
            while not self.stop.is_set():
                choice = rng.random()
                if choice < 0.55:
                    sequence += 1
                    memory_id, user = f"w{self.number}-{sequence}", rng.choice(users)
                    answer = connection.call(
                        {"op": "add", "id": memory_id, "user": user, "text": f"turn {sequence}",
                         "vector": vector(rng), "metadata": {"n": sequence}})
                    if answer.get("ok"):
                        self.model[memory_id] = user
                elif choice < 0.75:
                    items = []
                    user = rng.choice(users)
                    for _ in range(rng.randint(2, 50)):
                        sequence += 1
                        items.append({"id": f"w{self.number}-{sequence}", "user": user, "text": "batch",
                                      "vector": vector(rng)})
                    if connection.call({"op": "add_batch", "items": items}).get("ok"):
                        for item in items:
                            self.model[item["id"]] = user
                elif choice < 0.95 and self.model:
                    memory_id = rng.choice(list(self.model))
                    if connection.call({"op": "delete", "id": memory_id}).get("ok"):
                        del self.model[memory_id]
                else:
                    user = rng.choice(users)
                    if connection.call({"op": "forget", "user": user}).get("ok"):
                        for memory_id in [i for i, u in self.model.items() if u == user]:
                            del self.model[memory_id]
                self.ops += 1
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            self.error = error


class Searcher(threading.Thread):
    def __init__(self, number, port, stop, users):
        super().__init__(daemon=True)
        self.number, self.port, self.stop, self.users = number, port, stop, users
        self.ops = 0
        self.error = None

    def run(self):
        rng = random.Random(100 + self.number)
        connection = Connection(self.port)
        try:
            while not self.stop.is_set():
                answer = connection.call({"op": "search", "user": rng.choice(self.users), "vector": vector(rng),
                                          "k": 10})
                if not answer.get("ok"):
                    raise RuntimeError(answer)
                self.ops += 1
        except Exception as error:  # noqa: BLE001
            self.error = error


def non_reader(port, stop):
    """Searches whose 20 MB answers it never reads, on a small receive buffer; reconnects now
    and then, so the server must also let go of what it held."""
    request = (json.dumps({"op": "search", "user": "big", "vector": [1.0] * DIM, "k": 20}) + "\n").encode()
    while not stop.is_set():
        connection = Connection(port, rcvbuf=4096)
        connection.sock.settimeout(1)
        try:
            for _ in range(100):
                connection.sock.sendall(request)
        except OSError:
            pass
        stop.wait(20)
        connection.close()


def half_liner(port, stop):
    """Half a 1 MB line, held a moment, then a hang-up."""
    while not stop.is_set():
        try:
            connection = Connection(port)
            connection.sock.sendall(b'{"op":"ping","pad":"' + b"x" * (1 << 20))
            stop.wait(2)
            connection.close()
        except OSError:
            stop.wait(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--binary", default=".build/release/contextstore")
    arguments = parser.parse_args()

    work = tempfile.mkdtemp(prefix="contextstore-soak-")
    database = os.path.join(work, "soak.db")
    server = subprocess.Popen(
        [arguments.binary, "serve", "--db", database, "--port", "0", "--http-port", "0", "--model", "none", "--dim", str(DIM)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = int(server.stdout.readline().rsplit(":", 1)[1])

    setup = Connection(port)
    blob = "x" * (1 << 20)
    for i in range(20):
        setup.call({"op": "add", "id": f"big-{i}", "user": "big", "text": "big", "vector": [1.0] * DIM,
                    "metadata": {"blob": blob}})
    setup.close()

    stop = threading.Event()
    writers = [Writer(i, port, stop) for i in range(2)]
    users = [f"w{w}-u{i}" for w in range(2) for i in range(8)]
    searchers = [Searcher(i, port, stop, users) for i in range(2)]
    others = [threading.Thread(target=non_reader, args=(port, stop), daemon=True),
              threading.Thread(target=half_liner, args=(port, stop), daemon=True)]
    for thread in writers + searchers + others:
        thread.start()

    samples = []
    start = time.monotonic()
    while time.monotonic() - start < arguments.seconds:
        time.sleep(5)
        elapsed = time.monotonic() - start
        samples.append((elapsed, rss_mb(server.pid)))
        if len(samples) % 6 == 0:
            print(f"{elapsed:6.0f} s  RSS {samples[-1][1]:7.1f} MB  writes {sum(w.ops for w in writers)}"
                  f"  searches {sum(s.ops for s in searchers)}", flush=True)
        if any(t.error for t in writers + searchers):
            break
    stop.set()
    for thread in writers + searchers:
        thread.join(timeout=30)
    server.send_signal(signal.SIGKILL)
    server.wait()

    failures = [f"{type(t).__name__} {t.number}: {t.error}" for t in writers + searchers if t.error]
    steady = [rss for elapsed, rss in samples if elapsed >= arguments.seconds / 5]
    expected = {memory_id: user for writer in writers for memory_id, user in writer.model.items()}
    with sqlite3.connect(database) as db:
        stored = {memory_id: user for memory_id, user in db.execute("SELECT id, user FROM memories")
                  if not memory_id.startswith("big-")}
    missing = [i for i in expected if stored.get(i) != expected[i]]
    extra = [i for i in stored if i not in expected]
    check = subprocess.run([arguments.binary, "check", "--db", database], capture_output=True, text=True)

    print(f"ran {samples[-1][0]:.0f} s: {sum(w.ops for w in writers)} writes, "
          f"{sum(s.ops for s in searchers)} searches")
    if steady:
        print(f"RSS after warm-up: min {min(steady):.1f} MB, max {max(steady):.1f} MB, "
              f"first {steady[0]:.1f} MB, last {steady[-1]:.1f} MB")
    print(f"after kill -9: {len(expected)} acknowledged memories expected, {len(missing)} missing, "
          f"{len(extra)} not acknowledged but stored (in flight at the kill)")
    print("check:", check.stdout.strip().splitlines()[-1] if check.stdout.strip() else check.stderr.strip())
    for failure in failures:
        print("client failed:", failure)
    ok = not missing and check.returncode == 0 and not failures
    if ok:
        subprocess.run(["rm", "-rf", work])
    else:
        print("database kept in", work)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
