// Tensor storage shared by every backend. A Tensor is a row-major view
// (offset + shape) into a Storage block owned by the backend that made it,
// so a row view of an activation keeps its parent alive without a copy.
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bits.h"

namespace greta {

enum class DType : int32_t { F32 = 0, F64 = 1, F16 = 2, BF16 = 3, I32 = 4 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I32: return 4;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
  }
  return "?";
}

// Errors that reach JavaScript as exceptions carrying `code`.
struct GretaError : std::runtime_error {
  std::string code;
  GretaError(std::string c, const std::string& msg) : std::runtime_error(msg), code(std::move(c)) {}
};

// Raw bytes of one allocation. Backends subclass it to release device memory.
// Every block is counted while it lives: a process that runs the model many
// times checks that the count returns to where it was (memory bench), exactly,
// where RSS only says so within its noise.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Storage() { live_blocks().fetch_add(1, std::memory_order_relaxed); }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  virtual ~Storage() { live_blocks().fetch_sub(1, std::memory_order_relaxed); }
  static std::atomic<int64_t>& live_blocks() {
    static std::atomic<int64_t> n{0};
    return n;
  }
};

// Large blocks are mapped from the OS and unmapped when freed, so memory a run
// gave back is gone from the process; through malloc it can stay in the
// heap's arenas (glibc raises its mmap threshold after the first large free)
// and the RSS of a process that runs the model many times creeps up.
struct HostStorage : Storage {
  static constexpr size_t MAP_BYTES = size_t{1} << 20;
  explicit HostStorage(size_t n) {
    bytes = n;
    if (n >= MAP_BYTES) {
      void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      data = p;
    } else {
      data = n ? ::operator new(n) : nullptr;
    }
  }
  ~HostStorage() override {
    if (bytes >= MAP_BYTES)
      munmap(data, bytes);
    else
      ::operator delete(data);
  }
};

struct Tensor {
  std::shared_ptr<Storage> storage;
  size_t offset_bytes = 0;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  // A matmul weight may be stored tiled instead of row-major (hip: in the
  // matrix units' operand order, hip/mma.h): its storage then holds the
  // weight it was allocated as, offset_bytes is 0 and a row view keeps its
  // first row in row0. Only the ops that take a weight read one; upload,
  // download and fillUniform move its rows in the row-major order.
  bool tiled = false;
  int64_t row0 = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t rows() const { return shape.size() < 2 ? 1 : shape[0]; }
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  void* ptr() const { return static_cast<char*>(storage->data) + offset_bytes; }
  template <typename T> T* as() const { return static_cast<T*>(ptr()); }
  std::string describe() const {
    std::string s = std::string(dtype_name(dtype)) + "[";
    for (size_t i = 0; i < shape.size(); i++) s += (i ? "," : "") + std::to_string(shape[i]);
    return s + (tiled ? "] (tiled)" : "]");
  }
};

}  // namespace greta
