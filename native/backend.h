// The op contract. Every backend (CPU fp32, CPU fp64 oracle, HIP) implements
// exactly these ops with these shapes; checks.h validates arguments before any
// backend sees them, so backends may trust shapes and index ranges.
//
// Layout: row-major. Activations are [rows, cols] in the backend's activation
// dtype (f32, or f64 for the oracle). Weights are [out, in] (HF layout) in
// f32/f16/bf16. Token ids and positions are host int32 arrays: they are tiny,
// and keeping them on the host lets the range checks run before any device
// work.
//
// Batch invariance is the rule for every reduction: the value of one output
// element depends only on the inputs of its own row, reduced in one fixed
// order that never depends on how many rows are in the call.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tensor.h"

namespace greta {

// Options of attention that planted faults (src/faults.ts) change; the model
// itself always runs the defaults.
struct AttentionOptions {
  std::optional<double> scale;  // default: 1/sqrt(head_dim) in the activation precision
  int key_chunk = 0;            // 0: the backend's own key order; 16, 32 or 64: chunks of that
                                // many keys, each a partial merged in chunk order
};

// Accumulations other than the contract's, for the precision faults. Both run
// one output at a time, k by k: p = x*w, then s = acc + p, each rounded to the
// activation dtype (no fma), so cpu and hip give the same bits.
enum class MatmulVariant : int32_t {
  F16_ACCUMULATE = 1,  // acc = f16(f32(s)) after every term: a half-precision accumulator
  REVERSE_K = 2,       // acc = s for k = K-1 down to 0
};

struct RowSummary {
  double mean = 0, abs_mean = 0, rms = 0, min = 0, max = 0;
  int64_t nan = 0, inf = 0;
  uint64_t hash = 0;           // sum of hash_element over the row (bits.h)
  std::vector<double> sample;  // values at the requested indices
};

// A sequence of ops recorded once and replayed as one launch (a decode step:
// hundreds of small kernels whose host-side issue costs more than they run).
// Its index inputs (token ids, positions) are replaced at each launch; every
// other argument, tensors included, is what it was at capture.
class Graph {
 public:
  virtual ~Graph() = default;
  // inputs[i] holds as many values as the i-th input had at capture.
  virtual void launch(const std::vector<const int32_t*>& inputs) = 0;
  virtual size_t nodes() const = 0;
  // How many values each input had at capture.
  std::vector<int64_t> input_counts;
  // Storage the recorded ops use, kept alive with the graph so a replay never
  // touches freed memory.
  std::vector<std::shared_ptr<Storage>> keep;
};

// Passed once the work issued before it has finished (Backend::fence).
class Fence {
 public:
  virtual ~Fence() = default;
  virtual void wait() = 0;
};

constexpr int SPAN_STATS = 8;

struct IntSpan {
  const int32_t* data;
  int64_t count;
};

// The arguments of a kv_write: caches[i][pos[m], :] = srcs[i][m, :].
struct KvWrites {
  std::vector<Tensor> caches, srcs;
  const int32_t* pos = nullptr;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;    // "cpu", "cpu-fp64", "hip"
  virtual std::string device() const = 0;  // human-readable device description
  virtual DType act_dtype() const = 0;     // F32, or F64 for the oracle
  // Bytes free and in total where tensors live (device memory, or host RAM).
  virtual void mem_info(size_t* free_bytes, size_t* total_bytes) = 0;

  virtual Tensor alloc(DType dtype, const std::vector<int64_t>& shape) = 0;
  // A 2-D f32/f16/bf16 weight [out, in] for matmul, in the layout the
  // backend's matmul reads fastest (hip: tiled where in % 8 == 0; the CPU
  // backends: row-major, as alloc).
  virtual Tensor alloc_weight(DType dtype, const std::vector<int64_t>& shape) { return alloc(dtype, shape); }
  // Copies `bytes` bytes from src to dst at byte `offset` (the addon checks that the range lies inside dst).
  virtual void upload(const Tensor& dst, size_t offset, const void* src, size_t bytes) = 0;
  virtual void download(const Tensor& src, void* dst) = 0;  // src.bytes() bytes
  // dst[dst_at + i] = src[src_at + i] for i < count, elements of one dtype
  // counted flat, where both live (device to device on a GPU, in stream order).
  virtual void copy(const Tensor& dst, int64_t dst_at, const Tensor& src, int64_t src_at, int64_t count) = 0;
  // Host memory that upload reads fastest (page-locked on a GPU), for staging
  // weights while loading; released by free_host.
  virtual void* alloc_host(size_t bytes) = 0;
  virtual void free_host(void* p) = 0;

