#!/usr/bin/env bash
# The one test command (`npm test`): install, lint, type-check, then run the tests against real
# servers (scripts/run-tests.ts builds or finds them, starts them, and stops them afterwards).
# Arguments go to run-tests: node test flags and test files, e.g. `npm test -- test/foo.test.ts`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# npm ci also when package-lock.json changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

npx eslint .
npx tsc --noEmit -p tsconfig.json
# exec: the test runner's summary is the last thing printed, and its exit code is ours.
exec npx tsx scripts/run-tests.ts "$@"
