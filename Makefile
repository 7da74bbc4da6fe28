# qci-appci — make help lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
BIN         := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
PORT        ?= 8080
export PORT

KO_VERSION  := v0.19.1
KO          ?= $(CURDIR)/.cache/bin/ko
IMAGE_TAR   ?= $(BIN)/qci-appci-image.tar
GCF_SOURCE  ?= .cache/gcf-source

.PHONY: help run build test unit lint e2e bench bench-smoke fuzz kube-apiserver image ko gcf-source

help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-z][a-z0-9-]*:.*## /{printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: ## the demo: the function in front of an in-process registry on :$(PORT), with commands to paste
	$(GO) run ./cmd/qci-demo

build: ## build bin/qci-appci (static, trimmed) and bin/qci-demo
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/qci-appci ./cmd/qci-appci
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/qci-demo ./cmd/qci-demo

# End-to-end packages run real processes and move GiBs: no -race there.
E2E_PKGS    := ./test/e2e/... ./test/kubee2e/...
UNIT_PKGS    = $(shell $(GO) list ./... | grep -v -e '/test/e2e' -e '/test/kubee2e')

test: lint unit bench-smoke e2e ## the whole suite CI runs: lint, unit tests (-race), end-to-end tests, a quick benchmark run

unit: ## unit and handler tests with the race detector, then the byte-heavy ones without it
	$(GO) test -race -count=1 $(UNIT_PKGS)
	$(GO) test -count=1 -run 'TestLarge' ./function/...

e2e: kube-apiserver ## the real binary with skopeo, podman, go-containerregistry, a real kube-apiserver; faults
	$(GO) test -count=1 -timeout 30m $(E2E_PKGS)

bench: ## measure qci-appci where it runs (h2c front, TLS upstream) against nginx and the upstream direct; BENCH_QUICK=1 for a short run
	$(GO) run ./test/bench $(if $(BENCH_QUICK),-quick)

bench-smoke: ## the quick benchmark as a check that it runs, every byte verified, and each cold pull fetches the upstream token once (no timing asserted)
	mkdir -p .cache
	$(GO) run ./test/bench -quick -out .cache/bench-smoke.json -readme ""

ko: ## install ko $(KO_VERSION) into .cache/bin with go install
	@test -x $(KO) || GOBIN=$(CURDIR)/.cache/bin $(GO) install github.com/google/ko@$(KO_VERSION)

image: ## build the container image with ko into $(IMAGE_TAR), no push (KO_DEFAULTBASEIMAGE overrides the base)
	@test -x $(KO) || $(MAKE) -s ko
	mkdir -p $(dir $(IMAGE_TAR))
	KO_DOCKER_REPO=$${KO_DOCKER_REPO:-ko.local/qci-appci} VERSION=$(VERSION) $(KO) build --push=false --bare --tarball=$(IMAGE_TAR) ./cmd/qci-appci

gcf-source: ## the source tree for gcloud functions deploy into $(GCF_SOURCE): the function packages under a root package
	rm -rf $(GCF_SOURCE)
	mkdir -p $(GCF_SOURCE)
	git ls-files go.mod go.sum 'function/*.go' | grep -v '_test\.go$$' | xargs cp --parents -t $(GCF_SOURCE)
	printf '%s\n' \
	  '// Package qciappci is the root package that the Cloud Functions Go' \
	  '// buildpack builds: it looks for the Functions Framework import here,' \
	  '// and importing the function package registers QCIAppCI.' \
	  'package qciappci' '' 'import (' \
	  '	_ "github.com/GoogleCloudPlatform/functions-framework-go/functions"' \
	  '	_ "github.com/qci-appci/qci-appci/function"' ')' > $(GCF_SOURCE)/qciappci.go
	@echo "gcf-source: $(GCF_SOURCE) is ready for gcloud functions deploy --source $(GCF_SOURCE)"

kube-apiserver: ## build (once) the kube-apiserver the cluster tests run, into .cache/bin
	bash test/kubeapiserver/build.sh

lint: ## gofmt, go mod tidy, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod or go.sum is not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

fuzz: ## fuzz the path, scope, challenge and token-form parsers and the access line's escaping, a while each (FUZZTIME=30s)
	$(GO) test ./function/registry -run '^$$' -fuzz FuzzParsePath -fuzztime $${FUZZTIME:-30s}
	$(GO) test ./function/registry -run '^$$' -fuzz FuzzParseScopes -fuzztime $${FUZZTIME:-30s}
	$(GO) test ./function/registry -run '^$$' -fuzz FuzzMatchersAgreeWithGrammar -fuzztime $${FUZZTIME:-30s}
	$(GO) test ./function/upstream -run '^$$' -fuzz FuzzParseChallenge -fuzztime $${FUZZTIME:-30s}
	$(GO) test ./function/auth -run '^$$' -fuzz FuzzParsePost -fuzztime $${FUZZTIME:-30s}
	$(GO) test ./cmd/internal/server -run '^$$' -fuzz FuzzAppendJSONString -fuzztime $${FUZZTIME:-30s}

-include test/*/*.mk
