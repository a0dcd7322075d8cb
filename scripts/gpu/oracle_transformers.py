#!/usr/bin/env python3
"""External oracle: our trace of a Hugging Face checkpoint against transformers' own forward pass.

On a machine with PyTorch and transformers (no download needed): builds a random-weight
LlamaForCausalLM from a LlamaConfig, saves it with save_pretrained (safetensors), runs
`greta trace` on that directory through our loader, and compares prefill_last's hidden state
after every layer, the final norm and the logits with transformers' fp32 forward on the same
token ids. Prints relative L2 per layer; exits 1 when any exceeds --tol (default 1e-5).

  python3 scripts/gpu/oracle_transformers.py --shape small --backend hip
  python3 scripts/gpu/oracle_transformers.py --shape llama3-8b --backend hip --dtype bfloat16
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {
    # Llama 3 vocabulary and RoPE scaling at small width, so it runs in seconds.
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=8, num_attention_heads=8,
                  num_key_value_heads=2, head_dim=32),
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, head_dim=128),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="dtype the checkpoint is saved in; both sides compute in fp32")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--prompt", default="p4_sys")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--node", default="node")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cfg = LlamaConfig(vocab_size=128256, rms_norm_eps=1e-5, rope_theta=500000.0, max_position_embeddings=8192,
                      rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                        original_max_position_embeddings=8192),
                      tie_word_embeddings=False, attention_bias=False, mlp_bias=False, **SHAPES[args.shape])
    model = LlamaForCausalLM(cfg).to(getattr(torch, args.dtype))
    # Norm gains near 1 but not 1, so the trace would notice a norm weight read wrongly.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.9, 1.1)
    work = args.workdir or tempfile.mkdtemp(prefix="greta-oracle-")
    ckpt = os.path.join(work, f"llama-{args.shape}")
    model.save_pretrained(ckpt, safe_serialization=True)

    out = os.path.join(work, "trace.jsonl")
    cmd = [args.node, "dist/cli/main.js", "trace", "--model", ckpt, "--backend", args.backend, "--prompt", args.prompt,
           "--exp", "E1", "--points", "x_out,final_norm,logits", "--out", out]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)

    recs = [json.loads(l) for l in open(out)]
    header = recs[0]
    ids = header["prompts"][0]["ids"]
    rows = np.memmap(out[: -len(".jsonl")] + ".rows.bin", dtype=np.uint8, mode="r")

    def row(rec):
        r = rec["row"]
        return np.frombuffer(rows[r["offset"]: r["offset"] + r["bytes"]], dtype=np.float32).astype(np.float64)

    ours = {(r["layer"], r["point"]): row(r) for r in recs if r.get("type") == "stage" and r["phase"] == "prefill_last"}

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    ref_model = model.to(torch.float32).to(dev).eval()
    # Forward hooks, not output_hidden_states: what each layer and the final norm return,
    # whatever the transformers version does with the last hidden state.
    captured = {}

    def keep(key):
        def hook(_module, _inputs, output):
            t = output[0] if isinstance(output, (tuple, list)) else output
            captured[key] = t[0, -1].double().cpu().numpy()
        return hook

    n = cfg.num_hidden_layers
    for l, layer in enumerate(ref_model.model.layers):
        layer.register_forward_hook(keep((l, "x_out")))
    ref_model.model.norm.register_forward_hook(keep((None, "final_norm")))
    with torch.no_grad():
        res = ref_model(torch.tensor([ids], device=dev))
    captured[(None, "logits")] = res.logits[0, -1].double().cpu().numpy()
    pairs = [(f"layer {l} x_out", (l, "x_out")) for l in range(n)]
    pairs += [("final_norm", (None, "final_norm")), ("logits", (None, "logits"))]

    print(f"\nshape {args.shape}, checkpoint {args.dtype}, {len(ids)} tokens of {args.prompt}, backend {header['backend']} "
          f"({header['device']}), transformers {__import__('transformers').__version__}, torch {torch.__version__}\n")
    print("| point | rel_l2 vs transformers fp32 |\n|---|---:|")
    worst = 0.0
    for label, key in pairs:
        got, ref = ours[key], captured[key]
        rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
        worst = max(worst, rel)
        print(f"| {label} | {rel:.2e} |")
    print(f"\nworst {worst:.2e} (tolerance {args.tol:.0e})")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
