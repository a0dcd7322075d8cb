// N-API glue only: converts JS values to the op contract (backend.h), runs
// the shared checks (checks.h), and turns every C++ failure into a JS
// exception with a `code`. Nothing here aborts the process.
#include <napi.h>

#include <cmath>
#include <cstring>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "checks.h"
#include "file_queue.h"
#include "cpu/cpu_backend.h"
#ifdef GRETA_HAVE_HIP
#include "../hip/hip_backend.h"
#endif

namespace greta {
namespace {

[[noreturn]] void throw_js(Napi::Env env, const std::string& code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  throw e;
}

// Runs fn, converting C++ exceptions into JS exceptions with a code.
template <typename F>
auto guarded(Napi::Env env, F fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const GretaError& e) {
    throw_js(env, e.code, e.what());
  } catch (const std::bad_alloc&) {
    throw_js(env, "ENOMEM", "out of host memory");
  } catch (const std::exception& e) {
    throw_js(env, "EINTERNAL", e.what());
  }
}

std::vector<std::string> kinds() {
  std::vector<std::string> k = {"cpu", "cpu-fp64"};
#ifdef GRETA_HAVE_HIP
  k.push_back("hip");
#endif
  return k;
}

std::string kinds_list() {
  std::string s;
  for (const auto& k : kinds()) s += (s.empty() ? "" : ", ") + k;
  return s;
}

DType parse_dtype(Napi::Env env, const std::string& s) {
  if (s == "f32") return DType::F32;
  if (s == "f64") return DType::F64;
  if (s == "f16") return DType::F16;
  if (s == "bf16") return DType::BF16;
  if (s == "i32") return DType::I32;
  throw_js(env, "EINVAL", "unknown dtype '" + s + "' (allowed: f32, f64, f16, bf16, i32)");
}

class TensorWrap : public Napi::ObjectWrap<TensorWrap> {
 public:
  static Napi::FunctionReference ctor;

  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "Tensor",
                                   {
                                       InstanceAccessor<&TensorWrap::GetDtype>("dtype"),
                                       InstanceAccessor<&TensorWrap::GetShape>("shape"),
                                       InstanceAccessor<&TensorWrap::GetBackend>("backend"),
                                       InstanceMethod<&TensorWrap::Rows>("rows"),
                                       InstanceMethod<&TensorWrap::Reshape>("reshape"),
                                       InstanceMethod<&TensorWrap::Free>("free"),
                                   });
    ctor = Napi::Persistent(f);
    ctor.SuppressDestruct();
    return f;
  }

  explicit TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) {}

  ~TensorWrap() override { release(); }

  static Napi::Object Wrap(Napi::Env env, Tensor t, const std::string& backend) {
    Napi::Object o = ctor.New({});
    TensorWrap* w = Unwrap(o);
    w->tensor_ = std::move(t);
    w->backend_ = backend;
    w->env_ = env;
    // A view shares its parent's storage; only the owner reports the bytes.
    if (w->tensor_.offset_bytes == 0 && w->tensor_.storage && w->tensor_.storage.use_count() == 1) {
      w->accounted_ = static_cast<int64_t>(w->tensor_.storage->bytes);
      Napi::MemoryManagement::AdjustExternalMemory(env, w->accounted_);
    }
    return o;
  }

  const Tensor& tensor(Napi::Env env) const {
    if (!tensor_.storage) throw_js(env, "EFREED", "tensor was already freed");
    return tensor_;
  }

 private:
  Tensor tensor_;
  std::string backend_;
  Napi::Env env_ = nullptr;
  int64_t accounted_ = 0;

  void release() {
    if (accounted_ && env_) Napi::MemoryManagement::AdjustExternalMemory(env_, -accounted_);
    accounted_ = 0;
    tensor_.storage.reset();
  }

  Napi::Value GetDtype(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), dtype_name(tensor_.dtype)); }
  Napi::Value GetBackend(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), backend_); }
  Napi::Value GetShape(const Napi::CallbackInfo& info) {
    Napi::Array a = Napi::Array::New(info.Env(), tensor_.shape.size());
    for (size_t i = 0; i < tensor_.shape.size(); i++) a.Set(i, Napi::Number::New(info.Env(), static_cast<double>(tensor_.shape[i])));
    return a;
  }
  // rows(start, count): a view of `count` rows of a 2-D tensor, sharing storage.
  Napi::Value Rows(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor& t = tensor(info.Env());
      int64_t start = info[0].As<Napi::Number>().Int64Value();
      int64_t count = info[1].As<Napi::Number>().Int64Value();
      GRETA_EXPECT(t.shape.size() == 2, "rows", "tensor " + t.describe() + " is not 2-D");
      GRETA_EXPECT(start >= 0 && count >= 1 && start + count <= t.shape[0], "rows",
             "rows [" + std::to_string(start) + ", " + std::to_string(start + count) + ") are outside " + t.describe());
      Tensor v = t;
      if (t.tiled)
        v.row0 += start;
      else
        v.offset_bytes += static_cast<size_t>(start * t.shape[1]) * dtype_size(t.dtype);
      v.shape[0] = count;
      return Wrap(info.Env(), std::move(v), backend_);
    });
  }
  // reshape(rows, cols): the first rows * cols elements as a [rows, cols] view.
  Napi::Value Reshape(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor& t = tensor(info.Env());
      GRETA_EXPECT(info.Length() >= 2 && info[0].IsNumber() && info[1].IsNumber(), "reshape",
                   "arguments must be (rows: number, cols: number)");
      GRETA_EXPECT(!t.tiled, "reshape", "tensor " + t.describe() + " is a matmul weight, whose rows are not in row-major order");
      const int64_t rows = info[0].As<Napi::Number>().Int64Value();
      const int64_t cols = info[1].As<Napi::Number>().Int64Value();
      GRETA_EXPECT(rows >= 1 && cols >= 1 && rows <= t.numel() / cols, "reshape",
                   "[" + std::to_string(rows) + ", " + std::to_string(cols) + "] does not fit in " + t.describe() +
                       " (allowed: at most its " + std::to_string(t.numel()) + " elements)");
      Tensor v = t;
      v.shape = {rows, cols};
      return Wrap(info.Env(), std::move(v), backend_);
    });
  }
  Napi::Value Free(const Napi::CallbackInfo& info) {
    release();
    return info.Env().Undefined();
  }
};

