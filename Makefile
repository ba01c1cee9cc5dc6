# Tokenwarden developer entry points. Tool binaries (Temporal CLI, Vault) are
# built once into ~/.cache/tokenwarden/bin by deployments/dev/tools.sh.

GO ?= go
OIDC_PEER := deployments/dev/oidc-peer

.PHONY: dev test stop reset vet fmt tools oidc-peer-deps browser-deps

## dev: run Temporal, Vault and Postgres in .dev plus the engine, in the foreground
dev: tools oidc-peer-deps
	@deployments/dev/postgres.sh
	@bin=$$(deployments/dev/tools.sh | tail -n1) && \
	  $(GO) build -o bin/tokenwarden ./cmd/tokenwarden && \
	  TOKENWARDEN_BIN=$$bin exec bin/tokenwarden dev

## test: vet, gofmt, staticcheck, the file-size check and all tests against a throwaway stack in .test-stack
test: tools oidc-peer-deps browser-deps
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

## browser-deps: install playwright-core for the browser tests (internal/browser) if missing
browser-deps:
	@if [ ! -d internal/browser/node_modules ]; then \
	  echo "npm: installing internal/browser dependencies (playwright-core)"; \
	  npm install --no-audit --no-fund --prefix internal/browser; \
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

.PHONY: soak
## soak: the long soak (faults/TestSoak, TOKENWARDEN_FAULTS=full): 50 links across run boundaries through outages and restarts
soak: tools oidc-peer-deps
	@deployments/dev/with-stack.sh $${TMPDIR:-/tmp}/tokenwarden-soak \
	  env TOKENWARDEN_FAULTS=full go test -count=1 -timeout 40m -run 'TestSoak$$' -v ./faults/

.PHONY: scale
## scale: the load run (scale/) on the real Temporal server on PostgreSQL; writes docs/results/scale-*.md (LINKS=, WORKERS=, DURATION=, TOKEN_LIFETIME=, READS=)
scale: tools
	@scale/run.sh

.PHONY: scale-floor
## scale-floor: Temporal's own cost with no Tokenwarden in it (scale/TestTemporalFloor) on the real server; writes docs/results/scale-floor-*.md
scale-floor: tools
	@SCALE_TEST=TestTemporalFloor scale/run.sh

.PHONY: bench
## bench: the hot-path benchmarks (bench/) on the real stack; writes docs/results/bench.md
bench: tools oidc-peer-deps
	@bench/run.sh

.PHONY: image
IMAGE ?= localhost/tokenwarden
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE_CONTEXT ?= bin/image
## image: build the static binary on the host and the FROM-scratch image $(IMAGE):$(VERSION) with podman
image:
	@mkdir -p $(IMAGE_CONTEXT)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(IMAGE_CONTEXT)/tokenwarden ./cmd/tokenwarden
	cp /etc/ssl/certs/ca-certificates.crt $(IMAGE_CONTEXT)/ca-certificates.crt
	podman build -q -f deployments/container/Containerfile \
	  --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
	  --build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
	  -t $(IMAGE):$(VERSION) $(IMAGE_CONTEXT)
	@echo "image: built $(IMAGE):$(VERSION)"

.PHONY: helm-check
# helm template renders for Kubernetes 1.20 unless told; the chart needs 1.30.
HELM_KUBE_VERSION ?= 1.31.0
## helm-check: helm lint and helm template of deployments/helm/tokenwarden, default and full values
helm-check:
	@bin=$$(deployments/dev/tools.sh | tail -n1) && \
	  $$bin/helm lint --strict deployments/helm/tokenwarden && \
	  $$bin/helm lint --strict deployments/helm/tokenwarden -f deployments/helm/tokenwarden/ci/full-values.yaml && \
	  $$bin/helm template tw deployments/helm/tokenwarden --kube-version $(HELM_KUBE_VERSION) >/dev/null && \
	  $$bin/helm template tw deployments/helm/tokenwarden --kube-version $(HELM_KUBE_VERSION) -f deployments/helm/tokenwarden/ci/full-values.yaml >/dev/null && \
	  echo "helm-check: lint and template pass (default and full values)"
