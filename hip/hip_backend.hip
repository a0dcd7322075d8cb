// The HIP backend: the op contract of native/backend.h on a GPU. Tensors live
// in device memory; every HIP call is checked and a failure becomes a
// GretaError naming the op and the HIP error, which the addon turns into a JS
// exception. Kernels run in order on the backend's stream, a blocking one, so
// the synchronous copies (on the null stream) wait for them; copies back to
// the host synchronise, so a kernel fault surfaces at the next copy at the
// latest. A decode step can be captured as a graph and replayed (HipGraph).
#include "hip_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "add.h"
#include "attention.h"
#include "compat.h"
#include "copy.h"
#include "embedding.h"
#include "fill_uniform.h"
#include "kv_write.h"
#include "matmul.h"
#include "matmul_variant.h"
#include "rmsnorm.h"
#include "rope.h"
#include "silu_mul.h"
#include "summarize.h"
#include "tiles.h"
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

// A device buffer that grows and is reused for small per-call inputs. A graph
// that recorded a buffer keeps it (Graph::keep), so growing never frees memory
// a replay still uses.
struct Scratch {
  std::shared_ptr<DeviceStorage> buf;
  void* get(size_t bytes, const char* op) {
    if (!buf || bytes > buf->bytes) {
      buf.reset();
      auto s = std::make_shared<DeviceStorage>();
      check(hipMalloc(&s->data, bytes), std::string(op) + ": scratch");
      s->bytes = bytes;
      buf = std::move(s);
    }
    return buf->data;
  }
};

