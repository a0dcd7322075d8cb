#!/usr/bin/env python3
"""PyTorch at the shapes `npm run bench` times, for the rows beside ours.

Run by the bench itself on a machine with a CUDA (or ROCm) PyTorch, in the same run as our
kernels: a device-to-device copy (the bandwidth reference), F.linear through cuBLAS in bf16 and
in fp32 without TF32 at every Llama-3-8B projection shape for M = 1 and M = 205,
scaled_dot_product_attention for one decode row over 291 / 4096 / 32768 keys (32 query heads,
8 KV heads of 128), F.rms_norm, and transformers' own LlamaForCausalLM decode step at
Llama-3-8B shape with random weights (bf16, after a 291-token prefill through its KV cache).
Medians of CUDA-event timings with the L2 flushed before each sample. Prints one JSON object.

  python3 scripts/gpu/bench_torch.py --reps 20 [--no-model]
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F

# Llama-3-8B projections as (name, N, K): the fused ones as our engine runs them.
PROJECTIONS = [
    ("qkv", 6144, 4096),
    ("wo", 4096, 4096),
    ("gate_up", 28672, 4096),
    ("down", 4096, 14336),
    ("lm_head", 128256, 4096),
]


def timer(fn, reps, flush):
    """Median ms of fn over reps samples, each after an L2 flush, timed with CUDA events."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        flush()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    n = len(times)
    return times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--no-model", action="store_true", help="skip transformers' decode step")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device visible to PyTorch"}))
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    scrub = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    flush = lambda: scrub.zero_()  # noqa: E731
    rows = []

    def row(op, shape, dtype, ms, bytes_, flops=None):
        r = {"op": op, "shape": shape, "dtype": dtype, "ms": ms, "gbs": bytes_ / ms / 1e6}
        if flops is not None:
            r["tflops"] = flops / ms / 1e9
        rows.append(r)

    n = 1 << 28  # 1 GiB of fp32
    a, b = torch.empty(n, device=dev), torch.empty(n, device=dev)
    copy_ms = timer(lambda: b.copy_(a), args.reps, flush)
    row("copy", "2^28 f32", "f32", copy_ms, 2 * 4 * n)
    del a, b

    for name, N, K in PROJECTIONS:
        for dtype in (torch.bfloat16, torch.float32):
            w = torch.randn(N, K, device=dev, dtype=dtype) * K ** -0.5
            for M in (1, 205):
                x = torch.randn(M, K, device=dev, dtype=dtype)
                ms = timer(lambda: F.linear(x, w), args.reps, flush)
                es = w.element_size()
                row(f"linear {name} M={M}", f"[{M},{K}] x [{N},{K}]^T", str(dtype).split(".")[1], ms,
                    N * K * es + (M * K + M * N) * es, 2 * M * N * K)
            del w

    H, KVH, D = 32, 8, 128
    for dtype in (torch.bfloat16, torch.float32):
        for keys in (291, 4096, 32768):
            q = torch.randn(1, H, 1, D, device=dev, dtype=dtype)
            k = torch.randn(1, KVH, keys, D, device=dev, dtype=dtype)
            v = torch.randn(1, KVH, keys, D, device=dev, dtype=dtype)
            ms = timer(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), args.reps, flush)
            row("sdpa decode", f"{H}/{KVH} heads x {D}, {keys} keys", str(dtype).split(".")[1], ms,
                2 * keys * KVH * D * k.element_size())

    for M in (1, 205):
        x = torch.randn(M, 4096, device=dev)
        g = torch.ones(4096, device=dev)
        ms = timer(lambda: F.rms_norm(x, (4096,), g, 1e-5), args.reps, flush)
        row("rms_norm", f"[{M},4096]", "f32", ms, 2 * M * 4096 * 4 + 4096 * 4)

    out = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0), "rows": rows}
    if not args.no_model:
        out["model"] = transformers_decode(dev, args.reps)
    print(json.dumps(out))
    return 0


def transformers_decode(dev, reps):
    """transformers' LlamaForCausalLM at Llama-3-8B shape, bf16, random weights: one decode step after 291 tokens."""
    try:
        import transformers
        from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
    except ImportError as e:
        return {"error": f"transformers: {e}"}
    cfg = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-5,
                      rope_theta=500000.0, max_position_embeddings=8192, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(dev):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    n = 291
    ids = torch.randint(0, cfg.vocab_size, (1, n), device=dev)
    with torch.no_grad():
        cache = DynamicCache()
        model(input_ids=ids[:, : n - 1], past_key_values=cache, use_cache=True)
        prefix_len = cache.get_seq_length()

        def step():
            cache.crop(prefix_len)
            model(input_ids=ids[:, n - 1 :], past_key_values=cache, use_cache=True)

        decode_ms = timer(step, reps, lambda: None)
        prefill_ms = timer(lambda: model(input_ids=ids), max(3, reps // 4), lambda: None)
    result = {"transformers": transformers.__version__, "dtype": "bf16", "prefill_tokens": n, "prefill_ms": prefill_ms,
              "decode_ms": decode_ms}
    del model
    torch.cuda.empty_cache()
    return result


if __name__ == "__main__":
    sys.exit(main())
