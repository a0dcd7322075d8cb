// The HIP backend: the op contract of native/backend.h on a GPU. Tensors live
// in device memory; every HIP call is checked and a failure becomes a
// GretaError naming the op and the HIP error, which the addon turns into a JS
// exception. Kernels run in order on the default stream; copies back to the
// host synchronise, so a kernel fault surfaces at the next copy at the latest.
#include "hip_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "add.h"
#include "attention.h"
#include "compat.h"
#include "embedding.h"
#include "fill_uniform.h"
#include "kv_write.h"
#include "matmul.h"
#include "matmul_variant.h"
#include "rmsnorm.h"
#include "rope.h"
#include "silu_mul.h"
#include "summarize.h"
#include "topk.h"

namespace greta {
namespace {

void check(hipError_t e, const std::string& op) {
  if (e == hipSuccess) return;
  // A failed call is also left as the runtime's last error; clear it so the
  // next launch's check does not report it again.
  (void)hipGetLastError();
  const std::string code = e == hipErrorOutOfMemory ? "ENOMEM" : "EHIP";
  throw GretaError(code, op + ": " + hipGetErrorName(e) + " (" + hipGetErrorString(e) + ")");
}

struct DeviceStorage : Storage {
  ~DeviceStorage() override {
    if (data) (void)hipFree(data);  // nothing to report from a destructor
  }
};

// A device buffer that grows and is reused for small per-call inputs.
struct Scratch {
  void* ptr = nullptr;
  size_t cap = 0;
  void* get(size_t bytes, const char* op) {
    if (bytes > cap) {
      if (ptr) (void)hipFree(ptr);
      ptr = nullptr;
      cap = 0;
      check(hipMalloc(&ptr, bytes), std::string(op) + ": scratch");
      cap = bytes;
    }
    return ptr;
  }
  ~Scratch() {
    if (ptr) (void)hipFree(ptr);
  }
};

// Small host int arrays (token ids, positions) reach the device without
// stalling the host: each is staged in page-locked memory and copied
// asynchronously in stream order, to the next free slot of a ring. Once the
// ring is full the stream is drained (every copy from it has landed) and the
// ring starts over; a copy never overwrites a slot a pending one reads. The
// same positions passed again (rope, the KV writes and attention of every
// layer take the call's positions) reuse the slot already on the device.
class IntRing {
 public:
  const int32_t* put(const int32_t* src, int64_t n, const char* op) {
    const size_t count = static_cast<size_t>(n);
    if (last_ && count == last_count_ && std::memcmp(host_ + (last_ - dev_), src, count * 4) == 0) return last_;
    const size_t slot = (count + ALIGN - 1) / ALIGN * ALIGN;  // keeps every slot 16-byte aligned
    if (slot > cap_) grow(slot, op);
    if (used_ + slot > cap_) {
      check(hipStreamSynchronize(0), std::string(op) + ": drain the index ring");
      used_ = 0;
    }
    std::memcpy(host_ + used_, src, count * 4);
    check(hipMemcpyAsync(dev_ + used_, host_ + used_, count * 4, hipMemcpyHostToDevice, 0),
          std::string(op) + ": copy indices");
    last_ = dev_ + used_;
    last_count_ = count;
    used_ += slot;
    return last_;
  }
  ~IntRing() { release(); }

 private:
  static constexpr size_t ALIGN = 4;             // ints per 16 bytes
  static constexpr size_t MIN_CAP = 1 << 18;     // 1 MiB: thousands of decode steps between drains
  int32_t* host_ = nullptr;
  int32_t* dev_ = nullptr;
  size_t cap_ = 0, used_ = 0;
  const int32_t* last_ = nullptr;  // the latest slot and its length, while it is in the ring
  size_t last_count_ = 0;

