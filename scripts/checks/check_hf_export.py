"""Checks a `baton export --hf DIR` folder with Hugging Face transformers (run by hand; needs torch and
transformers):  python3 scripts/checks/check_hf_export.py DIR SHARD.bin SEQUENCES BATON_LOSS
Loads DIR with GPT2LMHeadModel.from_pretrained (no missing or unexpected keys but the tied lm_head) and
AutoTokenizer.from_pretrained, computes the mean loss on the first SEQUENCES sequences of SHARD.bin as
`baton eval` does, requires it within 1e-5 (relative) of BATON_LOSS, and runs pipeline("text-generation").
"""
import sys

import numpy as np
import torch
import transformers
from transformers import AutoTokenizer, GPT2LMHeadModel, pipeline

folder, shard, sequences, baton_loss = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
model, info = GPT2LMHeadModel.from_pretrained(folder, output_loading_info=True)
model.eval()
missing = [k for k in info["missing_keys"] if k != "lm_head.weight"]
assert not missing and not info["unexpected_keys"], info
T = model.config.n_positions
tokens = np.fromfile(shard, dtype="<u2", offset=1024)[: sequences * T + 1].astype(np.int64)
x = torch.tensor(tokens[:-1]).view(sequences, T)
y = torch.tensor(tokens[1:]).view(sequences, T)
with torch.no_grad():
    loss = torch.nn.functional.cross_entropy(model(x).logits.reshape(-1, model.config.vocab_size), y.reshape(-1)).item()
print(f"transformers {transformers.__version__}: loss {loss:.7f}, baton eval {baton_loss:.7f}, relative difference {abs(loss - baton_loss) / baton_loss:.2e}")
assert abs(loss - baton_loss) <= 1e-5 * abs(baton_loss)
tokenizer = AutoTokenizer.from_pretrained(folder)
assert tokenizer("Of Man's first")["input_ids"] == tokenizer.encode("Of Man's first")
generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
text = generator("Of Man", max_new_tokens=20, do_sample=False)[0]["generated_text"]
print(f"pipeline: {text!r}")
