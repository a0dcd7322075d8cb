#!/usr/bin/env bash
# Writes docs/gpu-results.md's content (to stdout) from the logs of scripts/gpu/run.sh.
#   scripts/gpu/report.sh RESULTS_DIR DATE > docs/gpu-results.md
set -euo pipefail
D=$1
DATE=$2
device=$(sed -n 's/^GPU 0: \([^(]*\) (UUID.*/\1/p' "$D/device.txt" | sed 's/ *$//')
seed=$(grep -o 'GRETA_TEST_SEED=[0-9]*' "$D/test-gpu.log" | head -n 1)
tests=$(grep -E "^ +Tests " "$D/test-gpu.log" | sed -E "s/^ *Tests +/GPU tests: /")
cat <<EOF
# GPU results

Measured on $DATE on an ${device:-unknown GPU}, the HIP sources compiled as CUDA for sm_90a (the default CUDA_ARCHS)
through \`hip/compat.h\`. Commands, from the repository root:

\`\`\`sh
scripts/gpu/pack.sh               # build machine: npm run build:hip, tsc, pack Node and node_modules
scripts/gpu/run.sh results        # GPU machine: test:gpu, a Llama-3-8B-shaped trace, the selftest, bench, bench:memory
scripts/gpu/report.sh results $DATE > docs/gpu-results.md
\`\`\`

\`test:gpu\` draws fresh inputs each run; this run's were $seed. $tests.

## E1 on the GPU: prefill_last vs decode0, every layer and point

From \`test:gpu\` (32 layers x 7 points + 3 final points = 227 pairs per prompt; then every
sub-stage point too: q, k, v, gate, up, act, and scores, probs and pv per head, all 4 heads at
small width, heads 0, 7 and 31 at Llama-3-8B shape):

\`\`\`
$(grep -E "^synthetic|first_mismatch=" "$D/test-gpu.log")
\`\`\`

The user's command on the 8B-shaped model
(\`npm run trace -- --backend hip --model synthetic:llama3-8b --prompt p0_short,p4_sys,p6_long --layers 0,1,2,15,31\`):

$(grep -E "^\|" "$D/trace-llama3-8b.log")

$(grep -E "^p[0-9].*E1: [0-9]+ tokens" "$D/trace-llama3-8b.log" | sed 's/^/    /')

## The selftest: every planted fault found where it was planted

\`npm run selftest -- --backend hip --model synthetic:llama3-8b\`: E1 on p4_sys traced at every
layer and point, once without a fault and once per fault and layer (\`test:gpu\` runs the same at
small width). The MAE and max abs error are those of the first mismatch.

$(grep -E "^\|" "$D/selftest-llama3-8b.log")

    $(grep -E "^selftest: [0-9]+ cases" "$D/selftest-llama3-8b.log")
    $(grep -E "^selftest wall" "$D/selftest-llama3-8b.log")

## Each HIP op against the cpu-fp64 oracle

Relative L2 against fp64; outputs sit between NaN-poisoned guard rows that must come back
untouched. The bounds and their reasons are at the top of \`test/gpu/ops.gpu.test.ts\`. Also
checked bit for bit: matmul rows of a 205-row call equal the same rows alone; a decode attention
row (chunks split over waves) equals the last row of a causal call (chunks merged in one wave);
top-k and the row hash equal the host's; fill_uniform gives the CPU backend's bits; an
out-of-memory allocation is an ENOMEM exception after which the backend keeps working.

\`\`\`
$(grep -E "rel_l2 .*bound" "$D/test-gpu.log")
\`\`\`

## hip vs cpu on the same weights (synthetic:tiny, prefill_last)

\`\`\`
$(grep -E "hip vs cpu" "$D/test-gpu.log")
\`\`\`

## Benchmark (\`npm run bench -- --backend hip\`)

Every number against the device-to-device copy rate measured in the same process (the JSON the
bench wrote is \`docs/bench-hip.json\`); the PyTorch
rows (cuBLAS, SDPA, F.rms_norm, transformers' decode step) come from
\`scripts/gpu/bench_torch.py\` in the same run. cuBLAS is not batch invariant (row 204 of a
205-row bf16 GEMM differs from the same row alone by up to 1.6e-2); ours is, bit for bit.

$(sed -n '/^copy rate/,$p' "$D/bench-hip.log" | sed 's/^## /### /')

## Memory over 1000 traces in one process (\`npm run bench:memory -- --backend hip --runs 1000\`)

\`\`\`
$(cat "$D/memory-hip.log")
\`\`\`
EOF