  void grow(size_t need, const char* op) {
    check(hipStreamSynchronize(0), std::string(op) + ": drain the index ring");
    release();
    const size_t cap = std::max(need, MIN_CAP);
    check(hipHostMalloc(reinterpret_cast<void**>(&host_), cap * 4, hipHostMallocDefault), std::string(op) + ": index ring");
    check(hipMalloc(reinterpret_cast<void**>(&dev_), cap * 4), std::string(op) + ": index ring");
    cap_ = cap;
    used_ = 0;
  }
  void release() {
    if (host_) (void)hipHostFree(host_);
    if (dev_) (void)hipFree(dev_);
    host_ = nullptr;
    dev_ = nullptr;
    cap_ = used_ = 0;
    last_ = nullptr;
  }
};

int weight_type(const Tensor& w, const char* op) {
  switch (w.dtype) {
    case DType::F32: return greta_hip::W_F32;
    case DType::F16: return greta_hip::W_F16;
    case DType::BF16: return greta_hip::W_BF16;
    default: throw GretaError("EINVAL", std::string(op) + ": weights of dtype " + dtype_name(w.dtype) + " are not supported on hip");
  }
}

class HipBackend final : public Backend {
 public:
  explicit HipBackend(int device) {
    int count = 0;
    hipError_t e = hipGetDeviceCount(&count);
    if (e != hipSuccess || count == 0)
      throw GretaError("ENODEV", std::string("hip: no GPU answers (") + (e == hipSuccess ? "0 devices" : hipGetErrorName(e)) + ")");
    if (device < 0 || device >= count)
      throw GretaError("ENODEV", "hip: device " + std::to_string(device) + " does not exist (" + std::to_string(count) + " found)");
    check(hipSetDevice(device), "hip: set device");
    hipDeviceProp_t p;
    check(hipGetDeviceProperties(&p, device), "hip: device properties");
#if defined(__HIP_PLATFORM_AMD__)
    const std::string arch = p.gcnArchName;
#else
    const std::string arch = "sm_" + std::to_string(p.major) + std::to_string(p.minor);
#endif
    desc_ = std::string(p.name) + " (" + arch + ", " + std::to_string(p.totalGlobalMem >> 20) + " MiB, wave " +
            std::to_string(GRETA_WAVE_SIZE) + ", " + GRETA_VENDOR + ")";
  }

  std::string name() const override { return "hip"; }
  std::string device() const override { return desc_; }
  DType act_dtype() const override { return DType::F32; }

  void mem_info(size_t* free_bytes, size_t* total_bytes) override {
    check(hipMemGetInfo(free_bytes, total_bytes), "hip: memory info");
  }

  Tensor alloc(DType dtype, const std::vector<int64_t>& shape) override {
    Tensor t;
    t.dtype = dtype;
    t.shape = shape;
    auto s = std::make_shared<DeviceStorage>();
    s->bytes = t.bytes();
    hipError_t e = hipMalloc(&s->data, s->bytes ? s->bytes : 1);
    if (e != hipSuccess) {
      size_t free_b = 0, total_b = 0;
      (void)hipMemGetInfo(&free_b, &total_b);
      check(e, "alloc " + t.describe() + " (" + std::to_string(s->bytes) + " bytes, " + std::to_string(free_b) +
                   " free of " + std::to_string(total_b) + ")");
    }
    t.storage = s;
    return t;
  }

  void upload(const Tensor& dst, size_t offset, const void* src, size_t bytes) override {
    check(hipMemcpy(static_cast<uint8_t*>(dst.ptr()) + offset, src, bytes, hipMemcpyHostToDevice),
          "upload " + dst.describe());
  }

  void download(const Tensor& src, void* dst) override {
    check(hipMemcpy(dst, src.ptr(), src.bytes(), hipMemcpyDeviceToHost), "download " + src.describe());
  }

  void copy(const Tensor& dst, int64_t dst_at, const Tensor& src, int64_t src_at, int64_t count) override {
    const size_t e = dtype_size(src.dtype);
    check(hipMemcpyAsync(static_cast<char*>(dst.ptr()) + dst_at * e, static_cast<const char*>(src.ptr()) + src_at * e, count * e,
                         hipMemcpyDeviceToDevice, 0),
          "copy " + src.describe());
  }

  // Page-locked, so uploads from it are one DMA instead of a copy through the
  // driver's own bounce buffer.
  void* alloc_host(size_t bytes) override {
    void* p = nullptr;
    check(hipHostMalloc(&p, bytes ? bytes : 1, hipHostMallocDefault), "hostBuffer (" + std::to_string(bytes) + " bytes)");
    return p;
  }
  void free_host(void* p) override { (void)hipHostFree(p); }

  void fill_uniform(const Tensor& t, uint64_t seed, double scale, double offset) override {
    if (t.dtype == DType::F64) throw GretaError("EINVAL", "fillUniform: f64 tensors are not supported on hip");
    check(greta_fill_uniform(t.ptr(), static_cast<int>(t.dtype), t.numel(), seed, scale, offset, 0), "fillUniform");
  }

