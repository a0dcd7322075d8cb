#!/usr/bin/env python3
"""A Llama in plain PyTorch for tests of scripts/emit_trace.py where transformers is not installed.

Module names and computations follow transformers' LlamaForCausalLM (modeling_llama.py): RMSNorm
in fp32 (x * rsqrt(mean(x^2) + eps) * weight), rotate-half RoPE with Llama 3 frequency scaling
(inv_freq computed in fp32 as transformers' _compute_llama3_parameters does), GQA attention
(q.k * head_dim^-0.5, causal mask, softmax in fp32, @ v), SiLU-gated MLP, and a cache that
appends each call's K/V per layer (transformers' DynamicCache.update). Weights come from an HF
directory (config.json, model.safetensors, read here by hand: Debian has no safetensors package).

  /usr/bin/python3 test/python/tiny_llama.py --model-dir DIR --ids 128000,9906 --out t.jsonl [--exp E1,E0] [--fault position]
"""
import argparse
import json
import math
import os
import struct
import sys
from types import SimpleNamespace

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import emit_trace  # noqa: E402


def read_safetensors(path):
    """{name: float32 tensor}: 8-byte little-endian header length, JSON header, raw data."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = bytearray(data[a:b])
        shape = info["shape"]
        if info["dtype"] == "F32":
            t = torch.frombuffer(raw, dtype=torch.float32)
        elif info["dtype"] == "BF16":
            # bf16 is the top half of an f32: widen the bits, exactly.
            t = (torch.frombuffer(raw, dtype=torch.int16).to(torch.int32) << 16).view(torch.float32)
        else:
            raise ValueError(f"{path}: {name}: dtype {info['dtype']} (this reader takes F32 and BF16)")
        out[name] = t.reshape(shape).clone()
    return out


class LlamaRMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        x = hidden_states.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * x.to(hidden_states.dtype)


def llama3_inv_freq(cfg):
    """transformers' _compute_default_rope_parameters + _compute_llama3_parameters, in fp32."""
    dim = cfg["head_dim"]
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float) / dim))
    s = cfg.get("rope_scaling")
    if not s:
        return inv_freq
    factor, low, high, old = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
    low_freq_wavelen = old / low
    high_freq_wavelen = old / high
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_freq_llama)


class LlamaRotaryEmbedding(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.register_buffer("inv_freq", llama3_inv_freq(cfg), persistent=False)

    def forward(self, x, position_ids):
        inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        freqs = (inv @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class Cache:
    """Per-layer K and V, [batch, kv_heads, positions, head_dim], appended to by each call."""

    def __init__(self):
        self.k, self.v = {}, {}

    def update(self, k, v, layer):
        if layer in self.k:
            self.k[layer] = torch.cat([self.k[layer], k], dim=-2)
            self.v[layer] = torch.cat([self.v[layer], v], dim=-2)
        else:
            self.k[layer], self.v[layer] = k, v
        return self.k[layer], self.v[layer]

    def get_seq_length(self):
        return self.k[0].shape[-2] if 0 in self.k else 0


class LlamaAttention(nn.Module):
    def __init__(self, cfg, layer_idx):
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = cfg["head_dim"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg["num_key_value_heads"]
        self.scaling = self.head_dim ** -0.5
        d = cfg["hidden_size"]
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d, self.n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d, self.n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d, bias=False)

    def forward(self, hidden_states, position_embeddings, cache, cache_position):
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        q = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        k = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        v = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        cos, sin = (t.unsqueeze(1) for t in position_embeddings)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        rep = self.n_heads // self.n_kv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        # Causal: the row at position p sees keys 0..p.
        keys = torch.arange(k.shape[-2], device=k.device)
        mask = keys[None, :] > cache_position[:, None]
        scores = scores.masked_fill(mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).contiguous()
        return self.o_proj(out.reshape(*hidden_states.shape[:-1], -1))


class LlamaMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, f = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg, layer_idx):
        super().__init__()
        self.self_attn = LlamaAttention(cfg, layer_idx)
        self.mlp = LlamaMLP(cfg)
        self.input_layernorm = LlamaRMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.post_attention_layernorm = LlamaRMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])

    def forward(self, hidden_states, position_embeddings=None, past_key_values=None, cache_position=None):
        residual = hidden_states
        h = self.self_attn(self.input_layernorm(hidden_states), position_embeddings, past_key_values, cache_position)
        h = residual + h
        residual = h
        h = self.mlp(self.post_attention_layernorm(h))
        return residual + h


class LlamaModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([LlamaDecoderLayer(cfg, i) for i in range(cfg["num_hidden_layers"])])
        self.norm = LlamaRMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.rotary_emb = LlamaRotaryEmbedding(cfg)


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg, fault=None):
        super().__init__()
        self.config = cfg
        self.model = LlamaModel(cfg)
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        # A known decode-path bug for the tests to find: "position" rotates q and k of decode
        # calls (one token after a cached prefix) at position + 1.
        self.fault = fault

    def forward(self, input_ids, position_ids=None, past_key_values=None, use_cache=False, cache_position=None):
        if use_cache and past_key_values is None:
            past_key_values = Cache()
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if cache_position is None:
            cache_position = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)
        if position_ids is None:
            position_ids = cache_position.unsqueeze(0)
        h = self.model.embed_tokens(input_ids)
        if self.fault == "position" and input_ids.shape[1] == 1 and past > 0:
            position_ids = position_ids + 1
        pe = self.model.rotary_emb(h, position_ids)
        for layer in self.model.layers:
            # hidden_states positional, as transformers' LlamaModel passes it.
            h = layer(h, position_embeddings=pe, past_key_values=past_key_values, cache_position=cache_position)
        h = self.model.norm(h)
        return SimpleNamespace(logits=self.lm_head(h), past_key_values=past_key_values if use_cache else None)


def load(model_dir, fault=None):
    """The model of an HF Llama directory with a single model.safetensors, in float32."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    model = LlamaForCausalLM(cfg, fault)
    state = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    if cfg.get("tie_word_embeddings") and "lm_head.weight" not in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, strict=True)
    return model.eval()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompt", default="ids")
    ap.add_argument("--exp", default="E1")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--oracle-for", default=None)
    ap.add_argument("--fault", choices=["position"], default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # the tests share two cores
    model = load(args.model_dir, args.fault)
    run_id = emit_trace.emit_trace(model, [int(x) for x in args.ids.split(",")], args.out, prompt=args.prompt,
                                   exp=args.exp.split(","), steps=args.steps, backend="pytorch-tiny-llama",
                                   model_name=os.path.basename(os.path.normpath(args.model_dir)),
                                   oracle_for=args.oracle_for)
    print(run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
