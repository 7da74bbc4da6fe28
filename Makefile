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
# The name the image carries in $(IMAGE_TAR) (podman load shows it). Not
# ko.local/…: ko hands those to a Docker daemon.
IMAGE_REPO  ?= localhost/qci-appci
# A base image saved as a tarball (docker save, crane pull, skopeo copy …
# docker-archive:FILE): make image then builds offline, the base served to
# ko by a registry on loopback (test/deploy/localbase).
BASE_IMAGE_TAR ?=
GCF_SOURCE  ?= .cache/gcf-source
# Variables make help shows expanded in the targets' descriptions.
HELP_VARS   := PORT KO_VERSION IMAGE_TAR IMAGE_REPO GCF_SOURCE

.PHONY: help run build test unit lint e2e bench bench-smoke fuzz fuzz-smoke kube-apiserver image ko gcf-source

help: ## list the targets
	@awk -v vars='$(foreach v,$(HELP_VARS),$(v)=$($(v)))' \
	  'BEGIN { FS = ":.*## "; n = split(vars, kv, " "); for (i = 1; i <= n; i++) { eq = index(kv[i], "="); val[substr(kv[i], 1, eq - 1)] = substr(kv[i], eq + 1) } } \
	  /^[a-z][a-z0-9-]*:.*## / { name[++m] = $$1; text[m] = $$2; if (length($$1) > w) w = length($$1) } \
	  END { for (i = 1; i <= m; i++) { s = text[i]; for (k in val) gsub("\\$$\\(" k "\\)", val[k], s); printf("  make %-" w "s  %s\n", name[i], s) } }' $(MAKEFILE_LIST)

# The demo is built, then run as the recipe's only process: Ctrl-C reaches
# it directly and it exits 0 after its drain (go run would exit 1 on the
# interrupt, and make would report an error).
run: ## the demo: the function in front of an in-process registry on :$(PORT), with commands to paste
	CGO_ENABLED=0 $(GO) build -o $(BIN)/qci-demo ./cmd/qci-demo
	$(BIN)/qci-demo

build: ## build bin/qci-appci and bin/qci-credential-provider (static, trimmed) and bin/qci-demo
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/qci-appci ./cmd/qci-appci
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/qci-demo ./cmd/qci-demo
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/qci-credential-provider ./cmd/qci-credential-provider

# End-to-end packages run real processes and move GiBs: no -race there.
E2E_PKGS    := ./test/e2e/... ./test/kubee2e/...
UNIT_PKGS    = $(shell $(GO) list ./... | grep -v -e '/test/e2e' -e '/test/kubee2e')

test: lint unit fuzz-smoke bench-smoke e2e ## the whole suite CI runs: lint, unit tests (-race), every fuzzer briefly, a quick benchmark run, end-to-end tests

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

image: ## build the image with ko into $(IMAGE_TAR) as $(IMAGE_REPO), no push, no Docker; BASE_IMAGE_TAR=FILE builds offline
	@case '$(IMAGE_REPO)' in ko.local*|kind.local*) echo "IMAGE_REPO=$(IMAGE_REPO): ko would load it into a Docker daemon; name another repository" >&2; exit 1;; esac
	@test -x $(KO) || $(MAKE) -s ko
	mkdir -p $(dir $(IMAGE_TAR))
	$(if $(BASE_IMAGE_TAR),$(GO) run ./test/deploy/localbase -tar '$(BASE_IMAGE_TAR)' --) \
	  env KO_DOCKER_REPO='$(IMAGE_REPO)' VERSION='$(VERSION)' $(KO) build --push=false --bare --tarball='$(IMAGE_TAR)' ./cmd/qci-appci

gcf-source: ## the source tree for gcloud functions deploy into $(GCF_SOURCE): the function packages under a root package that registers QCIAppCI
	rm -rf $(GCF_SOURCE)
	mkdir -p $(GCF_SOURCE)
	git ls-files --cached --others --exclude-standard go.mod go.sum 'function/*.go' | grep -v '_test\.go$$' | xargs cp --parents -t $(GCF_SOURCE)
	printf '%s\n' \
	  '// Package qciappci is the root package that the Cloud Functions Go' \
	  '// buildpack builds: it imports the Functions Framework (the buildpack' \
	  '// looks for that import here) and registers the function with it as' \
	  '// QCIAppCI, built lazily from the environment on its first request.' \
	  '// Only this generated package registers: the container binary does' \
	  '// not link the framework.' \
	  'package qciappci' '' 'import (' \
	  '	"github.com/GoogleCloudPlatform/functions-framework-go/functions"' '' \
	  '	"github.com/qci-appci/qci-appci/function"' ')' '' \
	  'func init() {' \
	  '	functions.HTTP(function.EntryPoint, function.NewFromEnv().ServeHTTP)' \
	  '}' > $(GCF_SOURCE)/qciappci.go
	gofmt -l $(GCF_SOURCE)/qciappci.go | (! grep .)
	@echo "gcf-source: $(GCF_SOURCE) is ready for gcloud functions deploy --source $(GCF_SOURCE)"

kube-apiserver: ## build (once) the kube-apiserver the cluster tests run, into .cache/bin
	bash test/kubeapiserver/build.sh

lint: ## gofmt, go mod tidy, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod or go.sum is not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Every fuzzer, one a line as <package>:<name>. make fuzz-smoke (part of make
# test) and make fuzz run each in turn; a failing input is written under the
# package's testdata/fuzz/<name>/: commit it, and make unit replays it.
FUZZERS := \
	./function/registry:FuzzParsePath \
	./function/registry:FuzzParseScopes \
	./function/registry:FuzzMatchersAgreeWithGrammar \
	./function/registry:FuzzImageStreamTagsDecodeOneWay \
	./function/upstream:FuzzParseChallenge \
	./function/auth:FuzzParsePost \
	./function/loginlimit:FuzzClientAddress \
	./function/clusterconfig:FuzzParse \
	./function/token:FuzzVerifyClaims \
	./function/token:FuzzVerifyRaw \
	./function/proxy:FuzzForwardHeaders \
	./function/proxy:FuzzForwardQuery \
	./function/proxy:FuzzRewriteLinks \
	./cmd/internal/server:FuzzAppendJSONString \

# Budgets are counts of executions, not durations: with a duration, Go 1.26's
# fuzz coordinator can report the end of -fuzztime itself as a failure
# ("context deadline exceeded", no failing input; golang/go#75804, fixed in
# Go 1.27), which on a loaded CI machine fails a run that found nothing.
# 100000 executions take 3 to 15 s a fuzzer on 2 cores.
FUZZTIME      ?= 100000x
FUZZTIME_LONG ?= 1000000x

# run-fuzzers runs every fuzzer of FUZZERS for $(1) each, stopping at the first failure.
define run-fuzzers
	@set -e; for f in $(FUZZERS); do \
	  echo "== fuzz $${f#*:} ($${f%%:*}) for $(1)"; \
	  $(GO) test -run '^$$' -fuzz "^$${f#*:}\$$" -fuzztime $(1) "$${f%%:*}"; \
	done
endef

fuzz-smoke: ## every fuzzer for a short fixed budget (FUZZTIME=100000x executions each), as make test runs them
	$(call run-fuzzers,$(FUZZTIME))

fuzz: ## every fuzzer for longer (FUZZTIME_LONG=1000000x executions each)
	$(call run-fuzzers,$(FUZZTIME_LONG))

-include test/*/*.mk