  void embedding(const Tensor& out, const Tensor& table, const int32_t* ids) override {
    const int32_t* d_ids = ints(ids, out.rows(), "embedding");
    check(greta_embedding(out.as<float>(), table.ptr(), weight_type(table, "embedding"), d_ids, out.rows(), out.cols(), 0),
          "embedding");
  }

  void rmsnorm(const Tensor& out, const Tensor& x, const Tensor& w, double eps) override {
    check(greta_rmsnorm(out.as<float>(), x.as<float>(), w.ptr(), weight_type(w, "rmsnorm"), x.rows(), x.cols(),
                        static_cast<float>(eps), 0),
          "rmsnorm");
  }

  void matmul(const std::vector<Tensor>& outs, const Tensor& x, const Tensor& w) override {
    GretaMatmulOuts o{};
    int64_t end = 0;
    for (const Tensor& t : outs) {
      o.ptr[o.count] = t.as<float>();
      o.end[o.count++] = end += t.cols();
    }
    const size_t sb = greta_matmul_scratch_bytes(x.rows(), x.cols());
    void* scratch = sb ? scratch_work_.get(sb, "matmul") : nullptr;
    check(greta_matmul(o, x.as<float>(), w.ptr(), weight_type(w, "matmul"), x.rows(), w.rows(), x.cols(), scratch, sb, 0),
          "matmul");
  }

  void matmul_variant(const Tensor& out, const Tensor& x, const Tensor& w, MatmulVariant v) override {
    check(greta_matmul_variant(out.as<float>(), x.as<float>(), w.ptr(), weight_type(w, "matmulVariant"), x.rows(), w.rows(),
                               x.cols(), static_cast<int>(v), 0),
          "matmulVariant");
  }

  void rope(const Tensor& x, const int32_t* pos, const Tensor& inv_freq, int n_heads, int head_dim) override {
    const int32_t* d_pos = ints(pos, x.rows(), "rope");
    check(greta_rope(x.as<float>(), d_pos, inv_freq.as<float>(), x.rows(), n_heads, head_dim, 0), "rope");
  }

  void kv_write(const Tensor& cache, const Tensor& src, const int32_t* pos) override {
    const int32_t* d_pos = ints(pos, src.rows(), "kvWrite");
    check(greta_kv_write(cache.as<float>(), src.as<float>(), d_pos, src.rows(), src.cols(), 0), "kvWrite");
  }

  void attention(const Tensor& out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const int32_t* pos,
                 int n_heads, int n_kv_heads, int head_dim, const AttentionOptions& opt) override {
    if (head_dim > 256) throw GretaError("EINVAL", "attention: head_dim " + std::to_string(head_dim) + " > 256 is not supported on hip");
    const int32_t* d_pos = ints(pos, q.rows(), "attention");
    int64_t max_keys = 0;
    for (int64_t m = 0; m < q.rows(); m++) max_keys = std::max<int64_t>(max_keys, static_cast<int64_t>(pos[m]) + 1);
    const size_t bytes = greta_attention_scratch_bytes(q.rows(), n_heads, head_dim, max_keys);
    float* partials = bytes ? static_cast<float*>(scratch_work_.get(bytes, "attention")) : nullptr;
    const float custom_scale = opt.scale ? static_cast<float>(*opt.scale) : 0.f;
    check(greta_attention(out.as<float>(), q.as<float>(), k_cache.as<float>(), v_cache.as<float>(), d_pos, q.rows(),
                          n_heads, n_kv_heads, head_dim, max_keys, opt.scale ? &custom_scale : nullptr, opt.key_chunk,
                          partials, 0),
          "attention");
  }

  void attention_probe(const Tensor& scores, const Tensor& probs, const Tensor& pv, const Tensor& q, const Tensor& k_cache,
                       const Tensor& v_cache, int32_t pos, int n_heads, int n_kv_heads, int head_dim,
                       const AttentionOptions& opt) override {
    if (head_dim > 256) throw GretaError("EINVAL", "attentionProbe: head_dim " + std::to_string(head_dim) + " > 256 is not supported on hip");
    float* factors = static_cast<float*>(
        scratch_work_.get(greta_attention_probe_scratch_bytes(n_heads, pos, opt.key_chunk), "attentionProbe"));
    const float custom_scale = opt.scale ? static_cast<float>(*opt.scale) : 0.f;
    check(greta_attention_probe(scores.as<float>(), probs.as<float>(), pv.as<float>(), q.as<float>(), k_cache.as<float>(),
                                v_cache.as<float>(), pos, n_heads, n_kv_heads, head_dim, opt.scale ? &custom_scale : nullptr,
                                opt.key_chunk, factors, 0),
          "attentionProbe");
  }

