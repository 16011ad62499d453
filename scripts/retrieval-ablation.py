#!/usr/bin/env python3
"""What each part of hybrid retrieval adds, on a LoCoMo-format folder.

Asks a running server (with a model) for the embeddings of every turn (as the default template
renders it, "{speaker} said: {text}") and of every question, then ranks each conversation's turns
in this process with SQLite FTS5 (the same library and tokenizers the server uses) and numpy,
adding one part at a time. Prints evidence recall@5/@10/@20 per row as a Markdown table.

    scripts/retrieval-ablation.py --port 7420 [--data ../shared/datasets/locomo-dev]
"""
import argparse, json, re, socket, sqlite3
from datetime import datetime
import numpy as np

STOP = set("""a about above after again against all am an and any are aren as at be because been before being
below between both but by can cannot could couldn d did didn do does doesn doing don down during each few for
from further had hadn has hasn have haven having he her here hers herself him himself his how i if in into is
isn it its itself let ll m me more most mustn my myself no nor not of off on once only or other ought our ours
ourselves out over own re s same shan she should shouldn so some such t than that the their theirs them
themselves then there these they this those through to too under until up ve very was wasn we were weren what
when where which while who whom why with won would wouldn you your yours yourself yourselves""".split())
MONTHS = "January February March April May June July August September October November December".split()


def embed(port, texts):
    connection = socket.create_connection(("127.0.0.1", port))
    lines = connection.makefile("rb")
    vectors = []
    for start in range(0, len(texts), 64):
        connection.sendall((json.dumps({"op": "embed", "texts": texts[start:start + 64]}) + "\n").encode())
        answer = json.loads(lines.readline())
        assert answer["ok"], answer
        vectors += answer["vectors"]
    return np.array(vectors, dtype=np.float32)