  // t[i] = offset + scale * u_i, u_i uniform in [-1, 1) from a counter-based
  // hash of (seed, i): the same values on every backend, in any launch shape.
  // The value is computed in double, rounded to f32, then (for f16/bf16) to
  // the tensor's dtype; so the bounds are [offset - scale, offset + scale].
  virtual void fill_uniform(const Tensor& t, uint64_t seed, double scale, double offset) = 0;
  // out[m, :] = table[ids[m], :]
  virtual void embedding(const Tensor& out, const Tensor& table, const int32_t* ids) = 0;
  // out[m, :] = x[m, :] / sqrt(mean(x[m, :]^2) + eps) * w
  virtual void rmsnorm(const Tensor& out, const Tensor& x, const Tensor& w, double eps) = 0;
  // out[m, n] = sum_k x[m, k] * w[n, k], the N columns split over outs in
  // order (one output, or Q, K and V from their weights stacked in one
  // tensor): out s is [M, its share of N]. Which output a column goes to never
  // changes how it is computed, so a fused projection equals the unfused ones
  // bit for bit.
  virtual void matmul(const std::vector<Tensor>& outs, const Tensor& x, const Tensor& w) = 0;
  // In place, rotate-half convention (HF Llama): pairs (i, i + head_dim/2) of
  // every head of row m of each x rotate by pos[m] * inv_freq[i]. Several x
  // of the same rows (Q and K) go in one call, each computed as alone.
  // Then `then` (when not null): a kv_write after the rotation, in the same
  // call (its sources may be rotated x: K), as kv_write alone would do it.
  virtual void rope(const std::vector<Tensor>& xs, const int32_t* pos, const Tensor& inv_freq, int head_dim,
                    const KvWrites* then) = 0;
  // caches[i][pos[m], :] = srcs[i][m, :] (K and V in one call)
  virtual void kv_write(const std::vector<Tensor>& caches, const std::vector<Tensor>& srcs, const int32_t* pos) = 0;
  // Query row m, head h attends to cache rows 0..pos[m] of kv head
  // h / (n_heads / n_kv_heads), scaled by 1/sqrt(head_dim). Prefill (causal)
  // and decode (one row over the cache) are the same op.
  virtual void attention(const Tensor& out, const Tensor& q, const Tensor& k_cache,
                         const Tensor& v_cache, const int32_t* pos, int n_heads, int n_kv_heads,
                         int head_dim, const AttentionOptions& opt) = 0;
  // The attention of one query row (q is [1, n_heads * head_dim]) at position
  // pos, with exactly the reduction order of `attention`, exposing what the
  // fused op keeps inside: scores [n_heads, pos + 1] (scaled q.k), probs
  // [n_heads, pos + 1] (each key's weight in the output) and pv (the per-head
  // outputs, which must equal `attention`'s row bit for bit).
  virtual void attention_probe(const Tensor& scores, const Tensor& probs, const Tensor& pv, const Tensor& q,
                               const Tensor& k_cache, const Tensor& v_cache, int32_t pos, int n_heads, int n_kv_heads,
                               int head_dim, const AttentionOptions& opt) = 0;
  // matmul's product with another accumulation (see MatmulVariant).
  virtual void matmul_variant(const Tensor& out, const Tensor& x, const Tensor& w, MatmulVariant v) = 0;
  // out = silu(gate) * up
  virtual void silu_mul(const Tensor& out, const Tensor& gate, const Tensor& up) = 0;
  // out = a + b
  virtual void add(const Tensor& out, const Tensor& a, const Tensor& b) = 0;
  // sum = a + b, then out = rmsnorm(sum, w, eps): the residual add and the
  // norm after it in one pass, each exactly as add and rmsnorm compute it.
  virtual void add_rmsnorm(const Tensor& sum, const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& w,
                           double eps) = 0;
  // Per row: the k largest values, descending; ties go to the lower index.
  virtual void topk(const Tensor& x, int k, int32_t* ids, double* values) = 0;
  // Stats, bit hash and sample of row `row` of x.
  virtual RowSummary summarize(const Tensor& x, int64_t row, const std::vector<int64_t>& sample) = 0;
  // Stats and bit hash of n spans of x counted flat, span i being elements
  // [spans[2i], spans[2i] + spans[2i+1]), into out, f64 [n, SPAN_STATS]:
  // mean, abs_mean, rms, min, max, nan, inf, then the hash's 64 bits. In
  // stream order, without waiting: the tracer's rows of a forward call in one
  // pass, whose results come back with copy_to_host.
  virtual void summarize_spans(const Tensor& out, const Tensor& x, const int32_t* spans, int64_t n) = 0;
  // src's bytes into host memory at dst, in stream order; they are there once
  // a fence made after this call has passed. From alloc_host memory a GPU
  // copies without stopping the host.
  virtual void copy_to_host(void* dst, const Tensor& src) = 0;
  // A fence after everything issued so far.
  virtual std::shared_ptr<Fence> fence() = 0;

  // Graph capture (hip): between capture_begin and capture_end ops are
  // recorded, not run. The index arrays they take must be among `inputs`
  // (the very arrays: matched by address), whose values at capture only serve
  // the argument checks; copies back to the host are refused. Attention is
  // recorded for the KV cache's whole capacity, each row reading its key
  // count from its position on the device, so one graph serves every position.
  virtual bool can_capture() const { return false; }
  virtual void capture_begin(const std::vector<IntSpan>& inputs) {
    (void)inputs;
    throw GretaError("ENOTSUP", "graph capture: the " + name() + " backend runs each op as it is called (graphs are hip's)");
  }
  virtual std::shared_ptr<Graph> capture_end() { throw GretaError("ENOTSUP", "graph capture: not capturing"); }
  // Ends a capture that failed, discarding what was recorded.
  virtual void capture_abort() {}
};

}  // namespace greta
