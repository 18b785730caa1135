"""Tokens/s of whole training steps in PyTorch, for comparison with `baton bench`.

Same work as baton's benchmark: forward, backward, global-norm clipping and an AdamW step on a
fixed batch of random tokens, fp32. GPT-2 is the fixtures' reference module (fused attention);
`--arch llama` is transformers' LlamaForCausalLM at the same shape, with PyTorch's own
scaled_dot_product_attention (needs transformers). Usage:
  python3 scripts/bench/bench_pytorch.py --layers 4 --heads 4 --embd 128 --seq-len 64 --batch 12 \\
      --vocab-size 256 --threads 2 [--device cpu|cuda] [--steps 10] [--warmup-steps 2] [--tf32] [--bf16] [--compile]
      [--arch llama --kv-heads N --intermediate-size N --rope-theta X --tie-embeddings true|false]
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))
from reference_gpt import forward, init_parameters, make_optimizer  # noqa: E402

parser = argparse.ArgumentParser()
for name, default in [("layers", 4), ("heads", 4), ("embd", 128), ("seq-len", 64), ("batch", 12), ("vocab-size", 256),
                      ("threads", 0), ("steps", 10), ("warmup-steps", 2)]:
    parser.add_argument("--" + name, type=int, default=default)
parser.add_argument("--device", default="cpu")
parser.add_argument("--arch", default="gpt2", choices=["gpt2", "llama"])
parser.add_argument("--kv-heads", type=int, default=0)
parser.add_argument("--intermediate-size", type=int, default=0)
parser.add_argument("--rope-theta", type=float, default=10000.0)
parser.add_argument("--tie-embeddings", default="false")
parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (CUDA)")
parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
parser.add_argument("--compile", action="store_true", help="torch.compile the forward pass (its compile time falls in the warmup steps)")
args = parser.parse_args()

if args.threads > 0:
    torch.set_num_threads(args.threads)
torch.backends.cuda.matmul.allow_tf32 = args.tf32
torch.backends.cudnn.allow_tf32 = args.tf32
device = torch.device(args.device)
generator = torch.Generator().manual_seed(1)
if args.arch == "llama":
    import transformers

    intermediate = args.intermediate_size or 64 * ((args.embd * 8 // 3 + 63) // 64)
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=args.vocab_size, hidden_size=args.embd, intermediate_size=intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads or args.heads, max_position_embeddings=args.seq_len,
        rope_theta=args.rope_theta, tie_word_embeddings=args.tie_embeddings == "true",
        attn_implementation="sdpa")).to(device)
    params = dict(llama.named_parameters())

    def model(inputs):
        return llama(input_ids=inputs).logits
else:
    params = init_parameters(args.vocab_size, args.seq_len, args.layers, args.embd, generator, device=device)

    def model(inputs):
        return forward(params, inputs, args.layers, args.heads, fused_attention=True)
optimizer = make_optimizer(params, 1e-4, 0.1)
tokens = torch.randint(0, args.vocab_size, (args.batch, args.seq_len + 1), generator=generator).to(device)
inputs, targets = tokens[:, :-1], tokens[:, 1:]


if args.compile:
    model = torch.compile(model)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


measured = 0.0
for step in range(args.warmup_steps + args.steps):
    sync()
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=args.bf16):
        logits = model(inputs)
    loss = torch.nn.functional.cross_entropy(logits.float().view(-1, args.vocab_size), targets.reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
    optimizer.step()
    sync()
    if step >= args.warmup_steps:
        measured += time.perf_counter() - start
per_step = measured / args.steps
print(f"pytorch {torch.__version__} on {args.device}, threads {torch.get_num_threads()}, {args.arch} "
      f"{args.layers}L {args.heads}H {args.embd}C T={args.seq_len} B={args.batch} V={args.vocab_size}")
print(f"tokens_per_s: {args.batch * args.seq_len / per_step:.1f}")
print(f"ms_per_step: {per_step * 1000:.2f}")
