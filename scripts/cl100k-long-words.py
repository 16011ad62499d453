#!/usr/bin/env python3
"""Makes Tests/PromptBuilderTests/Reference/cl100k-long-words.json: tiktoken's token count and an FNV-1a
hash of the ids of long one-piece words (letters drawn by a 64-bit LCG the test repeats).
Usage: scripts/cl100k-long-words.py data/tokenizers/cl100k_base.tiktoken OUT.json (pip install tiktoken)."""
import sys
import tiktoken, json, time
import base64
ranks = {}
for line in open(sys.argv[1], "rb"):
    if line.strip():
        t, r = line.split()
        ranks[base64.b64decode(t)] = int(r)
pat = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
enc = tiktoken.Encoding("cl100k_base", pat_str=pat, mergeable_ranks=ranks, special_tokens={})
def word(seed, length, alphabet):
    state = seed
    out = []
    M = (1 << 64) - 1
    for _ in range(length):
        state = (state * 6364136223846793005 + 1442695040888963407) & M
        out.append(alphabet[(state >> 33) % len(alphabet)])
    return "".join(out)
def fnv(ids):
    h = 0xcbf29ce484222325
    for i in ids:
        h ^= i
        h = (h * 0x100000001b3) & ((1 << 64) - 1)
    return h
rows = []
for seed, length, alphabet in [(1, 1_000_000, "etaoinshrdlucmfwypvbgkjqxz"), (2, 200_000, "ab"), (3, 100_000, "a"), (4, 300_000, "thequickbrownfxjmpsvlazydg")]:
    t = time.time()
    w = word(seed, length, alphabet)
    ids = enc.encode(w, disallowed_special=())
    rows.append({"seed": seed, "length": length, "alphabet": alphabet, "tokens": len(ids), "fnv1a": str(fnv(ids)), "first": ids[:8], "last": ids[-8:]})
    print(seed, len(ids), time.time() - t)
json.dump(rows, open(sys.argv[2], "w"), indent=1)
