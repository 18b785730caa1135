"""Loads a Baton checkpoint into Hugging Face transformers' GPT2LMHeadModel, as the tensors are,
and compares its loss with `baton eval` on the same sequences (run by hand; needs torch and
transformers):  python3 scripts/checks/check_transformers.py CHECKPOINT_DIR SHARD.bin SEQUENCES
"""
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2LMHeadModel

checkpoint, shard, sequences = sys.argv[1], sys.argv[2], int(sys.argv[3])
path = checkpoint + "/model.safetensors"
with safe_open(path, "pt") as f:
    meta = f.metadata()
T, V, L, NH, C = (int(meta["baton." + k]) for k in ("n_ctx", "vocab_size", "n_layer", "n_head", "n_embd"))
config = GPT2Config(vocab_size=V, n_positions=T, n_embd=C, n_layer=L, n_head=NH, resid_pdrop=0, embd_pdrop=0,
                    attn_pdrop=0, layer_norm_epsilon=1e-5, activation_function="gelu_new", tie_word_embeddings=True)
model = GPT2LMHeadModel(config).eval()
missing, unexpected = model.load_state_dict(load_file(path), strict=False)
# Only the tied lm_head (shared with wte) and non-persistent attention masks may be absent.
assert not unexpected, unexpected
assert all(k == "lm_head.weight" or k.endswith(".attn.bias") or k.endswith(".attn.masked_bias") for k in missing), missing
tokens = np.fromfile(shard, dtype="<u2", offset=1024)[: sequences * T + 1].astype(np.int64)
x = torch.tensor(tokens[:-1]).view(sequences, T)
y = torch.tensor(tokens[1:]).view(sequences, T)
with torch.no_grad():
    logits = model(x).logits
print(f"transformers {__import__('transformers').__version__}: loss: {torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1)).item()}")
