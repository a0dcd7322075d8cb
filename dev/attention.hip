// Kernel lab for hip/attention.hip, in the spirit of llm.c's dev/cuda: one
// main that checks before it times, at Llama-3-8B shapes (32 query heads,
// 8 KV heads of 128, fp32 KV cache).
//
// check: for each key count, the decode row (M = 1, the split layout) against
//   a CPU fp64 reference (relative L2 <= 5e-6, the bound of
//   test/gpu/ops.gpu.test.ts), bit for bit against the last row of a 3-row
//   causal call (the prefill rows kernel), and the probe's pv bit for bit
//   against it, its probs against fp64; the planted-fault options (key_chunk
//   16 and 32, scale 0.25) the same way. Then causal prefills of 16, 291 and
//   4096 rows from position 0, 77 from 1000 and 33 from 2047 (the tile
//   kernel) against greta_attention_rows (the rows kernel, the reference),
//   every row bit for bit, and their last row against its decode.
// bench: medians with L2 flushed before every sample (and hot, L2 kept) of
//   decode at 291, 4096 and 32768 keys, in GB/s of KV bytes (keys x 8 x 128 x
//   4 x 2) and as a fraction of a device-to-device copy measured here (bytes
//   read + written); then bench-prefill.
// bench-prefill: causal prefill over 291 and 4096 rows, the model's path and
//   the rows kernel, and TFLOP/s of the q.k and p.v work.
// check-short: check without 32768 keys.
// profile: one decode at 4096 and 32768 keys and one prefill over 4096 rows
//   (for ncu -k regex:attention); profile-prefill: the prefill alone.
//
// Measured on an H100 (sm_90, this build), bench-prefill:
//   | rows | tile kernel | rows kernel | TFLOP/s |
//   | 291  | 78 us       | 115 us      | 9.0     |
//   | 4096 | 4.76 ms     | 16.7 ms     | 28.9    |
// ncu of the 4096-row prefill (clocks locked at 1.59 GHz: 5.9 ms): L1/shared
// 78% busy (776M shared-load wavefronts for 246M loads, plus 50M local-memory
// spill requests), FMA pipe 47%, issue slots 61%, 16 warps per SM.
//
// Build against any version of hip/attention.hip (the lab uses only its host
// API), e.g. on NVIDIA (without GRETA_SM90A, so the model's path is this
// CUDA-core chain; with it, sm_90a runs hip/attention_chain.hip instead, whose
// checks are dev/attention_mma.hip's):
//   nvcc -O3 -arch=sm_90 --fmad=false -std=c++17 -Ihip -x cu dev/attention.hip hip/attention.hip hip/attention_chain.hip hip/matmul.hip -o attention_lab
//   ./attention_lab check bench
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "attention.h"

#if defined(__CUDACC__) && !defined(__HIP_PLATFORM_AMD__)
using hipEvent_t = cudaEvent_t;
#define hipEventCreate cudaEventCreate
#define hipEventRecord cudaEventRecord
#define hipEventSynchronize cudaEventSynchronize
#define hipEventElapsedTime cudaEventElapsedTime
#define hipMemsetAsync cudaMemsetAsync
#endif

#define CHECK(call)                                                                                     \
  do {                                                                                                  \
    hipError_t e_ = (call);                                                                             \
    if (e_ != hipSuccess) {                                                                             \
      fprintf(stderr, "%s:%d: %s: %s (is a GPU visible?)\n", __FILE__, __LINE__, #call, hipGetErrorString(e_)); \
      exit(1);                                                                                          \
    }                                                                                                   \
  } while (0)

namespace {
constexpr int H = 32, KVH = 8, HD = 128;
constexpr int QW = H * HD, KW = KVH * HD;

uint64_t rng_state = 0x9e3779b97f4a7c15ull;
float uniform() {  // [-1, 1)
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return static_cast<float>(static_cast<int64_t>(rng_state >> 40) - (1 << 23)) / (1 << 23);
}

struct Dev {
  float* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t n_) : n(n_) { CHECK(hipMalloc(&p, std::max<size_t>(n, 1) * sizeof(float))); }
  ~Dev() { (void)hipFree(p); }
  void up(const std::vector<float>& h) { CHECK(hipMemcpy(p, h.data(), n * sizeof(float), hipMemcpyHostToDevice)); }
  std::vector<float> down() const {
    std::vector<float> h(n);
    CHECK(hipMemcpy(h.data(), p, n * sizeof(float), hipMemcpyDeviceToHost));
    return h;
  }
};

struct Case {
  int64_t keys;
  std::vector<float> q, k, v;  // q: 3 rows; k, v: [keys, KW]
  Dev dq, dk, dv;
  explicit Case(int64_t n) : keys(n), q(3 * QW), k(n * KW), v(n * KW), dq(3 * QW), dk(n * KW), dv(n * KW) {
    for (auto& x : q) x = uniform();
    for (auto& x : k) x = uniform();
    for (auto& x : v) x = uniform();
    dq.up(q);
    dk.up(k);
    dv.up(v);
  }
};

// fp64 reference of query row r (at position keys - 3 + r) of a case: out and probs.
void reference(const Case& c, int r, double scale, std::vector<double>& out, std::vector<double>& probs) {
  const int64_t n = c.keys - 3 + r + 1;
  out.assign(QW, 0.0);
  probs.assign(H * n, 0.0);
  std::vector<double> s(n);
  for (int h = 0; h < H; h++) {
    const float* qh = &c.q[r * QW + h * HD];
    const int64_t off = (h / (H / KVH)) * HD;
    double mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
      double d = 0;
      for (int i = 0; i < HD; i++) d += static_cast<double>(qh[i]) * c.k[j * KW + off + i];
      s[j] = d * scale;
      mx = std::max(mx, s[j]);
    }
    double sum = 0;
    for (int64_t j = 0; j < n; j++) sum += (s[j] = std::exp(s[j] - mx));
    for (int64_t j = 0; j < n; j++) {
      probs[h * n + j] = s[j] / sum;
      for (int i = 0; i < HD; i++) out[h * HD + i] += probs[h * n + j] * c.v[j * KW + off + i];
    }
  }
}