Napi::FunctionReference TensorWrap::ctor;

// While a graph is captured, the storage of every tensor an op takes, which
// the graph keeps alive (Graph::keep).
std::vector<std::shared_ptr<Storage>>* capture_keep = nullptr;

// A tiled tensor (a matmul weight: native/tensor.h) goes only where `weight`:
// the ops that read a weight, and the moves of its rows.
void refuse_tiled(Napi::Env env, const Tensor& t, const std::string& what) {
  if (t.tiled)
    throw_js(env, "EINVAL",
             what + " " + t.describe() +
                 " is a matmul weight (allowed there: other tensors; a matmul weight goes to upload, download, "
                 "fillUniform, rows, embedding's table and the weight of matmul and matmulVariant)");
}

const Tensor& T(const Napi::CallbackInfo& info, size_t i, bool weight = false) {
  if (!info[i].IsObject() || !info[i].As<Napi::Object>().InstanceOf(TensorWrap::ctor.Value()))
    throw_js(info.Env(), "EINVAL", "argument " + std::to_string(i) + " must be a Tensor");
  const Tensor& t = TensorWrap::Unwrap(info[i].As<Napi::Object>())->tensor(info.Env());
  if (!weight) refuse_tiled(info.Env(), t, "argument " + std::to_string(i));
  if (capture_keep) capture_keep->push_back(t.storage);
  return t;
}

// An Int32Array, read in place: the ops copy what they keep, and a graph
// capture matches its inputs by this address. `what` names it in the error.
IntSpan I32s(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw_js(env, "EINVAL", what + " must be an Int32Array");
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  return {a.Data(), static_cast<int64_t>(a.ElementLength())};
}
IntSpan I32s(const Napi::CallbackInfo& info, size_t i) {
  return I32s(info.Env(), info[i], "argument " + std::to_string(i));
}

// A Tensor or an array of them (the several outputs of one fused op).
std::vector<Tensor> Ts(Napi::Env env, Napi::Value v, const std::string& op, const std::string& what) {
  auto one = [&](Napi::Value e, const std::string& name) {
    if (!e.IsObject() || !e.As<Napi::Object>().InstanceOf(TensorWrap::ctor.Value()))
      throw_js(env, "EINVAL", op + ": " + name + " must be a Tensor");
    Tensor t = TensorWrap::Unwrap(e.As<Napi::Object>())->tensor(env);
    refuse_tiled(env, t, op + ": " + name);
    if (capture_keep) capture_keep->push_back(t.storage);
    return t;
  };
  if (!v.IsArray()) return {one(v, what)};
  Napi::Array a = v.As<Napi::Array>();
  std::vector<Tensor> ts;
  for (uint32_t k = 0; k < a.Length(); k++) ts.push_back(one(a.Get(k), what + "[" + std::to_string(k) + "]"));
  return ts;
}
std::vector<Tensor> Ts(const Napi::CallbackInfo& info, size_t i, const std::string& op, const std::string& what) {
  if (!info[i].IsArray()) return {T(info, i)};
  return Ts(info.Env(), info[i], op, what);
}

int Int(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }
double Num(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().DoubleValue(); }

// A JS number as JS would print it (enough for the values in error messages).
std::string num_str(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string hex64(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

Napi::Object summary_to_js(Napi::Env env, const RowSummary& s) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("mean", s.mean);
  r.Set("abs_mean", s.abs_mean);
  r.Set("rms", s.rms);
  r.Set("min", s.min);
  r.Set("max", s.max);
  r.Set("nan", static_cast<double>(s.nan));
  r.Set("inf", static_cast<double>(s.inf));
  r.Set("hash", hex64(s.hash));
  Napi::Float64Array sv = Napi::Float64Array::New(env, s.sample.size());
  std::memcpy(sv.Data(), s.sample.data(), s.sample.size() * sizeof(double));
  r.Set("sample", sv);
  return r;
}

// A captured decode step (Backend::capture_begin): launch(inputs) replays it
// with new index inputs; free() releases it and the storage it kept.
class GraphWrap : public Napi::ObjectWrap<GraphWrap> {
 public:
  static Napi::FunctionReference ctor;

  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "Graph",
                                   {
                                       InstanceAccessor<&GraphWrap::GetNodes>("nodes"),
                                       InstanceMethod<&GraphWrap::Launch>("launch"),
                                       InstanceMethod<&GraphWrap::Free>("free"),
                                   });
    ctor = Napi::Persistent(f);
    ctor.SuppressDestruct();
    return f;
  }

  explicit GraphWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GraphWrap>(info) {}

  static Napi::Object Wrap(std::shared_ptr<Graph> g, std::shared_ptr<Backend> b) {
    Napi::Object o = ctor.New({});
    GraphWrap* w = Unwrap(o);
    w->graph_ = std::move(g);
    w->backend_ = std::move(b);  // the graph replays on the backend's stream
    return o;
  }

 private:
  // backend_ first: members go in reverse order, so the graph is destroyed
  // (waiting on the backend's stream) while the backend still exists.
  std::shared_ptr<Backend> backend_;
  std::shared_ptr<Graph> graph_;

  Graph& graph(Napi::Env env) {
    if (!graph_) throw_js(env, "EFREED", "graph was already freed");
    return *graph_;
  }

  Napi::Value GetNodes(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value { return Napi::Number::New(info.Env(), static_cast<double>(graph(info.Env()).nodes())); });
  }

  // launch(inputs: Int32Array[]): each as long as at capture.
  Napi::Value Launch(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Graph& g = graph(info.Env());
      GRETA_EXPECT(info[0].IsArray(), "graph.launch", "inputs must be an array of Int32Array");
      Napi::Array a = info[0].As<Napi::Array>();
      GRETA_EXPECT(a.Length() == g.input_counts.size(), "graph.launch",
                   std::to_string(a.Length()) + " inputs given, the graph was captured with " + std::to_string(g.input_counts.size()));
      std::vector<const int32_t*> ptrs;
      for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Value v = a.Get(i);
        GRETA_EXPECT(v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array, "graph.launch",
                     "inputs[" + std::to_string(i) + "] must be an Int32Array");
        Napi::Int32Array arr = v.As<Napi::Int32Array>();
        GRETA_EXPECT(static_cast<int64_t>(arr.ElementLength()) == g.input_counts[i], "graph.launch",
                     "inputs[" + std::to_string(i) + "] has " + std::to_string(arr.ElementLength()) + " values, the graph was captured with " +
                         std::to_string(g.input_counts[i]));
        ptrs.push_back(arr.Data());
      }
      g.launch(ptrs);
      return info.Env().Undefined();
    });
  }

  Napi::Value Free(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      graph_.reset();
      backend_.reset();
      return info.Env().Undefined();
    });
  }
};

