#!/usr/bin/env bash
# `make scale`: the load run of scale/ on a throwaway stack whose Temporal
# is the real server on PostgreSQL (built once by
# deployments/dev/server-tools.sh). Writes
# docs/results/scale-<links>-links-<workers>-workers.md; worker and
# gateway logs stay in the stack's logs directory.
#   make scale                               10 000 links, 1 worker, 5-minute tokens, 20 minutes
#   make scale LINKS=100000 ENROLL_WITHIN=15m DURATION=10m   (reports how far it got)
#   make scale WORKERS=2
#   make scale-floor LINKS=10000 DURATION=10m   (Temporal alone: TestTemporalFloor)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${TMPDIR:-/tmp}/tokenwarden-scale
if [[ ${1:-} != --in-stack ]]; then
  echo "scale: building the Temporal server (first run only) ..." >&2
  deployments/dev/server-tools.sh >/dev/null
  export TOKENWARDEN_STACK_FLAGS=-temporal-server
  unset TOKENWARDEN_TEST_STACK
  export TOKENWARDEN_STACK_PORTS=scale
  exec deployments/dev/with-stack.sh "$dir" "$0" --in-stack
fi
export TOKENWARDEN_TEST_KEEP_STATE=1 TOKENWARDEN_SCALE=1 TOKENWARDEN_SCALE_OUT=${SCALE_OUT:-$PWD/docs/results} TOKENWARDEN_SCALE_LOGS=$dir/stack/logs
export TOKENWARDEN_SCALE_LINKS=${LINKS:-10000} TOKENWARDEN_SCALE_DURATION=${DURATION:-20m}
export TOKENWARDEN_SCALE_TOKEN_LIFETIME=${TOKEN_LIFETIME:-5m} TOKENWARDEN_SCALE_WORKERS=${WORKERS:-1}
export TOKENWARDEN_SCALE_READS=${READS:-200} TOKENWARDEN_SCALE_ENROLL_WITHIN=${ENROLL_WITHIN:-0s}
go test -count=1 -timeout 6h -run "${SCALE_TEST:-TestScale}\$" -v ./scale/