double rel_l2(const float* got, const double* want, size_t n) {
  double d = 0, w = 0;
  for (size_t i = 0; i < n; i++) {
    d += (got[i] - want[i]) * (got[i] - want[i]);
    w += want[i] * want[i];
  }
  return std::sqrt(d / std::max(w, 1e-300));
}

Dev& scratch(size_t bytes) {
  static Dev* s = nullptr;
  if (!s || s->n * sizeof(float) < bytes) {
    delete s;
    s = new Dev(bytes / sizeof(float) + 1);
  }
  return *s;
}

// Decode of row r alone (M = 1).
void decode(const Case& c, int r, float* out, const float* scale, int chunk) {
  const int32_t pos = static_cast<int32_t>(c.keys - 3 + r);
  static Dev dpos(1);
  CHECK(hipMemcpy(dpos.p, &pos, 4, hipMemcpyHostToDevice));
  const size_t bytes = greta_attention_scratch_bytes(1, H, HD, pos + 1);
  CHECK(greta_attention(out, c.dq.p + r * QW, c.dk.p, c.dv.p, reinterpret_cast<int32_t*>(dpos.p), 1, H, KVH, HD,
                        pos + 1, scale, chunk, bytes ? scratch(bytes).p : nullptr, 0));
}

int failures = 0;
void expect(bool ok, const std::string& what) {
  if (!ok) {
    failures++;
    printf("FAIL %s\n", what.c_str());
  }
}

void check(int64_t keys) {
  Case c(keys);
  const int M = static_cast<int>(std::min<int64_t>(keys, 3));
  const int r0 = 3 - M;  // rows r0..2 are at positions keys-M..keys-1
  struct Opt {
    const char* name;
    float scale;
    int chunk;
  };
  const Opt opts[] = {{"model", 0.f, 0}, {"key_chunk 16", 0.f, 16}, {"key_chunk 32", 0.f, 32}, {"scale 0.25", 0.25f, 0}};
  Dev dpos(M), rows(M * QW), one(QW), sc(H * keys), pr(H * keys), pv(QW);
  std::vector<int32_t> pos(M);
  for (int i = 0; i < M; i++) pos[i] = static_cast<int32_t>(keys - M + i);
  CHECK(hipMemcpy(dpos.p, pos.data(), 4 * M, hipMemcpyHostToDevice));
  for (const Opt& o : opts) {
    const float* scale = o.scale != 0.f ? &o.scale : nullptr;
    std::vector<double> ref, refp;
    reference(c, 2, scale ? o.scale : 1.0 / std::sqrt(static_cast<double>(HD)), ref, refp);
    CHECK(greta_attention(rows.p, c.dq.p + r0 * QW, c.dk.p, c.dv.p, reinterpret_cast<int32_t*>(dpos.p), M, H, KVH, HD,
                          keys, scale, o.chunk, nullptr, 0));
    decode(c, 2, one.p, scale, o.chunk);
    CHECK(greta_attention_probe(sc.p, pr.p, pv.p, c.dq.p + 2 * QW, c.dk.p, c.dv.p, static_cast<int32_t>(keys - 1), H,
                                KVH, HD, scale, o.chunk,
                                scratch(greta_attention_probe_scratch_bytes(H, static_cast<int32_t>(keys - 1), o.chunk)).p,
                                0));
    CHECK(hipDeviceSynchronize());
    const auto r = rows.down(), d = one.down(), p = pv.down(), probs = pr.down();
    const double e = rel_l2(d.data(), ref.data(), QW), ep = rel_l2(probs.data(), refp.data(), H * keys);
    const bool bits = memcmp(d.data(), &r[(M - 1) * QW], QW * 4) == 0;
    const bool probe = memcmp(d.data(), p.data(), QW * 4) == 0;
    printf("keys %6lld %-13s rel_l2 %.2e  probs rel_l2 %.2e  decode == prefill row: %s  probe pv == decode: %s\n",
           static_cast<long long>(keys), o.name, e, ep, bits ? "yes" : "NO", probe ? "yes" : "NO");
    expect(e <= 5e-6 && ep <= 5e-6, "accuracy");
    expect(bits, "decode == prefill row");
    expect(probe, "probe pv == decode");
  }
}

