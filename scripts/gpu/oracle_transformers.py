#!/usr/bin/env python3
"""External oracle: our trace of a Hugging Face checkpoint against transformers' own forward pass.

On a machine with PyTorch and transformers (no download needed): builds a random-weight
LlamaForCausalLM from a LlamaConfig, saves it with save_pretrained (safetensors), runs
`greta trace` on that directory through our loader, and compares prefill_last at every stage of
every layer (x_in .. x_out), the final norm and the logits with transformers' forward on the same
token ids (fp32, or fp64 with --ref-dtype float64). Prints the worst relative L2 of each layer and
writes all of them to oracle.json; exits 1 when any exceeds --tol (default 1e-5). With
--ref-dtype both it also prints how far transformers' own fp32 forward is from fp64, and passes
when ours is within --tol or no further from fp64 than that.

  python3 scripts/gpu/oracle_transformers.py --shape small --backend hip
  python3 scripts/gpu/oracle_transformers.py --shape llama3-8b --backend hip --dtype bfloat16 --ref-dtype both
"""
import argparse
import gc
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


def llama_config(shape):
    """A Llama 3 LlamaConfig (vocabulary, RoPE theta and scaling) at one of SHAPES."""
    return LlamaConfig(vocab_size=128256, rms_norm_eps=1e-5, rope_theta=500000.0, max_position_embeddings=8192,
                       rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                         original_max_position_embeddings=8192),
                       tie_word_embeddings=False, attention_bias=False, mlp_bias=False, **SHAPES[shape])


def build_checkpoint(shape, dtype, work):
    """A random-weight LlamaForCausalLM saved with save_pretrained in WORK/llama-SHAPE (reused when there)."""
    ckpt = os.path.join(work, f"llama-{shape}")
    if not os.path.exists(os.path.join(ckpt, "config.json")):
        torch.manual_seed(0)
        model = LlamaForCausalLM(llama_config(shape)).to(getattr(torch, dtype))
        # Norm gains near 1 but not 1, so the trace would notice a norm weight read wrongly.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("norm.weight"):
                    p.uniform_(0.9, 1.1)
        model.save_pretrained(ckpt, safe_serialization=True)
        # Gone before the trace starts, so the host memory it reports is its own.
        del model
        gc.collect()
    return ckpt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="dtype the checkpoint is saved in; both sides compute in fp32")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--prompt", default="p4_sys")
    ap.add_argument("--ref-dtype", choices=["float32", "float64", "both"], default="float32",
                    help="dtype transformers computes the reference in; both: ours and transformers' fp32 against fp64")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--node", default="node")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cfg = llama_config(args.shape)
    work = args.workdir or tempfile.mkdtemp(prefix="greta-oracle-")
    ckpt = build_checkpoint(args.shape, args.dtype, work)

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

    n = cfg.num_hidden_layers
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    refs = {d: reference(ckpt, d, ids, dev) for d in (["float64", "float32"] if args.ref_dtype == "both" else [args.ref_dtype])}
    exact = "float64" if args.ref_dtype == "both" else args.ref_dtype
    layer_points = [p for p in POINTS if p not in ("final_norm", "logits")]
    pairs = [(f"layer {l} {p}", (l, p)) for l in range(n) for p in layer_points]
    pairs += [("final_norm", (None, "final_norm")), ("logits", (None, "logits"))]

    def rel(got, ref):
        return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))

    print(f"\nshape {args.shape}, checkpoint {args.dtype}, {len(ids)} tokens of {args.prompt}, backend {header['backend']} "
          f"({header['device']}), transformers {__import__('transformers').__version__}, torch {torch.__version__}\n")
    errors = [(label, rel(ours[key], refs[exact][key])) for label, key in pairs]
    # How far transformers' own fp32 forward is from fp64: what fp32 rounding alone costs at this depth.
    theirs = [(label, rel(refs["float32"][key], refs["float64"][key])) for label, key in pairs] if args.ref_dtype == "both" else None
    worst = max(e for _, e in errors)
    first = next((label for label, e in errors if e > args.tol), "NONE")

    def worst_of(errs, prefix):
        return max(((lab, e) for lab, e in errs if lab.startswith(prefix)), key=lambda t: t[1])

    # Per layer: the worst point; every point is in oracle.json next to the trace.
    head = f"| layer | worst point | ours vs transformers {exact} |"
    print(head + (" transformers float32 vs float64 |" if theirs else "") +
          "\n|---|---|---:|" + ("---:|" if theirs else ""))
    rows_out = [(f"layer {l} ", str(l)) for l in range(n)] + [("final_norm", "-"), ("logits", "-")]
    for prefix, name in rows_out:
        lab, e = worst_of(errors, prefix)
        point = lab.split(" ", 2)[2] if lab.startswith("layer ") else lab
        line = f"| {name} | {point} | {e:.2e} |"
        if theirs:
            line += f" {worst_of(theirs, prefix)[1]:.2e} |"
        print(line)
    json.dump({"ours": errors, "transformers_fp32": theirs}, open(os.path.join(work, "oracle.json"), "w"), indent=1)
    print(f"\nworst {worst:.2e}, first above {args.tol:.0e}: {first}")
    if theirs:
        worst_theirs = max(e for _, e in theirs)
        print(f"transformers float32 vs float64: worst {worst_theirs:.2e}")
        # Within tolerance, or no further from exact than the reference implementation's own fp32.
        return 0 if worst <= max(args.tol, worst_theirs) else 1
    return 0 if worst <= args.tol else 1


def reference(ckpt, dtype, ids, dev):
    """transformers' forward over ids in dtype: {(layer, point): last row as float64}."""
    # Loaded back from the checkpoint by transformers' own loader: casting the in-memory model
    # would also round its RoPE inv_freq buffer to the checkpoint dtype.
    try:
        model = LlamaForCausalLM.from_pretrained(ckpt, dtype=getattr(torch, dtype))
    except TypeError:
        model = LlamaForCausalLM.from_pretrained(ckpt, torch_dtype=getattr(torch, dtype))
    model = model.to(dev).eval()
    # Forward hooks, not output_hidden_states: what each module takes and returns,
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

    for l, layer in enumerate(model.model.layers):
        layer.register_forward_pre_hook(keep_input((l, "x_in")))
        layer.self_attn.o_proj.register_forward_pre_hook(keep_input((l, "attn_out")))
        layer.self_attn.o_proj.register_forward_hook(keep((l, "wo_out")))
        layer.post_attention_layernorm.register_forward_pre_hook(keep_input((l, "x_after_attn")))
        layer.post_attention_layernorm.register_forward_hook(keep((l, "ffn_norm")))
        layer.mlp.register_forward_hook(keep((l, "mlp_out")))
        layer.register_forward_hook(keep((l, "x_out")))
    model.model.norm.register_forward_hook(keep((None, "final_norm")))
    with torch.no_grad():
        res = model(torch.tensor([ids], device=dev))
    captured[(None, "logits")] = res.logits[0, -1].double().cpu().numpy()
    del model, res
    gc.collect()
    if dev == "cuda":
        torch.cuda.empty_cache()
    return captured


if __name__ == "__main__":
    sys.exit(main())
