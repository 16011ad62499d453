#!/usr/bin/env python3
"""Builds the LoCoMo files the README's examples and `bench --conversations` read, from LoCoMo's
public release (Maharana et al., 2024; github.com/snap-research/locomo, data/locomo10.json,
licence CC BY-NC 4.0).

    scripts/locomo-dev.py locomo10.json data/locomo-dev            # the five dev conversations
    scripts/locomo-dev.py locomo10.json data/locomo-all --all      # all ten

Writes, in OUT (docs/BENCHMARKS.md, "LoCoMo files", has the schema):
- turns.jsonl: one turn a line: conv, session (session_N), date (the session's date and time as
  the data writes it), id (the dialog id, D1:3), speaker, text (as written; image captions are
  left out);
- questions.jsonl: conv, text (the question), evidence (dialog ids of the turns that hold the
  answer), category (1-4; the adversarial category 5, which has no answer, is left out).
"""

import argparse
import json
import re
import sys
from pathlib import Path

DEV = ["conv-26", "conv-30", "conv-41", "conv-42", "conv-43"]


def turns(sample):
    conversation = sample["conversation"]
    sessions = sorted(
        (key for key in conversation if re.fullmatch(r"session_\d+", key)), key=lambda key: int(key.split("_")[1])
    )
    for session in sessions:
        date = conversation.get(f"{session}_date_time", "")
        for turn in conversation[session]:
            yield {"conv": sample["sample_id"], "session": session, "date": date, "id": turn["dia_id"],
                   "speaker": turn["speaker"], "text": turn["text"]}


def questions(sample):
    for qa in sample["qa"]:
        if qa.get("category") == 5:
            continue
        yield {"conv": sample["sample_id"], "text": qa["question"], "evidence": list(qa.get("evidence", [])),
               "category": qa["category"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="LoCoMo's locomo10.json")
    parser.add_argument("out", help="the folder to write turns.jsonl and questions.jsonl in")
    parser.add_argument("--all", action="store_true", help="all ten conversations, not the five dev ones")
    arguments = parser.parse_args()
    samples = json.loads(Path(arguments.source).read_text(encoding="utf-8"))
    if not arguments.all:
        samples = [sample for sample in samples if sample["sample_id"] in DEV]
        missing = set(DEV) - {sample["sample_id"] for sample in samples}
        if missing:
            print(f"{arguments.source} lacks {sorted(missing)}: is it LoCoMo's locomo10.json?", file=sys.stderr)
            return 1
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, rows in (("turns", turns), ("questions", questions)):
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as file:
            counts[name] = 0
            for sample in samples:
                for row in rows(sample):
                    file.write(json.dumps(row, ensure_ascii=False) + "\n")
                    counts[name] += 1
    print(f"{out}: {len(samples)} conversations, {counts['turns']} turns, {counts['questions']} questions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
