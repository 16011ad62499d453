#!/usr/bin/env python3
"""Search latency of one user holding N memories, by mode, over TCP from one connection.

Loads the first --rows WordNet glosses (text, and their MiniLM vectors from the dataset) into
one user of a running server, then sends --queries searches one at a time for each mode and
prints p50/p95 in ms: vector (the query's vector), keyword (its text), hybrid (text and vector:
no embedding on the server). In the same run, Redis PING over the same kind of socket gives the
round trip's floor.

    scripts/search-latency.py --port 7420 [--rows 10000] [--queries 1000]
"""
import base64
from loopback import Connection, load_wordnet, percentiles, redis_ping_row, timed, wordnet_arguments


def main():
    parser = wordnet_arguments(__doc__, "latency")
    parser.add_argument("--modes", default="vector,keyword,hybrid", help="comma-separated")
    args = parser.parse_args()
    connection = Connection(args.port)
    queries, questions = load_wordnet(args, connection)

    def search(request):
        return lambda i: connection.call(dict({"op": "search", "user": args.user, "k": 10}, **request(i)))

    vector = lambda i: {"vector": base64.b64encode(queries[i].tobytes()).decode()}
    modes = [
        ("vector", search(vector)),
        ("keyword", search(lambda i: {"query": questions[i], "mode": "keyword"})),
        ("hybrid", search(lambda i: dict(vector(i), query=questions[i], mode="hybrid"))),
    ]
    print(f"| search, one user of {args.rows} memories, k = 10 | p50 ms | p95 ms |\n|---|---|---|")
    ping = lambda i: connection.call({"op": "ping"})
    timed(ping, 200)
    print(f"| contextstore ping | {percentiles(timed(ping, args.queries), 95)} |")
    for name, send in modes:
        if name not in args.modes.split(","):
            continue
        timed(send, 50)  # warm-up
        print(f"| {name} | {percentiles(timed(send, args.queries), 95)} |")
    print(redis_ping_row(args.queries, 95))


main()
