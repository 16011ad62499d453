"""What the latency scripts share: a line-delimited JSON connection to the server, a timer, the
percentiles they print, and Redis PING over the same kind of socket (the round trip's floor)."""
import json, socket, subprocess, time
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
