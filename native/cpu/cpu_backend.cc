// CPU backend: the op contract in plain C++, templated on the accumulation
// type A. A = float is the "cpu" backend (fp32 activations and accumulation),
// A = double is "cpu-fp64", the oracle that tests and users compare against.
//
// Reduction-order rule (batch invariance): every dot product over K, and the
// RMSNorm sum of squares, accumulates into LANES = 8 partial sums, lane
// (k mod 8) taking element k in increasing k, then combines the lanes in the
// fixed tree ((0+4)+(2+6))+((1+5)+(3+7)). Attention reduces over keys in
// increasing key order. Nothing depends on the number of rows in the call, and
// work is only ever split across threads by output element, never inside one.
#include "cpu_backend.h"

#include "../summary.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <unistd.h>
#include <vector>

namespace greta {
namespace {

struct bf16_t {
  uint16_t v;
};
struct f16_t {
  uint16_t v;
};

// f16 -> f32 by table: exact, and branch-free in the GEMV inner loop.
const float* f16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; i++) t[i] = f16_to_f32(static_cast<uint16_t>(i));
    return t;
  }();
  return table.data();
}

template <typename A> inline A load(float w, const float*) { return static_cast<A>(w); }
template <typename A> inline A load(double w, const float*) { return static_cast<A>(w); }
template <typename A> inline A load(bf16_t w, const float*) { return static_cast<A>(bf16_to_f32(w.v)); }
template <typename A> inline A load(f16_t w, const float* t) { return static_cast<A>(t[w.v]); }

constexpr int LANES = 8;

