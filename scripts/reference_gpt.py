"""GPT-2 in plain PyTorch, with Baton's (= Hugging Face's) parameter names and layouts.

The reference that Baton's CPU backend is tested against (scripts/make_fixtures.py) and measured
against (scripts/bench_pytorch.py). Conv1D weights are (in_features, out_features): y = x @ W + b.
"""
import math

import torch
import torch.nn.functional as F


def parameter_shapes(V, maxT, L, C):
    shapes = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (maxT, C)}
    for i in range(L):
        p = f"transformer.h.{i}."
        shapes.update({
            p + "ln_1.weight": (C,), p + "ln_1.bias": (C,),
            p + "attn.c_attn.weight": (C, 3 * C), p + "attn.c_attn.bias": (3 * C,),
            p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
            p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
            p + "mlp.c_fc.weight": (C, 4 * C), p + "mlp.c_fc.bias": (4 * C,),
            p + "mlp.c_proj.weight": (4 * C, C), p + "mlp.c_proj.bias": (C,),
        })
    shapes["transformer.ln_f.weight"] = (C,)
    shapes["transformer.ln_f.bias"] = (C,)
    return shapes


def init_parameters(V, maxT, L, C, generator, perturb=False, device="cpu"):
    """GPT-2 initialisation; with perturb, biases and LayerNorm parameters get random values too,
    so a test notices a weight and a bias swapped."""
    params = {}
    for name, shape in parameter_shapes(V, maxT, L, C).items():
        if name.endswith("c_proj.weight"):
            t = torch.randn(shape, generator=generator) * (0.02 / math.sqrt(2 * L))
        elif len(shape) == 2:
            t = torch.randn(shape, generator=generator) * 0.02
        elif name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
            t = torch.ones(shape) + (0.1 * torch.randn(shape, generator=generator) if perturb else 0)
        else:
            t = 0.1 * torch.randn(shape, generator=generator) if perturb else torch.zeros(shape)
        params[name] = t.to(device).requires_grad_(True)
    return params


def forward(params, idx, L, NH, fused_attention=False):
    """Logits [B, T, V]. fused_attention uses PyTorch's scaled_dot_product_attention (what nanoGPT
    runs, and the faster baseline for benchmarks); the explicit form is the readable reference."""
    B, T = idx.shape
    wte = params["transformer.wte.weight"]
    C = wte.shape[1]
    x = wte[idx] + params["transformer.wpe.weight"][:T]
    mask = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
    for i in range(L):
        p = f"transformer.h.{i}."
        h = F.layer_norm(x, (C,), params[p + "ln_1.weight"], params[p + "ln_1.bias"], eps=1e-5)
        qkv = h @ params[p + "attn.c_attn.weight"] + params[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(B, T, NH, C // NH).transpose(1, 2) for t in (q, k, v))
        if fused_attention:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(C // NH)
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        x = x + y @ params[p + "attn.c_proj.weight"] + params[p + "attn.c_proj.bias"]
        h = F.layer_norm(x, (C,), params[p + "ln_2.weight"], params[p + "ln_2.bias"], eps=1e-5)
        h = F.gelu(h @ params[p + "mlp.c_fc.weight"] + params[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + h @ params[p + "mlp.c_proj.weight"] + params[p + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), params["transformer.ln_f.weight"], params["transformer.ln_f.bias"], eps=1e-5)
    return x @ wte.t()


def make_optimizer(params, lr, weight_decay, betas=(0.9, 0.99), eps=1e-8, **kwargs):
    decay = [t for t in params.values() if t.dim() == 2]
    no_decay = [t for t in params.values() if t.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas, eps=eps, **kwargs)
