"""Tokens/s of tiktoken (r50k's pattern and ranks, built from data/gpt2-tokenizer/) and Hugging Face
`tokenizers` (GPT-2's byte-level BPE on the same files) on one text file, single thread and on N
threads (the text cut into threads x 8 chunks at newlines, encoded as a batch), medians of ROUNDS. Used by scripts/bench/bench-tokenizer.
    python3 scripts/bench/bench_tokenizers.py FILE THREADS ROUNDS
"""
import json
import os
import statistics
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", sys.argv[2])
import tiktoken  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))
from gpt2_files import FOLDER as folder, PATTERN, ranks  # noqa: E402

path, threads, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
text = open(path, encoding="utf-8").read()
# The same cut as baton's: threads x 8 chunks, each ending at a newline.
lines, start = [], 0
for k in range(1, threads * 8):
    cut = text.find("\n", max(start + 1, len(text) * k // (threads * 8)))
    if cut < 0:
        break
    lines.append(text[start:cut])
    start = cut
lines.append(text[start:])


def timed(make, run):
    times = []
    for _ in range(rounds):
        encoder = make()  # a fresh one each round: no cache carried over
        start = time.perf_counter()
        count = run(encoder)
        times.append(time.perf_counter() - start)
    return count / statistics.median(times)


def tiktoken_encoder():
    return tiktoken.Encoding("r50k_bench", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})


def hf_encoder():
    tokenizer = Tokenizer(models.BPE.from_file(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return tokenizer


results = {
    "tiktoken 1 thread": timed(tiktoken_encoder, lambda e: len(e.encode_ordinary(text))),
    f"tiktoken {threads} threads": timed(tiktoken_encoder, lambda e: sum(map(len, e.encode_ordinary_batch(lines, num_threads=threads)))),
    "tokenizers 1 thread": timed(hf_encoder, lambda e: len(e.encode(text).ids)),
    f"tokenizers {threads} threads": timed(hf_encoder, lambda e: sum(len(x.ids) for x in e.encode_batch(lines))),
}
print(json.dumps(results))
