#!/usr/bin/env python3
"""Writes gretacore's trace format (docs/trace-format.md) from a PyTorch Llama.

Forward hooks on a transformers LlamaForCausalLM, or on any module with the same names
(model.embed_tokens, model.layers[i].{input_layernorm, self_attn.{q,k,v,o}_proj,
post_attention_layernorm, mlp.{gate,up,down}_proj}, model.norm, lm_head), record the last row of
each forward call at our trace points. The model runs prefill over the prompt (prefill_last) and
decode steps through its own KV cache (use_cache=True, past_key_values):

  E1 (aligned): decode0 replays token N-1 at position N-1 on the cache of a prefill over the
                first N-1 tokens; a batch-invariant engine gives prefill_last's bits.
  E0 (natural): decode0 feeds prefill's top-1 at position N on the prefill's cache.

The output is read by `greta analyze` (decode0 against prefill_last through this model's own
cache) and can be compared pair by pair with a `greta trace` of the same checkpoint.

  python3 scripts/emit_trace.py --model-dir DIR --ids 128000,9906,1917 --out trace.jsonl
  python3 scripts/emit_trace.py --model-dir DIR --ids-from ours.jsonl --prompt p4_sys --exp E1,E0 --out t.jsonl

The command line needs transformers (LlamaForCausalLM.from_pretrained); emit_trace() takes any
model object and needs only torch and numpy.
"""
import argparse
import json
import math
import os
import platform
import secrets
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch

FORMAT_VERSION = 1
TOOL_VERSION = "0.1.0"

# Every point of the format, in forward order (src/trace/points.ts).
LAYER_POINTS = ["x_in", "q", "k", "v", "scores", "probs", "pv", "attn_out", "wo_out", "x_after_attn",
                "ffn_norm", "gate", "up", "act", "mlp_out", "x_out"]
FINAL_POINTS = ["final_norm", "lm_head_in", "logits"]
# What module hooks can see. q and k are taken after RoPE, which happens inside the attention
# function, and scores/probs/pv inside the fused attention: no module boundary holds them.
HOOK_POINTS = ["x_in", "v", "attn_out", "wo_out", "x_after_attn", "ffn_norm", "gate", "up", "act", "mlp_out",
               "x_out", "final_norm", "lm_head_in", "logits"]

_M64 = np.uint64
_MIX_ADD = _M64(0x9E3779B97F4A7C15)
_MIX_MUL1 = _M64(0xBF58476D1CE4E5B9)
_MIX_MUL2 = _M64(0x94D049BB133111EB)


def mix64(z):
    """SplitMix64's finaliser on a uint64 array, wrapping mod 2^64 (native/bits.h)."""
    with np.errstate(over="ignore"):
        z = z + _MIX_ADD
        z = (z ^ (z >> _M64(30))) * _MIX_MUL1
        z = (z ^ (z >> _M64(27))) * _MIX_MUL2
        return z ^ (z >> _M64(31))


def row_hash(row):
    """The row hash: sum over i of mix64(bits_i + mix64(i)) mod 2^64, as 16 lowercase hex digits.
    bits_i is element i's IEEE bit pattern (f32 widened to 64 bits with zeros, or f64's own)."""
    a = np.ascontiguousarray(row)
    if a.dtype == np.float32:
        bits = a.view(np.uint32).astype(np.uint64)
    elif a.dtype == np.float64:
        bits = a.view(np.uint64)
    else:
        raise TypeError(f"row_hash: rows are float32 or float64, not {a.dtype}")
    with np.errstate(over="ignore"):
        h = mix64(bits + mix64(np.arange(a.size, dtype=np.uint64)))
        total = int(np.add.reduce(h, dtype=np.uint64)) if a.size else 0
    return f"{total:016x}"


