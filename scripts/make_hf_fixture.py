"""Writes Tests/BatonTests/Fixtures/hf-gpt2-tiny/: a small random GPT-2 saved by transformers'
save_pretrained (config.json + model.safetensors, vocabulary 256 so byte-level data trains on it),
and expected.safetensors: a fixed batch of tokens with transformers' logits and loss on it.
Run by hand:  python3 scripts/make_hf_fixture.py   (needs torch, transformers, safetensors)
"""
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

folder = os.path.join(os.path.dirname(__file__), "..", "Tests", "BatonTests", "Fixtures", "hf-gpt2-tiny")
torch.manual_seed(7)
config = GPT2Config(vocab_size=256, n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0,
                    layer_norm_epsilon=1e-5, activation_function="gelu_new", tie_word_embeddings=True)
model = GPT2LMHeadModel(config).eval()
with torch.no_grad():  # non-trivial LayerNorm parameters and biases, so every tensor matters
    for name, p in model.named_parameters():
        if "ln" in name or name.endswith(".bias"):
            p.add_(0.1 * torch.randn_like(p))
model.save_pretrained(folder, safe_serialization=True)
generator = torch.Generator().manual_seed(11)
tokens = torch.randint(0, 256, (2, 21), generator=generator)
inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
with torch.no_grad():
    logits = model(inputs).logits
loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), targets.reshape(-1))
save_file({"inputs": inputs.to(torch.int32), "targets": targets.to(torch.int32), "logits": logits.contiguous(), "loss": loss.reshape(1)},
          os.path.join(folder, "expected.safetensors"), metadata={"transformers": transformers.__version__, "torch": torch.__version__})
print("wrote", os.path.normpath(folder), "loss", loss.item())