Napi::FunctionReference GraphWrap::ctor;

class FenceWrap : public Napi::ObjectWrap<FenceWrap> {
 public:
  static Napi::FunctionReference ctor;

  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "Fence", {InstanceMethod<&FenceWrap::Wait>("wait")});
    ctor = Napi::Persistent(f);
    ctor.SuppressDestruct();
    return f;
  }

  explicit FenceWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FenceWrap>(info) {}

  static Napi::Object Wrap(std::shared_ptr<Fence> f, std::shared_ptr<Backend> b) {
    Napi::Object o = ctor.New({});
    FenceWrap* w = Unwrap(o);
    w->fence_ = std::move(f);
    w->backend_ = std::move(b);
    return o;
  }

 private:
  std::shared_ptr<Backend> backend_;  // outlives the fence (members go in reverse order)
  std::shared_ptr<Fence> fence_;

  Napi::Value Wait(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      fence_->wait();
      return info.Env().Undefined();
    });
  }
};

Napi::FunctionReference FenceWrap::ctor;

// new FileQueue(): write(fd, bytes, label) -> ticket, wait(ticket), close().
// The bytes stay referenced until a wait has seen them written.
class FileQueueWrap : public Napi::ObjectWrap<FileQueueWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "FileQueue",
                       {
                           InstanceMethod<&FileQueueWrap::Write>("write"),
                           InstanceMethod<&FileQueueWrap::WriteStageLines>("writeStageLines"),
                           InstanceMethod<&FileQueueWrap::Wait>("wait"),
                           InstanceMethod<&FileQueueWrap::Close>("close"),
                       });
  }

  explicit FileQueueWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FileQueueWrap>(info) {
    guarded(info.Env(), [&] {
      q_ = std::make_unique<FileQueue>();
      return 0;
    });
  }

 private:
  // held_ before q_: a queue dropped unclosed finishes its writes (its
  // destructor joins the thread) before the bytes are let go.
  std::deque<std::pair<uint64_t, Napi::Reference<Napi::Value>>> held_;
  std::unique_ptr<FileQueue> q_;
  uint64_t last_ = 0;

  FileQueue& queue(Napi::Env env) {
    if (!q_) throw_js(env, "EFREED", "file queue was already closed");
    return *q_;
  }

  void release_done(uint64_t upto) {
    while (!held_.empty() && held_.front().first <= upto) held_.pop_front();
  }

  Napi::Value Write(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      FileQueue& q = queue(info.Env());
      GRETA_EXPECT(info[0].IsNumber() && info[1].IsTypedArray() && info[2].IsString(), "fileQueue.write",
                   "arguments must be (fd: number, data: typed array, label: string)");
      Napi::TypedArray a = info[1].As<Napi::TypedArray>();
      const uint8_t* data = static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
      last_ = q.push(info[0].As<Napi::Number>().Int32Value(), data, a.ByteLength(), info[2].As<Napi::String>().Utf8Value());
      held_.emplace_back(last_, Napi::Persistent(info[1]));
      release_done(q.done());
      return Napi::Number::New(info.Env(), static_cast<double>(last_));
    });
  }

  // writeStageLines(fd, label, heads: string[], tails: string[], host: ArrayBuffer, statsAt, spans: Int32Array,
  // elemBytes, rowFile: JSON string, rowOffset) -> ticket. Record r is heads[r], its statistics and hash (the
  // f64 [SPAN_STATS] of record r from statsAt in host), its sample (of the row of spans[2r + 1] elements at element
  // spans[2r] of host, before statsAt, f32 or f64 by elemBytes), its row reference in rowFile at rowOffset + spans[2r] *
  // elemBytes, then tails[r] and the closing brace (native/stage_lines.h). What it needs of host is copied
  // before it returns.
  Napi::Value WriteStageLines(const Napi::CallbackInfo& info) {
    static_assert(StageLines::STATS + 1 == SPAN_STATS, "a span's statistics, then its hash");
    return guarded(info.Env(), [&]() -> Napi::Value {
      FileQueue& q = queue(info.Env());
      const char* op = "fileQueue.writeStageLines";
      GRETA_EXPECT(info.Length() == 10 && info[0].IsNumber() && info[1].IsString() && info[2].IsArray() &&
                       info[3].IsArray() && info[4].IsArrayBuffer() && info[5].IsNumber() && info[6].IsTypedArray() &&
                       info[7].IsNumber() && info[8].IsString() && info[9].IsNumber(),
                   op,
                   "arguments must be (fd, label, heads: string[], tails: string[], host: ArrayBuffer, statsAt, "
                   "spans: Int32Array, elemBytes, rowFile, rowOffset)");
      Napi::Array heads = info[2].As<Napi::Array>(), tails = info[3].As<Napi::Array>();
      Napi::ArrayBuffer host = info[4].As<Napi::ArrayBuffer>();
      Napi::TypedArray spans_arr = info[6].As<Napi::TypedArray>();
      GRETA_EXPECT(spans_arr.TypedArrayType() == napi_int32_array, op, "spans must be an Int32Array");
      const int32_t* spans = reinterpret_cast<const int32_t*>(static_cast<const uint8_t*>(spans_arr.ArrayBuffer().Data()) +
                                                              spans_arr.ByteOffset());
      const size_t n = heads.Length();
      const int64_t elem = info[7].As<Napi::Number>().Int64Value();
      const int64_t stats_at = info[5].As<Napi::Number>().Int64Value();
      const size_t bytes = host.ByteLength();
      GRETA_EXPECT(tails.Length() == n && spans_arr.ElementLength() == 2 * n, op,
                   "heads, tails and spans must describe the same records");
      GRETA_EXPECT(elem == 4 || elem == 8, op, "elemBytes must be 4 or 8, got " + std::to_string(elem));
      GRETA_EXPECT(stats_at >= 0 && stats_at % 8 == 0 && static_cast<size_t>(stats_at) + n * SPAN_STATS * 8 <= bytes, op,
                   "statistics at byte " + std::to_string(stats_at) + " do not fit the host buffer");
      const uint8_t* base = static_cast<const uint8_t*>(host.Data());
      auto lines = std::make_unique<StageLines>();
      lines->elem_bytes = elem;
      lines->row_file = info[8].As<Napi::String>().Utf8Value();
      lines->row_offset = info[9].As<Napi::Number>().Int64Value();
      for (size_t r = 0; r < n; r++) {
        const int64_t at = spans[2 * r], w = spans[2 * r + 1];
        GRETA_EXPECT(at >= 0 && w > 0 && (at + w) * elem <= stats_at, op,
                     "record " + std::to_string(r) + "'s row does not fit the host buffer before the statistics");
        lines->heads += heads.Get(static_cast<uint32_t>(r)).As<Napi::String>().Utf8Value();
        lines->head_end.push_back(lines->heads.size());
        lines->tails += tails.Get(static_cast<uint32_t>(r)).As<Napi::String>().Utf8Value();
        lines->tail_end.push_back(lines->tails.size());
        const uint8_t* st = base + stats_at + r * SPAN_STATS * 8;
        for (int i = 0; i < StageLines::STATS; i++) {
          double v;
          std::memcpy(&v, st + 8 * i, 8);
          lines->stats.push_back(v);
        }
        uint64_t h;
        std::memcpy(&h, st + 8 * StageLines::STATS, 8);
        lines->hash.push_back(h);
        lines->at.push_back(at);
        lines->width.push_back(w);
        for (int64_t i = 0; i < StageLines::sample_count(w); i++) {
          const uint8_t* p = base + (at + StageLines::sample_index(w, i)) * elem;
          if (elem == 4) {
            float f;
            std::memcpy(&f, p, 4);
            lines->samples.push_back(f);
          } else {
            double d;
            std::memcpy(&d, p, 8);
            lines->samples.push_back(d);
          }
        }
      }
      last_ = q.push(info[0].As<Napi::Number>().Int32Value(), std::move(lines), info[1].As<Napi::String>().Utf8Value());
      release_done(q.done());
      return Napi::Number::New(info.Env(), static_cast<double>(last_));
    });
  }

  // wait(ticket?): every write up to ticket (default: all) done; throws the first failure.
  Napi::Value Wait(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      FileQueue& q = queue(info.Env());
      const uint64_t t = info.Length() > 0 && info[0].IsNumber() ? static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue()) : last_;
      q.wait(t);
      release_done(t);
      return info.Env().Undefined();
    });
  }

  // close(): waits for every write, then stops the thread; throws the first failure.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      if (!q_) return info.Env().Undefined();
      std::unique_ptr<FileQueue> q = std::move(q_);
      struct Release {
        FileQueueWrap* self;
        ~Release() { self->held_.clear(); }
      } release{this};
      q->wait(last_);
      return info.Env().Undefined();
    });
  }
};

