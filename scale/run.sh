#!/usr/bin/env bash
# `make scale`: the load run of scale/ on a throwaway stack whose Temporal
# is the real server on PostgreSQL (built once by
# deployments/dev/server-tools.sh). Writes docs/results/scale.md.
#   make scale                      10 000 links, 5-minute tokens, 20 minutes
#   make scale LINKS=100000 DURATION=30m
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} != --in-stack ]]; then
  deployments/dev/server-tools.sh >/dev/null
  export TOKENWARDEN_STACK_FLAGS=-temporal-server
  unset TOKENWARDEN_TEST_STACK
  export TOKENWARDEN_STACK_PORTS=scale
  exec deployments/dev/with-stack.sh "${TMPDIR:-/tmp}/tokenwarden-scale" "$0" --in-stack
fi
export TOKENWARDEN_SCALE=1 TOKENWARDEN_SCALE_OUT=$PWD/docs/results/scale.md
export TOKENWARDEN_SCALE_LINKS=${LINKS:-10000} TOKENWARDEN_SCALE_DURATION=${DURATION:-20m}
export TOKENWARDEN_SCALE_TOKEN_LIFETIME=${TOKEN_LIFETIME:-5m}
go test -count=1 -timeout 4h -run 'TestScale$' -v ./scale/
