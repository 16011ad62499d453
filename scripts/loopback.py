"""What the latency scripts share: a line-delimited JSON connection to the server, a timer, the
percentiles they print, and Redis PING over the same kind of socket (the round trip's floor)."""
import argparse, base64, json, socket, subprocess, time
import numpy as np


class Connection:
    def __init__(self, port):
        self.socket = socket.create_connection(("127.0.0.1", port))
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lines = self.socket.makefile("rb")

    def call(self, request):
        self.socket.sendall((json.dumps(request) + "\n").encode())
        answer = json.loads(self.lines.readline())
        assert answer["ok"], answer
        return answer


def percentiles(samples, upper):
    """The 50th and the `upper` percentile of nanosecond samples, in ms, as a table's cells."""
    values = np.array(samples) / 1e6
    return f"{np.percentile(values, 50):.3f} | {np.percentile(values, upper):.3f}"


def timed(send, count):
    """Nanoseconds each of `count` calls of send(i) took, one after another."""
    samples = []
    for i in range(count):
        start = time.perf_counter_ns()
        send(i)
        samples.append(time.perf_counter_ns() - start)
    return samples


def redis_ping_row(count, upper):
    """A table row: Redis PING from this process, started on port 7499 for the measurement."""
    redis = subprocess.Popen(["redis-server", "--port", "7499", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        peer = socket.create_connection(("127.0.0.1", 7499))
        peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        replies = peer.makefile("rb")

        def ping(i):
            peer.sendall(b"PING\r\n")
            assert replies.readline() == b"+PONG\r\n"

        timed(ping, 200)
        return f"| Redis PING, same client | {percentiles(timed(ping, count), upper)} |"
    finally:
        redis.terminate()


def wordnet_arguments(description, user):
    """The command line both latency scripts take; each adds its own options to the parser."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", default="../shared/datasets/wordnet-minilm")
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--user", default=user)
    return parser


def load_wordnet(args, connection, turns=False):
    """Adds the first `args.rows` glosses with their dataset vectors to `args.user` (with
    `turns`: 20 to a session, one minute apart, roles alternating), skipping those there already.
    Returns the query vectors and texts (the first `args.queries`)."""
    base = np.load(args.data + "/base.f16.npy")[: args.rows].astype(np.float32)
    texts = [json.loads(line)["text"] for _, line in zip(range(args.rows), open(args.data + "/base.jsonl"))]
    for start in range(0, args.rows, 500):
        items = []
        for i in range(start, min(args.rows, start + 500)):
            item = {"id": str(i), "user": args.user, "text": texts[i],
                    "vector": base64.b64encode(base[i].tobytes()).decode()}
            if turns:
                item.update(session=f"s{i // 20}", role="user" if i % 2 else "assistant",
                            created_at=1_700_000_000_000 + i * 60_000)
            items.append(item)
        connection.call({"op": "add_batch", "items": items, "if_absent": True})
    queries = np.load(args.data + "/queries.f16.npy")[: args.queries].astype(np.float32)
    questions = [json.loads(line)["text"] for _, line in zip(range(args.queries), open(args.data + "/queries.jsonl"))]
    return queries, questions