// A causal prefill of `rows` rows at positions start .. start + rows - 1 (the
// model's path: the tile kernel from TILE_POSITIONS rows at head_dim 128)
// against the rows kernel it replaced, every row bit for bit, and its last
// row against the decode of that row alone (the split layout).
void check_prefill(int64_t rows, int64_t start) {
  const int64_t keys = start + rows;
  std::vector<float> hk(keys * KW), hv(keys * KW), hq(rows * QW);
  for (auto& x : hk) x = uniform();
  for (auto& x : hv) x = uniform();
  for (auto& x : hq) x = uniform();
  Dev dk(keys * KW), dv(keys * KW), dq(rows * QW), tile(rows * QW), ref(rows * QW), one(QW), dpos(rows), dlast(1);
  dk.up(hk);
  dv.up(hv);
  dq.up(hq);
  std::vector<int32_t> pos(rows);
  for (int64_t i = 0; i < rows; i++) pos[i] = static_cast<int32_t>(start + i);
  CHECK(hipMemcpy(dpos.p, pos.data(), 4 * rows, hipMemcpyHostToDevice));
  CHECK(hipMemcpy(dlast.p, &pos[rows - 1], 4, hipMemcpyHostToDevice));
  CHECK(hipMemsetAsync(tile.p, 0xff, rows * QW * 4, 0));  // NaN: a row left unwritten shows
  CHECK(greta_attention(tile.p, dq.p, dk.p, dv.p, reinterpret_cast<int32_t*>(dpos.p), rows, H, KVH, HD, keys, nullptr, 0,
                        nullptr, 0));
  CHECK(greta_attention_rows(ref.p, dq.p, dk.p, dv.p, reinterpret_cast<int32_t*>(dpos.p), rows, H, KVH, HD, 0));
  const size_t bytes = greta_attention_scratch_bytes(1, H, HD, keys);
  CHECK(greta_attention(one.p, dq.p + (rows - 1) * QW, dk.p, dv.p, reinterpret_cast<int32_t*>(dlast.p), 1, H, KVH, HD,
                        keys, nullptr, 0, bytes ? scratch(bytes).p : nullptr, 0));
  CHECK(hipDeviceSynchronize());
  const auto t = tile.down(), r = ref.down(), d = one.down();
  int64_t bad = 0;
  for (int64_t m = 0; m < rows; m++) bad += memcmp(&t[m * QW], &r[m * QW], QW * 4) != 0;
  const bool last = memcmp(d.data(), &t[(rows - 1) * QW], QW * 4) == 0;
  printf("prefill %5lld rows from position %5lld: rows == rows kernel: %s (%lld differ)  decode == last row: %s\n",
         static_cast<long long>(rows), static_cast<long long>(start), bad ? "NO" : "yes", static_cast<long long>(bad),
         last ? "yes" : "NO");
  expect(bad == 0, "prefill rows == rows kernel");
  expect(last, "decode == last prefill row");
}

struct Timer {
  hipEvent_t a, b;
  Timer() {
    CHECK(hipEventCreate(&a));
    CHECK(hipEventCreate(&b));
  }
};

