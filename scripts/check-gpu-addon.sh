#!/usr/bin/env bash
# How `npm run build:hip` picks its toolchain: auto takes ROCm on a machine
# that also has nvcc, a forced cuda takes nvcc, a bad value is refused, and a
# ROCm laid out as /opt/rocm is found as well as Debian's (configure only).
# Then builds the whole addon as build:hip does on a GPU machine, once per
# vendor, and runs it here, where no GPU answers:
#   rocm  CMake's HIP language with Debian's ROCm (HIP 5.2 runtime, CMake files
#         under lib/<multiarch>), clang-19 for gfx942 (MI300X) with the device
#         libraries of scripts/amd-device-libs.sh; linked against libamdhip64.
#   cuda  nvcc for the default CUDA_ARCHS (sm_90a code, compute_90 PTX), the
#         path of the NVIDIA machines.
# Each build goes to its own directory (build-amd/, and a temporary one for
# cuda): build/Release/greta.node, the CPU addon of npm install, is checked
# to be untouched. For each: the toolchain and targets CMake chose, FP
# contraction off in every GPU compile command (compile_commands.json), the
# addon loads in Node (GRETA_ADDON) with the hip backend, `--backend hip`
# fails with one ENODEV line and exit 1 and writes nothing, `--backend auto`
# falls back to cpu with E1 bit-identical.
#   GFX942_CXX  default clang++-19
set -euo pipefail
cd "$(dirname "$0")/.."
GFX942_CXX=${GFX942_CXX:-clang++-19}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cpu_addon=build/Release/greta.node
[ -f "$cpu_addon" ] || { echo "check:gpu-addon: $cpu_addon is missing: run npm install first" >&2; exit 2; }
[ -f dist/cli/main.js ] || { echo "check:gpu-addon: dist/ is missing: run npm install first" >&2; exit 2; }
cpu_sum=$(sha256sum "$cpu_addon")

fail() { echo "FAIL $*"; exit 1; }

# $1 name, $2 build dir, $3 language in compile_commands (flag that must be there), then cmake-js args.
build() {
  local name=$1 dir=$2 flag=$3
  shift 3
  echo "== $name: npm run build:hip -- -m -O $dir $*"
  local t0=$SECONDS
  if ! npm run --silent build:hip -- -m -O "$dir" "$@" >"$out/$name.log" 2>&1; then
    tail -n 40 "$out/$name.log"
    fail "$name: build:hip failed"
  fi
  echo "built in $((SECONDS - t0)) s"
  grep -o 'gretacore: toolchain .*' "$out/$name.log"
  echo "link: $(cat "$dir/CMakeFiles/greta.dir/link.txt")"
  # Every GPU source compiled with contraction off, and only those: CMake's own record of the commands.
  node -e '
    const [file, flag] = process.argv.slice(1);
    const cmds = JSON.parse(require("fs").readFileSync(file, "utf8")).filter((e) => e.file.endsWith(".hip"));
    const bad = cmds.filter((e) => !e.command.split(/\s+/).includes(flag));
    if (cmds.length === 0 || bad.length) { console.log("FAIL compile commands without " + flag + ": " + (bad.map((e) => e.file).join(", ") || "no .hip sources")); process.exit(1); }
    console.log(`compile commands: ${cmds.length} .hip sources, each with ${flag}`);
  ' "$dir/compile_commands.json" "$flag"
}

