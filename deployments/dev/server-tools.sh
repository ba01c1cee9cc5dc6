#!/usr/bin/env bash
# Builds (once) and caches the real Temporal server and its SQL schema tool
# from the Go module proxy, for the stack mode that runs Temporal on
# PostgreSQL (`make scale`; devstack.Options.TemporalServer). A large build:
# about 10 minutes on two cores the first time. Prints the binaries'
# directory on its last line (the same as deployments/dev/tools.sh's).
set -euo pipefail
cd "$(dirname "$0")/../.."
TEMPORAL_SERVER_VERSION=${TEMPORAL_SERVER_VERSION:-v1.32.0}
bin=$(deployments/dev/tools.sh | tail -n1)
say() { echo "server-tools: $*" >&2; }

build() { # build NAME PACKAGE
  local name=$1 pkg=$2 out="$bin/$1-$TEMPORAL_SERVER_VERSION"
  if [[ ! -x $out ]]; then
    say "building $name $TEMPORAL_SERVER_VERSION from the Go module proxy (first run only, several minutes)"
    local tmp start=$SECONDS
    tmp=$(mktemp -d)
    ( env GOBIN="$tmp" go install "$pkg@$TEMPORAL_SERVER_VERSION" ) >"$bin/../$name-build.log" 2>&1 &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
      sleep 30
      kill -0 "$pid" 2>/dev/null && say "still building $name ($((SECONDS - start)) s so far)"
    done
    if ! wait "$pid"; then
      say "building $name failed; see $bin/../$name-build.log"
      exit 1
    fi
    mv "$tmp"/* "$out"
    rm -rf "$tmp"
    say "built $name in $((SECONDS - start)) s"
  fi
  ln -sf "$out" "$bin/$name"
}
build temporal-server go.temporal.io/server/cmd/server
build temporal-sql-tool go.temporal.io/server/cmd/tools/sql
echo "$bin"
