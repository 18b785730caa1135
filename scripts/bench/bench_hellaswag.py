"""Python half of scripts/bench/bench-hellaswag (needs torch, transformers).
  python3 bench_hellaswag.py make DIR LAYERS CHANNELS
      DIR: a seeded GPT2LMHeadModel (GPT-2's vocabulary of 50257 and context of 1024, LAYERS layers of CHANNELS
      channels, CHANNELS / 64 heads) saved by transformers, with GPT-2's vocab.json and merges.txt
      (data/gpt2-tokenizer) beside it.
  python3 bench_hellaswag.py score DIR FILE THREADS
      FILE's examples scored with DIR's model and tokenizer as llm.c's dev/data/hellaswag.py scores them (one
      example's four rows a forward pass, float32, THREADS torch threads); prints acc, acc_norm and the seconds the
      scoring took (the model loaded and the file read before the clock starts).
"""
import json
import os
import shutil
import sys
import time

import torch
import torch.nn.functional as F
import transformers

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))


def make(folder, layers, channels):
    torch.manual_seed(5)
    config = transformers.GPT2Config(
        vocab_size=50257, n_positions=1024, n_embd=channels, n_layer=layers, n_head=channels // 64, resid_pdrop=0,
        embd_pdrop=0, attn_pdrop=0, layer_norm_epsilon=1e-5, activation_function="gelu_new",
        tie_word_embeddings=True, initializer_range=0.2)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(folder, safe_serialization=True)
    for name in ["vocab.json", "merges.txt"]:
        shutil.copy(os.path.join(ROOT, "data", "gpt2-tokenizer", name), os.path.join(folder, name))


def score(folder, file, threads):
    torch.set_num_threads(threads)
    model = transformers.GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    examples = [json.loads(line) for line in open(file, encoding="utf-8") if line.strip()]
    correct = correct_norm = 0
    start = time.perf_counter()
    for example in examples:
        ctx = tokenizer.encode(example["ctx"])
        rows = [ctx + tokenizer.encode(" " + ending) for ending in example["endings"]]
        width = max(len(row) for row in rows)
        tokens = torch.zeros((4, width), dtype=torch.long)
        mask = torch.zeros((4, width), dtype=torch.long)
        for i, row in enumerate(rows):
            tokens[i, :len(row)] = torch.tensor(row)
            mask[i, len(ctx):len(row)] = 1
        with torch.no_grad():
            logits = model(tokens).logits
        losses = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1),
                                 reduction="none").view(4, -1) * mask[:, 1:]
        sums = losses.sum(dim=1)
        means = sums / mask[:, 1:].sum(dim=1)
        label = int(example["label"])
        correct += int(sums.argmin()) == label
        correct_norm += int(means.argmin()) == label
    seconds = time.perf_counter() - start
    n = len(examples)
    print(f"acc: {correct / n:.4f} ({correct}/{n})")
    print(f"acc_norm: {correct_norm / n:.4f} ({correct_norm}/{n})")
    print(f"time: {seconds:.2f} s scoring, {n / seconds:.1f} examples/s")


if sys.argv[1] == "make":
    make(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
else:
    score(sys.argv[2], sys.argv[3], int(sys.argv[4]))
