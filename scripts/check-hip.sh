#!/usr/bin/env bash
# Compile-checks every HIP source, warnings as errors, with no GPU:
#   amd     Debian's hipcc (ROCm 5.2, clang 15), HIP_PLATFORM=amd: AMD_ARCHS
#           (default "gfx90a gfx940": clang 15 predates gfx942)
#   amd     gfx942 (MI300X) with GFX942_CXX (default clang++-19) and the same
#           HIP 5.2 headers and device libraries, plus the gfx942 device-library
#           file 5.2 lacks (scripts/amd-device-libs.sh). Its assembly must be
#           wave 64 for every kernel (.amdhsa_wavefront_size32 absent or 0,
#           .wavefront_size: 64 in the kernel metadata).
#   nvidia  nvcc: the same sources as CUDA through hip/compat.h, for what the
#           CUDA build makes by default: sm_90a code with the sm_90a kernels
#           (GRETA_SM90A) and compute_90 PTX, in which those kernels trap.
# FP contraction is off on every toolchain (-ffp-contract=off, nvcc
# --fmad=false), as in CMakeLists.txt; the commands are printed first.
# Also checks that a wave-32 AMD target is refused (hip/compat.h).
set -euo pipefail
cd "$(dirname "$0")/.."

AMD_ARCHS=${AMD_ARCHS:-"gfx90a gfx940"}
GFX942_CXX=${GFX942_CXX:-clang++-19}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

need() {
  command -v "$1" >/dev/null || { echo "check:hip: $1 not found ($2)" >&2; exit 2; }
}
need hipcc "Debian: apt-get install --no-install-recommends hipcc"
need "$GFX942_CXX" "Debian: apt-get install --no-install-recommends clang-19 lld-19 clang-tools-19"
need nvcc "install the CUDA toolkit"
clang_c=${GFX942_CXX/clang++/clang}
need "$clang_c" "the C driver beside $GFX942_CXX"

sources=(hip/*.hip)
devlibs=$(bash scripts/amd-device-libs.sh "$out/devlibs" "$clang_c")
mkdir -p "$out/amd" "$out/gfx942" "$out/nv"

common=(-std=c++17 -O3 -Wall -Wextra -Werror)
amd_cmd=(hipcc)
for a in $AMD_ARCHS; do amd_cmd+=("--offload-arch=$a"); done
amd_cmd+=("${common[@]}" -ffp-contract=off)
# -save-temps keeps the device assembly of the very compile that made the object.
gfx942_cmd=("$GFX942_CXX" -x hip --offload-arch=gfx942 --rocm-path=/usr "--rocm-device-lib-path=$devlibs"
  "${common[@]}" -ffp-contract=off -save-temps=obj)
nv_cmd=(nvcc -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90,code=compute_90 -DGRETA_SM90A -x cu -std=c++17 -O3 --fmad=false -Werror all-warnings -Xcompiler -Wall,-Wextra)

echo "check:hip: ${#sources[@]} sources; commands (SRC each source):"
echo "  amd    $AMD_ARCHS: HIP_PLATFORM=amd ${amd_cmd[*]} -c SRC"
echo "  amd    gfx942: ${gfx942_cmd[*]/#--rocm-device-lib-path=*/--rocm-device-lib-path=DEVLIBS} -c SRC"
echo "  nvidia sm_90a: ${nv_cmd[*]} -c SRC"

fail=0
kernels=0
for f in "${sources[@]}"; do
  name=$(basename "$f" .hip)
  # The three toolchains of one source in parallel; results in a fixed order.
  (HIP_PLATFORM=amd "${amd_cmd[@]}" -c "$f" -o "$out/amd/$name.o" >"$out/amd/$name.log" 2>&1) &
  p1=$!
  ("${gfx942_cmd[@]}" -c "$f" -o "$out/gfx942/$name.o" >"$out/gfx942/$name.log" 2>&1) &
  p2=$!
  ("${nv_cmd[@]}" -c "$f" -o "$out/nv/$name.o" >"$out/nv/$name.log" 2>&1) &
  p3=$!
  if wait $p1; then echo "ok   amd $AMD_ARCHS  $f"; else echo "FAIL amd $AMD_ARCHS  $f"; cat "$out/amd/$name.log"; fail=1; fi
  if wait $p2; then
    s="$out/gfx942/$name-hip-amdgcn-amd-amdhsa-gfx942.s"
    k=$(grep -c '^[[:space:]]*\.amdhsa_kernel ' "$s" || true)
    w64=$(grep -c '^[[:space:]]*\.wavefront_size:[[:space:]]*64$' "$s" || true)
    w32=$(grep -c '^[[:space:]]*\.amdhsa_wavefront_size32[[:space:]]*1' "$s" || true)
    if ! grep -q '^[[:space:]]*\.amdgcn_target "amdgcn-amd-amdhsa--gfx942' "$s"; then
      echo "FAIL amd gfx942  $f: the assembly is not for gfx942"; fail=1
    elif [ "$w32" != 0 ] || [ "$w64" != "$k" ]; then
      echo "FAIL amd gfx942  $f: $k kernels, $w64 of them wave 64, $w32 wave 32"; fail=1
    else
      echo "ok   amd gfx942  $f ($([ "$k" = 0 ] && echo "host code only" || echo "$k kernel$([ "$k" = 1 ] || echo s), wave 64"))"
      kernels=$((kernels + k))
    fi
  else
    echo "FAIL amd gfx942  $f"; cat "$out/gfx942/$name.log"; fail=1
  fi
  if wait $p3; then echo "ok   nvidia sm_90a  $f"; else echo "FAIL nvidia sm_90a  $f"; cat "$out/nv/$name.log"; fail=1; fi
done

# hip/compat.h sizes launches by the build's wave size and refuses a target
# whose wave differs: a wave-32 target (RDNA3) must not compile.
if "$GFX942_CXX" -x hip --offload-arch=gfx1100 --rocm-path=/usr -nogpulib --cuda-device-only -std=c++17 \
  -fsyntax-only hip/add.hip >"$out/wave32.log" 2>&1; then
  echo "FAIL wave guard: a wave-32 target (gfx1100) compiled"; fail=1
elif grep -q "wave size differs from GRETA_AMD_WAVE_SIZE" "$out/wave32.log"; then
  echo "ok   wave guard: a wave-32 target (gfx1100) is refused by hip/compat.h"
else
  echo "FAIL wave guard: gfx1100 failed for another reason"; cat "$out/wave32.log"; fail=1
fi

hip_version=$(HIP_PLATFORM=amd hipcc --version 2>/dev/null | sed -n 's/^HIP version: //p' | head -n 1)
hip_clang=$(HIP_PLATFORM=amd hipcc --version 2>/dev/null | grep -m1 -o 'clang version [0-9.]*' | sed 's/clang version //')
clang942=$("$GFX942_CXX" --version | grep -m1 -o 'clang version [0-9.]*' | sed 's/clang version //')
nv_version=$(nvcc --version | grep -m1 -o 'release [0-9.]*' | sed 's/release //')
status=$([ "$fail" = 0 ] && echo "all ok" || echo "FAILED")
echo "check:hip: ${#sources[@]} sources x 3 toolchains, warnings as errors, FP contraction off: $status"
echo "  amd    $AMD_ARCHS  hipcc, HIP $hip_version, clang $hip_clang"
echo "  amd    gfx942         $GFX942_CXX $clang942, HIP 5.2 headers and device libraries; $kernels kernels, all wave 64"
echo "  nvidia sm_90a          nvcc $nv_version"
exit $fail
