#!/usr/bin/env bash
# Prepares a GPU run on a machine that has a GPU and a driver but no Node.js,
# no registry and no compiler for our sources: builds the HIP addon here,
# compiles the TypeScript, and packs Node and node_modules into .gpu/.
# Then copy the tree (with build/, dist/ and .gpu/) there and run
# scripts/gpu/run.sh. .gpu/ is ignored by git.
#   usage: scripts/gpu/pack.sh [cuda|rocm|auto]
# The toolchain is the GPU machine's, not this one's: cuda (the default) for
# the NVIDIA machines these runs go to, even where this machine has ROCm too
# (which build:hip's auto would take).
set -euo pipefail
cd "$(dirname "$0")/../.."
toolchain=${1:-cuda}
case $toolchain in cuda | rocm | auto) ;; *) echo "pack: '$toolchain' is not a toolchain (allowed: cuda, rocm, auto)" >&2; exit 2 ;; esac
npm run --silent build:hip -- "--CDGRETA_GPU_TOOLCHAIN=$toolchain"
npm run --silent build:ts
mkdir -p .gpu
# The bench states the commit it measured; the tree that travels has no .git.
git rev-parse --short HEAD > .gpu/commit
# Node itself is packed once per version (compressing it takes minutes).
if [ "$(cat .gpu/node.version 2>/dev/null)" != "$(node --version)" ] || [ ! -s .gpu/node.xz ]; then
  xz -T2 -6 -c "$(command -v node)" > .gpu/node.xz
  node --version > .gpu/node.version
fi
# vitest and the runtime dependencies; the compilers stay here.
tar cf - --exclude=node_modules/typescript --exclude=node_modules/cmake-js node_modules | xz -T2 -6 > .gpu/node_modules.tar.xz
du -ch .gpu/* build/Release/greta.node | tail -n 1
