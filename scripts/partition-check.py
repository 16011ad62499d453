#!/usr/bin/env python3
"""A network partition, with network namespaces (scripts/cluster up --netns; root only).

node-3 is cut off from PostgreSQL (a blackhole route in its namespace: clients and the other
nodes still reach it):
1. Every write sent to node-3 about a user of a range it hosts is refused (`unavailable`, or
   no answer within 30 s): never "ok". The same users' writes through node-1 go on (retried
   while the cluster moves the ranges off node-3).
2. Once node-3's lease has lapsed, a read at node-3 that asks for the `min_seq` of a write made
   through node-1 is `unavailable`; one without `min_seq` gets node-3's last copy.
3. Mended (scripts/cluster heal), node-3 takes writes again and every user's digest is equal on
   the three nodes within 60 s.

Prints what it measured and exits 1 when a promise was broken, 2 when it cannot run here (not
root, or no network namespaces).

usage: scripts/partition-check.py [--keep]   (CONTEXTSTORE: the executable)
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
USERS = 24
LEASE = 3  # seconds: the nodes' default


def cluster(command, *args, env):
    out = subprocess.run(
        [os.path.join(ROOT, "scripts", "cluster"), command, *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"scripts/cluster {command} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


class Line:
    """One connection speaking line-delimited JSON; `call` returns the answer object."""

    def __init__(self, address, timeout=30):
        self.sock = socket.create_connection(address, timeout=timeout)
        self.file = self.sock.makefile("rb")

    def call(self, request):
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        line = self.file.readline()
        if not line:
            raise OSError("connection closed")
        return json.loads(line)


def code(answer):
    return answer.get("error", {}).get("code") if not answer.get("ok") else "ok"


def range_of(user, count):
    """The user's range, as the cluster computes it: FNV-1a 64 of the id's UTF-8 bytes."""
    value = 0xCBF29CE484222325
    for byte in user.encode():
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value % count


def digests(addresses):
    seen = []
    for address in addresses:
        line = Line(address)
        seen.append(tuple(line.call({"op": "digest", "user": f"user{u}"}).get("digest") for u in range(USERS)))
    return seen


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    options = parser.parse_args()
    probe = f"cs-probe-{os.getpid()}"
    if os.geteuid() != 0 or subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        print("partition check: needs root and network namespaces (ip netns add); NOT RUN")
        return 2
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    folder = tempfile.mkdtemp(prefix="contextstore-partition-")
    os.chmod(folder, 0o755)  # the cluster's folder inside is PostgreSQL's (the postgres user's)
    env = dict(os.environ, CLUSTER_DIR=os.path.join(folder, "cluster"),
               CLUSTER_PORT=os.environ.get("CLUSTER_PORT", "7481"),
               CLUSTER_PG_PORT=os.environ.get("CLUSTER_PG_PORT", "6481"))
    broken = []
    began = time.monotonic()
    cluster("up", "--netns", "--", "--model", "none", "--dim", "4", env=env)
    print(f"up (--netns) in {time.monotonic() - began:.1f} s")
    try:
        nodes = {}
        for line in cluster("status", env=env).splitlines():
            words = line.split()
            if words[0] == "node":
                host, port = words[2].rsplit(":", 1)
                nodes[words[1]] = (host, int(port))
        first, cut = nodes["node-1"], nodes["node-3"]
        writer, victim = Line(first), Line(cut)
        # Settled: every range on two nodes, none joining (the nodes joined one by one).
        deadline = time.monotonic() + 60
        while True:
            placement = writer.call({"op": "cluster"})["ranges"]
            if all(len(r["hosts"]) == 2 and not r["joining"] for r in placement):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the placement did not settle in 60 s: {placement}")
            time.sleep(0.2)
        users = [f"user{u}" for u in range(USERS)]
        own = [u for u in users if "node-3" in placement[range_of(u, len(placement))]["hosts"]]
        for user in users:  # every user has a memory, written through node-3
            answer = victim.call({"op": "add", "user": user, "id": "before", "text": "before", "vector": [1, 0, 0, 0]})
            if code(answer) != "ok":
                broken.append(f"a write through node-3 before the cut failed: {answer}")
        time.sleep(0.5)

        cluster("partition", "node-3", env=env)
        cut_at = time.monotonic()
        # 1. Writes to node-3 about its own ranges: never "ok"; through node-1: acknowledged.
        false_oks = []
        refused_after = []  # seconds each refusal took (None: no answer within 30 s)

        def write_to_cut(user, n):
            time.sleep(n * 0.5)  # spread over the first 4 s: before and after the lease lapses
            sent = time.monotonic()
            try:
                answer = Line(cut).call(
                    {"op": "add", "user": user, "id": f"cut{n}", "text": "cut", "vector": [0, 1, 0, 0]})
                if code(answer) == "ok":
                    false_oks.append((user, n))
                else:
                    refused_after.append(time.monotonic() - sent)
            except OSError:
                refused_after.append(None)  # no answer in time: not acknowledged

        threads = [threading.Thread(target=write_to_cut, args=(own[n % len(own)], n)) for n in range(8)]
        for thread in threads:
            thread.start()
        sequences = {}
        refusals = 0
        last_ok = 0.0
        slowest = (0.0, None)
        for user in own:
            deadline = time.monotonic() + 60
            while True:
                sent = time.monotonic()
                answer = writer.call({"op": "add", "user": user, "id": "during", "text": "during",
                                      "vector": [0, 0, 1, 0]})
                slowest = max(slowest, (time.monotonic() - sent, user))
                if code(answer) == "ok":
                    sequences[user] = answer["seqs"][user]
                    last_ok = time.monotonic() - cut_at
                    break
                refusals += 1
                if time.monotonic() > deadline:
                    broken.append(f"a write for {user} through node-1 was refused for 60 s: {answer}")
                    break
                time.sleep(0.1)
        for thread in threads:
            thread.join()
        if false_oks:
            broken.append(f"node-3, cut off, acknowledged {len(false_oks)} writes")
        waits = ", ".join("none in 30 s" if t is None else f"{t:.1f}" for t in refused_after)
        print(f"cut off: 8 writes sent to node-3 for its own ranges, {len(false_oks)} acknowledged, the refusals "
              f"took (s): {waits}; {len(own)} writes through node-1 acknowledged ({refusals} refusals retried), "
              f"the last {last_ok:.1f} s after the cut; the slowest answer took {slowest[0]:.1f} s "
              f"({slowest[1]}, range {range_of(slowest[1], len(placement))}: "
              f"{placement[range_of(slowest[1], len(placement))]['hosts']})")

        # 2. Past the lease: a min_seq node-3 cannot reach is unavailable; a plain read answers.
        time.sleep(max(0.0, cut_at + 2 * LEASE - time.monotonic()))
        user = own[0]
        asked = Line(cut).call({"op": "get", "user": user, "id": "before", "min_seq": sequences[user]})
        plain = Line(cut).call({"op": "get", "user": user, "id": "before"})
        print(f"read at node-3 with min_seq {sequences[user]}: {code(asked)}; without: {code(plain)}")
        if code(asked) != "unavailable":
            broken.append(f"node-3 answered a read it cannot vouch for: {asked}")
        if code(plain) != "ok":
            broken.append(f"node-3 did not answer a read without min_seq from its copy: {plain}")

        # 3. Mended: converges.
        cluster("heal", "node-3", env=env)
        healed_at = time.monotonic()
        deadline = healed_at + 60
        took = None
        while time.monotonic() < deadline:
            answer = Line(cut).call({"op": "add", "user": own[0], "id": "after", "text": "after",
                                     "vector": [0, 0, 0, 1]})
            if code(answer) == "ok":
                took = time.monotonic() - healed_at
                break
            time.sleep(0.2)
        if took is None:
            broken.append("node-3 took no write within 60 s of the heal")
        equal = None
        while time.monotonic() < deadline:
            if len(set(digests(nodes.values()))) == 1:
                equal = time.monotonic() - healed_at
                break
            time.sleep(0.2)
        if equal is None:
            broken.append("the nodes' digests differ 60 s after the heal")
        print(f"healed: node-3 took a write after {took if took is None else f'{took:.1f} s'}, "
              f"digests equal after {equal if equal is None else f'{equal:.1f} s'}")
    finally:
        if not options.keep:
            cluster("down", env=env)
    if broken:
        print("BROKEN:\n  " + "\n  ".join(broken))
        return 1
    print("partition check: every promise kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
