# The Rust template: make example-rust -> build/examples/example-rust-manager.so
# No crates (crates.io is unreachable): builds offline; target dir under build/.
EXAMPLE_RUST_SO := $(BUILD)/examples/example-rust-manager.so
EXAMPLES += $(EXAMPLE_RUST_SO)
# rustup installs cargo in ~/.cargo/bin, which a non-login shell may lack on PATH.
CARGO ?= $(or $(shell command -v cargo 2>/dev/null),$(wildcard $(HOME)/.cargo/bin/cargo),$(wildcard /root/.cargo/bin/cargo),cargo)
EXAMPLE_RUST_TARGET := $(abspath $(BUILD))/rust

.PHONY: example-rust
example-rust: $(EXAMPLE_RUST_SO)

$(EXAMPLE_RUST_SO): $(wildcard examples/rust/src/*.rs) examples/rust/Cargo.toml
	@mkdir -p $(@D)
	CARGO_TARGET_DIR=$(EXAMPLE_RUST_TARGET) $(CARGO) build --release --offline --quiet --manifest-path examples/rust/Cargo.toml
	cp $(EXAMPLE_RUST_TARGET)/release/libexample_rust_manager.so $@

# `make sanitize`: AddressSanitizer for Rust needs a nightly toolchain, so
# the plain .so runs under the ASan/LSan-instrumented conformance runner:
# all its heap memory comes from malloc, so leaks, double and invalid frees
# are caught; out-of-bounds accesses inside Rust code are not (safe Rust
# bounds-checks them anyway).
$(SANITIZE_DIR)/example-rust.json:
	@mkdir -p $(@D)
	@umask 077; printf '{"keks": {"one": "%s", "two": "%s"}, "default_key_id": "one"}\n' \
	  "$$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" "$$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" > $@

SANITIZE_PLUGINS += $(EXAMPLE_RUST_SO)=$(SANITIZE_DIR)/example-rust.json
