#!/usr/bin/env bash
# The one test command (`npm test`): install, lint, type-check, then run the tests against real
# servers (scripts/run-tests.ts builds or finds them, starts them, and stops them afterwards).
# Arguments go to run-tests: node test flags and test files, e.g. `npm test -- test/foo.test.ts`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Node 24 first on PATH (installed into .cache/ when the machine's node is older than 22).
source scripts/node-24.sh
# npm ci also when package-lock.json changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

# Tools some tests run, from Debian's packages when missing: docker-compose (test/compose.test.ts,
# only its `config` command, no Docker engine), the AWS CLI (test/runbook.test.ts runs the
# runbook's printed `aws s3 sync`) and Chromium (test/web-ui.test.ts drives the Temporal Web UI
# with playwright-core, which downloads no browser) and systemd-analyze (test/deploy.test.ts
# verifies the units of deploy/systemd/) and ssh-keygen (test/operators.test.ts signs and verifies
# operators' requests with real keys) and zstd (test/archive.test.ts restores an archive with
# `zstd -d | tar -x`). Quiet, but loud when it fails.
install_tool() {
  local tool="$1" package="$2"
  command -v "$tool" >/dev/null 2>&1 && return 0
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else
      echo "test.sh: $tool is not installed and this is not root (no sudo): install it with 'apt-get install $package', or put $tool on PATH" >&2
      return 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: $tool is not installed and there is no apt-get: install $package (or put $tool on PATH) and run again" >&2
    return 1
  fi
  apt() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq "$@"; }
  local log
  log="$(mktemp)"
  echo "test.sh: installing $package (apt-get)" >&2
  # Missing package lists (a fresh image) make the first install fail: update, then try again.
  if ! apt install -y --no-install-recommends "$package" >"$log" 2>&1; then
    if ! { apt update && apt install -y --no-install-recommends "$package"; } >>"$log" 2>&1; then
      cat "$log" >&2
      echo "test.sh: could not install $package (output above); install it by hand and run again" >&2
      rm -f "$log"
      return 1
    fi
  fi
  rm -f "$log"
  command -v "$tool" >/dev/null 2>&1 || { echo "test.sh: apt-get installed $package but $tool is not on PATH" >&2; return 1; }
}
install_tool docker-compose docker-compose
install_tool aws awscli
install_tool chromium chromium
install_tool systemd-analyze systemd
install_tool ssh-keygen openssh-client
install_tool zstd zstd

npx eslint .
npx tsc --noEmit -p tsconfig.json
# exec: the test runner's summary is the last thing printed, and its exit code is ours.
exec npx tsx scripts/run-tests.ts "$@"
