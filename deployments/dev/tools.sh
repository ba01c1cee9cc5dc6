#!/usr/bin/env bash
# Builds (once) and caches the tool binaries the dev stack and tests run:
# the Temporal CLI dev server, HashiCorp Vault, staticcheck and helm, all from the Go module
# proxy, keyed by version so a bump rebuilds and a re-run starts in seconds.
# Prints the directory holding the binaries on its last line.
set -euo pipefail

TEMPORAL_CLI_VERSION=${TEMPORAL_CLI_VERSION:-v1.5.1}
STATICCHECK_VERSION=${STATICCHECK_VERSION:-v0.8.2}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
VAULT_VERSION=${VAULT_VERSION:-v1.21.0}
CACHE=${TOKENWARDEN_CACHE:-$HOME/.cache/tokenwarden}
BIN="$CACHE/bin"
mkdir -p "$BIN"

say() { echo "tools: $*" >&2; }

# build_with_progress NAME LOG CMD...: runs a long build, printing a heartbeat
# every 30 s so that a first run is never silent.
build_with_progress() {
  local name=$1 log=$2; shift 2
  local start=$SECONDS
  ( "$@" ) >"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    if (( (SECONDS - start) % 30 < 5 )); then
      say "still building $name ($((SECONDS - start)) s so far; log: $log)"
    fi
  done
  if ! wait "$pid"; then
    say "building $name failed; last lines of $log:"
    tail -n 30 "$log" >&2
    return 1
  fi
  say "built $name in $((SECONDS - start)) s"
}

# go_tool NAME PACKAGE VERSION HOW_LONG: go install PACKAGE@VERSION once,
# cached as $BIN/NAME-VERSION and linked as $BIN/NAME.
go_tool() {
  local name=$1 pkg=$2 version=$3 how_long=$4 out="$BIN/$1-$3"
  if [[ ! -x $out ]]; then
    say "building $name $version from the Go module proxy (first run only, $how_long)"
    local tmp
    tmp=$(mktemp -d)
    build_with_progress "$name $version" "$CACHE/$name-build.log" env GOBIN="$tmp" go install "$pkg@$version"
    mv "$tmp/$(basename "$pkg")" "$out"
    rm -rf "$tmp"
  fi
  ln -sf "$out" "$BIN/$name"
}

go_tool temporal github.com/temporalio/cli/cmd/temporal "$TEMPORAL_CLI_VERSION" "about 4 minutes"

vault_bin="$BIN/vault-$VAULT_VERSION"
if [[ ! -x $vault_bin ]]; then
  say "building Vault $VAULT_VERSION from the Go module proxy (first run only, about 9 minutes, 500 MB)"
  mod="$CACHE/vault-build-$VAULT_VERSION"
  mkdir -p "$mod"
  # Vault is built as a tool of a module of its own: two of its
  # dependencies moved, and the replace lines point at their new homes.
  cat >"$mod/go.mod" <<MOD
module tokenwarden.local/vaultbuild

go 1.25

require github.com/hashicorp/vault $VAULT_VERSION

replace github.com/99designs/keyring => github.com/Jeffail/keyring v1.2.3

replace github.com/ma314smith/signedxml v1.1.1 => github.com/moov-io/signedxml v1.1.1
MOD
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package vaultbuild

import _ "github.com/hashicorp/vault"
GO
  build_with_progress "vault $VAULT_VERSION" "$CACHE/vault-build.log" \
    bash -c "cd '$mod' && go mod tidy -e >/dev/null 2>&1; go mod download github.com/hashicorp/vault && go get github.com/hashicorp/vault@$VAULT_VERSION && go build -o '$vault_bin.tmp' github.com/hashicorp/vault"
  mv "$vault_bin.tmp" "$vault_bin"
fi

go_tool staticcheck honnef.co/go/tools/cmd/staticcheck "$STATICCHECK_VERSION" "under a minute"
go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "a few minutes"
ln -sf "$vault_bin" "$BIN/vault"
echo "$BIN"
