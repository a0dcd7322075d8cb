// Lab (NVIDIA, sm_90) for hip/compat.h's overlapping launches: does
// griddepcontrol.wait make the kernel ahead's writes visible, and the one
// before that's, when kernels allow the next launch first, last, or never?
// Writers and checkers alternate over two buffers (each check two kernels
// after its write), in a stream and captured in a graph, 3000 and 60 x 50
// rounds, from 256 to 4M ints on 1 to 264 blocks; plain loads only.
//   nvcc -O2 -arch=sm_90 -std=c++17 dev/pdl_check.cu -o pdl_check && ./pdl_check
// Measured on the H100: no stale read in any of the 72 configurations. The
// stale reads the engine saw came from `const __restrict__` activations read
// through the non-coherent cache (ld.global.nc), which the wait does not
// refresh: hence compat.h's rule that only weights are read that way.
#include <cstdio>
#include <cuda_runtime.h>
__device__ __forceinline__ void allow_next() { asm volatile("griddepcontrol.launch_dependents;"); }
__device__ __forceinline__ void await_prior() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
// mode 0: no trigger, 1: trigger first, 2: trigger at end
__global__ void writer(int* buf, int n, int val, int mode) {
  if (mode == 1) allow_next();
  await_prior();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) buf[i] = val;
  if (mode == 2) allow_next();
}
__global__ void checker(const int* buf, int n, int val, int* bad, int mode) {
  if (mode == 1) allow_next();
  await_prior();
  int b = 0;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) b += buf[i] != val;
  if (b) atomicAdd(bad, b);
  if (mode == 2) allow_next();
}
template <typename... P, typename... A>
void launch(void (*k)(P...), int grid, int block, cudaStream_t s, A... a) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t c = {};
  c.gridDim = grid; c.blockDim = block; c.stream = s; c.attrs = attr; c.numAttrs = 1;
  cudaLaunchKernelEx(&c, k, a...);
}
int main() {
  cudaStream_t s; cudaStreamCreate(&s);
  int *buf, *buf2, *bad; cudaMalloc(&buf, 64 << 20); cudaMalloc(&buf2, 64 << 20); cudaMalloc(&bad, 4);
  for (int graph = 0; graph < 2; graph++)
  for (int mode = 0; mode < 3; mode++)
    for (int n : {256, 4096, 1 << 16, 1 << 22}) for (int grid : {1, 8, 264}) {
      cudaMemset(bad, 0, 4);
      const int iters = graph ? 50 : 3000;
      auto body = [&](int it) {
        launch(writer, grid, 256, s, buf, n, it, mode);
        launch(writer, grid, 256, s, buf2, n, it, mode);
        launch(checker, grid, 256, s, (const int*)buf, n, it, bad, mode);
        launch(checker, grid, 256, s, (const int*)buf2, n, it, bad, mode);
      };
      if (!graph) {
        for (int it = 1; it <= iters; it++) body(it);
      } else {
        cudaGraph_t g; cudaGraphExec_t e;
        cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
        for (int it = 1; it <= iters; it++) body(it);
        cudaStreamEndCapture(s, &g);
        cudaGraphInstantiateWithFlags(&e, g, 0);
        for (int r = 0; r < 60; r++) cudaGraphLaunch(e, s);
        cudaStreamSynchronize(s);
        cudaGraphExecDestroy(e); cudaGraphDestroy(g);
      }
      int h = 0; cudaMemcpy(&h, bad, 4, cudaMemcpyDeviceToHost);
      printf("%s mode %d (%s) n %8d grid %3d: %d stale reads  %s\n", graph ? "graph " : "stream", mode, mode == 0 ? "implicit" : mode == 1 ? "first   " : "at end  ", n, grid, h, cudaGetErrorString(cudaGetLastError()));
    }
  return 0;
}
