#!/usr/bin/env bash
# `make bench`: the benchmarks of bench/ on the real stack (a throwaway one
# unless TOKENWARDEN_TEST_STACK names one); the table goes to
# docs/results/bench.md with the date, commit and machine, and the README
# includes that file.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} != --in-stack ]]; then
  exec deployments/dev/with-stack.sh "${TMPDIR:-/tmp}/tokenwarden-bench" "$0" --in-stack
fi
go test -run '^$' -bench . -benchtime "${BENCHTIME:-3s}" ./bench/ |
  go run ./internal/results/cmd/results -bench -title "Benchmarks" -command "make bench" -out docs/results/bench.md
