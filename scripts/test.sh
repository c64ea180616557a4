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

# The compose tests (test/compose.test.ts) need docker-compose (only its `config` command, no
# Docker engine): install Debian's package when it is missing. Quiet, but loud when it fails.
install_docker_compose() {
  command -v docker-compose >/dev/null 2>&1 && return 0
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else
      echo "test.sh: docker-compose is not installed and this is not root (no sudo): install it with 'apt-get install docker-compose', or put docker-compose on PATH" >&2
      return 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: docker-compose is not installed and there is no apt-get: install docker-compose (or put it on PATH) and run again" >&2
    return 1
  fi
  apt() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq "$@"; }
  local log
  log="$(mktemp)"
  echo "test.sh: installing docker-compose (apt-get)" >&2
  # Missing package lists (a fresh image) make the first install fail: update, then try again.
  if ! apt install -y --no-install-recommends docker-compose >"$log" 2>&1; then
    if ! { apt update && apt install -y --no-install-recommends docker-compose; } >>"$log" 2>&1; then
      cat "$log" >&2
      echo "test.sh: could not install docker-compose (output above); install it by hand and run again" >&2
      rm -f "$log"
      return 1
    fi
  fi
  rm -f "$log"
  command -v docker-compose >/dev/null 2>&1 || { echo "test.sh: apt-get installed docker-compose but it is not on PATH" >&2; return 1; }
}
install_docker_compose

npx eslint .
npx tsc --noEmit -p tsconfig.json
# exec: the test runner's summary is the last thing printed, and its exit code is ours.
exec npx tsx scripts/run-tests.ts "$@"
