# The C template: make example-c -> build/examples/example-c-manager.so
EXAMPLE_C_SO := $(BUILD)/examples/example-c-manager.so
EXAMPLES += $(EXAMPLE_C_SO)

.PHONY: example-c
example-c: $(EXAMPLE_C_SO)

$(EXAMPLE_C_SO): examples/c/example_manager.c include/keymanager.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iinclude -shared -o $@ $< -lcrypto