class BackendWrap : public Napi::ObjectWrap<BackendWrap> {
 public:
  static Napi::FunctionReference ctor;

  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(
        env, "Backend",
        {
            InstanceAccessor<&BackendWrap::GetName>("name"),
            InstanceAccessor<&BackendWrap::GetDevice>("device"),
            InstanceAccessor<&BackendWrap::GetActDtype>("actDtype"),
            InstanceAccessor<&BackendWrap::GetGraphs>("graphs"),
            InstanceMethod<&BackendWrap::CaptureGraph>("captureGraph"),
            InstanceMethod<&BackendWrap::MemInfo>("memInfo"),
            InstanceMethod<&BackendWrap::Alloc>("alloc"),
            InstanceMethod<&BackendWrap::Upload>("upload"),
            InstanceMethod<&BackendWrap::Download>("download"),
            InstanceMethod<&BackendWrap::Copy>("copy"),
            InstanceMethod<&BackendWrap::HostBuffer>("hostBuffer"),
            InstanceMethod<&BackendWrap::FillUniform>("fillUniform"),
            InstanceMethod<&BackendWrap::Embedding>("embedding"),
            InstanceMethod<&BackendWrap::Rmsnorm>("rmsnorm"),
            InstanceMethod<&BackendWrap::Matmul>("matmul"),
            InstanceMethod<&BackendWrap::MatmulVariantOp>("matmulVariant"),
            InstanceMethod<&BackendWrap::AttentionProbe>("attentionProbe"),
            InstanceMethod<&BackendWrap::Rope>("rope"),
            InstanceMethod<&BackendWrap::KvWrite>("kvWrite"),
            InstanceMethod<&BackendWrap::Attention>("attention"),
            InstanceMethod<&BackendWrap::SiluMul>("siluMul"),
            InstanceMethod<&BackendWrap::Add>("add"),
            InstanceMethod<&BackendWrap::AddRmsnorm>("addRmsnorm"),
            InstanceMethod<&BackendWrap::Topk>("topk"),
            InstanceMethod<&BackendWrap::Summarize>("summarize"),
            InstanceMethod<&BackendWrap::SummarizeSpans>("summarizeSpans"),
            InstanceMethod<&BackendWrap::CopyToHost>("copyToHost"),
            InstanceMethod<&BackendWrap::MakeFence>("fence"),
        });
    ctor = Napi::Persistent(f);
    ctor.SuppressDestruct();
    return f;
  }

  explicit BackendWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BackendWrap>(info) {
    guarded(info.Env(), [&] {
      std::string kind = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
      if (kind == "cpu") {
        b_ = make_cpu_backend(false);
      } else if (kind == "cpu-fp64") {
        b_ = make_cpu_backend(true);
#ifdef GRETA_HAVE_HIP
      } else if (kind == "hip") {
        b_ = make_hip_backend(0);
#endif
      } else {
        throw_js(info.Env(), "EINVAL", "unknown backend '" + kind + "' (this build has: " + kinds_list() + ")");
      }
      return 0;
    });
  }

 private:
  std::shared_ptr<Backend> b_;

  Napi::Value Wrap(Napi::Env env, Tensor t) { return TensorWrap::Wrap(env, std::move(t), b_->name()); }

  Napi::Value GetName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), b_->name()); }
  Napi::Value GetDevice(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), b_->device()); }
  Napi::Value GetActDtype(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), dtype_name(b_->act_dtype())); }

  Napi::Value GetGraphs(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), b_->can_capture()); }

  // captureGraph(inputs: Int32Array[], record: () => void) -> Graph: the ops
  // record() calls are captured, not run; the index arrays they take must be
  // among inputs. A throw inside record() ends the capture and is rethrown.
  Napi::Value CaptureGraph(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      GRETA_EXPECT(info.Length() >= 2 && info[0].IsArray() && info[1].IsFunction(), "captureGraph",
                   "arguments must be (inputs: Int32Array[], record: () => void)");
      GRETA_EXPECT(capture_keep == nullptr, "captureGraph", "a capture is already under way");
      Napi::Array a = info[0].As<Napi::Array>();
      std::vector<IntSpan> inputs;
      for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Value v = a.Get(i);
        GRETA_EXPECT(v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array, "captureGraph",
                     "inputs[" + std::to_string(i) + "] must be an Int32Array");
        Napi::Int32Array arr = v.As<Napi::Int32Array>();
        inputs.push_back({arr.Data(), static_cast<int64_t>(arr.ElementLength())});
      }
      std::vector<std::shared_ptr<Storage>> keep;
      b_->capture_begin(inputs);
      capture_keep = &keep;
      try {
        info[1].As<Napi::Function>().Call({});
      } catch (...) {
        capture_keep = nullptr;
        b_->capture_abort();
        throw;
      }
      capture_keep = nullptr;
      std::shared_ptr<Graph> g = b_->capture_end();
      g->keep.insert(g->keep.end(), keep.begin(), keep.end());
      return GraphWrap::Wrap(std::move(g), b_);
    });
  }

  // memInfo() -> { free, total } bytes where this backend's tensors live
  Napi::Value MemInfo(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      size_t free_b = 0, total_b = 0;
      b_->mem_info(&free_b, &total_b);
      Napi::Object r = Napi::Object::New(info.Env());
      r.Set("free", static_cast<double>(free_b));
      r.Set("total", static_cast<double>(total_b));
      return r;
    });
  }

  // alloc(dtype, shape[, { matmul }]): matmul: a weight [out, in] for matmul,
  // in the layout the backend's matmul reads (Backend::alloc_weight).
  Napi::Value Alloc(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      DType dt = parse_dtype(info.Env(), info[0].As<Napi::String>().Utf8Value());
      Napi::Array a = info[1].As<Napi::Array>();
      std::vector<int64_t> shape;
      int64_t n = 1;
      for (uint32_t i = 0; i < a.Length(); i++) {
        double d = a.Get(i).As<Napi::Number>().DoubleValue();
        GRETA_EXPECT(d >= 1 && d <= 4e9 && d == static_cast<double>(static_cast<int64_t>(d)), "alloc",
               "dimension " + std::to_string(d) + " must be an integer in [1, 4e9]");
        shape.push_back(static_cast<int64_t>(d));
        GRETA_EXPECT(n <= (int64_t(1) << 40) / shape.back(), "alloc", "tensor of more than 2^40 elements");
        n *= shape.back();
      }
      GRETA_EXPECT(!shape.empty(), "alloc", "shape must have at least one dimension");
      bool weight = false;
      if (info.Length() > 2 && !info[2].IsUndefined()) {
        GRETA_EXPECT(info[2].IsObject(), "alloc", "options must be an object ({ matmul?: boolean })");
        Napi::Value m = info[2].As<Napi::Object>().Get("matmul");
        GRETA_EXPECT(m.IsUndefined() || m.IsBoolean(), "alloc", "options.matmul must be a boolean");
        weight = m.IsBoolean() && m.As<Napi::Boolean>().Value();
      }
      if (weight) {
        GRETA_EXPECT(shape.size() == 2 && (dt == DType::F32 || dt == DType::F16 || dt == DType::BF16), "alloc",
                     std::string("a matmul weight of dtype ") + dtype_name(dt) + " and " + std::to_string(shape.size()) +
                         " dimensions (allowed: 2-D f32, f16 or bf16)");
        return Wrap(info.Env(), b_->alloc_weight(dt, shape));
      }
      return Wrap(info.Env(), b_->alloc(dt, shape));
    });
  }

  // upload(tensor, typedArray[, byteOffset]): without an offset the array must
  // fill the tensor exactly; with one, its bytes land at that offset and must
  // fit inside the tensor (loaders stream a tensor in chunks).
  Napi::Value Upload(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor& t = T(info, 0, true);
      GRETA_EXPECT(info[1].IsTypedArray(), "upload", "data must be a typed array");
      Napi::TypedArray a = info[1].As<Napi::TypedArray>();
      const size_t n = a.ByteLength();
      size_t offset = 0;
      if (info.Length() > 2 && !info[2].IsUndefined()) {
        GRETA_EXPECT(info[2].IsNumber(), "upload", "byteOffset must be a number");
        const double o = info[2].As<Napi::Number>().DoubleValue();
        GRETA_EXPECT(o >= 0 && o == static_cast<double>(static_cast<int64_t>(o)) && o <= static_cast<double>(t.bytes()), "upload",
               "byteOffset " + num_str(o) + " is not an integer in [0, " + std::to_string(t.bytes()) + "]");
        offset = static_cast<size_t>(o);
        GRETA_EXPECT(n <= t.bytes() - offset, "upload",
               std::to_string(n) + " bytes at byteOffset " + std::to_string(offset) + " overrun tensor " + t.describe() + " (" +
                   std::to_string(t.bytes()) + " bytes)");
      } else {
        GRETA_EXPECT(n == t.bytes(), "upload",
               "data has " + std::to_string(n) + " bytes, tensor " + t.describe() + " has " + std::to_string(t.bytes()));
      }
      const uint8_t* src = static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
      b_->upload(t, offset, src, n);
      return info.Env().Undefined();
    });
  }

  // hostBuffer(bytes): an ArrayBuffer in memory that upload reads fastest
  // (page-locked on hip), freed by the garbage collector.
  Napi::Value HostBuffer(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      GRETA_EXPECT(info[0].IsNumber(), "hostBuffer", "bytes must be a number");
      const double d = info[0].As<Napi::Number>().DoubleValue();
      GRETA_EXPECT(d >= 1 && d <= 4294967296.0 && d == static_cast<double>(static_cast<int64_t>(d)), "hostBuffer",
             "bytes " + num_str(d) + " is not an integer in [1, 2^32]");
      const size_t bytes = static_cast<size_t>(d);
      void* p = b_->alloc_host(bytes);
      // The finalizer keeps the backend alive until the buffer is gone.
      auto* owner = new std::shared_ptr<Backend>(b_);
      try {
        return Napi::ArrayBuffer::New(
            info.Env(), p, bytes,
            [](Napi::Env, void* data, std::shared_ptr<Backend>* o) {
              (*o)->free_host(data);
              delete o;
            },
            owner);
      } catch (...) {  // a runtime that refuses external buffers: release, then report
        b_->free_host(p);
        delete owner;
        throw;
      }
    });
  }

  // download(tensor): a typed array matching the dtype (f16/bf16 as Uint16Array).
  Napi::Value Download(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor& t = T(info, 0, true);
      Napi::Env env = info.Env();
      Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, t.bytes());
      b_->download(t, buf.Data());
      size_t n = static_cast<size_t>(t.numel());
      switch (t.dtype) {
        case DType::F32: return Napi::Float32Array::New(env, n, buf, 0);
        case DType::F64: return Napi::Float64Array::New(env, n, buf, 0);
        case DType::I32: return Napi::Int32Array::New(env, n, buf, 0);
        default: return Napi::Uint16Array::New(env, n, buf, 0);
      }
    });
  }

  // fillUniform(tensor, seed: bigint, scale, offset)
  Napi::Value FillUniform(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor& t = T(info, 0, true);
      bool lossless = true;
      uint64_t seed = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
      GRETA_EXPECT(lossless, "fillUniform", "seed must fit in 64 bits");
      b_->fill_uniform(t, seed, Num(info, 2), Num(info, 3));
      return info.Env().Undefined();
    });
  }

  Napi::Value Embedding(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor &out = T(info, 0), &table = T(info, 1, true);
      auto ids = I32s(info, 2);
      check_embedding(*b_, out, table, ids.data, ids.count);
      b_->embedding(out, table, ids.data);
      return info.Env().Undefined();
    });
  }

  Napi::Value Rmsnorm(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor &out = T(info, 0), &x = T(info, 1), &w = T(info, 2);
      double eps = Num(info, 3);
      check_rmsnorm(*b_, out, x, w, eps);
      b_->rmsnorm(out, x, w, eps);
      return info.Env().Undefined();
    });
  }

  // matmul(out | [out, ...], x, w)
  Napi::Value Matmul(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      std::vector<Tensor> outs = Ts(info, 0, "matmul", "outputs");
      const Tensor &x = T(info, 1), &w = T(info, 2, true);
      check_matmul(*b_, outs, x, w);
      b_->matmul(outs, x, w);
      return info.Env().Undefined();
    });
  }

  // matmulVariant(out, x, w, variant: 'f16_accumulate' | 'reverse_k')
  Napi::Value MatmulVariantOp(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor &out = T(info, 0), &x = T(info, 1), &w = T(info, 2, true);
      const std::string name = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
      int variant = name == "f16_accumulate" ? static_cast<int>(MatmulVariant::F16_ACCUMULATE)
                    : name == "reverse_k"    ? static_cast<int>(MatmulVariant::REVERSE_K)
                                             : 0;
      GRETA_EXPECT(variant != 0, "matmulVariant", "variant '" + name + "' is unknown (allowed: f16_accumulate, reverse_k)");
      check_matmul_variant(*b_, out, x, w, variant);
      b_->matmul_variant(out, x, w, static_cast<MatmulVariant>(variant));
      return info.Env().Undefined();
    });
  }

  // rope(x | [x, ...], positions, invFreq, nHeads | [nHeads, ...], headDim, then?)
  Napi::Value Rope(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      std::vector<Tensor> xs = Ts(info, 0, "rope", "x");
      GRETA_EXPECT(!xs.empty(), "rope", "x must not be empty");
      auto pos = I32s(info, 1);
      const Tensor& f = T(info, 2);
      std::vector<int> heads;
      if (info[3].IsArray()) {
        Napi::Array a = info[3].As<Napi::Array>();
        for (uint32_t k = 0; k < a.Length(); k++) heads.push_back(a.Get(k).As<Napi::Number>().Int32Value());
      } else {
        heads.push_back(Int(info, 3));
      }
      GRETA_EXPECT(heads.size() == xs.size(), "rope", std::to_string(xs.size()) + " tensors but " + std::to_string(heads.size()) + " head counts");
      const int hd = Int(info, 4);
      for (size_t k = 0; k < xs.size(); k++) {
        check_rope(*b_, xs[k], pos.count, f, heads[k], hd);
        GRETA_EXPECT(xs[k].rows() == xs[0].rows(), "rope", "x[" + std::to_string(k) + "] " + xs[k].describe() + " and x[0] " + xs[0].describe() + " differ in rows");
      }
      // then: { cache, src, positions }, a kvWrite in the same call, after the rotation.
      KvWrites then;
      const bool has_then = info.Length() > 5 && !info[5].IsUndefined();
      if (has_then) {
        GRETA_EXPECT(info[5].IsObject() && !info[5].IsArray(), "rope", "then must be { cache, src, positions }");
        Napi::Object o = info[5].As<Napi::Object>();
        then.caches = Ts(info.Env(), o.Get("cache"), "rope", "then.cache");
        then.srcs = Ts(info.Env(), o.Get("src"), "rope", "then.src");
        auto wpos = I32s(info.Env(), o.Get("positions"), "rope: then.positions");
        then.pos = wpos.data;
        check_rope_then(*b_, xs, then, wpos.count);
      }
      b_->rope(xs, pos.data, f, hd, has_then ? &then : nullptr);
      return info.Env().Undefined();
    });
  }

  // kvWrite(cache | [cache, ...], src | [src, ...], positions)
  Napi::Value KvWrite(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      std::vector<Tensor> caches = Ts(info, 0, "kv_write", "cache"), srcs = Ts(info, 1, "kv_write", "src");
      auto pos = I32s(info, 2);
      GRETA_EXPECT(!srcs.empty(), "kv_write", "src must not be empty");
      GRETA_EXPECT(caches.size() == srcs.size(), "kv_write", std::to_string(caches.size()) + " caches but " + std::to_string(srcs.size()) + " sources");
      for (size_t k = 0; k < srcs.size(); k++) check_kv_write(*b_, caches[k], srcs[k], pos.data, pos.count);
      b_->kv_write(caches, srcs, pos.data);
      return info.Env().Undefined();
    });
  }

  // { scale?, keyChunk? } at argument i, if there is one.
  static AttentionOptions attention_options(const Napi::CallbackInfo& info, size_t i, const char* op) {
    AttentionOptions opt;
    if (info.Length() > i && info[i].IsObject()) {
      Napi::Object o = info[i].As<Napi::Object>();
      Napi::Value scale = o.Get("scale"), chunk = o.Get("keyChunk");
      if (!scale.IsUndefined()) {
        GRETA_EXPECT(scale.IsNumber(), op, "scale must be a number");
        opt.scale = scale.As<Napi::Number>().DoubleValue();
      }
      if (!chunk.IsUndefined()) {
        GRETA_EXPECT(chunk.IsNumber(), op, "keyChunk must be a number");
        opt.key_chunk = chunk.As<Napi::Number>().Int32Value();
      }
    }
    return opt;
  }

  // attentionProbe(scores, probs, pv, q, kCache, vCache, position, nHeads, nKvHeads, headDim, { scale?, keyChunk? }?)
  Napi::Value AttentionProbe(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor &scores = T(info, 0), &probs = T(info, 1), &pv = T(info, 2), &q = T(info, 3), &k = T(info, 4),
                   &v = T(info, 5);
      int pos = Int(info, 6), nh = Int(info, 7), nkv = Int(info, 8), hd = Int(info, 9);
      AttentionOptions opt = attention_options(info, 10, "attentionProbe");
      check_attention_probe(*b_, scores, probs, pv, q, k, v, pos, nh, nkv, hd, opt);
      b_->attention_probe(scores, probs, pv, q, k, v, pos, nh, nkv, hd, opt);
      return info.Env().Undefined();
    });
  }

  // attention(out, q, kCache, vCache, positions, nHeads, nKvHeads, headDim, { scale?, keyChunk? }?)
  Napi::Value Attention(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor &out = T(info, 0), &q = T(info, 1), &k = T(info, 2), &v = T(info, 3);
      auto pos = I32s(info, 4);
      int nh = Int(info, 5), nkv = Int(info, 6), hd = Int(info, 7);
      AttentionOptions opt = attention_options(info, 8, "attention");
      check_attention(*b_, out, q, k, v, pos.data, pos.count, nh, nkv, hd, opt);
      b_->attention(out, q, k, v, pos.data, nh, nkv, hd, opt);
      return info.Env().Undefined();
    });
  }

  Napi::Value SiluMul(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor &out = T(info, 0), &g = T(info, 1), &u = T(info, 2);
      check_elementwise(*b_, out, g, u, "siluMul");
      b_->silu_mul(out, g, u);
      return info.Env().Undefined();
    });
  }

  Napi::Value Add(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor &out = T(info, 0), &a = T(info, 1), &b = T(info, 2);
      check_elementwise(*b_, out, a, b, "add");
      b_->add(out, a, b);
      return info.Env().Undefined();
    });
  }

  // copy(dst, src) of equal sizes, or copy(dst, src, dstAt, srcAt, count) in flat elements
  Napi::Value Copy(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor &dst = T(info, 0), &src = T(info, 1);
      if (info.Length() <= 2) {
        GRETA_EXPECT(dst.numel() == src.numel(), "copy", "dst " + dst.describe() + " and src " + src.describe() + " differ in size");
        check_copy(dst, 0, src, 0, src.numel());
        b_->copy(dst, 0, src, 0, src.numel());
      } else {
        for (size_t i = 2; i < 5; i++) GRETA_EXPECT(info[i].IsNumber(), "copy", "dstAt, srcAt and count must be numbers");
        const int64_t dst_at = info[2].As<Napi::Number>().Int64Value(), src_at = info[3].As<Napi::Number>().Int64Value(),
                      count = info[4].As<Napi::Number>().Int64Value();
        check_copy(dst, dst_at, src, src_at, count);
        b_->copy(dst, dst_at, src, src_at, count);
      }
      return info.Env().Undefined();
    });
  }

  // addRmsnorm(sum, out, a, b, w, eps)
  Napi::Value AddRmsnorm(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor &sum = T(info, 0), &out = T(info, 1), &a = T(info, 2), &b = T(info, 3), &w = T(info, 4);
      double eps = Num(info, 5);
      check_add_rmsnorm(*b_, sum, out, a, b, w, eps);
      b_->add_rmsnorm(sum, out, a, b, w, eps);
      return info.Env().Undefined();
    });
  }

  // topk(x, k) -> { ids: Int32Array(rows*k), values: Float64Array(rows*k) }
  Napi::Value Topk(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor& x = T(info, 0);
      int k = Int(info, 1);
      check_topk(*b_, x, k);
      Napi::Env env = info.Env();
      size_t n = static_cast<size_t>(x.rows()) * k;
      Napi::Int32Array ids = Napi::Int32Array::New(env, n);
      Napi::Float64Array values = Napi::Float64Array::New(env, n);
      b_->topk(x, k, ids.Data(), values.Data());
      Napi::Object r = Napi::Object::New(env);
      r.Set("ids", ids);
      r.Set("values", values);
      return r;
    });
  }

  // summarize(x, row, sampleIndices: number[]) -> stats, hash (hex), sample
  // summarizeSpans(out, x, spans: Int32Array of (offset, width) pairs): out f64 [n, 8], in stream order
  Napi::Value SummarizeSpans(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor &out = T(info, 0), &x = T(info, 1);
      auto spans = I32s(info, 2);
      check_summarize_spans(*b_, out, x, spans.data, spans.count);
      b_->summarize_spans(out, x, spans.data, spans.count / 2);
      return info.Env().Undefined();
    });
  }

  // copyToHost(src, dst: ArrayBuffer[, byteOffset]): src's bytes land at dst + byteOffset once a later fence passes
  Napi::Value CopyToHost(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor& src = T(info, 0);
      GRETA_EXPECT(info[1].IsArrayBuffer(), "copyToHost", "dst must be an ArrayBuffer (from hostBuffer)");
      Napi::ArrayBuffer dst = info[1].As<Napi::ArrayBuffer>();
      double off = 0;
      if (info.Length() > 2 && !info[2].IsUndefined()) off = info[2].As<Napi::Number>().DoubleValue();
      GRETA_EXPECT(off >= 0 && off == std::floor(off) && off + static_cast<double>(src.bytes()) <= static_cast<double>(dst.ByteLength()),
                   "copyToHost",
                   src.describe() + " (" + std::to_string(src.bytes()) + " bytes) at byteOffset " + num_str(off) + " does not fit the " +
                       std::to_string(dst.ByteLength()) + " bytes of dst");
      b_->copy_to_host(static_cast<uint8_t*>(dst.Data()) + static_cast<size_t>(off), src);
      return info.Env().Undefined();
    });
  }

  // fence() -> Fence: wait() returns once the work issued before it has finished
  Napi::Value MakeFence(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value { return FenceWrap::Wrap(b_->fence(), b_); });
  }

  Napi::Value Summarize(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor& x = T(info, 0);
      int64_t row = info[1].As<Napi::Number>().Int64Value();
      Napi::Array a = info[2].As<Napi::Array>();
      std::vector<int64_t> sample;
      for (uint32_t i = 0; i < a.Length(); i++) sample.push_back(a.Get(i).As<Napi::Number>().Int64Value());
      check_summarize(*b_, x, row, sample);
      return summary_to_js(info.Env(), b_->summarize(x, row, sample));
    });
  }
};

