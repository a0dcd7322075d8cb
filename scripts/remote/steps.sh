#!/bin/sh
# The remote half of scripts/run_remote.sh. run_remote copies this file into
# each run directory on the remote host and then calls it once per step:
#
#   sh RUN_DIR/steps.sh RUN_DIR PATH_PREFIX STEP [ARGS...]
#
# Every argument arrives as its own word (quoted by run_remote) and nothing
# here evaluates one: values are only ever expanded inside double quotes and
# handed to commands as arguments. Messages go to stderr as one line starting
# with "greta-remote:". Exit codes: 10 missing tool, 11 a command failed,
# 12 bad use of this script, 13 the device suite failed.
set -eu

die() {
  code=$1
  shift
  printf 'greta-remote: %s\n' "$*" >&2
  exit "$code"
}

[ $# -ge 3 ] || die 12 "usage: steps.sh RUN_DIR PATH_PREFIX STEP [ARGS...]"
dir=$1
prefix=$2
step=$3
shift 3
case $dir in '' | -* | *..*) die 12 "bad run directory '$dir'" ;; esac
case $dir in /*) ;; *) dir=$PWD/$dir ;; esac
[ "$prefix" = - ] || PATH="$prefix:$PATH"
export PATH
host=$(hostname 2>/dev/null || uname -n)

have() { command -v "$1" >/dev/null 2>&1; }

gpu_info() {
  found=0
  if have rocm-smi; then rocm-smi --showproductname 2>&1 && found=1 || true; fi
  if have rocminfo; then
    # Agent names and marketing names only: the full dump is hundreds of lines.
    rocminfo 2>/dev/null | grep -E '^[[:space:]]*(Marketing Name|Name):[[:space:]]*(gfx|AMD|Instinct)' && found=1 || true
  fi
  if have nvidia-smi; then nvidia-smi -L 2>&1 && found=1 || true; fi
  [ "$found" = 1 ] || echo none
}

case $step in
preflight)
  # preflight BACKEND SLURM(0|1): checks the tools the run needs, prints facts.
  backend=$1
  slurm=$2
  missing=''
  for t in tar node npm; do have "$t" || missing="$missing $t"; done
  if [ "$slurm" = 1 ]; then
    for t in sbatch srun; do have "$t" || missing="$missing $t"; done
  fi
  toolchain=none
  if have hipcc || [ -x "${ROCM_PATH:-/opt/rocm}/bin/hipcc" ]; then
    toolchain=hipcc
  elif have nvcc || [ -x "${CUDA_PATH:-/usr/local/cuda}/bin/nvcc" ]; then
    toolchain=nvcc
  fi
  # With --slurm the GPU toolchain lives on the compute nodes; it is checked there by the build.
  if [ "$backend" = hip ] && [ "$slurm" = 0 ]; then
    [ "$toolchain" != none ] || missing="$missing hipcc(ROCm)-or-nvcc"
    have cmake || missing="$missing cmake"
  fi
  if [ -n "$missing" ]; then
    die 10 "missing on $host:$missing (PATH=$PATH; set --remote-path, or use --backend cpu when the host has no GPU toolchain)"
  fi
  echo "hostname=$host"
  echo "os=$(uname -srm)"
  echo "node=$(node --version)"
  echo "npm=$(npm --version)"
  echo "rsync=$(have rsync && echo yes || echo no)"
  echo "toolchain=$toolchain"
  echo "--- gpu"
  if [ "$slurm" = 1 ]; then echo "(login node; the job records the compute node's GPU in gpu.txt)"; else gpu_info; fi
  ;;
unpack)
  # unpack: the git archive on stdin becomes RUN_DIR/src.
  mkdir -p "$dir/src" "$dir/out"
  tar -xf - -C "$dir/src"
  ;;
gpuinfo)
  { echo "hostname=$host"; gpu_info; } >"$dir/out/gpu.txt" 2>&1
  ;;
run)
  # run LOG [GRETA_TRACE_*=V ...] -- CMD ARGS...: runs CMD in RUN_DIR/src,
  # stdout and stderr to RUN_DIR/out/LOG; on failure the log's tail and one line.
  log=$1
  shift
  case $log in '' | */* | .*) die 12 "bad log name '$log'" ;; esac
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    case $1 in
    GRETA_TRACE_*=*) export "$1" ;;
    *) die 12 "not a GRETA_TRACE_* assignment: '$1'" ;;
    esac
    shift
  done
  [ $# -ge 2 ] || die 12 "run: no command after --"
  shift
  cd "$dir/src"
  if "$@" >"$dir/out/$log" 2>&1 </dev/null; then
    :
  else
    rc=$?
    tail -n 25 "$dir/out/$log" | sed 's/^/  | /' >&2
    die 11 "'$*' failed on $host with exit $rc (log: $log)"
  fi
  ;;
ci)
  # ci LOG: npm ci in RUN_DIR/src. When npm ci refuses package-lock.json as out of
  # sync with package.json (npm records no entries for optional packages its
  # registry does not serve), npm install, which keeps the lockfile's versions.
  log=$1
  case $log in '' | */* | .*) die 12 "bad log name '$log'" ;; esac
  cd "$dir/src"
  set -- npm ci --no-audit --no-fund --prefer-offline
  if "$@" >"$dir/out/$log" 2>&1 </dev/null; then exit 0; else rc=$?; fi
  if grep -q 'can only install packages when your package.json and package-lock.json' "$dir/out/$log"; then
    printf 'greta-remote: note: npm ci refused package-lock.json (out of sync with package.json); running npm install\n' >&2
    printf '\n== greta-remote: npm ci refused the lockfile; npm install --no-audit --no-fund --prefer-offline\n' >>"$dir/out/$log"
    set -- npm install --no-audit --no-fund --prefer-offline
    if "$@" >>"$dir/out/$log" 2>&1 </dev/null; then exit 0; else rc=$?; fi
  fi
  tail -n 25 "$dir/out/$log" | sed 's/^/  | /' >&2
  die 11 "'$*' failed on $host with exit $rc (log: $log)"
  ;;
verify)
  # verify LOG BACKEND: the device suite (npm run test:gpu: every op against
  # cpu-fp64, the invariance checks, E1) on BACKEND in RUN_DIR/src; its output
  # to RUN_DIR/out/LOG, vitest's JSON report to RUN_DIR/out/verify.json.
  log=$1
  backend=$2
  case $log in '' | */* | .*) die 12 "bad log name '$log'" ;; esac
  case $backend in hip | cpu | auto) ;; *) die 12 "bad backend '$backend'" ;; esac
  cd "$dir/src"
  if GRETA_TEST_BACKEND=$backend npm run --silent test:gpu -- --reporter=default --reporter=json \
    --outputFile="$dir/out/verify.json" >"$dir/out/$log" 2>&1 </dev/null; then
    tail -n 8 "$dir/out/$log" | grep -E '^ *(Tests|Duration) ' | sed 's/^ */  | /' >&2 || true
  else
    rc=$?
    tail -n 25 "$dir/out/$log" | sed 's/^/  | /' >&2
    die 13 "the device suite (npm run test:gpu on $backend) failed on $host with exit $rc (log: $log)"
  fi
  ;;
pack)
  # pack: RUN_DIR/out as a tar on stdout (when rsync is missing on either side).
  tar -cf - -C "$dir/out" .
  ;;
put)
  # put NAME: stdin becomes RUN_DIR/NAME (the Slurm job script).
  case $1 in job.sbatch) cat >"$dir/$1" ;; *) die 12 "put: '$1' is not job.sbatch" ;; esac
  ;;
submit)
  # submit [SBATCH ARGS...]: submits RUN_DIR/job.sbatch and waits for it to end.
  cd "$dir"
  sbatch --wait --parsable --output="$dir/out/slurm-%j.out" "$@" "$dir/job.sbatch" </dev/null ||
    die 11 "Slurm job failed on $host (exit $?; see slurm-*.out)"
  ;;
*)
  die 12 "unknown step '$step'"
  ;;
esac
