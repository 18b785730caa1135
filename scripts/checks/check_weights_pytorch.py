"""Loads a Baton model.safetensors in PyTorch and prints the loss that `baton eval` prints for the
same sequences, so the two can be compared by hand (needs torch, safetensors, numpy):
  python3 scripts/checks/check_weights_pytorch.py RUN/model.safetensors SHARD.bin SEQUENCES
"""
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))
from reference_gpt import forward  # noqa: E402

weights, shard, sequences = sys.argv[1], sys.argv[2], int(sys.argv[3])
with safe_open(weights, "pt") as f:
    meta = f.metadata()
T, V, L, NH = (int(meta["baton." + k]) for k in ("n_ctx", "vocab_size", "n_layer", "n_head"))
tokens = np.fromfile(shard, dtype="<u2", offset=1024)[: sequences * T + 1].astype(np.int64)
x = torch.tensor(tokens[:-1]).view(sequences, T)
y = torch.tensor(tokens[1:]).view(sequences, T)
with torch.no_grad():
    logits = forward(load_file(weights), x, L, NH)
print(f"loss: {torch.nn.functional.cross_entropy(logits.view(-1, V), y.view(-1)).item()}")
