"""Tokens/s of the Python tokenizers Baton is measured against, on one text file, single thread and on N threads (the
text cut into threads x 8 chunks at newlines, encoded as a batch), medians of ROUNDS. Used by
scripts/bench/bench-tokenizer.
    python3 scripts/bench/bench_tokenizers.py FILE THREADS ROUNDS
        tiktoken (r50k's pattern and ranks, built from data/gpt2-tokenizer/) and Hugging Face `tokenizers` (GPT-2's
        byte-level BPE on the same files)
    python3 scripts/bench/bench_tokenizers.py FILE THREADS ROUNDS --json DIR...
        Hugging Face `tokenizers` on each DIR/tokenizer.json
    python3 scripts/bench/bench_tokenizers.py --write-gpt2-json DIR
        writes DIR/tokenizer.json: GPT-2's vocabulary and merges as `tokenizers` saves them (ByteLevel, merges as pairs)
"""
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))

if sys.argv[1] == "--write-gpt2-json":
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    from gpt2_files import FOLDER as folder  # noqa: E402
    tokenizer = Tokenizer(models.BPE.from_file(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.add_special_tokens(["<|endoftext|>"])
    os.makedirs(sys.argv[2], exist_ok=True)
    tokenizer.save(os.path.join(sys.argv[2], "tokenizer.json"))
    sys.exit(0)

os.environ.setdefault("RAYON_NUM_THREADS", sys.argv[2])
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402

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


def hf_rows(name, make):
    return {
        f"{name} 1 thread": timed(make, lambda e: len(e.encode(text, add_special_tokens=False).ids)),
        f"{name} {threads} threads": timed(
            make, lambda e: sum(len(x.ids) for x in e.encode_batch(lines, add_special_tokens=False))),
    }


if len(sys.argv) > 4 and sys.argv[4] == "--json":
    results = {}
    for folder in sys.argv[5:]:
        results.update(hf_rows(f"tokenizers {os.path.basename(folder)}",
                               lambda: Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))))
    print(json.dumps(results))
    sys.exit(0)

import tiktoken  # noqa: E402

from gpt2_files import FOLDER as folder, PATTERN, ranks  # noqa: E402


def tiktoken_encoder():
    return tiktoken.Encoding("r50k_bench", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})


def hf_encoder():
    tokenizer = Tokenizer(models.BPE.from_file(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return tokenizer


results = {
    "tiktoken 1 thread": timed(tiktoken_encoder, lambda e: len(e.encode_ordinary(text))),
    f"tiktoken {threads} threads": timed(tiktoken_encoder, lambda e: sum(map(len, e.encode_ordinary_batch(lines, num_threads=threads)))),
}
results.update(hf_rows("tokenizers", hf_encoder))
print(json.dumps(results))