def sample_indices(n, count=16):
    """16 evenly spaced indices, floor(i * n / 16); all of them for rows of 16 or fewer."""
    return list(range(n)) if n <= count else [(i * n) // count for i in range(count)]


def json_number(v):
    """JSON has no NaN or Infinity: the format writes them as strings."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def row_stats(a):
    """mean, abs_mean, rms, min, max over the finite elements (0 when none), in float64; NaN and inf counts."""
    d = a.astype(np.float64)
    nan = int(np.isnan(d).sum())
    inf = int(np.isinf(d).sum())
    f = d[np.isfinite(d)]
    if f.size == 0:
        return dict(mean=0.0, abs_mean=0.0, rms=0.0, min=0.0, max=0.0, nan=nan, inf=inf)
    return dict(mean=float(f.mean()), abs_mean=float(np.abs(f).mean()), rms=float(np.sqrt((f * f).mean())),
                min=float(f.min()), max=float(f.max()), nan=nan, inf=inf)


def topk(a, k):
    """The k largest: NaN below every number, ties by lower index (as our backends)."""
    d = a.astype(np.float64)
    nan = np.isnan(d)
    key = np.where(nan, -np.inf, d)
    order = np.argsort(-key, kind="stable")
    order = order[np.argsort(nan[order], kind="stable")][:k]
    return [int(i) for i in order], [json_number(d[i]) for i in order]


def sidecar_path(jsonl):
    return (jsonl[: -len(".jsonl")] if jsonl.endswith(".jsonl") else jsonl) + ".rows.bin"


def new_run_id(now=None):
    """As gretacore's: UTC time stamp and 6 random hex digits."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class TraceWriter:
    """Appends records to a JSONL file and full rows to its sidecar. Each row is on disk before
    the line that points at it, and each line is one write: an interrupted run leaves whole lines."""

    def __init__(self, path):
        self.path = path
        rows = sidecar_path(path)
        self.row_file = os.path.basename(rows)
        self.rows_fd = os.open(rows, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.offset = os.fstat(self.rows_fd).st_size

    def write_row(self, a):
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        ref = dict(file=self.row_file, offset=self.offset, bytes=len(data))
        _write_all(self.rows_fd, data)
        self.offset += len(data)
        return ref

    def write(self, record):
        # allow_nan=False: a non-finite number that escaped json_number is a bug, not a line.
        _write_all(self.fd, (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8"))

    def close(self):
        os.close(self.fd)
        os.close(self.rows_fd)


def _first(t):
    """A module's output: the tensor itself, or the first of a tuple (transformers 4.x decoder layers)."""
    return t[0] if isinstance(t, (tuple, list)) else t


def _hidden_states(args, kwargs):
    if args:
        return args[0]
    return kwargs["hidden_states"]


class _Hooks:
    """Forward hooks that keep the last row of the current call at each wanted (layer, point)."""

    def __init__(self, model, layers, points):
        self.rows = {}
        self.active = False
        self.handles = []
        base = model.model
        wanted = lambda layer, p: p in points and (layer is None or layer in layers)

        def keep(layer, point):
            def store(t):
                if self.active:
                    self.rows[(layer, point)] = t[0, -1].detach().clone()
            return store

        def out_hook(module, layer, point):
            store = keep(layer, point)
            self.handles.append(module.register_forward_hook(lambda m, i, o: store(_first(o))))

        def in_hook(module, layer, point):
            store = keep(layer, point)
            try:
                # torch >= 2.0: also sees inputs passed by keyword (a decoder layer's hidden_states may be).
                h = module.register_forward_pre_hook(lambda m, a, kw: store(_hidden_states(a, kw)), with_kwargs=True)
            except TypeError:
                # torch 1.x: positional inputs only.
                h = module.register_forward_pre_hook(lambda m, a: store(a[0]))
            self.handles.append(h)

        for l, layer in enumerate(base.layers):
            if l not in layers:
                continue
            attn, mlp = layer.self_attn, layer.mlp
            for point, module, kind in [
                ("x_in", layer, "in"),
                ("v", attn.v_proj, "out"),
                ("attn_out", attn.o_proj, "in"),
                ("wo_out", attn.o_proj, "out"),
                ("x_after_attn", layer.post_attention_layernorm, "in"),
                ("ffn_norm", layer.post_attention_layernorm, "out"),
                ("gate", mlp.gate_proj, "out"),
                ("up", mlp.up_proj, "out"),
                ("act", mlp.down_proj, "in"),
                ("mlp_out", mlp, "out"),
                ("x_out", layer, "out"),
            ]:
                if wanted(l, point):
                    (in_hook if kind == "in" else out_hook)(module, l, point)
        for point, module, kind in [("final_norm", base.norm, "out"), ("lm_head_in", model.lm_head, "in"),
                                    ("logits", model.lm_head, "out")]:
            if wanted(None, point):
                (in_hook if kind == "in" else out_hook)(module, None, point)

    def take(self):
        rows, self.rows = self.rows, {}
        return rows

    def remove(self):
        for h in self.handles:
            h.remove()


def _device_of(model):
    return next(model.parameters()).device


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _call(model, ids, start, cache):
    """One forward call of ids at positions start.. through the model's own cache:
    (logits of the last row, the cache after the call)."""
    dev = _device_of(model)
    input_ids = torch.tensor([list(ids)], dtype=torch.long, device=dev)
    position_ids = torch.arange(start, start + len(ids), dtype=torch.long, device=dev).unsqueeze(0)
    kwargs = dict(input_ids=input_ids, position_ids=position_ids, use_cache=True)
    if cache is not None:
        kwargs["past_key_values"] = cache
    out = model(**kwargs)
    return out.logits[0, -1], out.past_key_values


def _top1(logits_row):
    return topk(logits_row.detach().float().cpu().numpy(), 1)[0][0]


_DTYPE_NAMES = {torch.float32: "f32", torch.float64: "f64", torch.bfloat16: "bf16", torch.float16: "f16"}


def _config_dict(model):
    cfg = getattr(model, "config", None)
    if cfg is None:
        raise ValueError("emit_trace: the model has no config (num_hidden_layers and the rest go in the header)")
    d = cfg if isinstance(cfg, dict) else cfg.to_dict()
    # Through JSON so that dtypes and other objects become strings.
    return json.loads(json.dumps(d, default=str))


def _device_name(dev):
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (cuda:{dev.index or 0})"
    return f"{platform.processor() or platform.machine()} ({dev.type})"


def emit_trace(model, ids, out, prompt="ids", exp=("E1",), layers=None, points=None, steps=1, topk_k=5,
               backend="pytorch", model_name=None, run_id=None, oracle_for=None, log=lambda line: None):
    """Traces `ids` through `model` into the JSONL file `out` (appended to, rows in its sidecar).

    model: transformers' LlamaForCausalLM or a module with the same names, with .config (a dict
           or an object with to_dict()) and forward(input_ids, position_ids, use_cache,
           past_key_values) returning .logits and .past_key_values.
    exp: "E1" and/or "E0". layers: layer indices (default all). points: of HOOK_POINTS (default
    all). steps: decode steps (phases decode0..decode{steps-1}). oracle_for: the run id of a
    gretacore run this one is a reference for (header options.oracle_for).
    Returns the run id.
    """
    ids = [int(i) for i in ids]
    if len(ids) < 2:
        raise ValueError(f"emit_trace: {len(ids)} token(s); E1 needs at least 2")
    n_layers = len(model.model.layers)
    layers = sorted(set(range(n_layers) if layers is None else layers))
    bad = [l for l in layers if not 0 <= l < n_layers]
    if bad:
        raise ValueError(f"emit_trace: layer {bad[0]} is out of range (allowed: 0-{n_layers - 1})")
    points = list(HOOK_POINTS if points is None else points)
    unknown = [p for p in points if p not in HOOK_POINTS]
    if unknown:
        raise ValueError(f"emit_trace: point '{unknown[0]}' cannot be hooked (allowed: {', '.join(HOOK_POINTS)})")
    points = [p for p in HOOK_POINTS if p in points]
    exps = list(exp)
    for e in exps:
        if e not in ("E0", "E1"):
            raise ValueError(f"emit_trace: experiment '{e}' (allowed: E1, E0)")
    if steps < 1:
        raise ValueError("emit_trace: steps must be >= 1")

    run_id = run_id or new_run_id()
    dev = _device_of(model)
    param_dtype = next(model.parameters()).dtype
    phases = ["prefill_last"] + [f"decode{k}" for k in range(steps)]
    options = dict(exp=exps, layers=layers, points=points, phases=phases, steps=steps, topk=topk_k,
                   emitter="scripts/emit_trace.py", torch=torch.__version__)
    try:
        import transformers
        options["transformers"] = transformers.__version__
    except ImportError:
        pass
    attn_impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if attn_impl:
        options["attn_implementation"] = attn_impl
    if oracle_for:
        options["oracle_for"] = oracle_for

    t_run = time.perf_counter()
    w = TraceWriter(out)
    hooks = _Hooks(model, set(layers), set(points))
    try:
        w.write(dict(type="header", format=FORMAT_VERSION, run_id=run_id,
                     created_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                     tool=dict(name="gretacore-emit-trace", version=TOOL_VERSION),
                     model=dict(name=model_name or type(model).__name__, weight_dtype=_DTYPE_NAMES.get(param_dtype, str(param_dtype))),
                     config=_config_dict(model), backend=backend, device=_device_name(dev), git_commit=None,
                     options=options, prompts=[dict(name=prompt, n_tokens=len(ids), ids=ids)]))

        def traced(phase, e, call_ids, start, cache):
            hooks.take()
            hooks.active = True
            _sync(dev)
            t0 = time.perf_counter()
            try:
                logits, cache = _call(model, call_ids, start, cache)
                _sync(dev)
            finally:
                hooks.active = False
            ms = (time.perf_counter() - t0) * 1e3
            last = len(call_ids) - 1
            pos = dict(run_id=run_id, prompt=prompt, exp=e, phase=phase, token_id=call_ids[last], token_index=last,
                       pos_id=start + last, seq_len=start + last + 1)
            rows = hooks.take()
            for layer in layers + [None]:
                for point in (LAYER_POINTS if layer is not None else FINAL_POINTS):
                    if (layer, point) in rows:
                        write_stage(pos, layer, point, rows[(layer, point)])
            return logits, cache, ms

        def write_stage(pos, layer, point, t):
            a = t.detach().cpu()
            a = (a if a.dtype == torch.float64 else a.float()).numpy()
            idx = sample_indices(a.size)
            rec = dict(type="stage", **pos, layer=layer, point=point, shape=[1, int(a.size)],
                       dtype="f64" if a.dtype == np.float64 else "f32", stats=row_stats(a), hash=row_hash(a),
                       sample=dict(indices=idx, values=[json_number(a[i]) for i in idx]))
            if point == "logits":
                ids_k, vals_k = topk(a, min(topk_k, a.size))
                rec["topk"] = dict(ids=ids_k, values=vals_k)
            rec["row"] = w.write_row(a)  # before the line that points at it
            w.write(rec)

        results = []
        n = len(ids)
        with torch.no_grad():
            for e in exps:
                logits, cache, prefill_ms = traced("prefill_last", e, ids, 0, None)
                prefill_top1 = _top1(logits)
                if e == "E1":
                    # A fresh cache from a prefill over the first N-1 tokens; decode0 replays token N-1.
                    _, cache = _call(model, ids[:-1], 0, None)
                    token, start = ids[-1], n - 1
                else:
                    token, start = prefill_top1, n
                decode_top1, decode_ms = [], []
                for k in range(steps):
                    logits, cache, ms = traced(f"decode{k}", e, [token], start, cache)
                    token = _top1(logits)
                    decode_top1.append(token)
                    decode_ms.append(ms)
                    start += 1
                del cache
                results.append(dict(prompt=prompt, exp=e, n_tokens=n, prefill_last_top1=prefill_top1,
                                    decode_top1=decode_top1, generated_text="", prefill_ms=prefill_ms, decode_ms=decode_ms))
                log(f"{prompt} {e}: {n} tokens, prefill {prefill_ms:.1f} ms, decode {'/'.join(f'{d:.1f}' for d in decode_ms)} ms, "
                    f"top-1 {prefill_top1} -> {decode_top1[0]}")
        w.write(dict(type="end", run_id=run_id, status="ok", elapsed_ms=(time.perf_counter() - t_run) * 1e3, results=results))
    finally:
        hooks.remove()
        w.close()
    return run_id


def read_trace(path):
    """Every record of a trace file, as dicts, and a function giving a stage record's row as float64."""
    recs = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    base = os.path.dirname(os.path.abspath(path))

    def row(rec):
        r = rec["row"]
        dt = "<f8" if rec["dtype"] == "f64" else "<f4"
        with open(os.path.join(base, r["file"]), "rb") as f:
            f.seek(r["offset"])
            data = f.read(r["bytes"])
        if len(data) != r["bytes"]:
            raise ValueError(f"{path}: row of {rec['phase']} {rec['point']} is cut short")
        return np.frombuffer(data, dtype=dt).astype(np.float64)

    return recs, row


def _int_list(s, what):
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"emit_trace: {what}: '{s}' is not a comma-separated list of integers")


def _layers(s):
    out = []
    for item in s.split(","):
        a, _, b = item.partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="Hugging Face Llama directory (transformers loads it)")
    ids = ap.add_mutually_exclusive_group(required=True)
    ids.add_argument("--ids", help="token ids, comma-separated (BOS included)")
    ids.add_argument("--ids-from", help="a gretacore trace: take the ids of --prompt from its header")
    ap.add_argument("--prompt", default=None, help="prompt name written in the records (default: ids, or the first prompt of --ids-from)")
    ap.add_argument("--out", required=True, help="JSONL file, appended to; rows go to <name>.rows.bin")
    ap.add_argument("--exp", default="E1", help="E1, E0 or E1,E0")
    ap.add_argument("--layers", default="all", help="all, or e.g. 0,1,2,15,31 or 0-3,31")
    ap.add_argument("--points", default=",".join(HOOK_POINTS))
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--topk", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["float32", "float64", "bfloat16", "float16"], default="float32",
                    help="dtype transformers computes in (default float32)")
    ap.add_argument("--attn-implementation", default="eager", help="transformers' attention: eager (default), sdpa, ...")
    ap.add_argument("--oracle-for", default=None, help="run id of the gretacore run this one is a reference for")
    ap.add_argument("--allow-tf32", action="store_true", help="let CUDA matmuls use TF32 (off by default: fp32 means fp32)")
    args = ap.parse_args(argv)

    prompt = args.prompt
    if args.ids_from:
        header = json.loads(open(args.ids_from, encoding="utf-8").readline())
        found = [p for p in header.get("prompts", []) if prompt is None or p["name"] == prompt]
        if not found or "ids" not in found[0]:
            raise SystemExit(f"emit_trace: no prompt {prompt or ''} with ids in the header of {args.ids_from}")
        token_ids, prompt = found[0]["ids"], found[0]["name"]
    else:
        token_ids = _int_list(args.ids, "--ids")
    if not args.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    from transformers import LlamaForCausalLM
    dtype = getattr(torch, args.dtype)
    kw = dict(attn_implementation=args.attn_implementation)
    try:
        model = LlamaForCausalLM.from_pretrained(args.model_dir, dtype=dtype, **kw)
    except TypeError:  # transformers < 4.56 names it torch_dtype
        model = LlamaForCausalLM.from_pretrained(args.model_dir, torch_dtype=dtype, **kw)
    model = model.to(args.device).eval()
    layers = None if args.layers == "all" else _layers(args.layers)
    run_id = emit_trace(model, token_ids, args.out, prompt=prompt or "ids", exp=args.exp.split(","), layers=layers,
                        points=[p for p in args.points.split(",") if p], steps=args.steps, topk_k=args.topk,
                        backend="transformers", model_name=os.path.basename(os.path.normpath(args.model_dir)),
                        oracle_for=args.oracle_for, log=lambda line: print(line, file=sys.stderr))
    print(f"run {run_id}: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
