#!/usr/bin/env python3
"""The cluster's promises under failure, on this machine (scripts/cluster), with real kill -9s.

1. Four clients write memories through the three nodes; one node is killed with SIGKILL a
   third of the way in. Every write a client was told "ok" must be read back from both
   survivors (within 5 s is reported; not within 30 s fails); the killed node restarts, catches up, and every user's digest is
   then equal on all three nodes.
2. The same load again, and the PostgreSQL primary (its postmaster, its pg_autoctl keeper and
   the keeper's children) is killed a third of the way in. pg_auto_failover promotes a standby; meanwhile writes are
   refused (`unavailable`, or the connection to PostgreSQL is lost: never a false "ok"); then
   they go on. Every acknowledged write is there afterwards on every node, and the nodes agree.

Prints what it measured (acknowledged writes, refusals, the time from the primary's kill to the
first acknowledged write after it) and exits 1 when a promise was broken.

usage: scripts/cluster-check.py [--writes N] [--keep]   (CONTEXTSTORE: the executable)
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "clients", "python"))
from contextstore import Client  # noqa: E402
from contextstore.errors import ContextStoreError  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
USERS = 40


def cluster(command, *args, env):
    out = subprocess.run(
        [os.path.join(ROOT, "scripts", "cluster"), command, *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"scripts/cluster {command} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def status(env):
    """{'nodes': {name: (port, pid)}, 'postgres': [(role, port, pid)], 'keepers': {name: pid}}"""
    found = {"nodes": {}, "postgres": [], "keepers": {}}
    for line in cluster("status", env=env).splitlines():
        words = line.split()
        if words[0] == "node":
            found["nodes"][words[1]] = (int(words[2].split(":")[1]), int(words[4]))
        elif words[0] == "postgres":
            found["postgres"].append((words[1], int(words[2].split(":")[1]), int(words[4])))
        elif words[0] == "keeper":
            found["keepers"][words[1]] = int(words[5])  # its process group
    return found


class Load:
    """Four clients writing `writes` memories with ids of their own, each retried until "ok"."""

    def __init__(self, ports, writes, tag):
        self.ports = list(ports)
        self.writes = writes
        self.tag = tag
        self.acknowledged = []  # (user, id, text)
        self.refused = 0
        self.lock = threading.Lock()
        self.first_ok_after = {}  # event name -> when the first write begun after it was acknowledged
        self.events = {}
        self.progress = 0
        self.never = []  # writes no node acknowledged within 90 s

    def mark(self, event):
        with self.lock:
            self.events[event] = time.monotonic()

    def writer(self, number):
        rng = random.Random(number)
        clients = {}
        for i in range(self.writes // 4):
            user = f"user{rng.randrange(USERS)}"
            memory_id = f"{self.tag}-{number}-{i}"
            text = f"memory {memory_id} of {user}"
            started = time.monotonic()
            deadline = started + 90
            attempt = 0
            while True:
                # The same request each time; through another node after a failure.
                port = self.ports[(number + i + attempt) % len(self.ports)]
                try:
                    client = clients.get(port) or Client(port=port, timeout=15)
                    clients[port] = client
                    client.add(user=user, id=memory_id, text=text, vector=[1.0, i % 7, number, 0.5])
                    break
                except (ContextStoreError, OSError) as error:
                    clients.pop(port, None)
                    with self.lock:
                        self.refused += 1
                        # The outage begins with the first refusal after an event (a write in
                        # flight at the kill may still commit through the old primary's backends).
                        for event in list(self.events):
                            if not event.startswith("refused after "):
                                self.events.setdefault(f"refused after {event}", time.monotonic())
                    if time.monotonic() > deadline:
                        # Not SystemExit: a thread's would end it silently.
                        with self.lock:
                            self.never.append(f"{memory_id} was never acknowledged in 90 s: {error}")
                        return
                    attempt += 1
                    time.sleep(0.05)
            now = time.monotonic()
            with self.lock:
                self.acknowledged.append((user, memory_id, text))
                self.progress += 1
                # The first write begun after the event that was acknowledged.
                for event, at in self.events.items():
                    if at <= started and event not in self.first_ok_after:
                        self.first_ok_after[event] = now

    def run(self, at_a_third):
        threads = [threading.Thread(target=self.writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        while self.progress < self.writes // 3:
            time.sleep(0.01)
        at_a_third()
        for thread in threads:
            thread.join()


def read_back(ports, acknowledged, within):
    """The acknowledged memories each node at `ports` lacks after `within` seconds."""
    deadline = time.monotonic() + within
    by_user = {}
    for user, memory_id, _ in acknowledged:
        by_user.setdefault(user, []).append(memory_id)
    missing = {}
    for port in ports:
        client = Client(port=port, timeout=15)
        while True:
            left = []
            for user, ids in by_user.items():
                for start in range(0, len(ids), 500):
                    left += [(user, m) for m in client.get(user, ids=ids[start:start + 500]).missing]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        missing[port] = left
        client.close()
    return missing


def check_read_back(ports, acknowledged):
    """(not read back within 5 s, not read back within 30 s): the first is what the cluster
    promises and is reported; only the second fails the check, so that a slow machine does not."""
    late = sum(len(m) for m in read_back(ports, acknowledged, within=5).values())
    lost = sum(len(m) for m in read_back(ports, acknowledged, within=30).values()) if late else 0
    return late, lost


def digests(ports):
    return {port: tuple(Client(port=port).digest(user=f"user{u}").digest for u in range(USERS)) for port in ports}


def converge(ports, within):
    deadline = time.monotonic() + within
    while True:
        seen = digests(ports)
        if len(set(seen.values())) == 1:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    options = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="contextstore-cluster-")
    env = dict(os.environ, CLUSTER_DIR=folder, CLUSTER_PORT=os.environ.get("CLUSTER_PORT", "7441"),
               CLUSTER_PG_PORT=os.environ.get("CLUSTER_PG_PORT", "6441"))
    broken = []
    began = time.monotonic()
    print(cluster("up", "--", "--model", "none", "--dim", "4", env=env), end="")
    print(f"up in {time.monotonic() - began:.1f} s")
    try:
        nodes = status(env)["nodes"]
        ports = [port for port, _ in nodes.values()]

        # 1. A node killed under load.
        victim = "node-2"
        load = Load(ports, options.writes, "a")

        def kill_node():
            os.kill(nodes[victim][1], signal.SIGKILL)
            load.ports.remove(nodes[victim][0])
            load.mark("node killed")

        load.run(kill_node)
        broken += load.never
        survivors = [port for name, (port, _) in nodes.items() if name != victim]
        late, lost = check_read_back(survivors, load.acknowledged)
        print(f"node kill: {len(load.acknowledged)} acknowledged, {load.refused} refused or retried, "
              f"{late} not read back from the survivors within 5 s, {lost} within 30 s")
        if lost:
            broken.append(f"{lost} acknowledged writes not read back after the node's kill")
        began = time.monotonic()
        cluster("restart", victim, env=env)
        if not converge(ports, within=60):
            broken.append("the restarted node's digests differ from the others' after 60 s")
        print(f"node restarted and equal to the others in {time.monotonic() - began:.1f} s")

        # A batch over every user, whose ranges no one node hosts: split by node, one answer.
        items = [{"user": f"user{u}", "id": f"batch-{u}", "text": f"batch memory of user{u}",
                  "vector": [0.5, 1.0, float(u), 1.0]} for u in range(USERS)]
        batch = Client(port=ports[0], timeout=30).add_batch(items)
        if list(batch.ids) != [item["id"] for item in items]:
            broken.append(f"a batch over every user came back with ids {list(batch.ids)[:5]}...")
        print(f"a batch over {USERS} users through one node: {len(batch.ids)} stored")

        # 2. The PostgreSQL primary killed under load.
        load = Load(ports, options.writes, "b")
        before = status(env)

        def kill_primary():
            for role, port, pid in before["postgres"]:
                if role == "primary":
                    name = f"pg{port - int(env['CLUSTER_PG_PORT'])}"
                    # As if its machine were lost: the keeper, its children and PostgreSQL.
                    for kill in (lambda: os.killpg(before["keepers"][name], signal.SIGKILL),
                                 lambda: os.kill(pid, signal.SIGKILL)):
                        try:
                            kill()
                        except ProcessLookupError:
                            pass  # the group's kill took it already
                    load.mark("primary killed")
                    print(f"killed the primary {name} (port {port})")

        load.run(kill_primary)
        broken += load.never
        # From the kill to the first acknowledged write begun after the first refusal.
        outage = "refused after primary killed"
        failover = (load.first_ok_after.get(outage, float("nan")) - load.events["primary killed"]
                    if outage in load.events else 0.0)
        if outage in load.events and outage not in load.first_ok_after:
            broken.append("no write begun after the primary's kill was acknowledged")
        late, lost = check_read_back(ports, load.acknowledged)
        print(f"primary kill: {len(load.acknowledged)} acknowledged, {load.refused} refused or retried, "
              f"first write begun after the first refusal acknowledged {failover:.1f} s after the kill, "
              f"{late} not read back within 5 s, {lost} within 30 s")
        if lost:
            broken.append(f"{lost} acknowledged writes not read back after the primary's kill")
        if not converge(ports, within=30):
            broken.append("the nodes' digests differ after the failover")
        after = status(env)
        print("after:", ", ".join(f"{role} {port}" for role, port, _ in after["postgres"]))
    finally:
        if not options.keep:
            cluster("down", env=env)
    if broken:
        print("BROKEN:", "; ".join(broken))
        return 1
    print("every acknowledged write was kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
