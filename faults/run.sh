#!/usr/bin/env bash
# `make faults`: the full fault suite (TOKENWARDEN_FAULTS=full) of faults/.
# Uses the stack named by TOKENWARDEN_TEST_STACK if there is one, otherwise
# starts a throwaway one on the test ports (so not at the same time as
# `make test`) and always stops it. State, log and the results table (also
# printed last) go to $TOKENWARDEN_FAULTS_DIR, default /tmp/tokenwarden-faults.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=${TOKENWARDEN_FAULTS_DIR:-${TMPDIR:-/tmp}/tokenwarden-faults}
say() { echo "faults: $*" >&2; }

bin=$(deployments/dev/tools.sh | tail -n1)
mkdir -p "$dir"
if [[ -z ${TOKENWARDEN_TEST_STACK:-} || ! -f ${TOKENWARDEN_TEST_STACK:-} ]]; then
  if [[ -x $dir/teststack ]]; then
    "$dir/teststack" -stop -dir "$dir/stack" || true
  fi
  rm -rf "$dir/stack"
  go build -o "$dir/teststack" ./internal/devstack/teststack
  say "starting a throwaway stack in $dir/stack"
  "$dir/teststack" -dir "$dir/stack" -ports test -bin "$bin" &
  stack_pid=$!
  stop_stack() {
    if kill -0 "$stack_pid" 2>/dev/null; then
      kill -TERM "$stack_pid" 2>/dev/null || true
      wait "$stack_pid" 2>/dev/null || true
    fi
  }
  trap stop_stack EXIT
  trap 'exit 130' INT TERM
  began=$SECONDS
  while [[ ! -f $dir/stack/stack.json ]]; do
    if ! kill -0 "$stack_pid" 2>/dev/null || (( SECONDS - began > 300 )); then
      say "the stack did not come up; logs in $dir/stack/logs"
      exit 1
    fi
    sleep 0.2
  done
  export TOKENWARDEN_TEST_STACK=$dir/stack/stack.json
fi
export TOKENWARDEN_REQUIRE_STACK=1 TOKENWARDEN_BIN=$bin
export TOKENWARDEN_FAULTS=${TOKENWARDEN_FAULTS:-full}
export TOKENWARDEN_FAULTS_TABLE=$dir/table.md
rm -f "$TOKENWARDEN_FAULTS_TABLE"
set +e
go test -count=1 -timeout 60m -run "${FAULTS_RUN:-.}" -v ./faults/ 2>&1 | tee "$dir/go-test.log"
status=${PIPESTATUS[0]}
set -e
# Fault 1, the worker SIGKILLed mid-refresh, lives with the engine's tests.
go test -count=1 -timeout 20m -run TestWorkerKilledMidRefresh -v ./worker/ 2>&1 | tee "$dir/kill-test.log" | grep -E "SIGKILLs|^(--- |ok|FAIL)" || status=1
grep -q -- "--- PASS: TestWorkerKilledMidRefresh" "$dir/kill-test.log" || status=1
if [[ -f $TOKENWARDEN_FAULTS_TABLE ]]; then
  echo
  cat "$TOKENWARDEN_FAULTS_TABLE"
fi
exit "$status"
