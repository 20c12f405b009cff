#!/usr/bin/env bash
# Prints a kubeconfig for the read-only identity of manifests/remote-access/, for the
# other clusters to mount as the Secret causeway-remote-<cluster>.
#   tests/make-remote-kubeconfig.sh [--context CTX] [--name CLUSTER] > CLUSTER.kubeconfig
set -euo pipefail
ctx=(); name=""
while (($#)); do
  case "$1" in
    --context) ctx=(--context "$2"); name=${name:-$2}; shift 2 ;;
    --name) name=$2; shift 2 ;;
    *) echo "usage: $0 [--context CTX] [--name CLUSTER]" >&2; exit 2 ;;
  esac
done
name=${name:-remote}
secret=causeway-remote-reader-token
token=$(kubectl "${ctx[@]}" -n causeway get secret "$secret" -o jsonpath='{.data.token}' | base64 -d)
ca=$(kubectl "${ctx[@]}" -n causeway get secret "$secret" -o jsonpath='{.data.ca\.crt}')
server=$(kubectl "${ctx[@]}" config view --minify -o jsonpath='{.clusters[0].cluster.server}')
[ -n "$token" ] && [ -n "$server" ] || { echo "no token or server found (is remote-access applied?)" >&2; exit 1; }
cat <<YAML
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster:
    server: $server
    certificate-authority-data: $ca
users:
- name: causeway-remote-reader
  user:
    token: $token
contexts:
- name: $name
  context: { cluster: $name, user: causeway-remote-reader }
current-context: $name
YAML