// Median microseconds of fn, with L2 flushed (a 256 MiB memset) before each sample when flush.
template <typename F>
double median_us(F fn, int reps, bool flush) {
  static Dev l2(64 << 20);
  static Timer t;
  fn();
  std::vector<double> us;
  for (int i = 0; i < reps; i++) {
    if (flush) CHECK(hipMemsetAsync(l2.p, i & 1, l2.n * sizeof(float), 0));
    CHECK(hipEventRecord(t.a, 0));
    fn();
    CHECK(hipEventRecord(t.b, 0));
    CHECK(hipEventSynchronize(t.b));
    float ms = 0;
    CHECK(hipEventElapsedTime(&ms, t.a, t.b));
    us.push_back(ms * 1e3);
  }
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

void bench_prefill();

void bench() {
  const size_t n = 256 << 20;  // floats: 1 GiB a buffer
  double copy_tbs;
  {
    Dev a(n), b(n);
    const double us = median_us([&] { CHECK(hipMemcpyAsync(b.p, a.p, n * 4, hipMemcpyDeviceToDevice, 0)); }, 10, false);
    copy_tbs = 2.0 * n * 4 / us / 1e6;
    printf("\ndevice-to-device copy, 1 GiB: %.1f us, %.2f TB/s (read + written)\n\n", us, copy_tbs);
  }
  printf("| decode attention, 32/8 heads x 128 | keys | L2 | median us | TB/s of KV bytes | vs copy |\n|---|---:|---|---:|---:|---:|\n");
  for (int64_t keys : {291, 4096, 32768}) {
    Case c(keys);
    Dev out(QW);
    const double bytes = static_cast<double>(keys) * KW * 4 * 2;
    for (bool flush : {true, false}) {
      const double us = median_us([&] { decode(c, 2, out.p, nullptr, 0); }, 50, flush);
      printf("| decode | %lld | %s | %.1f | %.3f | %.2f |\n", static_cast<long long>(keys), flush ? "flushed" : "hot", us,
             bytes / us / 1e6, bytes / us / 1e6 / copy_tbs);
    }
  }
  bench_prefill();
}

void bench_prefill() {
  printf("\n| prefill attention (causal), L2 flushed | rows | median us | rows kernel us | TFLOP/s |\n|---|---:|---:|---:|---:|\n");
  for (int64_t rows : {291, 4096}) {
    Case c(rows);
    std::vector<float> q(rows * QW);
    for (auto& x : q) x = uniform();
    Dev dq(rows * QW), out(rows * QW), dpos(rows);
    dq.up(q);
    std::vector<int32_t> pos(rows);
    for (int64_t i = 0; i < rows; i++) pos[i] = static_cast<int32_t>(i);
    CHECK(hipMemcpy(dpos.p, pos.data(), 4 * rows, hipMemcpyHostToDevice));
    const double us = median_us(
        [&] {
          CHECK(greta_attention(out.p, dq.p, c.dk.p, c.dv.p, reinterpret_cast<int32_t*>(dpos.p), rows, H, KVH, HD, rows,
                                nullptr, 0, nullptr, 0));
        },
        rows > 1000 ? 10 : 20, true);
    const double ref_us = median_us(
        [&] {
          CHECK(greta_attention_rows(out.p, dq.p, c.dk.p, c.dv.p, reinterpret_cast<int32_t*>(dpos.p), rows, H, KVH, HD, 0));
        },
        rows > 1000 ? 3 : 20, true);
    // Useful work: q.k and p.v, 2 x 2 x head_dim flops per (row, head, key).
    const double flops = 4.0 * HD * H * static_cast<double>(rows) * (rows + 1) / 2;
    printf("| prefill | %lld | %.1f | %.1f | %.1f |\n", static_cast<long long>(rows), us, ref_us, flops / us / 1e6);
  }
}

void profile(bool decode_too) {
  for (int64_t keys : {4096, 32768}) {
    if (!decode_too) break;
    Case c(keys);
    Dev out(QW);
    decode(c, 2, out.p, nullptr, 0);
  }
  Case c(4096);
  std::vector<int32_t> pos(4096);
  for (int i = 0; i < 4096; i++) pos[i] = i;
  Dev dq(4096 * QW), out(4096 * QW), dpos(4096);
  CHECK(hipMemcpy(dpos.p, pos.data(), 4 * 4096, hipMemcpyHostToDevice));
  CHECK(greta_attention(out.p, dq.p, c.dk.p, c.dv.p, reinterpret_cast<int32_t*>(dpos.p), 4096, H, KVH, HD, 4096,
                        nullptr, 0, nullptr, 0));
  CHECK(hipDeviceSynchronize());
}
}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    const std::string mode = argv[i];
    if (mode == "check" || mode == "check-short") {
      for (int64_t keys : {1, 2, 63, 64, 65, 291, 1024, 1025, 4096, 32768})
        if (mode == "check" || keys <= 4096) check(keys);
      for (const auto& rs : std::vector<std::pair<int64_t, int64_t>>{{16, 0}, {291, 0}, {77, 1000}, {33, 2047}, {4096, 0}})
        check_prefill(rs.first, rs.second);
      printf("%s: %s\n", mode.c_str(), failures ? "FAILED" : "all ok");
    } else if (mode == "bench") {
      bench();
    } else if (mode == "bench-prefill") {
      bench_prefill();
    } else if (mode == "profile" || mode == "profile-prefill") {
      profile(mode == "profile");
    } else {
      fprintf(stderr, "usage: %s [check | check-short (keys <= 4096)] [bench | bench-prefill] [profile | profile-prefill]\n", argv[0]);
      return 2;
    }
  }
  return failures ? 1 : 0;
}
