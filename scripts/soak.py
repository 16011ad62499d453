#!/usr/bin/env python3
"""A soak run: a release server for SECONDS (default 600) under well-behaved clients and hostile
ones together, checking what issue 24 asks of it.

Hostile clients, each in a loop of its own: mid-line writers (every write ends inside a line),
non-readers (ask for long answers, read nothing), long words (a 1 MB word in a prompt query),
nested templates (a list inside a list, and too deep), unauthenticated idlers, secret guessers,
and another tenant writing the same words. Well-behaved clients add memories, read them back and
search, timing every request.

Passes when: the server's RSS stays under 1 GB, no well-behaved request waits more than 1 s,
and every acknowledged add is there at the end (after a restart). Prints the figures.

Usage: scripts/soak.py [SECONDS]   (builds nothing: run `swift build -c release` first)
"""

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BINARY = REPO / ".build" / "release" / "contextstore"
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 600
ADMIN = "soak-admin-secret-0123456789"
KEYS = {"keys": [
    {"name": "ops", "secret": ADMIN, "role": "admin"},
    {"name": "good", "secret": "soak-good-secret-0123456789", "role": "app", "users": ["good/*"]},
    {"name": "bad", "secret": "soak-bad-secret-01234567890", "role": "app", "users": ["bad/*"]},
]}
stop = threading.Event()
lock = threading.Lock()
figures = {"good_requests": 0, "slowest_ms": 0.0, "slow_over_1s": 0, "acknowledged": [], "rss_max_mb": 0,
           "errors": []}