# $1 name, $2 addon, $3 the runtime library it must need (or "")
run_checks() {
  local name=$1 addon=$2 lib=$3
  if [ -n "$lib" ]; then
    readelf -d "$addon" | grep -q "NEEDED.*\[$lib" || fail "$name: $addon does not link $lib"
    echo "links: $(readelf -d "$addon" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | paste -sd' ')"
  fi
  local kinds
  kinds=$(GRETA_ADDON=$addon node --input-type=module -e '
    const n = await import("./dist/native.js");
    console.log(`${n.availableBackends().join(",")} ${n.gpuDeviceCount()} ${n.resolveBackendKind("auto")}`);')
  [ "$kinds" = "cpu,cpu-fp64,hip 0 cpu" ] || fail "$name: loaded addon says '$kinds' (want backends cpu,cpu-fp64,hip; 0 GPUs; auto -> cpu)"
  echo "loads: backends cpu,cpu-fp64,hip; GPUs 0; auto resolves to cpu"

  local rc=0
  GRETA_ADDON=$addon node dist/cli/main.js trace --backend hip --prompt p0_short --out "$out/$name-hip.jsonl" >"$out/$name-hip.out" 2>"$out/$name-hip.err" || rc=$?
  [ "$rc" = 1 ] || fail "$name: --backend hip exited $rc (want 1)"
  [ "$(wc -l <"$out/$name-hip.err")" = 1 ] || { cat "$out/$name-hip.err"; fail "$name: --backend hip printed more than one line"; }
  grep -q '^gretacore: \[ENODEV\] hip: no GPU answers' "$out/$name-hip.err" || { cat "$out/$name-hip.err"; fail "$name: not ENODEV"; }
  [ ! -e "$out/$name-hip.jsonl" ] && [ ! -s "$out/$name-hip.out" ] || fail "$name: --backend hip wrote output"
  echo "--backend hip: exit 1, one line: $(cat "$out/$name-hip.err")"

  GRETA_ADDON=$addon node dist/cli/main.js trace --backend auto --prompt p0_short --out "$out/$name-auto.jsonl" >"$out/$name-auto.out" 2>"$out/$name-auto.err" ||
    { cat "$out/$name-auto.err"; fail "$name: --backend auto failed"; }
  grep -q '^| p0_short | E1 | NONE | - | 0 |' "$out/$name-auto.out" || fail "$name: --backend auto: E1 not bit-identical"
  head -n 1 "$out/$name-auto.jsonl" | grep -q '"backend":"cpu"' || fail "$name: --backend auto did not run on cpu"
  echo "--backend auto: cpu, E1 bit-identical"
}

# How build:hip picks its toolchain (configure only).
# $1 name, $2 regex the configure output must match, then env assignments and cmake-js args.
configure() {
  local name=$1 want=$2
  shift 2
  local envs=()
  while [ $# -gt 0 ] && [[ $1 == *=* && $1 != --* ]]; do envs+=("$1"); shift; done
  env "${envs[@]}" npx cmake-js configure -O "$out/cfg-$name" --CDGRETA_GPU=ON "$@" >"$out/cfg-$name.log" 2>&1 || true
  # CMake wraps its error messages: match on the text with whitespace runs as one space.
  tr -s ' \n' '  ' <"$out/cfg-$name.log" >"$out/cfg-$name.txt"
  grep -qE "$want" "$out/cfg-$name.txt" || { tail -n 20 "$out/cfg-$name.log"; fail "configure $name: nothing matching '$want'"; }
  echo "configure $name: $(grep -oE "$want" "$out/cfg-$name.txt" | head -n 1)"
}
configure auto-picks-rocm 'gretacore: toolchain rocm: [^ ]+ \(clang [0-9.]+\), HIP runtime /usr \(/usr/lib/[^/]+/cmake/hip-lang\)' --CDGPU_TARGETS=gfx90a
configure forced-cuda 'gretacore: toolchain cuda: [^ ]+nvcc' --CDGRETA_GPU_TOOLCHAIN=cuda
configure bad-toolchain "GRETA_GPU_TOOLCHAIN 'vulkan' is not a toolchain \(allowed: auto, rocm, cuda\)" --CDGRETA_GPU_TOOLCHAIN=vulkan
# A ROCm laid out as /opt/rocm is (lib/cmake/hip-lang, llvm/bin/clang++), made
# of links into the system's, found through ROCM_PATH.
rocm_sys=$(dirname "$(dirname "$(find /usr/lib -path '*/cmake/hip-lang/hip-lang-config.cmake' | head -n 1)")")
opt=$out/opt-rocm
mkdir -p "$opt/lib/cmake" "$opt/llvm/bin" "$opt/share"
for d in "$rocm_sys"/* /usr/lib/cmake/AMDDeviceLibs; do [ -e "$d" ] && ln -s "$d" "$opt/lib/cmake/"; done
ln -s "$(command -v "$GFX942_CXX")" "$opt/llvm/bin/clang++"
ln -s /usr/include "$opt/include"
ln -s /usr/share/hip "$opt/share/hip"
configure opt-rocm-layout "gretacore: toolchain rocm: [^ ]+ \(clang [0-9.]+\), HIP runtime $opt \($opt/lib/cmake/hip-lang\)" ROCM_PATH="$opt" --CDGPU_TARGETS=gfx90a \
  "--CDCMAKE_HIP_FLAGS=--rocm-device-lib-path=/usr/lib/$(gcc -print-multiarch)/amdgcn/bitcode"

devlibs=$(bash scripts/amd-device-libs.sh "$out/devlibs" "${GFX942_CXX/clang++/clang}")
build rocm build-amd -ffp-contract=off --CDGRETA_GPU_TOOLCHAIN=rocm "--CDCMAKE_HIP_COMPILER=$GFX942_CXX" --CDGPU_TARGETS=gfx942 \
  "--CDCMAKE_HIP_FLAGS=--rocm-device-lib-path=$devlibs"
run_checks rocm build-amd/Release/greta.node libamdhip64.so

build cuda "$out/build-cuda" --fmad=false --CDGRETA_GPU_TOOLCHAIN=cuda
run_checks cuda "$out/build-cuda/Release/greta.node" ""

[ "$(sha256sum "$cpu_addon")" = "$cpu_sum" ] || fail "$cpu_addon changed"
kinds=$(node --input-type=module -e 'const n = await import("./dist/native.js"); console.log(n.availableBackends().join(","));')
[ "$kinds" = "cpu,cpu-fp64" ] || fail "without GRETA_ADDON the addon has '$kinds' (want the CPU build: cpu,cpu-fp64)"
echo "check:gpu-addon: toolchain choice ok (auto takes ROCm over nvcc; /opt/rocm and Debian layouts); rocm (gfx942) and cuda (sm_90a, compute_90) addons built, loaded, ENODEV and auto fallback ok; $cpu_addon untouched (cpu, cpu-fp64)"
