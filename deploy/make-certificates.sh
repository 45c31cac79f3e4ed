#!/bin/sh
# Make a small private certificate authority for DICOM TLS, a certificate for the node and one per
# client (scanner, workstation). For a hospital PKI, ask IT for the same three kinds of file instead.
#
#   deploy/make-certificates.sh OUT_DIR NODE_HOSTNAME [CLIENT_NAME ...]
#
# Writes OUT_DIR/ca.crt (give to every peer), ca.key (keep offline), node.crt + node.key (the node's
# [tls] certificate and private_key) and CLIENT_NAME.crt + CLIENT_NAME.key for each client.
# RSA 2048 and SHA-256: accepted by the BCP 195 TLS profiles DCMTK and most scanners use.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 OUT_DIR NODE_HOSTNAME [CLIENT_NAME ...]" >&2
    exit 2
fi
out=$1
node_host=$2
shift 2
days=${CERT_DAYS:-825}

mkdir -p "$out"
umask 077        # private keys readable by their owner only

if [ ! -f "$out/ca.key" ]; then
    openssl req -x509 -newkey rsa:2048 -sha256 -nodes -days 3650 -subj "/CN=cmr-node site CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
fi

issue() {   # name, common name, subjectAltName, extendedKeyUsage
    openssl req -newkey rsa:2048 -sha256 -nodes -subj "/CN=$2" -keyout "$out/$1.key" -out "$out/$1.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$3" "$4" > "$out/$1.ext"
    openssl x509 -req -in "$out/$1.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial -sha256 \
        -days "$days" -extfile "$out/$1.ext" -out "$out/$1.crt" 2>/dev/null
    rm -f "$out/$1.csr" "$out/$1.ext"
}

case $node_host in
    *[!0-9.]*) node_san="DNS:$node_host" ;;
    *) node_san="IP:$node_host" ;;
esac
# The node is a server for scanners and a client of the PACS: both usages.
issue node "$node_host" "$node_san" "serverAuth,clientAuth"
for client in "$@"; do
    issue "$client" "$client" "DNS:$client" "clientAuth"
done
chmod 644 "$out"/*.crt
echo "certificates in $out: ca.crt, node.crt/node.key${*:+, and for $*}"
