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
