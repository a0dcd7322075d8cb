// Argument checks shared by every backend: run once at the addon boundary so
// kernels can trust shapes, dtypes and index ranges. Each failure names the
// op, the argument and what was expected.
#pragma once

#include <cmath>
#include <string>

#include "backend.h"

namespace greta {

[[noreturn]] inline void fail_check(const std::string& op, const std::string& what) {
  throw GretaError("EINVAL", op + ": " + what);
}

// A check on every op call: the message (shapes printed into strings) is built
// only when the check fails, so passing checks cost a comparison.
#define GRETA_EXPECT(ok, op, ...)                           \
  do {                                                      \
    if (!(ok)) ::greta::fail_check((op), (__VA_ARGS__));    \
  } while (0)

inline void expect_2d(const Tensor& t, const std::string& op, const char* arg) {
  GRETA_EXPECT(t.shape.size() == 2, op, std::string(arg) + " must be 2-D, got " + t.describe());
}

inline void expect_act(const Backend& b, const Tensor& t, const std::string& op, const char* arg) {
  GRETA_EXPECT(t.dtype == b.act_dtype(), op,
         std::string(arg) + " must be " + dtype_name(b.act_dtype()) + " (activation dtype of backend " +
             b.name() + "), got " + t.describe());
}

inline void expect_weight(const Tensor& t, const std::string& op, const char* arg) {
  GRETA_EXPECT(t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16 || t.dtype == DType::F64, op,
         std::string(arg) + " must be f32, f16 or bf16, got " + t.describe());
}

inline void expect_same_shape(const Tensor& a, const Tensor& b, const std::string& op, const char* an,
                              const char* bn) {
  GRETA_EXPECT(a.shape == b.shape, op,
         std::string(an) + " " + a.describe() + " and " + bn + " " + b.describe() + " differ in shape");
}

inline void check_embedding(const Backend& b, const Tensor& out, const Tensor& table, const int32_t* ids,
                            int64_t n_ids) {
  const std::string op = "embedding";
  expect_2d(out, op, "out");
  expect_2d(table, op, "table");
  expect_act(b, out, op, "out");
  expect_weight(table, op, "table");
  GRETA_EXPECT(out.cols() == table.cols(), op, "out " + out.describe() + " and table " + table.describe() + " differ in width");
  GRETA_EXPECT(n_ids == out.rows(), op, "got " + std::to_string(n_ids) + " ids for " + std::to_string(out.rows()) + " rows");
  for (int64_t m = 0; m < n_ids; m++)
    GRETA_EXPECT(ids[m] >= 0 && ids[m] < table.rows(), op,
           "token id " + std::to_string(ids[m]) + " at row " + std::to_string(m) + " is outside the vocabulary [0, " +
               std::to_string(table.rows()) + ")");
}

inline void check_rmsnorm(const Backend& b, const Tensor& out, const Tensor& x, const Tensor& w, double eps) {
  const std::string op = "rmsnorm";
  expect_2d(x, op, "x");
  expect_act(b, x, op, "x");
  expect_act(b, out, op, "out");
  expect_same_shape(out, x, op, "out", "x");
  expect_weight(w, op, "w");
  GRETA_EXPECT(w.numel() == x.cols(), op, "w " + w.describe() + " must have " + std::to_string(x.cols()) + " elements");
  GRETA_EXPECT(eps > 0, op, "eps must be > 0, got " + std::to_string(eps));
}

// Views of one storage block: the same view, or byte ranges that meet.
inline bool same_view(const Tensor& a, const Tensor& b) {
  return a.storage == b.storage && a.offset_bytes == b.offset_bytes && a.shape == b.shape && a.dtype == b.dtype;
}
inline bool overlaps(const Tensor& a, const Tensor& b) {
  return a.storage == b.storage && a.offset_bytes < b.offset_bytes + b.bytes() && b.offset_bytes < a.offset_bytes + a.bytes();
}

inline void check_add_rmsnorm(const Backend& b, const Tensor& sum, const Tensor& out, const Tensor& x, const Tensor& y,
                              const Tensor& w, double eps) {
  const std::string op = "addRmsnorm";
  for (const auto& [t, name] : {std::pair<const Tensor&, const char*>{sum, "sum"}, {out, "out"}, {x, "a"}, {y, "b"}}) {
    expect_2d(t, op, name);
    expect_act(b, t, op, name);
  }
  expect_same_shape(x, y, op, "a", "b");
  expect_same_shape(sum, x, op, "sum", "a");
  expect_same_shape(out, x, op, "out", "a");
  // Shapes and dtypes are equal by now: the same view is the same start.
  GRETA_EXPECT(!same_view(sum, out) && !same_view(sum, x) && !same_view(sum, y) && !same_view(out, x) && !same_view(out, y), op,
         "sum and out must be tensors of their own, not a or b or each other");
  expect_weight(w, op, "w");
  GRETA_EXPECT(w.numel() == x.cols(), op, "w " + w.describe() + " must have " + std::to_string(x.cols()) + " elements");
  GRETA_EXPECT(eps > 0, op, "eps must be > 0, got " + std::to_string(eps));
}

// Up to 3 outputs (Q, K, V of a fused projection).
constexpr size_t MATMUL_MAX_OUTS = 3;

inline void check_matmul(const Backend& b, const std::vector<Tensor>& outs, const Tensor& x, const Tensor& w) {
  const std::string op = "matmul";
  GRETA_EXPECT(!outs.empty() && outs.size() <= MATMUL_MAX_OUTS, op,
         "got " + std::to_string(outs.size()) + " outputs (allowed: 1 to " + std::to_string(MATMUL_MAX_OUTS) + ")");
  expect_2d(x, op, "x");
  expect_2d(w, op, "w");
  expect_act(b, x, op, "x");
  expect_weight(w, op, "w");
  GRETA_EXPECT(x.cols() == w.cols(), op, "x " + x.describe() + " and w " + w.describe() + " differ in K");
  int64_t n = 0;
  std::string widths;
  for (const Tensor& out : outs) {
    expect_2d(out, op, "out");
    expect_act(b, out, op, "out");
    GRETA_EXPECT(out.rows() == x.rows(), op, "out " + out.describe() + " must have " + std::to_string(x.rows()) + " rows");
    n += out.cols();
    widths += (widths.empty() ? "" : "+") + std::to_string(out.cols());
  }
  if (outs.size() == 1)
    GRETA_EXPECT(n == w.rows(), op,
           "out " + outs[0].describe() + " must be [" + std::to_string(x.rows()) + "," + std::to_string(w.rows()) + "]");
  else
    GRETA_EXPECT(n == w.rows(), op, "outputs " + widths + " wide do not add up to w " + w.describe() + "'s " +
                                  std::to_string(w.rows()) + " rows");
}

inline void check_matmul_variant(const Backend& b, const Tensor& out, const Tensor& x, const Tensor& w, int variant) {
  check_matmul(b, {out}, x, w);
  GRETA_EXPECT(variant == static_cast<int>(MatmulVariant::F16_ACCUMULATE) || variant == static_cast<int>(MatmulVariant::REVERSE_K),
         "matmulVariant", "unknown variant " + std::to_string(variant));
}

inline void check_rope(const Backend& b, const Tensor& x, int64_t n_pos, const Tensor& inv_freq, int n_heads,
                       int head_dim) {
  const std::string op = "rope";
  expect_2d(x, op, "x");
  expect_act(b, x, op, "x");
  GRETA_EXPECT(head_dim > 0 && head_dim % 2 == 0, op, "head_dim must be even and > 0, got " + std::to_string(head_dim));
  GRETA_EXPECT(n_heads > 0 && static_cast<int64_t>(n_heads) * head_dim == x.cols(), op,
         "x " + x.describe() + " is not " + std::to_string(n_heads) + " heads of " + std::to_string(head_dim));
  GRETA_EXPECT(n_pos == x.rows(), op, "got " + std::to_string(n_pos) + " positions for " + std::to_string(x.rows()) + " rows");
  GRETA_EXPECT(inv_freq.dtype == b.act_dtype() && inv_freq.numel() == head_dim / 2, op,
         "inv_freq must be " + std::string(dtype_name(b.act_dtype())) + "[" + std::to_string(head_dim / 2) + "], got " +
             inv_freq.describe());
}

inline void check_positions(const int32_t* pos, int64_t n, int64_t capacity, const std::string& op) {
  for (int64_t m = 0; m < n; m++)
    GRETA_EXPECT(pos[m] >= 0 && pos[m] < capacity, op,
           "position " + std::to_string(pos[m]) + " at row " + std::to_string(m) + " is outside the KV cache [0, " +
               std::to_string(capacity) + ")");
}

inline void check_kv_write(const Backend& b, const Tensor& cache, const Tensor& src, const int32_t* pos, int64_t n) {
  const std::string op = "kv_write";
  expect_2d(cache, op, "cache");
  expect_2d(src, op, "src");
  expect_act(b, cache, op, "cache");
  expect_act(b, src, op, "src");
  GRETA_EXPECT(cache.cols() == src.cols(), op, "cache " + cache.describe() + " and src " + src.describe() + " differ in width");
  GRETA_EXPECT(n == src.rows(), op, "got " + std::to_string(n) + " positions for " + std::to_string(src.rows()) + " rows");
  check_positions(pos, n, cache.rows(), op);
}

// rope's `then` writes: each a kv_write, whose source is one of the rotated
// x or apart from all of them (the rotation and the copies run at once).
inline void check_rope_then(const Backend& b, const std::vector<Tensor>& xs, const KvWrites& then, int64_t n_pos) {
  const std::string op = "rope";
  GRETA_EXPECT(!then.srcs.empty(), op, "then.src must not be empty");
  GRETA_EXPECT(then.caches.size() == then.srcs.size(), op,
               "then: " + std::to_string(then.caches.size()) + " caches but " + std::to_string(then.srcs.size()) + " sources");
  for (size_t k = 0; k < then.srcs.size(); k++) {
    check_kv_write(b, then.caches[k], then.srcs[k], then.pos, n_pos);
    for (const Tensor& x : xs)
      GRETA_EXPECT(same_view(then.srcs[k], x) || !overlaps(then.srcs[k], x), op,
                   "then.src[" + std::to_string(k) + "] " + then.srcs[k].describe() + " overlaps x " + x.describe() + " without being it");
  }
}

inline void check_attention(const Backend& b, const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
                            const int32_t* pos, int64_t n, int n_heads, int n_kv_heads, int head_dim,
                            const AttentionOptions& opt) {
  const std::string op = "attention";
  GRETA_EXPECT(opt.key_chunk == 0 || opt.key_chunk == 16 || opt.key_chunk == 32 || opt.key_chunk == 64, op,
         "keyChunk " + std::to_string(opt.key_chunk) + " is not supported (allowed: 0, 16, 32, 64)");
  GRETA_EXPECT(!opt.scale || std::isfinite(*opt.scale), op, "scale must be a finite number");
  for (const Tensor* t : {&out, &q, &k, &v}) {
    expect_2d(*t, op, "tensors");
    expect_act(b, *t, op, "tensors");
  }
  GRETA_EXPECT(n_heads > 0 && n_kv_heads > 0 && head_dim > 0 && n_heads % n_kv_heads == 0, op,
         "n_heads " + std::to_string(n_heads) + " must be a positive multiple of n_kv_heads " + std::to_string(n_kv_heads));
  GRETA_EXPECT(q.cols() == static_cast<int64_t>(n_heads) * head_dim, op, "q " + q.describe() + " is not n_heads x head_dim");
  expect_same_shape(out, q, op, "out", "q");
  GRETA_EXPECT(k.cols() == static_cast<int64_t>(n_kv_heads) * head_dim, op, "k_cache " + k.describe() + " is not n_kv_heads x head_dim");
  expect_same_shape(k, v, op, "k_cache", "v_cache");
  GRETA_EXPECT(n == q.rows(), op, "got " + std::to_string(n) + " positions for " + std::to_string(q.rows()) + " rows");
  check_positions(pos, n, k.rows(), op);
}

inline void check_attention_probe(const Backend& b, const Tensor& scores, const Tensor& probs, const Tensor& pv,
                                  const Tensor& q, const Tensor& k, const Tensor& v, int32_t pos, int n_heads,
                                  int n_kv_heads, int head_dim, const AttentionOptions& opt) {
  check_attention(b, q, q, k, v, &pos, 1, n_heads, n_kv_heads, head_dim, opt);
  const std::string op = "attentionProbe";
  expect_act(b, pv, op, "pv");
  GRETA_EXPECT((pv.shape == std::vector<int64_t>{n_heads, head_dim}), op,
         "pv must be [" + std::to_string(n_heads) + "," + std::to_string(head_dim) + "], got " + pv.describe());
  const std::vector<int64_t> want = {n_heads, static_cast<int64_t>(pos) + 1};
  for (const Tensor* t : {&scores, &probs}) {
    expect_act(b, *t, op, "scores/probs");
    GRETA_EXPECT(t->shape == want, op, "scores and probs must be [" + std::to_string(n_heads) + "," + std::to_string(pos + 1) +
                                     "], got " + t->describe());
  }
}

inline void check_elementwise(const Backend& b, const Tensor& out, const Tensor& a, const Tensor& c, const std::string& op) {
  expect_act(b, out, op, "out");
  expect_act(b, a, op, "a");
  expect_act(b, c, op, "b");
  expect_same_shape(out, a, op, "out", "a");
  expect_same_shape(a, c, op, "a", "b");
}

inline void check_copy(const Tensor& dst, int64_t dst_at, const Tensor& src, int64_t src_at, int64_t count) {
  const std::string op = "copy";
  GRETA_EXPECT(dst.dtype == src.dtype, op, "dst " + dst.describe() + " and src " + src.describe() + " differ in dtype");
  const auto range = [](int64_t at, int64_t n) { return "[" + std::to_string(at) + ", " + std::to_string(at + n) + ")"; };
  GRETA_EXPECT(count >= 0 && src_at >= 0 && src_at + count <= src.numel(), op,
         "elements " + range(src_at, count) + " are outside src " + src.describe());
  GRETA_EXPECT(dst_at >= 0 && dst_at + count <= dst.numel(), op, "elements " + range(dst_at, count) + " are outside dst " + dst.describe());
}

inline void check_topk(const Backend& b, const Tensor& x, int k) {
  const std::string op = "topk";
  expect_2d(x, op, "x");
  expect_act(b, x, op, "x");
  GRETA_EXPECT(k >= 1 && k <= x.cols(), op, "k must be in [1, " + std::to_string(x.cols()) + "], got " + std::to_string(k));
}

inline void check_summarize(const Backend& b, const Tensor& x, int64_t row, const std::vector<int64_t>& sample) {
  const std::string op = "summarize";
  expect_2d(x, op, "x");
  expect_act(b, x, op, "x");
  GRETA_EXPECT(row >= 0 && row < x.rows(), op, "row " + std::to_string(row) + " is outside [0, " + std::to_string(x.rows()) + ")");
  for (int64_t i : sample)
    GRETA_EXPECT(i >= 0 && i < x.cols(), op, "sample index " + std::to_string(i) + " is outside [0, " + std::to_string(x.cols()) + ")");
}

inline void check_summarize_spans(const Backend& b, const Tensor& out, const Tensor& x, const int32_t* spans, int64_t n_ints) {
  const std::string op = "summarizeSpans";
  expect_act(b, x, op, "x");
  GRETA_EXPECT(n_ints % 2 == 0, op, "spans must be (offset, width) pairs, got " + std::to_string(n_ints) + " values");
  GRETA_EXPECT(out.dtype == DType::F64 && out.shape.size() == 2 && out.shape[0] == n_ints / 2 && out.shape[1] == SPAN_STATS, op,
               "out must be f64[" + std::to_string(n_ints / 2) + "," + std::to_string(SPAN_STATS) + "], got " + out.describe());
  for (int64_t i = 0; i < n_ints; i += 2)
    GRETA_EXPECT(spans[i] >= 0 && spans[i + 1] >= 1 && static_cast<int64_t>(spans[i]) + spans[i + 1] <= x.numel(), op,
                 "span " + std::to_string(i / 2) + " [" + std::to_string(spans[i]) + ", " +
                     std::to_string(static_cast<int64_t>(spans[i]) + spans[i + 1]) + ") is not a nonempty range inside x " + x.describe());
}

}  // namespace greta
