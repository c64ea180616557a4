#!/usr/bin/env bash
# The main command (`npm start`): install what is missing, then `backupctl dev` on embedded
# defaults: a local Temporal dev server with its Web UI, a worker, a local restic repository and a
# sample deployment under .data/; it runs doctor, applies the schedules, runs each policy's backup
# through its schedule and prints the status. Arguments go to `backupctl dev` (e.g. --once).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Node 24 first on PATH (installed into .cache/ when the machine's node is older than 22).
source scripts/node-24.sh
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
exec node bin/backupctl.js dev "$@"