template <typename A, typename W>
inline A dot(const A* x, const W* w, int64_t k_len, const float* f16) {
  A acc[LANES] = {};
  int64_t k = 0;
  for (; k + LANES <= k_len; k += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += x[k + l] * load<A>(w[k + l], f16);
  for (; k < k_len; k++) acc[k % LANES] += x[k] * load<A>(w[k], f16);
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

// Workers that live as long as the process. Starting threads for every op
// cost more than small ops themselves, and each new thread's malloc arena
// kept memory the process never got back, so RSS crept up over many runs.
class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool(std::max(1u, std::thread::hardware_concurrency()) - 1);  // never joined: lives to exit
    return *pool;
  }
  unsigned threads() const { return static_cast<unsigned>(workers_) + 1; }

  // Runs fn(0) .. fn(tasks - 1) on the workers and the calling thread; returns
  // when all are done, rethrowing the first exception one of them threw.
  void run(int64_t tasks, const std::function<void(int64_t)>& fn) {
    std::lock_guard<std::mutex> one_job(job_mutex_);
    std::unique_lock<std::mutex> lk(m_);
    job_ = &fn;
    tasks_ = tasks;
    next_ = 0;
    finished_ = 0;
    error_ = nullptr;
    generation_++;
    wake_.notify_all();
    work(lk);
    done_.wait(lk, [&] { return finished_ == tasks_; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  explicit Pool(unsigned workers) : workers_(workers) {
    for (unsigned i = 0; i < workers; i++) std::thread([this] { loop(); }).detach();
  }

  void loop() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      wake_.wait(lk, [&] { return generation_ != seen; });
      seen = generation_;
      work(lk);
    }
  }

  // Takes tasks of the current job until none is left; called with m_ held.
  void work(std::unique_lock<std::mutex>& lk) {
    while (job_ && next_ < tasks_) {
      const int64_t t = next_++;
      const std::function<void(int64_t)>* fn = job_;
      lk.unlock();
      std::exception_ptr e;
      try {
        (*fn)(t);
      } catch (...) {
        e = std::current_exception();
      }
      lk.lock();
      if (e && !error_) error_ = e;
      if (++finished_ == tasks_) done_.notify_all();
    }
  }

  const unsigned workers_;
  std::mutex job_mutex_, m_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t tasks_ = 0, next_ = 0, finished_ = 0;
  uint64_t generation_ = 0;
  std::exception_ptr error_;
};

// Splits [0, n) into contiguous chunks over the pool's threads. Each output
// element is computed whole by one thread, so results do not depend on the
// thread count.
template <typename F>
void parallel_for(int64_t n, int64_t work_per_item, F fn) {
  Pool& pool = Pool::get();
  int64_t threads = std::min<int64_t>(pool.threads(), std::max<int64_t>(1, n * work_per_item / (1 << 18)));
  threads = std::min<int64_t>(threads, n);
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  const int64_t chunk = (n + threads - 1) / threads;
  pool.run(threads, [&](int64_t t) {
    const int64_t lo = t * chunk, hi = std::min(n, lo + chunk);
    if (lo < hi) fn(lo, hi);
  });
}

template <typename A, typename F>
void with_weight(const Tensor& w, F fn) {
  switch (w.dtype) {
    case DType::F32: fn(w.as<float>()); break;
    case DType::F64: fn(w.as<double>()); break;
    case DType::BF16: fn(reinterpret_cast<const bf16_t*>(w.ptr())); break;
    case DType::F16: fn(reinterpret_cast<const f16_t*>(w.ptr())); break;
    default: throw GretaError("EINVAL", std::string("weight dtype ") + dtype_name(w.dtype) + " is not supported");
  }
}

template <typename A>
struct HeadScratchT {
  std::vector<A> p, acc, fac;
};

// One query head (row m, head h) over keys 0..pos: the attention op's
// arithmetic, shared with the probe so the probe cannot drift from it. When
// given, `scores` receives each key's scaled q.k and `probs` its weight in
// the output: exp(s - max) / sum in the plain order; with key chunks, the
// chunk's exp(s - m_c) times the merge rescales applied after it, times 1/l.
template <typename A>
void attend_head(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t m, int h, int32_t pos,
                 int n_heads, int n_kv_heads, int head_dim, const AttentionOptions& opt, A* o, A* scores, A* probs,
                 HeadScratchT<A>& s) {
  const A scale = opt.scale ? static_cast<A>(*opt.scale) : A(1) / std::sqrt(static_cast<A>(head_dim));
  const int64_t kd = k_cache.cols();
  const float* f16 = f16_table();
  const A* qh = q.as<A>() + m * q.cols() + static_cast<int64_t>(h) * head_dim;
  const int64_t kv_off = static_cast<int64_t>(h / (n_heads / n_kv_heads)) * head_dim;
  const int64_t n_keys = static_cast<int64_t>(pos) + 1;
  auto key = [&](int64_t j) { return k_cache.as<A>() + j * kd + kv_off; };
  auto val = [&](int64_t j) { return v_cache.as<A>() + j * kd + kv_off; };
  std::vector<A>& p = s.p;
  p.resize(n_keys);
  if (opt.key_chunk > 0) {
    // Chunks of key_chunk keys, each a partial (max, exp-sum, p.V), merged in
    // chunk order with the running-max rescale.
    A run_m = -INFINITY, run_l = 0;
    s.acc.assign(head_dim, A(0));
    s.fac.clear();
    for (int64_t c0 = 0; c0 < n_keys; c0 += opt.key_chunk) {
      const int64_t len = std::min<int64_t>(opt.key_chunk, n_keys - c0);
      A mc = -INFINITY;
      for (int64_t j = c0; j < c0 + len; j++) {
        p[j] = dot<A>(qh, key(j), head_dim, f16) * scale;
        if (scores) scores[j] = p[j];
        mc = std::max(mc, p[j]);
      }
      A lc = 0;
      for (int64_t j = c0; j < c0 + len; j++) {
        p[j] = std::exp(p[j] - mc);
        lc += p[j];
      }
      const A mn = std::max(run_m, mc);
      const A a = std::exp(run_m - mn), b = std::exp(mc - mn);
      run_l = run_l * a + lc * b;
      for (int d = 0; d < head_dim; d++) {
        A pv = 0;
        for (int64_t j = c0; j < c0 + len; j++) pv += p[j] * val(j)[d];
        s.acc[d] = s.acc[d] * a + pv * b;
      }
      if (probs) {
        for (A& f : s.fac) f = f * a;
        s.fac.push_back(b);
      }
      run_m = mn;
    }
    const A inv = A(1) / run_l;
    for (int d = 0; d < head_dim; d++) o[d] = s.acc[d] * inv;
    if (probs)
      for (int64_t j = 0; j < n_keys; j++) probs[j] = p[j] * s.fac[j / opt.key_chunk] * inv;
    return;
  }
  A mx = -INFINITY;
  for (int64_t j = 0; j < n_keys; j++) {
    p[j] = dot<A>(qh, key(j), head_dim, f16) * scale;
    if (scores) scores[j] = p[j];
    mx = std::max(mx, p[j]);
  }
  A sum = 0;
  for (int64_t j = 0; j < n_keys; j++) {
    p[j] = std::exp(p[j] - mx);
    sum += p[j];
  }
  for (int d = 0; d < head_dim; d++) o[d] = 0;
  for (int64_t j = 0; j < n_keys; j++) {
    const A* vj = val(j);
    for (int d = 0; d < head_dim; d++) o[d] += p[j] * vj[d];
  }
  const A inv = A(1) / sum;
  for (int d = 0; d < head_dim; d++) o[d] *= inv;
  if (probs)
    for (int64_t j = 0; j < n_keys; j++) probs[j] = p[j] * inv;
}

template <typename A>
class CpuBackend final : public Backend {
 public:
  using HeadScratch = HeadScratchT<A>;
  std::string name() const override { return sizeof(A) == 8 ? "cpu-fp64" : "cpu"; }
  std::string device() const override {
    return std::string("host CPU, ") + std::to_string(std::max(1u, std::thread::hardware_concurrency())) +
           " threads, " + (sizeof(A) == 8 ? "fp64" : "fp32") + " accumulation";
  }
  DType act_dtype() const override { return sizeof(A) == 8 ? DType::F64 : DType::F32; }
  void mem_info(size_t* free_bytes, size_t* total_bytes) override {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    *free_bytes = static_cast<size_t>(sysconf(_SC_AVPHYS_PAGES)) * page;
    *total_bytes = static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * page;
  }

  Tensor alloc(DType dtype, const std::vector<int64_t>& shape) override {
    Tensor t;
    t.dtype = dtype;
    t.shape = shape;
    t.storage = std::make_shared<HostStorage>(t.bytes());
    return t;
  }
  void upload(const Tensor& dst, size_t offset, const void* src, size_t bytes) override {
    std::memcpy(static_cast<uint8_t*>(dst.ptr()) + offset, src, bytes);
  }
  void download(const Tensor& src, void* dst) override { std::memcpy(dst, src.ptr(), src.bytes()); }
  void copy(const Tensor& dst, int64_t dst_at, const Tensor& src, int64_t src_at, int64_t count) override {
    const size_t e = dtype_size(src.dtype);
    std::memmove(static_cast<char*>(dst.ptr()) + dst_at * e, static_cast<const char*>(src.ptr()) + src_at * e, count * e);
  }
  void* alloc_host(size_t bytes) override {
    void* p = std::malloc(bytes ? bytes : 1);
    if (!p) throw GretaError("ENOMEM", "hostBuffer: cannot allocate " + std::to_string(bytes) + " bytes");
    return p;
  }
  void free_host(void* p) override { std::free(p); }

  void fill_uniform(const Tensor& t, uint64_t seed, double scale, double offset) override {
    int64_t n = t.numel();
    parallel_for(n, 8, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; i++) {
        double v = offset + scale * uniform_pm1(seed, static_cast<uint64_t>(i));
        switch (t.dtype) {
          case DType::F32: t.as<float>()[i] = static_cast<float>(v); break;
          case DType::F64: t.as<double>()[i] = v; break;
          case DType::BF16: t.as<uint16_t>()[i] = f32_to_bf16(static_cast<float>(v)); break;
          case DType::F16: t.as<uint16_t>()[i] = f32_to_f16(static_cast<float>(v)); break;
          case DType::I32: t.as<int32_t>()[i] = static_cast<int32_t>(v); break;
        }
      }
    });
  }

  void embedding(const Tensor& out, const Tensor& table, const int32_t* ids) override {
    const int64_t d = out.cols();
    A* o = out.as<A>();
    const float* f16 = f16_table();
    with_weight<A>(table, [&](auto* w) {
      for (int64_t m = 0; m < out.rows(); m++) {
        auto* row = w + static_cast<int64_t>(ids[m]) * d;
        for (int64_t i = 0; i < d; i++) o[m * d + i] = load<A>(row[i], f16);
      }
    });
  }

  void rmsnorm(const Tensor& out, const Tensor& x, const Tensor& w, double eps) override {
    const int64_t d = x.cols();
    const A* xp = x.as<A>();
    A* o = out.as<A>();
    const float* f16 = f16_table();
    with_weight<A>(w, [&](auto* wp) {
      for (int64_t m = 0; m < x.rows(); m++) {
        const A* r = xp + m * d;
        A ss = dot<A>(r, r, d, f16);
        A inv = A(1) / std::sqrt(ss / static_cast<A>(d) + static_cast<A>(eps));
        for (int64_t i = 0; i < d; i++) o[m * d + i] = r[i] * inv * load<A>(wp[i], f16);
      }
    });
  }

  void matmul(const std::vector<Tensor>& outs, const Tensor& x, const Tensor& w) override {
    const int64_t m_len = x.rows(), k_len = x.cols(), n_len = w.rows();
    const A* xp = x.as<A>();
    // Column n of the product is column n - begin of the output whose columns hold it (at most 3 outputs).
    auto at = [&](int64_t m, int64_t n) -> A& {
      size_t s = 0;
      int64_t begin = 0;
      while (n - begin >= outs[s].cols()) begin += outs[s++].cols();
      return outs[s].as<A>()[m * outs[s].cols() + n - begin];
    };
    const float* f16 = f16_table();
    with_weight<A>(w, [&](auto* wp) {
      // Weight rows outer so each is read once per call, whatever M is. With
      // several rows the weight row is widened to A once (exactly), then the
      // same dot runs on it: identical arithmetic, M-fold fewer conversions.
      parallel_for(n_len, m_len * k_len, [&](int64_t lo, int64_t hi) {
        // Per-thread and kept: workers that allocate and free on every op fragment their malloc arenas.
        thread_local std::vector<A> wrow;
        if (m_len > 1) wrow.resize(static_cast<size_t>(k_len));
        for (int64_t n = lo; n < hi; n++) {
          const auto* wn = wp + n * k_len;
          if (m_len == 1) {
            at(0, n) = dot<A>(xp, wn, k_len, f16);
            continue;
          }
          for (int64_t k = 0; k < k_len; k++) wrow[k] = load<A>(wn[k], f16);
          for (int64_t m = 0; m < m_len; m++) at(m, n) = dot<A>(xp + m * k_len, wrow.data(), k_len, f16);
        }
      });
    });
  }

  void rope(const std::vector<Tensor>& xs, const int32_t* pos, const Tensor& inv_freq, int head_dim,
            const KvWrites* then) override {
    rotate(xs, pos, inv_freq, head_dim);
    if (then) kv_write(then->caches, then->srcs, then->pos);
  }

  void rotate(const std::vector<Tensor>& xs, const int32_t* pos, const Tensor& inv_freq, int head_dim) {
    const int half = head_dim / 2;
    const A* f = inv_freq.as<A>();
    for (const Tensor& x : xs) {
      const int64_t n_heads = x.cols() / head_dim;
      A* xp = x.as<A>();
      for (int64_t m = 0; m < x.rows(); m++) {
        for (int i = 0; i < half; i++) {
          A angle = static_cast<A>(pos[m]) * f[i];
          A c = std::cos(angle), s = std::sin(angle);
          for (int64_t h = 0; h < n_heads; h++) {
            A* hp = xp + m * x.cols() + h * head_dim;
            A x1 = hp[i], x2 = hp[i + half];
            hp[i] = x1 * c - x2 * s;
            hp[i + half] = x2 * c + x1 * s;
          }
        }
      }
    }
  }

  void kv_write(const std::vector<Tensor>& caches, const std::vector<Tensor>& srcs, const int32_t* pos) override {
    for (size_t k = 0; k < srcs.size(); k++) {
      const Tensor &cache = caches[k], &src = srcs[k];
      const int64_t d = src.cols();
      for (int64_t m = 0; m < src.rows(); m++)
        std::memcpy(cache.as<A>() + static_cast<int64_t>(pos[m]) * d, src.as<A>() + m * d, d * sizeof(A));
    }
  }

  void attention(const Tensor& out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const int32_t* pos,
                 int n_heads, int n_kv_heads, int head_dim, const AttentionOptions& opt) override {
    const int64_t rows = q.rows();
    parallel_for(rows * n_heads, static_cast<int64_t>(head_dim) * (pos[rows - 1] + 1) * 2, [&](int64_t lo, int64_t hi) {
      thread_local HeadScratch s;  // kept per thread, as matmul's widened row
      for (int64_t task = lo; task < hi; task++) {
        const int64_t m = task / n_heads;
        const int h = static_cast<int>(task % n_heads);
        attend_head<A>(q, k_cache, v_cache, m, h, pos[m], n_heads, n_kv_heads, head_dim, opt, out.as<A>() + m * q.cols() + static_cast<int64_t>(h) * head_dim, nullptr, nullptr, s);
      }
    });
  }

  void attention_probe(const Tensor& scores, const Tensor& probs, const Tensor& pv, const Tensor& q, const Tensor& k_cache,
                       const Tensor& v_cache, int32_t pos, int n_heads, int n_kv_heads, int head_dim,
                       const AttentionOptions& opt) override {
    HeadScratch s;
    const int64_t n_keys = static_cast<int64_t>(pos) + 1;
    for (int h = 0; h < n_heads; h++)
      attend_head<A>(q, k_cache, v_cache, 0, h, pos, n_heads, n_kv_heads, head_dim, opt,
                  pv.as<A>() + static_cast<int64_t>(h) * head_dim, scores.as<A>() + h * n_keys, probs.as<A>() + h * n_keys, s);
  }

  void matmul_variant(const Tensor& out, const Tensor& x, const Tensor& w, MatmulVariant variant) override {
    const int64_t m_len = x.rows(), k_len = x.cols(), n_len = w.rows();
    const A* xp = x.as<A>();
    A* o = out.as<A>();
    const float* f16 = f16_table();
    with_weight<A>(w, [&](auto* wp) {
      parallel_for(n_len, m_len * k_len, [&](int64_t lo, int64_t hi) {
        for (int64_t n = lo; n < hi; n++) {
          const auto* wn = wp + n * k_len;
          for (int64_t m = 0; m < m_len; m++) {
            const A* xm = xp + m * k_len;
            A acc = 0;
            if (variant == MatmulVariant::REVERSE_K) {
              for (int64_t k = k_len - 1; k >= 0; k--) {
                const A prod = xm[k] * load<A>(wn[k], f16);
                acc = acc + prod;
              }
            } else {
              for (int64_t k = 0; k < k_len; k++) {
                const A prod = xm[k] * load<A>(wn[k], f16);
                acc = static_cast<A>(f16_to_f32(f32_to_f16(static_cast<float>(acc + prod))));
              }
            }
            o[m * n_len + n] = acc;
          }
        }
      });
    });
  }

  void silu_mul(const Tensor& out, const Tensor& gate, const Tensor& up) override {
    const int64_t n = out.numel();
    const A *g = gate.as<A>(), *u = up.as<A>();
    A* o = out.as<A>();
    for (int64_t i = 0; i < n; i++) o[i] = g[i] / (A(1) + std::exp(-g[i])) * u[i];
  }

  void add(const Tensor& out, const Tensor& a, const Tensor& b) override {
    const int64_t n = out.numel();
    const A *ap = a.as<A>(), *bp = b.as<A>();
    A* o = out.as<A>();
    for (int64_t i = 0; i < n; i++) o[i] = ap[i] + bp[i];
  }

  void add_rmsnorm(const Tensor& sum, const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& w,
                   double eps) override {
    add(sum, a, b);
    rmsnorm(out, sum, w, eps);
  }

  void topk(const Tensor& x, int k, int32_t* ids, double* values) override {
    const int64_t n = x.cols();
    std::vector<int32_t> idx(n);
    for (int64_t m = 0; m < x.rows(); m++) {
      const A* r = x.as<A>() + m * n;
      for (int64_t i = 0; i < n; i++) idx[i] = static_cast<int32_t>(i);
      // NaN ranks below every number so a poisoned row cannot win top-1.
      auto before = [r](int32_t a, int32_t b) {
        A va = r[a], vb = r[b];
        bool na = std::isnan(va), nb = std::isnan(vb);
        if (na != nb) return nb;
        if (!na && va != vb) return va > vb;
        return a < b;
      };
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), before);
      for (int i = 0; i < k; i++) {
        ids[m * k + i] = idx[i];
        values[m * k + i] = static_cast<double>(r[idx[i]]);
      }
    }
  }

  void summarize_spans(const Tensor& out, const Tensor& x, const int32_t* spans, int64_t n) override {
    double* o = out.as<double>();
    for (int64_t i = 0; i < n; i++, o += SPAN_STATS) {
      const RowSummary r = summarize_row(x.as<A>() + spans[2 * i], spans[2 * i + 1], {});
      const double v[] = {r.mean, r.abs_mean, r.rms, r.min, r.max, static_cast<double>(r.nan), static_cast<double>(r.inf)};
      std::memcpy(o, v, sizeof v);
      std::memcpy(o + 7, &r.hash, 8);
    }
  }

  void copy_to_host(void* dst, const Tensor& src) override { std::memcpy(dst, src.ptr(), src.bytes()); }

  // Ops run as they are called: everything issued has finished.
  std::shared_ptr<Fence> fence() override {
    struct Done final : Fence {
      void wait() override {}
    };
    return std::make_shared<Done>();
  }

  RowSummary summarize(const Tensor& x, int64_t row, const std::vector<int64_t>& sample) override {
    return summarize_row(x.as<A>() + row * x.cols(), x.cols(), sample);
  }
};

}  // namespace

std::shared_ptr<Backend> make_cpu_backend(bool fp64) {
  if (fp64) return std::make_shared<CpuBackend<double>>();
  return std::make_shared<CpuBackend<float>>();
}

}  // namespace greta
