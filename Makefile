# ShareWarden — see README.md. Every target works on a fresh Debian machine with Go.
GO       ?= go
BIN_DIR  ?= $(CURDIR)/.cache/bin
# How long `make demo` keeps the plane up after its walkthrough; 0 keeps it until Ctrl-C.
DEMO_DURATION ?= 30s
# Extra flags for `go test` (e.g. TEST_FLAGS=-v, or -run TestX).
TEST_FLAGS ?=

export SHAREWARDEN_BIN_DIR := $(BIN_DIR)

.PHONY: all build deps bins helm promtool staticcheck generate test unit e2e demo bench lint clean

all: build

build:
	$(GO) build -o bin/sharewarden ./cmd/sharewarden

# Debian packages the data plane needs (nfs-ganesha, libnfs-utils), installed when missing.
deps:
	@echo "deps: the NFS data-plane tests and the demo need nfs-ganesha, nfs-ganesha-vfs and libnfs-utils;"
	@echo "deps: any that are missing are installed now with apt-get (as root, or through sudo)"
	@hack/install-nfs.sh

# The real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)
# and the upstream CSI sidecars (csi-provisioner, csi-attacher, csi-resizer, csi-snapshotter,
# snapshot-controller, and the snapshot CRDs), built from the pins in hack/tools into $(BIN_DIR);
# rebuilt only when the pins change.
bins:
	@BIN_DIR=$(BIN_DIR) hack/bins.sh

# helm, pinned in hack/tools/helm, for the chart's tests.
helm:
	@BIN_DIR=$(BIN_DIR) hack/helm.sh

# promtool, pinned in hack/tools/promtool, for the alert rules' checks and unit tests.
promtool:
	@BIN_DIR=$(BIN_DIR) hack/promtool.sh

# staticcheck, pinned in hack/tools/lint, for `make lint`.
staticcheck:
	@BIN_DIR=$(BIN_DIR) hack/staticcheck.sh

# Unit and e2e tests. If the binaries cannot be built (no module proxy), e2e tests skip with one
# line saying why and unit tests still run; CI sets SHAREWARDEN_REQUIRE_E2E=1 to forbid skipping.
test: deps
	@BIN_DIR=$(BIN_DIR) hack/bins.sh || echo "bins: could not build the control plane; e2e tests will skip"
	@BIN_DIR=$(BIN_DIR) hack/helm.sh || echo "helm: could not build; chart tests will skip"
	@BIN_DIR=$(BIN_DIR) hack/promtool.sh || echo "promtool: could not build; alert rule tests will skip"
	$(GO) test -count=1 -timeout 40m $(TEST_FLAGS) ./...

unit:
	$(GO) test -count=1 -short $(TEST_FLAGS) ./...

# The end-to-end packages only (test/...: the harness and the e2e suites on the real plane).
e2e: deps
	@BIN_DIR=$(BIN_DIR) hack/bins.sh || echo "bins: could not build the control plane; e2e tests will skip"
	@BIN_DIR=$(BIN_DIR) hack/helm.sh || echo "helm: could not build; chart tests will skip"
	@BIN_DIR=$(BIN_DIR) hack/promtool.sh || echo "promtool: could not build; alert rule tests will skip"
	$(GO) test -count=1 -timeout 40m $(TEST_FLAGS) ./test/...

# The demo is a binary of its own (cmd/sharewarden-demo): it links the test harness, which the
# shipped sharewarden must not.
demo: deps bins
	$(GO) run ./cmd/sharewarden-demo --duration=$(DEMO_DURATION)

bench: deps bins
	$(GO) test -count=1 -run '^$$' -bench . -benchmem -timeout 60m ./...

# Deepcopy code and the SharedVolume CRD from the Go types in api/ (controller-gen, pinned).
generate:
	@BIN_DIR=$(BIN_DIR) hack/generate.sh

lint: staticcheck
	$(GO) vet ./...
	$(BIN_DIR)/staticcheck ./...
	@deps=$$($(GO) list -deps ./cmd/sharewarden | grep '/test/' || true); if [ -n "$$deps" ]; then echo "cmd/sharewarden must not link the test harness:"; echo "$$deps"; exit 1; fi
	@deps=$$($(GO) list -deps ./cmd/sharewarden | grep -E 'k8s.io/kube-scheduler/framework|/extender/plugin' || true); if [ -n "$$deps" ]; then echo "cmd/sharewarden must not link the scheduling framework (only hack/tools/scheduler does):"; echo "$$deps"; exit 1; fi
	@BIN_DIR=$(BIN_DIR) hack/generate.sh --verify
	@hack/values-doc.sh --verify
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@echo "lint: go vet, staticcheck, gofmt, generated files and cmd/sharewarden's dependencies clean"

clean:
	rm -rf bin
