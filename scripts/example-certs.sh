#!/bin/sh
# Makes a throwaway CA and the two certificates examples/https.yaml serves, in
# examples/certs/: www.example.com (ECDSA P-256) and *.example.org (RSA 2048), valid 30 days.
# Run from the repository's root; it overwrites what is there.
set -eu
d=examples/certs
mkdir -p "$d"
cd "$d"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=Portico example CA" -keyout ca.key -out ca.pem 2>/dev/null
issue() { # name key-options file-stem
  openssl req -newkey $2 -nodes -subj "/CN=$1" -keyout "$3.key" -out "$3.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$1" > "$3.ext"
  openssl x509 -req -in "$3.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile "$3.ext" -out "$3.pem" 2>/dev/null
  rm -f "$3.csr" "$3.ext"
}
issue www.example.com "ec -pkeyopt ec_paramgen_curve:P-256" www.example.com
issue '*.example.org' "rsa:2048" wildcard.example.org
rm -f ca.srl
echo "wrote $d: ca.pem, www.example.com.{pem,key}, wildcard.example.org.{pem,key}"
