// Real writers of safetensors and GGUF files for tests (the implementation lives in
// src/loaders/writers.ts, where the fuzzer builds its seed files with it too).
export {
  buildGguf,
  buildSafetensors,
  ggmlBytes,
  numberToBf16,
  numberToF16,
  quantizeQ8_0,
  safetensorsBytes,
  writeGguf,
  writeSafetensors,
  writeShardedSafetensors,
  type GgufKv,
  type GgufLayout,
  type GgufSpec,
  type GgufTensorSpec,
  type SafetensorsTensor,
} from '../../src/loaders/writers.js';
export { GGUF_TYPE, GGML_TYPE_ID, f16ToNumber } from '../../src/loaders/gguf.js';
