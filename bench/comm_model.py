#!/usr/bin/env python3
"""Bytes each rank sends per update, on paper, for data parallel (dense), Switch expert
parallel and THOR sharded experts at transformer_base, and the communication time they
take on a 100 Gb/s and a 400 Gb/s network, next to the compute time of the same step.

  python3 bench/comm_model.py [--vocab 32000] [--tokens 4096] [--tflops 100]

Model (docs/SCALING.md): ring all-reduce sends 2 (W-1)/W of the gradient bytes (fp32);
all-to-all sends (W-1)/W of the routed activations, four times per expert layer per step
(dispatch and combine, forward and backward), tokens x d_model x 4 bytes x capacity factor;
THOR's sharded experts send none and reduce only the replicated parameters. E = 2 W experts
per expert layer (THOR's minimum of two local experts per rank), expert layers at even
indices of the 6 + 6 layers (6 in all). Compute: 6 x active parameters x tokens (x 2 for
THOR's two passes) at --tflops effective.
"""
import argparse

p = argparse.ArgumentParser()
p.add_argument("--vocab", type=int, default=32000)
p.add_argument("--tokens", type=int, default=4096, help="target (= source) tokens per rank per update")
p.add_argument("--tflops", type=float, default=100.0, help="effective training TFLOP/s per GPU")
p.add_argument("--capacity", type=float, default=1.25)
a = p.parse_args()

d, f, layers = 512, 2048, 6
attn = 4 * d * d + 4 * d
ffn = 2 * d * f + f + d
norm = 2 * d
enc_layer = attn + ffn + 2 * norm
dec_layer = 2 * attn + ffn + 3 * norm
emb = a.vocab * d
dense_params = emb + layers * (enc_layer + dec_layer)
expert_layers = 2 * ((layers + 1) // 2)   # even indices of encoder and decoder
replicated = dense_params - expert_layers * ffn

def gb(x):
    return x / 1e9

print(f"transformer_base, vocab {a.vocab}: {dense_params / 1e6:.1f} M dense parameters, "
      f"{expert_layers} expert layers of {ffn / 1e6:.2f} M per expert; {a.tokens} tokens per rank per update\n")
print("| GPUs W | E | scheme | all-reduce GB | all-to-all GB | comm ms @100 Gb/s | @400 Gb/s | compute ms | expert params per rank (M) |")
print("|---|---|---|---|---|---|---|---|---|")
for W in (8, 16, 64):
    E = 2 * W
    ring = 2 * (W - 1) / W
    a2a_frac = (W - 1) / W
    tokens = 2 * a.tokens  # source + target sides pass expert layers
    rows = []
    # dense data parallel
    ar = ring * dense_params * 4
    rows.append(("dense DP", ar, 0.0, 6 * dense_params * tokens, 0))
    # Switch expert parallel: E experts, E / W per rank, top-1 tokens cross ranks
    a2a = 4 * (expert_layers / 2) * tokens * d * 4 * a.capacity * a2a_frac
    ar_switch = ring * (replicated + expert_layers * d * E) * 4  # + gates
    rows.append(("Switch EP", ar_switch, a2a, 6 * dense_params * tokens, expert_layers * ffn * E / W))
    # THOR sharded: no token traffic, two passes
    rows.append(("THOR sharded", ring * replicated * 4, 0.0, 2 * 6 * dense_params * tokens, expert_layers * ffn * E / W))
    for name, ar_b, a2a_b, flops, ep in rows:
        tot = ar_b + a2a_b
        print(f"| {W} | {E if name != 'dense DP' else 1} | {name} | {gb(ar_b):.3f} | {gb(a2a_b):.3f} | "
              f"{1e3 * tot / 12.5e9:.1f} | {1e3 * tot / 50e9:.1f} | {1e3 * flops / (a.tflops * 1e12):.1f} | {ep / 1e6:.1f} |")
print("\nTHOR with data parallel only (every rank all experts) would hold "
      f"{expert_layers * ffn * 16 / 1e6:.0f} / {expert_layers * ffn * 32 / 1e6:.0f} / {expert_layers * ffn * 128 / 1e6:.0f} M "
      "expert parameters per rank at E = 16 / 32 / 128 and all-reduce all of them.")
