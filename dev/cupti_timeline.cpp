// Kernel timeline without Nsight Systems (NVIDIA): a CUPTI injection library
// that records every kernel's start and end on the device, graph replays'
// kernels included, and writes them as CSV when the process exits. For
// dev/decode_timeline.py, where nsys is not installed:
//   g++ -O2 -shared -fPIC -I$CUDA/include dev/cupti_timeline.cpp -L$CUDA/lib -lcupti -o libgreta_timeline.so
//   CUDA_INJECTION64_PATH=$PWD/libgreta_timeline.so GRETA_TIMELINE_OUT=step.csv node dev/decode_profile.mjs 10
//   python3 dev/decode_timeline.py step.csv
// Columns: start_ns, end_ns, graph_node_id, kernel name (CUPTI's, mangled).
#include <cupti.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct Row {
  uint64_t start, end, node;
  std::string name;
};
std::vector<Row> rows;
std::mutex rows_mutex;
constexpr size_t BUFFER_BYTES = 8 << 20;

void CUPTIAPI requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(aligned_alloc(8, BUFFER_BYTES));
  *size = BUFFER_BYTES;
  *max_records = 0;
}

void CUPTIAPI completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* record = nullptr;
  std::lock_guard<std::mutex> lock(rows_mutex);
  while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && record->kind != CUPTI_ACTIVITY_KIND_KERNEL) continue;
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
    rows.push_back({k->start, k->end, k->graphNodeId, k->name ? k->name : "?"});
  }
  free(buffer);
}

void write_rows() {
  cuptiActivityFlushAll(1);
  const char* path = std::getenv("GRETA_TIMELINE_OUT");
  FILE* f = std::fopen(path && *path ? path : "timeline.csv", "w");
  if (!f) return;
  std::fprintf(f, "start_ns,end_ns,graph_node_id,name\n");
  std::lock_guard<std::mutex> lock(rows_mutex);
  for (const Row& r : rows)
    std::fprintf(f, "%llu,%llu,%llu,%s\n", static_cast<unsigned long long>(r.start), static_cast<unsigned long long>(r.end),
                 static_cast<unsigned long long>(r.node), r.name.c_str());
  std::fclose(f);
}

}  // namespace

// Called by the CUDA driver at initialisation when CUDA_INJECTION64_PATH names this library.
extern "C" int InitializeInjection(void) {
  if (cuptiActivityRegisterCallbacks(requested, completed) != CUPTI_SUCCESS) return 0;
  if (cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) return 0;
  std::atexit(write_rows);
  return 1;
}
