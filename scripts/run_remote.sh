#!/usr/bin/env bash
# Scripted remote runs: scripts/run_remote.sh HOST DATE [options] (--help).
# Ships git HEAD to HOST over ssh, builds, runs the trace matrix, pulls the
# artifacts to artifacts_remote/DATE/BLOCK/run-N and prints the analysis.
# The work is done by dist/cli/remote.js (src/cli/remote.ts), which spawns
# every command from an argument vector: no argument is read by a shell here.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ ! -f "$root/dist/cli/remote.js" ]; then
  echo "run_remote: $root/dist/cli/remote.js is missing: run npm install (or npm run build:ts) first" >&2
  exit 2
fi
exec node "$root/dist/cli/remote.js" "$@"