  void silu_mul(const Tensor& out, const Tensor& gate, const Tensor& up) override {
    check(greta_silu_mul(out.as<float>(), gate.as<float>(), up.as<float>(), out.numel(), 0), "siluMul");
  }

  void add(const Tensor& out, const Tensor& a, const Tensor& b) override {
    check(greta_add(out.as<float>(), a.as<float>(), b.as<float>(), out.numel(), 0), "add");
  }

  void add_rmsnorm(const Tensor& sum, const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& w,
                   double eps) override {
    check(greta_add_rmsnorm(sum.as<float>(), out.as<float>(), a.as<float>(), b.as<float>(), w.ptr(),
                            weight_type(w, "addRmsnorm"), a.rows(), a.cols(), static_cast<float>(eps), 0),
          "addRmsnorm");
  }

  void topk(const Tensor& x, int k, int32_t* ids, double* values) override {
    const size_t n = static_cast<size_t>(x.rows()) * k;
    char* buf = static_cast<char*>(scratch_out_.get(n * 8, "topk"));
    int32_t* d_ids = reinterpret_cast<int32_t*>(buf);
    float* d_vals = reinterpret_cast<float*>(buf + n * 4);
    check(greta_topk(x.as<float>(), x.rows(), x.cols(), k, d_ids, d_vals, 0), "topk");
    std::vector<float> vals(n);
    check(hipMemcpy(ids, d_ids, n * 4, hipMemcpyDeviceToHost), "topk: copy ids");
    check(hipMemcpy(vals.data(), d_vals, n * 4, hipMemcpyDeviceToHost), "topk: copy values");
    for (size_t i = 0; i < n; i++) values[i] = vals[i];
  }

  RowSummary summarize(const Tensor& x, int64_t row, const std::vector<int64_t>& sample) override {
    const size_t ns = sample.size();
    char* in = static_cast<char*>(scratch_in_.get(ns * 8 + 8, "summarize"));
    if (ns) check(hipMemcpy(in, sample.data(), ns * 8, hipMemcpyHostToDevice), "summarize: sample indices");
    char* outb = static_cast<char*>(scratch_out_.get(sizeof(GretaSummary) + ns * 4 + 4, "summarize"));
    GretaSummary* d_sum = reinterpret_cast<GretaSummary*>(outb);
    float* d_sample = reinterpret_cast<float*>(outb + sizeof(GretaSummary));
    const float* r = x.as<float>() + row * x.cols();
    check(greta_summarize(r, x.cols(), reinterpret_cast<const int64_t*>(in), static_cast<int>(ns), d_sum, d_sample, 0),
          "summarize");
    GretaSummary h;
    std::vector<float> hs(ns);
    check(hipMemcpy(&h, d_sum, sizeof h, hipMemcpyDeviceToHost), "summarize: copy back");
    if (ns) check(hipMemcpy(hs.data(), d_sample, ns * 4, hipMemcpyDeviceToHost), "summarize: copy sample");
    RowSummary s;
    s.nan = static_cast<int64_t>(h.nan);
    s.inf = static_cast<int64_t>(h.inf);
    s.hash = h.hash;
    if (h.finite > 0) {
      const double f = static_cast<double>(h.finite);
      s.mean = h.sum / f;
      s.abs_mean = h.abs_sum / f;
      s.rms = std::sqrt(h.sq / f);
      s.min = h.min;
      s.max = h.max;
    }
    for (float v : hs) s.sample.push_back(v);
    return s;
  }

 private:
  std::string desc_;
  Scratch scratch_in_, scratch_out_, scratch_work_;
  IntRing ints_;

  const int32_t* ints(const int32_t* host, int64_t n, const char* op) { return ints_.put(host, n, op); }
};

}  // namespace

int hip_device_count() {
  int n = 0;
  if (hipGetDeviceCount(&n) != hipSuccess) return 0;
  return n;
}

std::shared_ptr<Backend> make_hip_backend(int device) { return std::make_shared<HipBackend>(device); }

}  // namespace greta
