#!/usr/bin/env bash
# with-stack.sh DIR COMMAND...: runs COMMAND with TOKENWARDEN_TEST_STACK set.
# Uses the stack already named by TOKENWARDEN_TEST_STACK if there is one,
# otherwise starts a throwaway one in DIR on the test ports (so not at the
# same time as `make test`) and always stops it. Used by `make faults` and
# `make bench`.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$1
shift
say() { echo "with-stack: $*" >&2; }

bin=$(deployments/dev/tools.sh | tail -n1)
mkdir -p "$dir"
if [[ -z ${TOKENWARDEN_TEST_STACK:-} || ! -f ${TOKENWARDEN_TEST_STACK:-} ]]; then
  if [[ -x $dir/teststack ]]; then
    "$dir/teststack" -stop -dir "$dir/stack" || true
  fi
  rm -rf "$dir/stack"
  go build -o "$dir/teststack" ./internal/devstack/teststack
  say "starting a throwaway stack in $dir/stack"
  # TOKENWARDEN_STACK_PORTS (test, dev or scale) and TOKENWARDEN_STACK_FLAGS
  # (more teststack flags, e.g. -temporal-server) shape the stack.
  # shellcheck disable=SC2086
  "$dir/teststack" -dir "$dir/stack" -ports "${TOKENWARDEN_STACK_PORTS:-test}" -bin "$bin" ${TOKENWARDEN_STACK_FLAGS:-} &
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
set +e
"$@"
status=$?
set -e
exit "$status"