def day(date):
    # "1:56 pm on 8 May, 2023" -> "8 May 2023", as the server renders created_at.
    found = re.search(r"(\d+) (\w+), (\d+)", date)
    return f"{found.group(1)} {found.group(2)} {found.group(3)}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", default="../shared/datasets/locomo-dev")
    args = parser.parse_args()
    turns = [json.loads(line) for line in open(args.data + "/turns.jsonl")]
    questions = [json.loads(line) for line in open(args.data + "/questions.jsonl")]
    turn_vectors = embed(args.port, [f"{t['speaker']} said: {t['text']}" for t in turns])
    question_vectors = embed(args.port, [q["text"] for q in questions])
    by_conv, previous, following = {}, {}, {}
    for i, turn in enumerate(turns):
        by_conv.setdefault(turn["conv"], []).append(i)
        if i and turns[i - 1]["conv"] == turn["conv"] and turns[i - 1]["session"] == turn["session"]:
            previous[i], following[i - 1] = i - 1, i

    def keyword_ranks(tokenizer, speaker, stop, with_day):
        db = sqlite3.connect(":memory:")
        db.execute(f"CREATE VIRTUAL TABLE t USING fts5(scope, speaker, text, day, tokenize = '{tokenizer}')")
        for i, turn in enumerate(turns):
            db.execute("INSERT INTO t (rowid, scope, speaker, text, day) VALUES (?, ?, ?, ?, ?)",
                       (i, turn["conv"].replace("-", ""), turn["speaker"] if speaker else "", turn["text"],
                        day(turn["date"]) if with_day else ""))
        ranks = []
        for question in questions:
            words = re.findall(r"\w+", question["text"].lower())
            terms = [w for w in words if not (stop and w in STOP)] or words
            match = 'scope : "%s" AND {speaker text day} : (%s)' % (
                question["conv"].replace("-", ""), " OR ".join('"%s"' % w for w in dict.fromkeys(terms)))
            ranks.append([row[0] for row in db.execute(
                "SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t, 0, 1, 1, 1), rowid LIMIT 1000", (match,))])
        return ranks

    vector_ranks = []
    for q, question in enumerate(questions):
        ids = by_conv[question["conv"]]
        scores = turn_vectors[ids] @ question_vectors[q]
        vector_ranks.append([ids[j] for j in np.argsort(-scores, kind="stable")])

    def fuse(keyword, c, credit):
        return [sorted(total, key=lambda turn: -total[turn]) for total in fused_scores(keyword, c, credit)]

    def fused_scores(keyword, c, credit):
        fused = []
        for v, k in zip(vector_ranks, keyword):
            total = {}
            for ranking in (v, k):
                gain = {turn: 1 / (c + r + 1) for r, turn in enumerate(ranking[:1000])}
                candidates = set(gain) | {n for t in gain for n in (previous.get(t), following.get(t)) if n is not None}
                for turn in candidates:
                    near = [gain.get(n, 0) for n in (previous.get(turn), following.get(turn)) if n is not None]
                    total[turn] = total.get(turn, 0) + gain.get(turn, 0) + credit * max(near + [0])
            fused.append(total)
        return fused

    # Recency as the server weighs it, with "now" the end of each conversation (the data's dates
    # are years old, so against today's clock every turn would weigh 1/2 and nothing would move).
    seconds = [datetime.strptime(t["date"], "%I:%M %p on %d %B, %Y").timestamp() for t in turns]
    conversation_end = {}
    for i, turn in enumerate(turns):
        conversation_end[turn["conv"]] = max(conversation_end.get(turn["conv"], 0), seconds[i])

    def recent(keyword, half_life_days):
        weighted = []
        for question, total in zip(questions, fused_scores(keyword, 10, 0.5)):
            now = conversation_end[question["conv"]]
            score = {turn: value * (1 + 2 ** (-(now - seconds[turn]) / (half_life_days * 86400))) / 2
                     for turn, value in total.items()}
            weighted.append(sorted(score, key=lambda turn: -score[turn]))
        return weighted

    def recall(rankings):
        figures = []
        for k in (5, 10, 20):
            found = [len(set(q["evidence"]) & {turns[i]["id"] for i in ranking[:k]}) / len(q["evidence"])
                     for q, ranking in zip(questions, rankings)]
            figures.append(f"{np.mean(found):.4f}")
        return " | ".join(figures)

    porter = "porter unicode61 remove_diacritics 2"
    rows = [("vector alone (MiniLM, `[{speaker} said: ]{text}`)", vector_ranks)]
    plain = keyword_ranks("unicode61", False, False, False)
    rows.append(("BM25, text only, no stop list", plain))
    with_speaker = keyword_ranks("unicode61", True, False, False)
    rows.append(("BM25 + speaker column", with_speaker))
    stopped = keyword_ranks("unicode61", True, True, False)
    rows.append(("BM25 + speaker + stop words left out of queries", stopped))
    stemmed = keyword_ranks(porter, True, True, False)
    rows.append(("... + Porter stems, accents folded", stemmed))
    full = keyword_ranks(porter, True, True, True)
    rows.append(("... + the day column (the server's keyword index)", full))
    rows.append(("hybrid: RRF c = 60 (vector + that keyword index)", fuse(full, 60, 0)))
    rows.append(("hybrid: RRF c = 20", fuse(full, 20, 0)))
    rows.append(("hybrid: RRF c = 10", fuse(full, 10, 0)))
    rows.append(("hybrid: c = 10 + neighbouring-turn credit 0.25", fuse(full, 10, 0.25)))
    rows.append(("hybrid: c = 10 + neighbouring-turn credit 0.5 (the server's)", fuse(full, 10, 0.5)))
    rows.append(("hybrid: c = 10 + neighbouring-turn credit 1.0", fuse(full, 10, 1.0)))
    rows.append(("the server's hybrid + half_life 30 days", recent(full, 30)))
    rows.append(("the server's hybrid + half_life 365 days", recent(full, 365)))
    print("| ranking | recall@5 | recall@10 | recall@20 |\n|---|---|---|---|")
    for name, rankings in rows:
        print(f"| {name} | {recall(rankings)} |")


main()
