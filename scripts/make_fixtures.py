"""Writes Tests/BatonTests/Fixtures/gpt2_tiny.safetensors with PyTorch (run by hand; CI reads the
committed file):  python3 scripts/make_fixtures.py   (needs torch, safetensors)

Contents: inputs and targets [B,T] (int32), the initial parameters (Hugging Face names), logits
[B,T,V], loss [1], every parameter's gradient (prefix "grad."), and the losses of 10 AdamW steps
on the same batch (loss measured before each update) with global-norm clipping, then every
parameter and both AdamW moments after those 10 steps (prefixes "after.", "exp_avg.",
"exp_avg_sq."). The same for a batch shorter than the context (T_SHORT < n_ctx, prefix
"short."): inputs, targets, logits, loss and gradients at the initial parameters.
"""
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from reference_gpt import forward, init_parameters, make_optimizer  # noqa: E402

B, T, V, MAXT, L, NH, C = 2, 16, 64, 16, 2, 2, 32
T_SHORT = 11
LR, WD, CLIP, STEPS = 1e-2, 0.1, 1.0, 10

torch.manual_seed(0)
generator = torch.Generator().manual_seed(1234)
params = init_parameters(V, MAXT, L, C, generator, perturb=True)
tokens = torch.randint(0, V, (B, T + 1), generator=generator)
inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

out = {"inputs": inputs.to(torch.int32), "targets": targets.to(torch.int32)}
out.update({name: t.detach().clone() for name, t in params.items()})
logits = forward(params, inputs, L, NH)
loss = torch.nn.functional.cross_entropy(logits.view(-1, V), targets.view(-1))
loss.backward()
out["logits"] = logits.detach().clone()
out["loss"] = loss.detach().reshape(1).clone()
out.update({"grad." + name: t.grad.detach().clone() for name, t in params.items()})

# A sequence shorter than the context: positions 0..T_SHORT-1 only.
short_tokens = torch.randint(0, V, (B, T_SHORT + 1), generator=generator)
short_inputs, short_targets = short_tokens[:, :-1].contiguous(), short_tokens[:, 1:].contiguous()
for t in params.values():
    t.grad = None
short_logits = forward(params, short_inputs, L, NH)
short_loss = torch.nn.functional.cross_entropy(short_logits.view(-1, V), short_targets.view(-1))
short_loss.backward()
out.update({"short.inputs": short_inputs.to(torch.int32), "short.targets": short_targets.to(torch.int32),
            "short.logits": short_logits.detach().clone(), "short.loss": short_loss.detach().reshape(1).clone()})
out.update({"short.grad." + name: t.grad.detach().clone() for name, t in params.items()})

optimizer = make_optimizer(params, LR, WD, foreach=False)
losses = []
for step in range(STEPS):
    optimizer.zero_grad()
    logits = forward(params, inputs, L, NH)
    loss = torch.nn.functional.cross_entropy(logits.view(-1, V), targets.view(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(params.values()), CLIP)
    optimizer.step()
    losses.append(loss.item())
out["losses"] = torch.tensor(losses, dtype=torch.float32)
for name, t in params.items():
    out["after." + name] = t.detach().clone()
    out["exp_avg." + name] = optimizer.state[t]["exp_avg"].detach().clone()
    out["exp_avg_sq." + name] = optimizer.state[t]["exp_avg_sq"].detach().clone()

metadata = {"B": str(B), "T": str(T), "T_short": str(T_SHORT), "V": str(V), "n_ctx": str(MAXT), "n_layer": str(L), "n_head": str(NH), "n_embd": str(C),
            "lr": str(LR), "weight_decay": str(WD), "grad_clip": str(CLIP), "beta1": "0.9", "beta2": "0.99", "eps": "1e-8",
            "torch": torch.__version__}
path = os.path.join(os.path.dirname(__file__), "..", "Tests", "BatonTests", "Fixtures", "gpt2_tiny.safetensors")
save_file({k: v.contiguous() for k, v in out.items()}, path, metadata=metadata)
print("wrote", os.path.normpath(path), "loss", out["loss"].item(), "losses", [round(x, 6) for x in losses])
