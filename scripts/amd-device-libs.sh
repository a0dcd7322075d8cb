#!/usr/bin/env bash
# Makes a ROCm device-library directory that has gfx942 (MI300X), for a ROCm
# older than gfx942 (Debian's ROCm 5.2) used with a newer clang (clang-19):
# a copy of the installed bitcode plus oclc_isa_version_942.bc, the one file
# 5.2 lacks, which holds only the ISA version constant (9402, as ROCm's own
# file does; gfx940's holds 9400). Pass the directory to clang as
# --rocm-device-lib-path=DIR. No GPU needed.
#   usage: scripts/amd-device-libs.sh DIR [CLANG]     (CLANG default clang-19)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: scripts/amd-device-libs.sh DIR [CLANG]" >&2; exit 2; }
dir=$1
clang=${2:-clang-19}
command -v "$clang" >/dev/null || { echo "amd-device-libs: $clang not found (Debian: apt-get install --no-install-recommends clang-19)" >&2; exit 2; }

src=""
multiarch=$(gcc -print-multiarch 2>/dev/null || true)
for d in "${ROCM_DEVICE_LIB_PATH:-}" "/usr/lib/$multiarch/amdgcn/bitcode" /usr/lib/amdgcn/bitcode "${ROCM_PATH:-/opt/rocm}/amdgcn/bitcode"; do
  if [ -n "$d" ] && [ -f "$d/ocml.bc" ]; then src=$d; break; fi
done
[ -n "$src" ] || { echo "amd-device-libs: no ROCm device libraries (ocml.bc) found (Debian: apt-get install --no-install-recommends rocm-device-libs)" >&2; exit 2; }

mkdir -p "$dir"
cp "$src"/*.bc "$dir"/
if [ ! -f "$dir/oclc_isa_version_942.bc" ]; then
  printf '%s\n' 'target triple = "amdgcn-amd-amdhsa"' \
    '@__oclc_ISA_version = linkonce_odr protected local_unnamed_addr addrspace(4) constant i32 9402, align 4' >"$dir/isa942.ll"
  "$clang" -c -emit-llvm -target amdgcn-amd-amdhsa -nogpulib "$dir/isa942.ll" -o "$dir/oclc_isa_version_942.bc"
  rm -f "$dir/isa942.ll"
fi
echo "$dir"
