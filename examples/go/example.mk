# The Go template: make example-go -> build/examples/example-go-manager.so
# Standard library only, so it builds offline (GOPROXY=off, GOFLAGS=-mod=mod
# is never needed). The Go caches live under build/ so the build works as
# any user and in CI. c-shared also writes a .h next to the .so; unused.
EXAMPLE_GO_SO := $(BUILD)/examples/example-go-manager.so
EXAMPLES += $(EXAMPLE_GO_SO)
GO ?= go

.PHONY: example-go
example-go: $(EXAMPLE_GO_SO)

$(EXAMPLE_GO_SO): $(wildcard examples/go/*.go examples/go/*.c examples/go/*.h) examples/go/go.mod include/keymanager.h
	@mkdir -p $(@D)
	cd examples/go && CGO_ENABLED=1 GOFLAGS=-buildvcs=false GOPROXY=off GOTOOLCHAIN=local \
	  GOCACHE=$(abspath $(BUILD))/go/cache GOPATH=$(abspath $(BUILD))/go/path \
	  $(GO) build -buildmode=c-shared -trimpath -o $(abspath $@) .

# `make sanitize`: `go build -asan` instruments the Go code (its accesses to
# C memory included, e.g. an overrun of an output buffer) and links the
# ASan runtime; the instrumented runner then checks leaks, double and
# invalid frees of every C.malloc'd buffer. Go's own heap is garbage
# collected and not leak-checked.
EXAMPLE_GO_ASAN := $(SANITIZE_DIR)/plugins/example-go-manager.so

$(EXAMPLE_GO_ASAN): $(wildcard examples/go/*.go examples/go/*.c examples/go/*.h) examples/go/go.mod include/keymanager.h
	@mkdir -p $(@D)
	cd examples/go && CGO_ENABLED=1 GOFLAGS=-buildvcs=false GOPROXY=off GOTOOLCHAIN=local \
	  GOCACHE=$(abspath $(BUILD))/go/cache GOPATH=$(abspath $(BUILD))/go/path \
	  $(GO) build -asan -buildmode=c-shared -trimpath -o $(abspath $@) .

$(SANITIZE_DIR)/example-go.json:
	@mkdir -p $(@D)
	@umask 077; printf '{"keks": {"one": "%s", "two": "%s"}, "default_key_id": "one"}\n' \
	  "$$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" "$$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" > $@

SANITIZE_PLUGINS += $(EXAMPLE_GO_ASAN)=$(SANITIZE_DIR)/example-go.json
