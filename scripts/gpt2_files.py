"""GPT-2's tokenizer files in data/gpt2-tokenizer/, as tiktoken wants them: r50k_base's
pre-tokenisation pattern and the merge ranks (token bytes -> id). Shared by
make_tokenizer_fixture.py and bench_tokenizers.py."""
import json
import os

ROOT = os.path.join(os.path.dirname(__file__), "..")
FOLDER = os.path.join(ROOT, "data", "gpt2-tokenizer")
PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


decoder = {c: b for b, c in bytes_to_unicode().items()}
vocab = json.load(open(os.path.join(FOLDER, "vocab.json"), encoding="utf-8"))
ranks = {bytes(decoder[c] for c in token): i for token, i in vocab.items() if token != "<|endoftext|>"}
