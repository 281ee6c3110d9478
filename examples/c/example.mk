# The C template: make example-c -> build/examples/example-c-manager.so
EXAMPLE_C_SO := $(BUILD)/examples/example-c-manager.so
EXAMPLES += $(EXAMPLE_C_SO)

.PHONY: example-c
example-c: $(EXAMPLE_C_SO)

$(EXAMPLE_C_SO): examples/c/example_manager.c include/keymanager.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iinclude -shared -o $@ $< -lcrypto

# `make sanitize`: an AddressSanitizer/UBSan build of the template, run by
# the conformance runner with LeakSanitizer on (fresh random KEKs).
EXAMPLE_C_ASAN := $(SANITIZE_DIR)/plugins/example-c-manager.so
EXAMPLE_RANDOM_HEX := od -An -tx1 -N32 /dev/urandom | tr -d ' \n'

$(EXAMPLE_C_ASAN): examples/c/example_manager.c include/keymanager.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANITIZE_FLAGS) -Iinclude -shared -o $@ $< -lcrypto

$(SANITIZE_DIR)/example-c.json:
	@mkdir -p $(@D)
	@umask 077; printf '{"keks": {"one": "%s", "two": "%s"}, "default_key_id": "two"}\n' \
	  "$$($(EXAMPLE_RANDOM_HEX))" "$$($(EXAMPLE_RANDOM_HEX))" > $@

SANITIZE_PLUGINS += $(EXAMPLE_C_ASAN)=$(SANITIZE_DIR)/example-c.json
