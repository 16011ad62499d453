#!/usr/bin/env bash
# The cl100k_base token counter next to tiktoken, same texts, same rank file, one thread, one text
# per call: LoCoMo turn texts and 20,000 WordNet glosses. Needs `pip install tiktoken` (run with
# PYTHONPATH pointing at it) and scripts/fetch-model's rank file.
#   Benchmarks/scripts/tokenizer_speed.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --package-path Benchmarks --product tokenbench >/dev/null
ranks=data/tokenizers/cl100k_base.tiktoken
turns=../shared/datasets/locomo-dev/turns.jsonl
glosses=../shared/datasets/wordnet-minilm/base.jsonl
for input in "$turns" "$glosses"; do
    echo "== $input"
    Benchmarks/.build/release/tokenbench "$input" --limit 20000 --ranks "$ranks"
    python3 - "$input" "$ranks" <<'PY'
import json, sys, time
import tiktoken
from tiktoken.load import load_tiktoken_bpe
# cl100k_base's pattern, as tiktoken 0.14 defines it.
pattern = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
encoding = tiktoken.Encoding(name="cl100k_local", pat_str=pattern, mergeable_ranks=load_tiktoken_bpe(sys.argv[2]), special_tokens={})
texts = [json.loads(line)["text"] for _, line in zip(range(20000), open(sys.argv[1]))]
tokens = sum(len(encoding.encode_ordinary(t)) for t in texts)
best = min(timed for timed in (
    (lambda start: (sum(1 for t in texts if encoding.encode_ordinary(t) is not None), time.perf_counter() - start)[1])(time.perf_counter())
    for _ in range(5)))
print(f"tiktoken {tiktoken.__version__} {len(texts)} texts {tokens} tokens {tokens / best / 1e6:.2f} M tokens/s")
PY
done
