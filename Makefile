# Tokenwarden developer entry points. Tool binaries (Temporal CLI, Vault) are
# built once into ~/.cache/tokenwarden/bin by deployments/dev/tools.sh.

GO ?= go
OIDC_PEER := deployments/dev/oidc-peer

.PHONY: dev test stop reset vet fmt tools oidc-peer-deps

## dev: run Temporal, Vault and Postgres in .dev plus the engine, in the foreground
dev: tools oidc-peer-deps
	@deployments/dev/postgres.sh
	@bin=$$(deployments/dev/tools.sh | tail -n1) && \
	  $(GO) build -o bin/tokenwarden ./cmd/tokenwarden && \
	  TOKENWARDEN_BIN=$$bin exec bin/tokenwarden dev

## test: vet, gofmt, staticcheck, the file-size check and all tests against a throwaway stack in .test-stack
test: tools oidc-peer-deps
	@deployments/dev/test.sh

## tools: build (first run only) the Temporal CLI, Vault and staticcheck
tools:
	@deployments/dev/tools.sh >/dev/null

## oidc-peer-deps: install the OIDC test peer's npm packages if missing
oidc-peer-deps:
	@if [ -f $(OIDC_PEER)/package.json ] && [ ! -d $(OIDC_PEER)/node_modules ]; then \
	  echo "npm: installing $(OIDC_PEER) dependencies"; \
	  npm install --no-audit --no-fund --prefix $(OIDC_PEER); \
	fi

## stop: stop a dev or test stack left running in the background
stop:
	@$(GO) run ./internal/devstack/teststack -stop -dir .dev
	@$(GO) run ./internal/devstack/teststack -stop -dir .test-stack

## reset: stop and delete the dev stack's state (Vault keys, tokens, database)
reset: stop
	rm -rf .dev

vet:
	$(GO) vet ./...

fmt:
	@find . -name '*.go' -not -path '*/node_modules/*' -not -path './.dev/*' -not -path './.test-stack/*' -print0 | xargs -0 gofmt -l -w

.PHONY: faults
## faults: the full fault suite (faults/, TOKENWARDEN_FAULTS=full) on a throwaway stack; writes docs/results/faults.md
faults: tools oidc-peer-deps
	@faults/run.sh

.PHONY: bench
## bench: the hot-path benchmarks (bench/) on the real stack; writes docs/results/bench.md
bench: tools oidc-peer-deps
	@bench/run.sh
