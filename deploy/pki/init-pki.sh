#!/usr/bin/env bash
# Mutual TLS for the Temporal server: a private CA, the server's certificate, and one client
# certificate per worker and per operator. openssl only; nothing leaves the folder.
#
#   deploy/pki/init-pki.sh DIR [CLIENT...]
#
#   DIR/ca.pem, DIR/ca.key           the CA (10 years). ca.key signs every certificate: keep it
#                                    off the servers once the certificates exist (0600).
#   DIR/server.pem, DIR/server.key   the Temporal server's certificate (frontend and internode),
#                                    names from PKI_SERVER_NAMES (default: temporal,localhost,127.0.0.1)
#   DIR/clients/NAME.pem, NAME.key   one per CLIENT: give each worker host and each operator its own,
#                                    so one can be replaced without touching the others
#
# Existing files are kept (the script only adds what is missing), so running it again with a new
# CLIENT adds that client. To renew a certificate, delete its two files and run it again; to replace
# the CA, start from an empty DIR and re-issue everything. Leaf certificates last PKI_DAYS (default
# 825) days; `openssl x509 -in FILE -noout -enddate` prints when one ends.
#
# The server then runs with (deploy/temporal/config.yaml reads these):
#   TEMPORAL_TLS_SERVER_CERT=DIR/server.pem TEMPORAL_TLS_SERVER_KEY=DIR/server.key TEMPORAL_TLS_SERVER_CA_CERT=DIR/ca.pem
# and each worker or CLI with:
#   TEMPORAL_TLS_CA=DIR/ca.pem TEMPORAL_TLS_CERT=DIR/clients/NAME.pem TEMPORAL_TLS_KEY=DIR/clients/NAME.key
#   TEMPORAL_TLS_SERVER_NAME=temporal   (when the address is not one of PKI_SERVER_NAMES)
set -euo pipefail

usage() {
  sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[ $# -ge 1 ] || usage
case "$1" in -h|--help) usage ;; esac
command -v openssl >/dev/null 2>&1 || { echo "init-pki: openssl is not installed: apt-get install openssl" >&2; exit 1; }

dir="$1"
shift
days="${PKI_DAYS:-825}"
server_names="${PKI_SERVER_NAMES:-temporal,localhost,127.0.0.1}"
for name in "$@"; do
  [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || { echo "init-pki: client name '$name' may hold only letters, digits, '.', '_' and '-'" >&2; exit 2; }
done

umask 077
mkdir -p "$dir/clients"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

made=()
# ECDSA P-256: small, fast handshakes, and accepted by Go (the server) and rustls (the SDK's core).
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -f "$dir/ca.pem" ]; then
  [ ! -f "$dir/ca.key" ] || { echo "init-pki: $dir/ca.key exists without ca.pem: move it away or restore ca.pem" >&2; exit 1; }
  new_key "$dir/ca.key"
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 -subj "/CN=backupctl Temporal CA $(date -u +%Y-%m-%d)" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.pem"
  made+=("$dir/ca.pem (CA)")
fi
[ -f "$dir/ca.key" ] || { echo "init-pki: $dir/ca.key is missing, so no new certificate can be signed: put it back, or start from an empty folder" >&2; exit 1; }

# issue NAME CN SAN USAGE OUT
issue() {
  local cn="$1" san="$2" usage="$3" out="$4"
  [ -f "$out.pem" ] && return 0
  new_key "$out.key"
  openssl req -new -key "$out.key" -subj "/CN=$cn" -out "$work/req.csr"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$usage"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } > "$work/ext.cnf"
  openssl x509 -req -in "$work/req.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -sha256 -days "$days" \
    -extfile "$work/ext.cnf" -out "$out.pem" 2>/dev/null
  chmod 0644 "$out.pem"
  made+=("$out.pem ($cn)")
}

sans=()
IFS=',' read -r -a names <<< "$server_names"
for name in "${names[@]}"; do
  if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then sans+=("IP:$name"); else sans+=("DNS:$name"); fi
done
san="$(IFS=,; echo "${sans[*]}")"
# The server's certificate is also its client certificate between its own services (internode).
issue "${names[0]}" "$san" "serverAuth,clientAuth" "$dir/server"
for name in "$@"; do issue "$name" "" "clientAuth" "$dir/clients/$name"; done
chmod 0644 "$dir/ca.pem"
rm -f "$dir/ca.srl"

if [ ${#made[@]} -eq 0 ]; then
  echo "init-pki: nothing to do, every certificate asked for exists in $dir"
else
  for line in "${made[@]}"; do echo "init-pki: made $line"; done
fi
