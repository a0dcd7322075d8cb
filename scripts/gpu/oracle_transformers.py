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

# Our trace points with a transformers counterpart, in forward order.
POINTS = ["x_in", "attn_out", "wo_out", "x_after_attn", "ffn_norm", "mlp_out", "x_out", "final_norm", "logits"]

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
    ap.add_argument("--ref-dtype", choices=["float32", "float64"], default="float32",
                    help="dtype transformers computes the reference in (float64: how far each side is from exact)")
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
    if not os.path.exists(os.path.join(ckpt, "config.json")):
        model.save_pretrained(ckpt, safe_serialization=True)

    out = os.path.join(work, "trace.jsonl")
    for f in (out, out[: -len(".jsonl")] + ".rows.bin"):
        if os.path.exists(f):
            os.remove(f)
    cmd = [args.node, "dist/cli/main.js", "trace", "--model", ckpt, "--backend", args.backend, "--prompt", args.prompt,
           "--exp", "E1", "--points", ",".join(POINTS), "--out", out]
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
    # The reference is loaded back from the checkpoint in fp32 by transformers' own loader: casting
    # the in-memory model would also round its RoPE inv_freq buffer to the checkpoint dtype.
    del model
    try:
        ref_model = LlamaForCausalLM.from_pretrained(ckpt, dtype=getattr(torch, args.ref_dtype))
    except TypeError:
        ref_model = LlamaForCausalLM.from_pretrained(ckpt, torch_dtype=getattr(torch, args.ref_dtype))
    ref_model = ref_model.to(dev).eval()
    # Forward hooks, not output_hidden_states: what each layer and the final norm return,
    # whatever the transformers version does with the last hidden state.
    captured = {}

    def keep(key):
        def hook(_module, _inputs, output):
            t = output[0] if isinstance(output, (tuple, list)) else output
            captured[key] = t[0, -1].double().cpu().numpy()
        return hook

    def keep_input(key):
        def hook(_module, inputs):
            captured[key] = inputs[0][0, -1].double().cpu().numpy()
        return hook

    n = cfg.num_hidden_layers
    for l, layer in enumerate(ref_model.model.layers):
        layer.register_forward_pre_hook(keep_input((l, "x_in")))
        layer.self_attn.o_proj.register_forward_pre_hook(keep_input((l, "attn_out")))
        layer.self_attn.o_proj.register_forward_hook(keep((l, "wo_out")))
        layer.post_attention_layernorm.register_forward_pre_hook(keep_input((l, "x_after_attn")))
        layer.post_attention_layernorm.register_forward_hook(keep((l, "ffn_norm")))
        layer.mlp.register_forward_hook(keep((l, "mlp_out")))
        layer.register_forward_hook(keep((l, "x_out")))
    ref_model.model.norm.register_forward_hook(keep((None, "final_norm")))
    with torch.no_grad():
        res = ref_model(torch.tensor([ids], device=dev))
    captured[(None, "logits")] = res.logits[0, -1].double().cpu().numpy()
    layer_points = [p for p in POINTS if p not in ("final_norm", "logits")]
    pairs = [(f"layer {l} {p}", (l, p)) for l in range(n) for p in layer_points]
    pairs += [("final_norm", (None, "final_norm")), ("logits", (None, "logits"))]

    print(f"\nshape {args.shape}, checkpoint {args.dtype}, {len(ids)} tokens of {args.prompt}, backend {header['backend']} "
          f"({header['device']}), transformers {__import__('transformers').__version__}, torch {torch.__version__}\n")
    errors = []
    for label, key in pairs:
        got, ref = ours[key], captured[key]
        errors.append((label, float(np.linalg.norm(got - ref) / np.linalg.norm(ref))))
    worst = max(e for _, e in errors)
    first = next((label for label, e in errors if e > args.tol), "NONE")
    # Per layer: the worst point; the full list is in the JSON next to the trace.
    print(f"| layer | worst point | rel_l2 vs transformers {args.ref_dtype} |\n|---|---|---:|")
    for l in range(n):
        lab, e = max(((lab, e) for lab, e in errors if lab.startswith(f"layer {l} ")), key=lambda t: t[1])
        print(f"| {l} | {lab.split(' ', 2)[2]} | {e:.2e} |")
    for lab, e in errors[-2:]:
        print(f"| - | {lab} | {e:.2e} |")
    json.dump(errors, open(os.path.join(work, "oracle.json"), "w"), indent=1)
    print(f"\nworst {worst:.2e}, first above {args.tol:.0e}: {first}")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
