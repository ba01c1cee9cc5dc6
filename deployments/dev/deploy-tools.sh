#!/usr/bin/env bash
# Installs the apt tools the deployment checks (deployments/*_test.go) use,
# when missing: podman and buildah (`make image`, TestImage), Debian's
# docker-compose 1.29 (TestCompose validates compose.yaml without an
# engine) and chromium (the browser tests, internal/browser). Needs root
# for apt-get; prints what it did. helm comes from deployments/dev/tools.sh
# (built from the Go module proxy, cached).
set -euo pipefail
say() { echo "deploy-tools: $*" >&2; }

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
if (( ${#missing[@]} == 0 )); then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  say "missing ${missing[*]}; run as root (or apt-get install ${missing[*]}) — the deployment tests skip without them"
  exit 0
fi
say "installing ${missing[*]} with apt-get (first run only)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq "${missing[@]}" >/dev/null
say "installed ${missing[*]}"
