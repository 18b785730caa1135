"""Checks a `baton export --hf DIR` folder with Hugging Face transformers (run by hand; needs torch and
transformers), for either family Baton exports (GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM):
    python3 scripts/checks/check_hf_export.py DIR SHARD.bin SEQUENCES BATON_LOSS
Loads DIR with AutoModelForCausalLM.from_pretrained (float32; no missing or unexpected keys but a tied
lm_head), computes the mean loss on the first SEQUENCES sequences of SHARD.bin as `baton eval` does
(consecutive windows of the model's context: n_positions, or max_position_embeddings), requires it within
1e-5 (relative) of BATON_LOSS, and where DIR has a tokenizer, loads it with AutoTokenizer and runs
pipeline("text-generation"). BATON_LOSS is the last line of
    baton eval DIR_OR_RUN --data SHARD.bin --sequences SEQUENCES     (loss: <value>)
Shards: llm.c's uint16 (magic 20240520) or uint32 (magic 20240801) tokens after a 1024-byte header.
"""
import os
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

folder, shard, sequences, baton_loss = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True, dtype=torch.float32)
model.eval()
tied = model.config.tie_word_embeddings
missing = [k for k in info["missing_keys"] if not (tied and k == "lm_head.weight")]
assert not missing and not info["unexpected_keys"] and not info["mismatched_keys"], info
T = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
magic = int(np.fromfile(shard, dtype="<i4", count=1)[0])
dtype = {20240520: "<u2", 20240801: "<u4"}[magic]
tokens = np.fromfile(shard, dtype=dtype, offset=1024)[: sequences * T + 1].astype(np.int64)
assert len(tokens) == sequences * T + 1, f"{shard} holds {len(tokens)} tokens, fewer than {sequences} x {T} + 1"
x = torch.tensor(tokens[:-1]).view(sequences, T)
y = torch.tensor(tokens[1:]).view(sequences, T)
with torch.no_grad():
    logits = model(x).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item()
print(f"transformers {transformers.__version__}, {type(model).__name__}: loss {loss:.7f}, baton eval {baton_loss:.7f}, "
      f"relative difference {abs(loss - baton_loss) / baton_loss:.2e}")
assert abs(loss - baton_loss) <= 1e-5 * abs(baton_loss)
if any(os.path.exists(os.path.join(folder, name)) for name in ("tokenizer.json", "vocab.json")):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer("Of Man's first")["input_ids"] == tokenizer.encode("Of Man's first")
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    text = generator("Of Man", max_new_tokens=20, do_sample=False)[0]["generated_text"]
    print(f"pipeline: {text!r}")
else:
    print("no tokenizer in the folder (a byte-level run): pipeline not run")
