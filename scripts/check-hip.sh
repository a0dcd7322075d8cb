#!/usr/bin/env bash
# Compile-checks every HIP source for AMD (hipcc, HIP_PLATFORM=amd, CDNA2 and
# CDNA3 targets) and for NVIDIA (nvcc, sm_90, the same sources as CUDA through
# hip/compat.h), failing on any error or warning. Needs no GPU.
#   AMD_ARCHS   default "gfx90a gfx940" (clang 15 predates gfx942; gfx940 is the same CDNA3 family)
#   NV_ARCH     default sm_90
set -euo pipefail
cd "$(dirname "$0")/.."

AMD_ARCHS=${AMD_ARCHS:-"gfx90a gfx940"}
NV_ARCH=${NV_ARCH:-sm_90}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

sources=(hip/*.hip)
fail=0

if ! command -v hipcc >/dev/null; then
  echo "check:hip: hipcc not found (Debian: apt-get install --no-install-recommends hipcc)" >&2
  exit 2
fi
if ! command -v nvcc >/dev/null; then
  echo "check:hip: nvcc not found (install the CUDA toolkit)" >&2
  exit 2
fi

amd_flags=()
for a in $AMD_ARCHS; do amd_flags+=("--offload-arch=$a"); done

for f in "${sources[@]}"; do
  name=$(basename "$f" .hip)
  if HIP_PLATFORM=amd hipcc "${amd_flags[@]}" -std=c++17 -O3 -Wall -Wextra -Werror -c "$f" -o "$out/$name.amd.o" 2>"$out/$name.amd.log"; then
    echo "ok   amd $AMD_ARCHS  $f"
  else
    echo "FAIL amd $AMD_ARCHS  $f"; cat "$out/$name.amd.log"; fail=1
  fi
  if nvcc -arch="$NV_ARCH" -x cu -std=c++17 -O3 -Werror all-warnings -Xcompiler -Wall,-Wextra -c "$f" -o "$out/$name.nv.o" 2>"$out/$name.nv.log"; then
    echo "ok   nvidia $NV_ARCH  $f"
  else
    echo "FAIL nvidia $NV_ARCH  $f"; cat "$out/$name.nv.log"; fail=1
  fi
done

echo "check:hip: ${#sources[@]} sources; $(HIP_PLATFORM=amd hipcc --version 2>/dev/null | grep -m1 'HIP version'); $(nvcc --version | grep -m1 -o 'release [0-9.]*' | sed 's/release/nvcc/')"
exit $fail
