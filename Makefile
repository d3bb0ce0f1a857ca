# skao-staging developer targets. Run `make` (or `make help`) for the list.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Put the Go toolchain and GOPATH/bin on PATH even in bare CI shells.
ifneq ($(wildcard /usr/local/go/bin/go),)
export PATH := /usr/local/go/bin:$(PATH)
endif
GO ?= go
GOPATH_BIN := $(shell $(GO) env GOPATH 2>/dev/null)/bin
export PATH := $(GOPATH_BIN):$(PATH)

TOOLS_BIN := $(CURDIR)/.tools/bin
export TOOLS_BIN

STATICCHECK_PKG     := honnef.co/go/tools/cmd/staticcheck
STATICCHECK_VERSION := v0.8.2

# One ./<module>/... pattern per module in go.work. Patterns such as
# ./services/... do not work from the root in workspace mode: services/
# itself is not a module, so go reports "directory prefix services does not
# contain modules listed in go.work". Override with PKGS=... if needed.
PKGS ?= $(shell $(GO) work edit -json 2>/dev/null | sed -n 's|.*"DiskPath": "\(.*\)".*|\1/...|p')
BENCH_PKGS ?= $(filter ./libs/% ./services/%,$(PKGS))

TESTFLAGS  ?= -race -count=1
BENCHFLAGS ?= -run '^$$' -bench . -benchmem
BUILDFLAGS ?= -trimpath
ARGS       ?=

SERVICES := gateway stager jupyter-bridge audit

# stagectl release builds: one static binary per platform in dist/.
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
STAGECTL_LDFLAGS := -s -w -X main.version=$(VERSION)
# The services' version on their traces (service.version).
SERVICE_LDFLAGS := -X github.com/skao/skao-staging/libs/telemetry.version=$(VERSION)

.PHONY: help run test lint fmt-check vet staticcheck build release bench tools clean deploy-check screenshot

help: ## List targets
	@echo "usage: make <target>"
	@echo
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN { FS = ":.*## " } { printf "  %-12s %s\n", $$1, $$2 }'
	@echo
	@echo "variables: TESTFLAGS='$(TESTFLAGS)' BUILDFLAGS='$(BUILDFLAGS)' ARGS='$(ARGS)' (for run)"

run: ## Run the all-in-one stagingd with the demo endpoints on (go run ./cmd/stagingd -demo $(ARGS))
	$(GO) run ./cmd/stagingd -demo $(ARGS)

test: ## go test $(TESTFLAGS) over every workspace module
	$(GO) test $(TESTFLAGS) $(PKGS)

lint: ## gofmt check, go vet and staticcheck (runs all three, fails if any fails)
	@rc=0; \
	$(MAKE) --no-print-directory fmt-check || rc=1; \
	$(MAKE) --no-print-directory vet || rc=1; \
	$(MAKE) --no-print-directory staticcheck || rc=1; \
	exit $$rc

fmt-check: ## Fail listing files that gofmt would change
	@files=$$( { git ls-files --cached --others --exclude-standard -- '*.go' 2>/dev/null \
			|| find . -name '*.go' -not -path './.tools/*' -not -path './.git/*'; } \
		| while IFS= read -r f; do if [[ -f $$f ]]; then printf '%s\n' "$$f"; fi; done \
		| xargs -r gofmt -l ); \
	if [[ -n $$files ]]; then \
		echo "gofmt needed on:"; printf '  %s\n' $$files; exit 1; \
	fi; \
	echo "gofmt: ok"

vet: ## go vet over every workspace module
	$(GO) vet $(PKGS)

staticcheck: ## staticcheck $(STATICCHECK_VERSION) over every workspace module
	@scripts/ensure-go-tool.sh staticcheck $(STATICCHECK_PKG) $(STATICCHECK_VERSION) >/dev/null
	$(TOOLS_BIN)/staticcheck $(PKGS)

build: ## Static binaries in bin/: the services, stagingd and the stagectl client
	@mkdir -p bin
	@set -x; for s in $(SERVICES); do \
		CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -ldflags '$(SERVICE_LDFLAGS)' -o bin/$$s ./services/$$s/cmd/$$s; \
	done; \
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -ldflags '$(SERVICE_LDFLAGS)' -o bin/stagingd ./cmd/stagingd; \
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -ldflags '$(STAGECTL_LDFLAGS)' -o bin/stagectl ./cmd/stagectl

release: ## Cross-compiled static stagectl for $(RELEASE_PLATFORMS) in dist/, with SHA256SUMS
	@rm -rf dist && mkdir -p dist
	@set -x; for p in $(RELEASE_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(STAGECTL_LDFLAGS)' \
			-o dist/stagectl-$(VERSION)-$$os-$$arch ./cmd/stagectl; \
	done
	cd dist && sha256sum stagectl-* > SHA256SUMS

bench: ## Run benchmarks in libs and services
	$(GO) test $(BENCHFLAGS) $(BENCH_PKGS)
	STAGING_TEST_MYSQL_DSN="$${STAGING_TEST_MYSQL_DSN:-root:@tcp(127.0.0.1:3306)/}" services/audit/bench.sh
	scripts/bench/stager.sh
	scripts/bench/gateway.sh
	scripts/bench/latency.sh
	GATEWAY=1 LEVELS=256 MODES=seed,sse RUNS=1 DOWNLOAD_MIB=0 scripts/bench/gateway.sh  # the gateway process's own peak RSS
	scripts/jupyterhub-test/bench.sh

tools: ## Install staticcheck and the pinned nats-server into .tools/bin
	scripts/ensure-go-tool.sh staticcheck $(STATICCHECK_PKG) $(STATICCHECK_VERSION)
	scripts/nats-test-server.sh install

screenshot: ## Regenerate docs/img/ui.png, the README's picture of the web UI (real-browser test; scripts/ui-test/install.sh first)
	shots=$$(mktemp -d) && trap 'rm -rf "$$shots"' EXIT && \
	STAGING_REQUIRE_INTEGRATION=1 STAGING_UI_SCREENSHOTS="$$shots" $(GO) test -count=1 -run '^TestUIInBrowser$$' ./cmd/stagingd && \
	mkdir -p docs/img && cp "$$shots/ui-main.png" docs/img/ui.png && echo "docs/img/ui.png updated"

deploy-check: ## Helm lint/template of deploy/helm (installs helm into .tools/bin), compose and dashboard checks
	scripts/deploy-check.sh

clean: ## Remove bin/, dist/ and data/
	rm -rf bin dist data
