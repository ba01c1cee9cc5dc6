#!/usr/bin/env bash
# `make test`: starts a throwaway stack (Temporal, Vault, Postgres) in
# .test-stack on the test ports, runs vet, a gofmt check, staticcheck, the
# tracked-file size check and every Go test against it, and always stops
# the stack. Exits non-zero if any step failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
stack_dir=$root/.test-stack
say() { echo "test: $*" >&2; }

began=$SECONDS
# Run as root, the stack's PostgreSQL runs as user postgres, which must be
# able to reach .test-stack: a checkout made in a private folder (mktemp
# -d) is not. Let others traverse the checkout (not read it).
if [[ $(id -u) -eq 0 && $(stat -c %A "$root") != *x ]]; then
  chmod o+x "$root"
fi
deployments/dev/postgres.sh
bin=$(deployments/dev/tools.sh | tail -n1)
# podman, buildah and docker-compose for the deployment checks (apt, once).
deployments/dev/deploy-tools.sh || say "could not install the deployment tools; their tests will fail"

# A stack left by an interrupted run would hold the ports.
if [[ -x $stack_dir/teststack ]]; then
  "$stack_dir/teststack" -stop -dir "$stack_dir" || true
fi
rm -rf "$stack_dir"
mkdir -p "$stack_dir"
go build -o "$stack_dir/teststack" ./internal/devstack/teststack

stack_began=$SECONDS
say "starting the test stack in $stack_dir (logs in $stack_dir/logs)"
"$stack_dir/teststack" -dir "$stack_dir" -ports test -bin "$bin" &
stack_pid=$!
stop_stack() {
  if kill -0 "$stack_pid" 2>/dev/null; then
    kill -TERM "$stack_pid" 2>/dev/null || true
    wait "$stack_pid" 2>/dev/null || true
  fi
}
trap stop_stack EXIT
trap 'exit 130' INT TERM

while [[ ! -f $stack_dir/stack.json ]]; do
  if ! kill -0 "$stack_pid" 2>/dev/null; then
    say "the test stack failed to start; logs in $stack_dir/logs"
    exit 1
  fi
  if (( SECONDS - stack_began > 300 )); then
    say "the test stack did not come up within 300 s; logs in $stack_dir/logs"
    exit 1
  fi
  sleep 0.2
done
say "stack up in $((SECONDS - stack_began)) s ($((SECONDS - began)) s including tools and build)"

export TOKENWARDEN_TEST_STACK=$stack_dir/stack.json
export TOKENWARDEN_REQUIRE_STACK=1
export TOKENWARDEN_BIN=$bin

status=0
say "go vet ./..."
go vet ./... || status=1

say "gofmt check"
unformatted=$(find . -name '*.go' -not -path '*/node_modules/*' -not -path './.dev/*' -not -path './.test-stack/*' -print0 | xargs -0 gofmt -l)
if [[ -n $unformatted ]]; then
  say "not gofmt-formatted (run \`make fmt\`):"
  echo "$unformatted" >&2
  status=1
fi

say "staticcheck ./..."
"$bin/staticcheck" ./... || status=1

say "tracked files under 5 MiB"
# The check must be able to fail: first on a planted 6 MB file.
planted=$(mktemp -d)
(cd "$planted" && git init -q && head -c 6000000 /dev/zero >big.bin && git add big.bin)
if deployments/dev/check-sizes.sh "$planted" 2>/dev/null; then
  say "check-sizes.sh did not catch a planted 6 MB file"
  status=1
fi
rm -rf "$planted"
deployments/dev/check-sizes.sh . || status=1

say "go test ./... (full output in $stack_dir/go-test.log)"
set +e
go test -count=1 -timeout 40m -v ./... 2>&1 | tee "$stack_dir/go-test.log"
test_status=${PIPESTATUS[0]}
set -e
(( test_status == 0 )) || status=1

log=$stack_dir/go-test.log
passed=$(grep -cE '^ *--- PASS' "$log" || true)
failed=$(grep -cE '^ *--- FAIL|^FAIL.*\[(build|setup) failed\]' "$log" || true)
skipped=$(grep -cE '^ *--- SKIP' "$log" || true)
if (( status != 0 )); then
  grep -E '^ *--- FAIL|^FAIL|^panic:' "$log" >&2 || true
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit "$status"
