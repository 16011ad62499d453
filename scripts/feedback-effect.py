#!/usr/bin/env python3
"""What `feedback_boost` does to retrieval, measured on LoCoMo (a running server with the model and
the conversations imported as the README says, one user per conversation; it writes feedback).

Each conversation's questions are split in two by position: for the even ones, a hybrid search
(k = 10) is made and every hit is given feedback, helped when it is one of the question's evidence
turns and not helped otherwise (a user telling which retrieved memories answered); then evidence
recall@10 of the odd ones is measured without a boost and with each boost. Questions never give
feedback on what they are then measured with.

    scripts/feedback-effect.py --port 7420 [--data ../shared/datasets/locomo-dev] [--boosts 0.5,1,2]
"""
import argparse, json
from collections import defaultdict
from loopback import Connection


def recall(connection, questions, boost):
    found = total = 0
    for question in questions:
        request = {"op": "search", "user": question["conv"], "query": question["text"], "k": 10}
        if boost:
            request["feedback_boost"] = boost
        hits = {hit["id"] for hit in connection.call(request)["hits"]}
        evidence = set(question["evidence"])
        found += len(evidence & hits)
        total += len(evidence)
    return found / total


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", default="../shared/datasets/locomo-dev")
    parser.add_argument("--boosts", default="0.5,1,2")
    args = parser.parse_args()
    questions = [json.loads(line) for line in open(args.data + "/questions.jsonl")]
    questions = [q for q in questions if q.get("evidence")]
    by_conversation = defaultdict(list)
    for question in questions:
        by_conversation[question["conv"]].append(question)
    teach = [q for qs in by_conversation.values() for q in qs[0::2]]
    measure = [q for qs in by_conversation.values() for q in qs[1::2]]
    connection = Connection(args.port)
    print(f"{len(teach)} questions give feedback, {len(measure)} are measured (evidence recall@10)")
    print(f"| boost | before feedback | after feedback |\n|---|---|---|")
    before = {boost: recall(connection, measure, boost) for boost in [None] + [float(b) for b in args.boosts.split(",")]}
    given = 0
    for question in teach:
        hits = connection.call({"op": "search", "user": question["conv"], "query": question["text"], "k": 10})["hits"]
        for hit in hits:
            connection.call({"op": "feedback", "user": question["conv"], "id": hit["id"],
                             "helped": hit["id"] in question["evidence"]})
            given += 1
    for boost, value in before.items():
        print(f"| {boost or 'none'} | {value:.4f} | {recall(connection, measure, boost):.4f} |")
    print(f"({given} feedbacks given)")


main()