def start(folder: Path, port: int) -> subprocess.Popen:
    command = [str(BINARY), "serve", "--db", str(folder / "soak.db"), "--port", str(port), "--http-port", "0", "--model", "none",
               "--dim", "8", "--keys", str(folder / "keys.json"), "--allow-request-templates", "--log-level",
               "error", "--max-connections", "512"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout.readline().startswith(b"listening on")
    return process


def connect(port: int, secret=None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    if secret:
        sock.sendall(json.dumps({"op": "auth", "secret": secret}).encode() + b"\n")
        read_line(sock)
    return sock


def read_line(sock: socket.socket, buffer=bytearray()) -> bytes:
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return bytes(data)


def vector() -> list:
    return [random.uniform(-1, 1) for _ in range(8)]


def good(port: int, n: int) -> None:
    sock = connect(port, KEYS["keys"][1]["secret"])
    i = 0
    while not stop.is_set():
        i += 1
        mid = f"g{n}-{i}"
        for request in (
            {"op": "add", "user": f"good/{n}", "id": mid, "text": f"tea and violin {i}", "vector": vector()},
            {"op": "get", "user": f"good/{n}", "id": mid},
            {"op": "search", "user": f"good/{n}", "query": "violin tea", "mode": "keyword", "k": 5},
            {"op": "search", "user": f"good/{n}", "vector": vector(), "k": 5},
        ):
            started = time.monotonic()
            try:
                sock.sendall(json.dumps(request).encode() + b"\n")
                answer = json.loads(read_line(sock))
            except (OSError, ConnectionError) as error:
                with lock:
                    figures["errors"].append(f"good {n}: {error}")
                sock = connect(port, KEYS["keys"][1]["secret"])
                continue
            took = (time.monotonic() - started) * 1000
            with lock:
                figures["good_requests"] += 1
                figures["slowest_ms"] = max(figures["slowest_ms"], took)
                figures["slow_over_1s"] += took > 1000
                if request["op"] == "add" and answer.get("ok"):
                    figures["acknowledged"].append((request["user"], mid))
                if not answer.get("ok"):
                    figures["errors"].append(f"good {n}: {answer}")
        time.sleep(0.01)


def hostile(port: int, kind: str) -> None:
    secret = KEYS["keys"][2]["secret"]
    while not stop.is_set():
        try:
            if kind == "mid-line":
                sock = connect(port)
                for _ in range(2000):
                    if stop.is_set():
                        break
                    sock.sendall(b'{"op":"ping"}' + b" " * 900 + b'\n{"op":"pi')
                    sock.sendall(b'ng"}\n')
                    sock.setblocking(False)
                    try:
                        while sock.recv(1 << 16):
                            pass
                    except BlockingIOError:
                        pass
                    sock.setblocking(True)
                sock.close()
            elif kind == "non-reader":
                sock = connect(port, secret)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                blob = "x" * 200_000
                for i in range(5):
                    sock.sendall(json.dumps({"op": "add", "user": "bad/big", "id": f"b{i}", "text": "t",
                                             "vector": vector(), "metadata": {"b": blob}}).encode() + b"\n")
                sock.sendall((json.dumps({"op": "list", "user": "bad/big", "limit": 5}) + "\n").encode() * 50)
                time.sleep(5)
                sock.close()
            elif kind == "long-word":
                sock = connect(port, secret)
                word = "a" * 1_000_000
                sock.sendall(json.dumps({"op": "prompt", "user": "bad/w", "query": word, "vector": vector(),
                                         "budget": 100}).encode() + b"\n")
                read_line(sock)
                sock.close()
            elif kind == "templates":
                sock = connect(port, secret)
                for template in ("{{#memories}}{{#recent}}{{line}}{{/recent}}{{/memories}}",
                                 "{{#a}}" * 3000 + "{{/a}}" * 3000):
                    sock.sendall(json.dumps({"op": "prompt", "user": "bad/t", "query": "q", "vector": vector(),
                                             "template": template}).encode() + b"\n")
                    read_line(sock)
                sock.close()
            elif kind == "idler":
                socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
                time.sleep(12)
                for sock in socks:
                    sock.close()
            elif kind == "guesser":
                sock = connect(port)
                for _ in range(3):
                    sock.sendall(b'{"op":"auth","secret":"wrong-secret-0123456789"}\n')
                    read_line(sock)
                sock.close()
                time.sleep(0.5)
            elif kind == "tenant":
                sock = connect(port, secret)
                for i in range(100):
                    sock.sendall(json.dumps({"op": "add", "user": "bad/words", "text": "tea violin tea violin",
                                             "vector": vector()}).encode() + b"\n")
                    read_line(sock)
                sock.close()
        except (OSError, ConnectionError):
            time.sleep(0.2)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="contextstore-soak-"))
    (folder / "keys.json").write_text(json.dumps(KEYS))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start(folder, port)
    threads = [threading.Thread(target=good, args=(port, n), daemon=True) for n in range(4)]
    threads += [threading.Thread(target=hostile, args=(port, kind), daemon=True) for kind in
                ("mid-line", "mid-line", "non-reader", "non-reader", "long-word", "templates", "idler", "guesser",
                 "tenant")]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    while time.monotonic() - started < SECONDS:
        time.sleep(1)
        figures["rss_max_mb"] = max(figures["rss_max_mb"], rss_mb(server.pid))
    stop.set()
    time.sleep(2)
    server.terminate()
    server.wait(timeout=60)
    server = start(folder, port)
    sock = connect(port, ADMIN)
    missing = 0
    for user, mid in figures["acknowledged"]:
        sock.sendall(json.dumps({"op": "get", "user": user, "id": mid}).encode() + b"\n")
        missing += not json.loads(read_line(sock)).get("ok")
    server.terminate()
    server.wait(timeout=60)
    print(f"seconds {SECONDS:.0f}; good requests {figures['good_requests']}; slowest {figures['slowest_ms']:.1f} ms; "
          f"over 1 s {figures['slow_over_1s']}; acknowledged adds {len(figures['acknowledged'])}, missing after a "
          f"restart {missing}; server RSS max {figures['rss_max_mb']:.0f} MB; good-client errors "
          f"{len(figures['errors'])} {figures['errors'][:3]}")
    ok = figures["rss_max_mb"] < 1024 and figures["slow_over_1s"] == 0 and missing == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
