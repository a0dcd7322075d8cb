#!/usr/bin/env bash
# On the GPU machine, in the packed tree (scripts/gpu/pack.sh): unpacks Node
# and node_modules, runs the GPU test suite, a traced 8B-shaped run, the
# selftest at 8B shape, the benchmark (with PyTorch's rows where it is
# installed) and 1000 traces in one process for memory, and writes their logs
# and the bench's JSON to the directory given (default gpu-results/).
set -euo pipefail
cd "$(dirname "$0")/../.."
results=${1:-gpu-results}
mkdir -p "$results" /tmp/greta-node
xz -dc .gpu/node.xz > /tmp/greta-node/node
chmod +x /tmp/greta-node/node
export PATH=/tmp/greta-node:$PATH
[ -d node_modules/vitest ] || tar xJf .gpu/node_modules.tar.xz
(nvidia-smi -L 2>/dev/null || rocm-smi --showproductname 2>/dev/null || true) | tee "$results/device.txt"
set +e
node node_modules/vitest/vitest.mjs run --config vitest.gpu.config.ts 2>&1 | tee "$results/test-gpu.log"
tests=${PIPESTATUS[0]}
node dist/cli/main.js trace --backend hip --model synthetic:llama3-8b --prompt p0_short,p4_sys,p6_long \
  --layers 0,1,2,15,31 --out "$results/trace-llama3-8b.jsonl" 2>&1 | tee "$results/trace-llama3-8b.log"
trace=${PIPESTATUS[0]}
rm -f "$results"/trace-llama3-8b.jsonl "$results"/trace-llama3-8b.rows.bin
/usr/bin/time -f 'selftest wall %e s, max RSS %M kB' node dist/cli/main.js selftest --backend hip --model synthetic:llama3-8b \
  2>&1 | tee "$results/selftest-llama3-8b.log"
selftest=${PIPESTATUS[0]}
[ -f .gpu/commit ] && export GRETA_COMMIT=$(cat .gpu/commit)
node dist/bench/main.js --backend hip --json "$results/bench-hip.json" 2>&1 | tee "$results/bench-hip.log"
bench=${PIPESTATUS[0]}
node --expose-gc dist/bench/memory.js --backend hip --runs "${MEMORY_RUNS:-1000}" 2>&1 | tee "$results/memory-hip.log"
memory=${PIPESTATUS[0]}
exit $(( tests || trace || selftest || bench || memory ))
