#!/usr/bin/env python3
"""A chatbot's memory with ContextStore: what an LLM would receive for each new message.

For each new message of a user: store it, ask the server for a prompt (pinned facts, the
memories that answer it, a summary and the latest turns of the chat, within a token budget),
and print what the model would be sent. No LLM is needed to run it.

Run against a LoCoMo conversation (../shared/datasets/locomo-dev), it first stores the
conversation's history, then asks its questions as new messages and shows, for each, which of
the turns that hold the answer (the dataset's evidence) made it into the prompt:

    scripts/serve --port 7420 &
    python3 examples/chatbot_memory.py --locomo ../shared/datasets/locomo-dev --conversation conv-26

Without --locomo it reads messages from standard input, one per line, as user "demo".
"""

import argparse
import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients" / "python"))  # when not installed

from contextstore import Client  # noqa: E402


def locomo_time(text: str) -> int:
    """'1:56 pm on 8 May, 2023' -> unix milliseconds (UTC)."""
    moment = datetime.datetime.strptime(text, "%I:%M %p on %d %B, %Y").replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() * 1000)


def load_history(client: Client, folder: Path, conversation: str) -> list:
    """Stores the conversation's turns (ids as the dataset's, so evidence can be checked) and
    returns its questions."""
    turns = [json.loads(line) for line in (folder / "turns.jsonl").open()]
    turns = [turn for turn in turns if turn["conv"] == conversation]
    if not turns:
        sys.exit(f"no turns of {conversation} in {folder}/turns.jsonl")
    items = [
        {"id": f"{conversation}/{turn['id']}", "user": conversation, "session": turn["session"],
         "speaker": turn["speaker"], "text": turn["text"], "created_at": locomo_time(turn["date"])}
        for turn in turns
    ]
    for start in range(0, len(items), 128):
        client.add_batch(items[start:start + 128])
    print(f"stored {len(items)} turns of {conversation} as user '{conversation}'", file=sys.stderr)
    questions = [json.loads(line) for line in (folder / "questions.jsonl").open()]
    return [q for q in questions if q["conv"] == conversation]


def answer(client: Client, user: str, chat: str, number: int, message: str, budget: int):
    """One new message: store it, then build the prompt for it."""
    client.add(user, message, id=f"{chat}/{number}", session=chat, role="user")
    return client.prompt(user, message, session=chat, budget=budget)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7420)
    parser.add_argument("--secret", help="a key's secret, for a server run with --keys")
    parser.add_argument("--locomo", type=Path, help="a LoCoMo-format folder (turns.jsonl, questions.jsonl)")
    parser.add_argument("--conversation", default="conv-26")
    parser.add_argument("--questions", type=int, default=5, help="LoCoMo: how many of its questions to ask")
    parser.add_argument("--budget", type=int, default=1024, help="tokens the prompt may use")
    parser.add_argument("--show", type=int, default=1, help="print the whole prompt of the first N messages")
    args = parser.parse_args()

    with Client(args.host, args.port, secret=args.secret) as client:
        if args.locomo:
            user = args.conversation
            questions = load_history(client, args.locomo, user)[: args.questions]
            messages = [(q["text"], {f"{user}/{e}" for e in q["evidence"]}) for q in questions]
        else:
            user = "demo"
            messages = [(line.strip(), set()) for line in sys.stdin if line.strip()]
        chat = "chat-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
        found = wanted = 0
        for number, (message, evidence) in enumerate(messages):
            prompt = answer(client, user, chat, number, message, args.budget)
            used = set(prompt.used)
            found += len(evidence & used)
            wanted += len(evidence)
            print(f"\n=== message {number + 1}: {message}")
            print(f"    prompt: {prompt.tokens} tokens ({prompt.counter}), "
                  + ", ".join(f"{s.name} {s.tokens}" for s in prompt.sections if s.tokens))
            if evidence:
                print(f"    evidence in the prompt: {len(evidence & used)} of {len(evidence)} "
                      f"({', '.join(sorted(e.split('/', 1)[1] + (' yes' if e in used else ' no') for e in evidence))})")
            if number < args.show:
                print("--- what the LLM receives ---")
                print(prompt.prompt)
                print("-----------------------------")
        if wanted:
            print(f"\nevidence turns in the prompts: {found} of {wanted} ({found / wanted:.0%})")


if __name__ == "__main__":
    main()
