#!/usr/bin/env python3
"""Latency of `prompt` for one user holding N memories, over TCP from one connection.

Loads the first --rows WordNet glosses (text and the dataset's MiniLM vectors) into one user of a
running server, 20 to a session, one minute apart, then builds prompts one at a time:
  - at the server, no embedding: the query's text and its vector, --budget tokens (default 4096),
    --limit memories (default 100), the last session's 10 latest turns;
  - end to end: a short question (a gloss the server never embedded, cut to at most 12 tokens;
    the mean is printed) that the server embeds, same settings;
  - one prompt asked again and again: after the first, the result cache answers;
and, in the same run, the hybrid search the prompt starts from (k = limit + 10, vector given)
and Redis PING over the same kind of socket (the round trip's floor). Prints p50 / p99 in ms and
the prompts' token counts.

    scripts/prompt-latency.py --port 7420 [--rows 10000] [--queries 1000]
"""
import base64, json, random, re
from loopback import Connection, load_wordnet, percentiles, redis_ping_row, timed, wordnet_arguments


def wordpiece_count(text, vocab):
    """MiniLM's token count for plain ASCII text: [CLS], [SEP], and BERT's basic split (white
    space, punctuation) then greedy longest-match WordPiece."""
    words = re.findall(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]", text.lower())
    count = 2
    for word in words:
        start = 0
        while start < len(word):
            end = len(word)
            while end > start and (word[start:end] if start == 0 else "##" + word[start:end]) not in vocab:
                end -= 1
            if end == start:
                count += 1  # [UNK] for the whole word
                break
            count += 1
            start = end
    return count


def main():
    parser = wordnet_arguments(__doc__, "prompt-latency")
    parser.add_argument("--budget", type=int, default=4096)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--model", default="data/models/all-MiniLM-L6-v2", help="for its vocab.txt")
    args = parser.parse_args()
    connection = Connection(args.port)
    queries, questions = load_wordnet(args, connection, turns=True)
    session = f"s{(args.rows - 1) // 20}"
    tokens = []

    def prompt(request):
        def send(i):
            answer = connection.call(dict({"op": "prompt", "user": args.user, "session": session,
                                           "budget": args.budget, "limit": args.limit}, **request(i)))
            tokens.append(answer["tokens"])
        return send

    vector = lambda i: {"vector": base64.b64encode(queries[i].tobytes()).decode()}
    # Short questions: glosses the server has never embedded (from past the loaded rows, at a
    # random place, so another run asks others and the embedding cache never answers), each cut
    # to the most words within 12 tokens.
    vocab = set(open(args.model + "/vocab.txt").read().split("\n"))
    start = random.randrange(args.rows, 100_000 - args.queries - 50)
    glosses = [json.loads(line)["text"] for _, line in zip(range(start + args.queries + 50), open(args.data + "/base.jsonl"))][start:]
    shorts = []
    for gloss in glosses[: args.queries + 50]:
        words = gloss.split()
        while len(words) > 1 and wordpiece_count(" ".join(words), vocab) > 12:
            words.pop()
        shorts.append(" ".join(words))
    short = lambda i: shorts[i]
    rows = [
        ("contextstore ping", lambda i: connection.call({"op": "ping"})),
        (f"hybrid search, k = {max(30, args.limit + 10)}, vector given",
         lambda i: connection.call(dict({"op": "search", "user": args.user, "k": max(30, args.limit + 10),
                                         "query": questions[i]}, **vector(i)))),
        ("prompt at the server (vector given: no embedding)", prompt(lambda i: dict(vector(i), query=questions[i]))),
        ("prompt end to end (short question embedded by the server)", prompt(lambda i: {"query": short(i)})),
        # The same request each time: after the first, the result cache answers (no write between).
        ("prompt at the server, the same request again (result cache)",
         prompt(lambda i: dict(vector(0), query=questions[0]))),
    ]
    mean = sum(wordpiece_count(short(i), vocab) for i in range(args.queries)) / args.queries
    print(f"short questions: {mean:.1f} tokens on average (MiniLM's WordPiece, [CLS] and [SEP] included)")
    print(f"| one user of {args.rows} memories, budget {args.budget}, limit {args.limit} | p50 ms | p99 ms |")
    print("|---|---|---|")
    for name, send in rows:
        timed(send, 50)  # warm-up
        tokens.clear()
        line = f"| {name} | {percentiles(timed(send, args.queries), 99)} |"
        if tokens:
            line += f" prompts of {min(tokens)}-{max(tokens)} tokens"
        print(line)
    print(redis_ping_row(args.queries, 99))


main()