// A page-locked host buffer that grows and is reused for small copies back
// (a decode step's top-1, a row's summary): one DMA the stream runs, instead
// of a copy through the driver's bounce buffer, which every decode step's
// latency would carry.
struct PinnedScratch {
  void* data = nullptr;
  size_t bytes = 0;
  void* get(size_t need, const char* op) {
    if (need > bytes) {
      release();
      check(hipHostMalloc(&data, need, hipHostMallocDefault), std::string(op) + ": page-locked copy-back buffer");
      bytes = need;
    }
    return data;
  }
  void release() {
    if (data) (void)hipHostFree(data);
    data = nullptr;
    bytes = 0;
  }
  ~PinnedScratch() { release(); }
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
  const int32_t* put(const int32_t* src, int64_t n, const char* op, hipStream_t stream) {
    const size_t count = static_cast<size_t>(n);
    if (last_ && count == last_count_ && std::memcmp(host_ + (last_ - dev_), src, count * 4) == 0) return last_;
    const size_t slot = (count + ALIGN - 1) / ALIGN * ALIGN;  // keeps every slot 16-byte aligned
    if (slot > cap_) grow(slot, op, stream);
    if (used_ + slot > cap_) {
      check(hipStreamSynchronize(stream), std::string(op) + ": drain the index ring");
      used_ = 0;
    }
    std::memcpy(host_ + used_, src, count * 4);
    check(hipMemcpyAsync(dev_ + used_, host_ + used_, count * 4, hipMemcpyHostToDevice, stream),
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

  void grow(size_t need, const char* op, hipStream_t stream) {
    check(hipStreamSynchronize(stream), std::string(op) + ": drain the index ring");
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

// A captured op sequence. Its index inputs live in one device buffer that the
// recorded ops read; a launch stages the new values in page-locked memory and
// copies them in stream order ahead of the graph. The staging is rewritten
// only once the previous launch's copy has read it.
class HipGraph final : public Graph {
 public:
  HipGraph(hipStream_t stream, hipGraph_t graph, hipGraphExec_t exec, std::shared_ptr<DeviceStorage> inputs,
           std::vector<size_t> offsets, size_t total)
      : stream_(stream), graph_(graph), exec_(exec), inputs_(std::move(inputs)), offsets_(std::move(offsets)), total_(total) {
    check(hipGraphGetNodes(graph_, nullptr, &nodes_), "captureGraph: count nodes");
    check(hipHostMalloc(reinterpret_cast<void**>(&staging_), std::max<size_t>(total_, 1) * 4, hipHostMallocDefault),
          "captureGraph: input staging");
    check(hipEventCreateWithFlags(&staged_, hipEventDisableTiming), "captureGraph: event");
  }
  ~HipGraph() override {
    // A launch in flight still reads the inputs and the storage kept alive.
    (void)hipStreamSynchronize(stream_);
    if (staged_) (void)hipEventDestroy(staged_);
    if (staging_) (void)hipHostFree(staging_);
    (void)hipGraphExecDestroy(exec_);
    (void)hipGraphDestroy(graph_);
  }
  void launch(const std::vector<const int32_t*>& inputs) override {
    check(hipEventSynchronize(staged_), "graph launch: staging");
    for (size_t i = 0; i < inputs.size(); i++)
      std::memcpy(staging_ + offsets_[i], inputs[i], static_cast<size_t>(input_counts[i]) * 4);
    if (total_)
      check(hipMemcpyAsync(inputs_->data, staging_, total_ * 4, hipMemcpyHostToDevice, stream_), "graph launch: inputs");
    check(hipEventRecord(staged_, stream_), "graph launch: staging");
    check(hipGraphLaunch(exec_, stream_), "graph launch");
  }
  size_t nodes() const override { return nodes_; }

 private:
  hipStream_t stream_;
  hipGraph_t graph_;
  hipGraphExec_t exec_;
  std::shared_ptr<DeviceStorage> inputs_;
  std::vector<size_t> offsets_;  // in ints, per input
  size_t total_;
  size_t nodes_ = 0;
  int32_t* staging_ = nullptr;
  hipEvent_t staged_ = nullptr;
};

struct HipFence final : Fence {
  hipEvent_t event = nullptr;
  ~HipFence() override {
    if (event) (void)hipEventDestroy(event);
  }
  void wait() override { check(hipEventSynchronize(event), "fence: wait"); }
};

int weight_type(const Tensor& w, const char* op) {
  switch (w.dtype) {
    case DType::F32: return greta_hip::W_F32;
    case DType::F16: return greta_hip::W_F16;
    case DType::BF16: return greta_hip::W_BF16;
    default: throw GretaError("EINVAL", std::string(op) + ": weights of dtype " + dtype_name(w.dtype) + " are not supported on hip");
  }
}

// A matmul weight's first tile (its row view's, which must start a tile).
const void* weight_ptr(const Tensor& w, const char* op) {
  if (!w.tiled) return w.ptr();
  if (w.row0 % GRETA_TILE_ROWS != 0)
    throw GretaError("EINVAL", std::string(op) + ": weight " + w.describe() + " is a row view from row " +
                                   std::to_string(w.row0) + " of a tiled weight (allowed: views from a multiple of " +
                                   std::to_string(GRETA_TILE_ROWS) + " rows)");
  return static_cast<const char*>(w.ptr()) + greta_matmul_tile_offset(w.row0, w.cols()) * dtype_size(w.dtype);
}

// Device memory for one call, freed when it returns (a tiled weight's rows
// on their way to the host: never the steady state).
std::shared_ptr<DeviceStorage> temp_device(size_t bytes, const std::string& op) {
  auto s = std::make_shared<DeviceStorage>();
  check(hipMalloc(&s->data, bytes ? bytes : 1), op + ": staging");
  s->bytes = bytes;
  return s;
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
    // A stream of our own: the null stream cannot be captured.
    check(hipStreamCreate(&stream_), "hip: create stream");
  }
  ~HipBackend() override {
    capture_abort();
    (void)hipStreamSynchronize(stream_);
    (void)hipStreamDestroy(stream_);
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

  // Tiled where matmul takes its tiles (in % 8 == 0), zeros in the padding.
  // The addon passes only 2-D f32/f16/bf16 shapes.
  Tensor alloc_weight(DType dtype, const std::vector<int64_t>& shape) override {
    if (!greta_matmul_tiled(shape[1])) return alloc(dtype, shape);
    not_capturing("alloc");
    Tensor t;
    t.dtype = dtype;
    t.shape = shape;
    t.tiled = true;
    auto s = std::make_shared<DeviceStorage>();
    s->bytes = greta_matmul_weight_bytes(shape[0], shape[1], dtype_size(dtype));
    check(hipMalloc(&s->data, s->bytes), "alloc " + t.describe() + " (" + std::to_string(s->bytes) + " bytes)");
    t.storage = s;
    check(hipMemsetAsync(s->data, 0, s->bytes, stream_), "alloc " + t.describe());
    return t;
  }

  void upload(const Tensor& dst, size_t offset, const void* src, size_t bytes) override {
    not_capturing("upload");
    const std::string op = "upload " + dst.describe();
    if (!dst.tiled) {
      copy_sync(static_cast<uint8_t*>(dst.ptr()) + offset, src, bytes, hipMemcpyHostToDevice, op);
      return;
    }
    // Whole rows through device staging, then into their tiles.
    const size_t row = static_cast<size_t>(dst.cols()) * dtype_size(dst.dtype);
    if (offset % row != 0 || bytes % row != 0)
      throw GretaError("EINVAL", op + ": " + std::to_string(bytes) + " bytes at byteOffset " + std::to_string(offset) +
                                     " are not whole rows of " + std::to_string(row) + " bytes (a tiled weight takes whole rows)");
    void* staging = scratch_upload_.get(bytes, "upload");
    copy_sync(staging, src, bytes, hipMemcpyHostToDevice, op);
    check(greta_tile_rows(dst.ptr(), weight_type(dst, "upload"), staging, dst.row0 + static_cast<int64_t>(offset / row),
                          static_cast<int64_t>(bytes / row), dst.cols(), stream_),
          op);
    // Weights are read by kernels before they wait for the ones ahead (hip/compat.h).
    check(hipStreamSynchronize(stream_), op);
  }

  void download(const Tensor& src, void* dst) override {
    not_capturing("download");
    const std::string op = "download " + src.describe();
    if (!src.tiled) {
      copy_sync(dst, src.ptr(), src.bytes(), hipMemcpyDeviceToHost, op);
      return;
    }
    auto staging = temp_device(src.bytes(), op);
    check(greta_untile_rows(staging->data, src.ptr(), weight_type(src, "download"), src.row0, src.rows(), src.cols(), stream_), op);
    copy_sync(dst, staging->data, src.bytes(), hipMemcpyDeviceToHost, op);
  }

  void copy(const Tensor& dst, int64_t dst_at, const Tensor& src, int64_t src_at, int64_t count) override {
    const size_t e = dtype_size(src.dtype);
    check(greta_copy(static_cast<char*>(dst.ptr()) + dst_at * e, static_cast<const char*>(src.ptr()) + src_at * e, count * e,
                     stream_),
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
    if (t.tiled)
      check(greta_tile_fill_uniform(t.ptr(), weight_type(t, "fillUniform"), t.row0, t.rows(), t.cols(), seed, scale, offset,
                                    stream_),
            "fillUniform");
    else
      check(greta_fill_uniform(t.ptr(), static_cast<int>(t.dtype), t.numel(), seed, scale, offset, stream_), "fillUniform");
    // It may fill weights, which a later kernel reads before it waits for the
    // kernels before it (hip/compat.h): they must be complete when it is issued.
    check(hipStreamSynchronize(stream_), "fillUniform");
  }

  void embedding(const Tensor& out, const Tensor& table, const int32_t* ids) override {
    const int32_t* d_ids = ints(ids, out.rows(), "embedding");
    check(greta_embedding(out.as<float>(), weight_ptr(table, "embedding"), weight_type(table, "embedding"), table.tiled, d_ids,
                          out.rows(), out.cols(), stream_),
          "embedding");
  }

  void rmsnorm(const Tensor& out, const Tensor& x, const Tensor& w, double eps) override {
    check(greta_rmsnorm(out.as<float>(), x.as<float>(), w.ptr(), weight_type(w, "rmsnorm"), x.rows(), x.cols(),
                        static_cast<float>(eps), stream_),
          "rmsnorm");
  }

  void matmul(const std::vector<Tensor>& outs, const Tensor& x, const Tensor& w) override {
    GretaMatmulOuts o{};
    int64_t end = 0;
    for (const Tensor& t : outs) {
      o.ptr[o.count] = t.as<float>();
      o.end[o.count++] = end += t.cols();
    }
    if (greta_matmul_tiled(w.cols()) && !w.tiled)
      throw GretaError("EINVAL", "matmul: weight " + w.describe() +
                                     " is row-major; on hip a weight whose rows are a multiple of 8 long is read in tiles "
                                     "(allocate it with alloc(dtype, shape, { matmul: true }))");
    const size_t sb = greta_matmul_scratch_bytes(x.rows(), x.cols());
    void* split = sb ? scratch(scratch_work_, sb, "matmul") : nullptr;
    check(greta_matmul(o, x.as<float>(), weight_ptr(w, "matmul"), weight_type(w, "matmul"), x.rows(), w.rows(), x.cols(),
                       split, sb, stream_),
          "matmul");
  }

  void matmul_variant(const Tensor& out, const Tensor& x, const Tensor& w, MatmulVariant v) override {
    check(greta_matmul_variant(out.as<float>(), x.as<float>(), weight_ptr(w, "matmulVariant"), weight_type(w, "matmulVariant"),
                               w.tiled, x.rows(), w.rows(),
                               x.cols(), static_cast<int>(v), stream_),
          "matmulVariant");
  }

  void rope(const std::vector<Tensor>& xs, const int32_t* pos, const Tensor& inv_freq, int head_dim,
            const KvWrites* then) override {
    // One launch for Q and K and their cache rows; more tensors than a launch
    // takes go in turn, the writes after them. Write positions other than
    // the rotation's travel in the same upload (two uploads could share a
    // slot of the ring).
    const int64_t M = xs[0].rows();
    const bool fused = then && xs.size() <= GRETA_ROPE_MAX && then->srcs.size() <= GRETA_KV_WRITE_MAX;
    const bool same_pos = fused && std::memcmp(then->pos, pos, static_cast<size_t>(M) * sizeof(int32_t)) == 0;
    std::vector<int32_t> both;
    if (fused && !same_pos) {
      both.assign(pos, pos + M);
      both.insert(both.end(), then->pos, then->pos + M);
    }
    const int32_t* d_pos = same_pos || !fused ? ints(pos, M, "rope") : ints(both.data(), 2 * M, "rope");
    for (size_t i = 0; i < xs.size(); i += GRETA_ROPE_MAX) {
      GretaRopeTargets t{};
      for (; t.count < GRETA_ROPE_MAX && i + t.count < xs.size(); t.count++) {
        t.x[t.count] = xs[i + t.count].as<float>();
        t.heads[t.count] = static_cast<int>(xs[i + t.count].cols() / head_dim);
      }
      GretaRopeWrites wr{};
      if (fused) {
        wr.w = kv_writes(then->caches, then->srcs, 0);
        wr.pos = same_pos ? d_pos : d_pos + M;
        for (int k = 0; k < wr.w.count; k++) {
          wr.from[k] = -1;
          for (int x = 0; x < t.count; x++)
            if (then->srcs[k].ptr() == xs[x].ptr()) wr.from[k] = x;
        }
      }
      check(greta_rope(t, d_pos, inv_freq.as<float>(), M, head_dim, wr, stream_), "rope");
    }
    if (then && !fused) kv_write(then->caches, then->srcs, then->pos);
  }

  // Pairs i .. i + GRETA_KV_WRITE_MAX - 1 of a kv_write, as one launch takes them.
  static GretaKvWrites kv_writes(const std::vector<Tensor>& caches, const std::vector<Tensor>& srcs, size_t i) {
    GretaKvWrites w{};
    for (; w.count < GRETA_KV_WRITE_MAX && i + w.count < srcs.size(); w.count++) {
      w.cache[w.count] = caches[i + w.count].as<float>();
      w.src[w.count] = srcs[i + w.count].as<float>();
      w.width[w.count] = srcs[i + w.count].cols();
    }
    return w;
  }

  void kv_write(const std::vector<Tensor>& caches, const std::vector<Tensor>& srcs, const int32_t* pos) override {
    const int32_t* d_pos = ints(pos, srcs[0].rows(), "kvWrite");
    for (size_t i = 0; i < srcs.size(); i += GRETA_KV_WRITE_MAX)
      check(greta_kv_write(kv_writes(caches, srcs, i), d_pos, srcs[0].rows(), stream_), "kvWrite");
  }

  void attention(const Tensor& out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const int32_t* pos,
                 int n_heads, int n_kv_heads, int head_dim, const AttentionOptions& opt) override {
    if (head_dim > 256) throw GretaError("EINVAL", "attention: head_dim " + std::to_string(head_dim) + " > 256 is not supported on hip");
    const int32_t* d_pos = ints(pos, q.rows(), "attention");
    int64_t max_keys = 0;
    for (int64_t m = 0; m < q.rows(); m++) max_keys = std::max<int64_t>(max_keys, static_cast<int64_t>(pos[m]) + 1);
    // A graph replays at other positions: its launch covers the cache, and
    // each row's blocks past its own keys do nothing.
    if (capture_) max_keys = k_cache.rows();
    const size_t bytes = greta_attention_scratch_bytes(q.rows(), n_heads, head_dim, max_keys);
    float* partials = bytes ? static_cast<float*>(scratch(scratch_work_, bytes, "attention")) : nullptr;
    const float custom_scale = opt.scale ? static_cast<float>(*opt.scale) : 0.f;
    check(greta_attention(out.as<float>(), q.as<float>(), k_cache.as<float>(), v_cache.as<float>(), d_pos, q.rows(),
                          n_heads, n_kv_heads, head_dim, max_keys, opt.scale ? &custom_scale : nullptr, opt.key_chunk,
                          partials, stream_),
          "attention");
  }

  void attention_probe(const Tensor& scores, const Tensor& probs, const Tensor& pv, const Tensor& q, const Tensor& k_cache,
                       const Tensor& v_cache, int32_t pos, int n_heads, int n_kv_heads, int head_dim,
                       const AttentionOptions& opt) override {
    if (head_dim > 256) throw GretaError("EINVAL", "attentionProbe: head_dim " + std::to_string(head_dim) + " > 256 is not supported on hip");
    not_capturing("attentionProbe");  // its position is a host value
    float* factors = static_cast<float*>(
        scratch_work_.get(greta_attention_probe_scratch_bytes(n_heads, pos, opt.key_chunk), "attentionProbe"));
    const float custom_scale = opt.scale ? static_cast<float>(*opt.scale) : 0.f;
    check(greta_attention_probe(scores.as<float>(), probs.as<float>(), pv.as<float>(), q.as<float>(), k_cache.as<float>(),
                                v_cache.as<float>(), pos, n_heads, n_kv_heads, head_dim, opt.scale ? &custom_scale : nullptr,
                                opt.key_chunk, factors, stream_),
          "attentionProbe");
  }

  void silu_mul(const Tensor& out, const Tensor& gate, const Tensor& up) override {
    check(greta_silu_mul(out.as<float>(), gate.as<float>(), up.as<float>(), out.numel(), stream_), "siluMul");
  }

  void add(const Tensor& out, const Tensor& a, const Tensor& b) override {
    check(greta_add(out.as<float>(), a.as<float>(), b.as<float>(), out.numel(), stream_), "add");
  }

  void add_rmsnorm(const Tensor& sum, const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& w,
                   double eps) override {
    check(greta_add_rmsnorm(sum.as<float>(), out.as<float>(), a.as<float>(), b.as<float>(), w.ptr(),
                            weight_type(w, "addRmsnorm"), a.rows(), a.cols(), static_cast<float>(eps), stream_),
          "addRmsnorm");
  }

  void topk(const Tensor& x, int k, int32_t* ids, double* values) override {
    not_capturing("topk");
    const size_t n = static_cast<size_t>(x.rows()) * k;
    // ids and values side by side, one copy back; the split top-1's firsts after them.
    const size_t picks = (n * 8 + 15) / 16 * 16;
    char* buf = static_cast<char*>(scratch_out_.get(picks + greta_topk_scratch_bytes(), "topk"));
    int32_t* d_ids = reinterpret_cast<int32_t*>(buf);
    float* d_vals = reinterpret_cast<float*>(buf + n * 4);
    check(greta_topk(x.as<float>(), x.rows(), x.cols(), k, d_ids, d_vals, buf + picks, stream_), "topk");
    char* host = static_cast<char*>(pinned_back_.get(n * 8, "topk"));
    copy_sync(host, buf, n * 8, hipMemcpyDeviceToHost, "topk: copy back");
    std::memcpy(ids, host, n * 4);
    const float* vals = reinterpret_cast<const float*>(host + n * 4);
    for (size_t i = 0; i < n; i++) values[i] = vals[i];
  }

  void summarize_spans(const Tensor& out, const Tensor& x, const int32_t* spans, int64_t n) override {
    const int32_t* d_spans = ints(spans, 2 * n, "summarizeSpans");
    check(greta_summarize_spans(out.as<double>(), x.as<float>(), d_spans, n, stream_), "summarizeSpans");
  }

  void copy_to_host(void* dst, const Tensor& src) override {
    not_capturing("copyToHost");
    check(hipMemcpyAsync(dst, src.ptr(), src.bytes(), hipMemcpyDeviceToHost, stream_), "copyToHost " + src.describe());
  }

  std::shared_ptr<Fence> fence() override {
    not_capturing("fence");
    auto f = std::make_shared<HipFence>();
    check(hipEventCreateWithFlags(&f->event, hipEventDisableTiming), "fence");
    check(hipEventRecord(f->event, stream_), "fence");
    return f;
  }

  RowSummary summarize(const Tensor& x, int64_t row, const std::vector<int64_t>& sample) override {
    not_capturing("summarize");
    const size_t ns = sample.size();
    char* in = static_cast<char*>(scratch_in_.get(ns * 8 + 8, "summarize"));
    if (ns) copy_sync(in, sample.data(), ns * 8, hipMemcpyHostToDevice, "summarize: sample indices");
    char* outb = static_cast<char*>(scratch_out_.get(sizeof(GretaSummary) + ns * 4 + 4, "summarize"));
    GretaSummary* d_sum = reinterpret_cast<GretaSummary*>(outb);
    float* d_sample = reinterpret_cast<float*>(outb + sizeof(GretaSummary));
    const float* r = x.as<float>() + row * x.cols();
    check(greta_summarize(r, x.cols(), reinterpret_cast<const int64_t*>(in), static_cast<int>(ns), d_sum, d_sample, stream_),
          "summarize");
    // The summary and its sample side by side: one copy back.
    char* host = static_cast<char*>(pinned_back_.get(sizeof(GretaSummary) + ns * 4, "summarize"));
    copy_sync(host, outb, sizeof(GretaSummary) + ns * 4, hipMemcpyDeviceToHost, "summarize: copy back");
    GretaSummary h;
    std::memcpy(&h, host, sizeof h);
    RowSummary s = summary_of(h);
    for (size_t i = 0; i < ns; i++) {
      float v;
      std::memcpy(&v, host + sizeof(GretaSummary) + i * 4, 4);
      s.sample.push_back(v);
    }
    return s;
  }

  bool can_capture() const override { return true; }

  void capture_begin(const std::vector<IntSpan>& inputs) override {
    if (capture_) throw GretaError("EINVAL", "captureGraph: a capture is already under way");
    auto c = std::make_unique<Capture>();
    c->inputs = inputs;
    for (const IntSpan& in : inputs) {
      c->offsets.push_back(c->total);
      c->total += (static_cast<size_t>(in.count) + 3) / 4 * 4;  // 16-byte aligned slots
    }
    c->dev = std::make_shared<DeviceStorage>();
    c->dev->bytes = std::max<size_t>(c->total, 1) * 4;
    check(hipMalloc(&c->dev->data, c->dev->bytes), "captureGraph: inputs");
    // Relaxed: the ops may still grow their scratch (hipMalloc) while recorded.
    check(hipStreamBeginCapture(stream_, hipStreamCaptureModeRelaxed), "captureGraph: begin");
    capture_ = std::move(c);
  }

  std::shared_ptr<Graph> capture_end() override {
    if (!capture_) throw GretaError("EINVAL", "captureGraph: not capturing");
    std::unique_ptr<Capture> c = std::move(capture_);
    hipGraph_t graph = nullptr;
    check(hipStreamEndCapture(stream_, &graph), "captureGraph: end");
    hipGraphExec_t exec = nullptr;
    hipError_t e = hipGraphInstantiateWithFlags(&exec, graph, 0);
    if (e != hipSuccess) {
      (void)hipGraphDestroy(graph);
      check(e, "captureGraph: instantiate");
    }
    auto g = std::make_shared<HipGraph>(stream_, graph, exec, c->dev, c->offsets, c->total);
    for (const IntSpan& in : c->inputs) g->input_counts.push_back(in.count);
    g->keep = std::move(c->keep);
    return g;
  }

  void capture_abort() override {
    if (!capture_) return;
    capture_.reset();
    hipGraph_t graph = nullptr;
    if (hipStreamEndCapture(stream_, &graph) == hipSuccess && graph) (void)hipGraphDestroy(graph);
    (void)hipGetLastError();
  }

 private:
  // What a capture under way records besides the graph: its index inputs
  // (matched by host address), their device slots, and the scratch it used.
  struct Capture {
    std::vector<IntSpan> inputs;
    std::vector<size_t> offsets;
    size_t total = 0;
    std::shared_ptr<DeviceStorage> dev;
    std::vector<std::shared_ptr<Storage>> keep;
  };

  std::string desc_;
  hipStream_t stream_ = nullptr;
  Scratch scratch_in_, scratch_out_, scratch_work_;
  // Rows of a tiled weight on their way into its tiles: a loader's chunk (64 MB), kept for the next.
  Scratch scratch_upload_;
  IntRing ints_;
  PinnedScratch pinned_back_;
  std::unique_ptr<Capture> capture_;

  const int32_t* ints(const int32_t* host, int64_t n, const char* op) {
    if (!capture_) return ints_.put(host, n, op, stream_);
    for (size_t i = 0; i < capture_->inputs.size(); i++)
      if (capture_->inputs[i].data == host && capture_->inputs[i].count == n)
        return static_cast<const int32_t*>(capture_->dev->data) + capture_->offsets[i];
    throw GretaError("EINVAL", std::string(op) + ": in a graph capture, index arrays must be the graph's inputs");
  }

  void* scratch(Scratch& s, size_t bytes, const char* op) {
    void* p = s.get(bytes, op);
    if (capture_) capture_->keep.push_back(s.buf);
    return p;
  }

  // A copy to or from the host, in stream order, finished when it returns.
  void copy_sync(void* dst, const void* src, size_t bytes, hipMemcpyKind kind, const std::string& op) {
    check(hipMemcpyAsync(dst, src, bytes, kind, stream_), op);
    check(hipStreamSynchronize(stream_), op);
  }

  static RowSummary summary_of(const GretaSummary& h) {
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
    return s;
  }

  void not_capturing(const char* op) const {
    if (capture_) throw GretaError("EINVAL", std::string(op) + ": not allowed in a graph capture (it needs the host)");
  }
};

}  // namespace

int hip_device_count() {
  int n = 0;
  if (hipGetDeviceCount(&n) != hipSuccess) return 0;
  return n;
}

std::shared_ptr<Backend> make_hip_backend(int device) { return std::make_shared<HipBackend>(device); }

}  // namespace greta