Napi::FunctionReference BackendWrap::ctor;

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#if defined(__GLIBC__)
  // Blocks of 256 kB and more (a row of logits, a weight row widened) are
  // mapped and unmapped by glibc rather than cut from its heap. Left to
  // itself, glibc raises that threshold after the first such free, and a
  // process running the model many times fragments its heap and grows.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
#endif
  exports.Set("Tensor", TensorWrap::Init(env));
  exports.Set("Backend", BackendWrap::Init(env));
  exports.Set("Graph", GraphWrap::Init(env));
  exports.Set("Fence", FenceWrap::Init(env));
  exports.Set("FileQueue", FileQueueWrap::Init(env));
  Napi::Array ks = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& k : kinds()) ks.Set(i++, k);
  exports.Set("backendKinds", ks);
  exports.Set("gpuDeviceCount", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
#ifdef GRETA_HAVE_HIP
                return Napi::Number::New(info.Env(), hip_device_count());
#else
                return Napi::Number::New(info.Env(), 0);
#endif
              }));
  // storageBlocks(): device and host blocks alive in this process (every
  // backend's tensors, scratch and graph inputs).
  exports.Set("storageBlocks", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return Napi::Number::New(info.Env(), static_cast<double>(Storage::live_blocks().load()));
              }));
  // trimHostHeap(): hands the free pages of the C heap back to the OS. Runs
  // free what they took, but glibc keeps freed pages in its arenas; a process
  // that runs the model many times calls this when a session closes so its
  // RSS says what it holds.
  exports.Set("trimHostHeap", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
#if defined(__GLIBC__)
                malloc_trim(0);
#endif
                return info.Env().Undefined();
              }));
  return exports;
}

}  // namespace
}  // namespace greta

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return greta::Init(env, exports); }

NODE_API_MODULE(greta, InitModule)
